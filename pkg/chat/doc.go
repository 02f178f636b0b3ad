// Package chat is chatd's domain vocabulary: the types every role exchanges
// (User, Room, Message, Session), the error codes of the public API, and the
// small interfaces of the backends and roles.
//
// It imports only the standard library. Packages that adapt a technology
// (sqlite, postgres, jetstream, kafka, scylla, elastic, redis) implement these
// interfaces and talk to each other only in these types.
package chat
