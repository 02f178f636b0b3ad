package app

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/chatd/chatd/pkg/config"
	"github.com/chatd/chatd/pkg/elastic"
	"github.com/chatd/chatd/pkg/postgres"
	"github.com/chatd/chatd/pkg/scylla"
	"github.com/chatd/chatd/pkg/sqlite"
)

// Migrate creates or upgrades the schema of every backend the config names
// (whatever the roles), then closes them. Opening a SQLite database applies
// its migrations, so the embedded files are created too.
func Migrate(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	switch cfg.Database.Backend {
	case "postgres":
		db, err := postgres.Open(ctx, cfg.Database.PostgresDSN, log)
		if err != nil {
			return fmt.Errorf("open postgres: %w", err)
		}
		defer db.Close()
		if err := db.Migrate(ctx); err != nil {
			return fmt.Errorf("migrate postgres: %w", err)
		}
	default:
		db, err := sqlite.OpenAccounts(ctx, filepath.Join(cfg.DataDir, "chatd.db"), log)
		if err != nil {
			return fmt.Errorf("migrate accounts database: %w", err)
		}
		db.Close()
	}
	switch cfg.Store.Backend {
	case "scylla":
		sc, err := scyllaConfig(cfg)
		if err != nil {
			return err
		}
		s, err := scylla.Open(ctx, sc, log)
		if err != nil {
			return fmt.Errorf("open scylla: %w", err)
		}
		defer s.Close()
		if err := s.Migrate(ctx); err != nil {
			return fmt.Errorf("migrate scylla: %w", err)
		}
	default:
		s, err := sqlite.OpenMessages(ctx, filepath.Join(cfg.DataDir, "messages.db"), log)
		if err != nil {
			return fmt.Errorf("migrate message store: %w", err)
		}
		s.Close()
	}
	switch cfg.Search.Backend {
	case "elasticsearch":
		ec, err := elasticConfig(cfg)
		if err != nil {
			return err
		}
		ix, err := elastic.Open(ctx, ec, log)
		if err != nil {
			return fmt.Errorf("open elasticsearch: %w", err)
		}
		if err := ix.Migrate(ctx); err != nil {
			return fmt.Errorf("migrate elasticsearch: %w", err)
		}
	default:
		s, err := sqlite.OpenSearch(ctx, filepath.Join(cfg.DataDir, "search.db"), log)
		if err != nil {
			return fmt.Errorf("migrate search index: %w", err)
		}
		s.Close()
	}
	return nil
}
