// Package chatd holds the files of the repository root that the binary
// embeds.
package chatd

import _ "embed"

// DefaultConfig is chatd.toml: every setting documented with its default.
//
//go:embed chatd.toml
var DefaultConfig []byte
