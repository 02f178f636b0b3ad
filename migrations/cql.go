package migrations

import "embed"

// CQL holds the ScyllaDB/Cassandra schema, applied in file-name order by
// scylla.Store.Migrate. Embedded so the single chatd binary can set up its
// own keyspace without a separate migration tool.
//
//go:embed cql/*.cql
var CQL embed.FS
