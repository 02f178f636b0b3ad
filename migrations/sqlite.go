// Package migrations holds the schema of every SQL and CQL backend, embedded
// into the binary so an upgrade needs no files beside it.
package migrations

import "embed"

// SQLite holds the migrations of the embedded SQLite databases. Each of the
// three database files has its own sequence, named
// sqlite/<database>_<version>_<name>.sql, with database one of accounts,
// messages and search; versions are applied in order, once each.
//
//go:embed sqlite/*.sql
var SQLite embed.FS
