package migrations

import "embed"

// Postgres holds the PostgreSQL schema migrations, applied in file-name
// order by pkg/postgres. A file, once released, is never edited: a change is
// a new file, because deployed databases record which files they have run.
//
//go:embed postgres/*.sql
var Postgres embed.FS
