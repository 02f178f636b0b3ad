// Package rpc carries the user, room and query roles over gRPC when roles run
// in separate processes. A Server exposes in-process implementations of
// chat.UserService, chat.RoomService and chat.QueryService; a Client returns
// implementations of the same interfaces that call a Server, so callers are
// written once against the interfaces and configuration decides which they
// get.
//
// The wire protocol is proto/chatd/v1/chatd.proto; the generated code lives
// in pkg/rpc/chatdv1 and is refreshed with scripts/genproto.sh.
package rpc
