package app_test

import (
	"testing"

	"github.com/chatd/chatd/pkg/app"
	"github.com/chatd/chatd/pkg/config"
)

// A process gets a P for each thread that may run background work at once:
// its store and index sinks and one SQLite checkpoint; none when background
// work runs at normal priority.
func TestBackgroundThreads(t *testing.T) {
	for _, tc := range []struct {
		roles []string
		nice  int
		want  int
	}{
		{config.Roles, 10, 3},
		{[]string{"gateway", "ingest"}, 10, 1},
		{[]string{"index"}, 19, 2},
		{config.Roles, 0, 0},
	} {
		cfg := config.Default()
		cfg.Roles, cfg.Store.BackgroundNice = tc.roles, tc.nice
		if got := app.BackgroundThreads(cfg); got != tc.want {
			t.Errorf("roles %v, nice %d: %d background threads, want %d", tc.roles, tc.nice, got, tc.want)
		}
	}
}
