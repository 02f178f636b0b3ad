// Command chatd is the whole chat server in one binary: `chatd serve` runs
// every role on embedded backends, or any subset of roles against external
// NATS, Kafka, ScyllaDB, Elasticsearch, PostgreSQL and Redis.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/chatd/chatd"
	"github.com/chatd/chatd/pkg/app"
	"github.com/chatd/chatd/pkg/bench"
	"github.com/chatd/chatd/pkg/config"
	"github.com/chatd/chatd/pkg/prio"
)

// Stamped by the release build (goreleaser ldflags).
var (
	version = "dev"
	commit  = "none"
	date    = "unknown"
)

func main() {
	if err := newApp(os.Stdout, os.Stderr).Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "chatd:", err)
		os.Exit(1)
	}
}

func newApp(stdout, stderr io.Writer) *cli.App {
	serveFlags := []cli.Flag{
		&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "TOML config file", EnvVars: []string{"CHATD_CONFIG"}},
		&cli.StringFlag{Name: "data-dir", Usage: "data directory (data_dir)"},
		&cli.StringFlag{Name: "http-addr", Usage: "HTTP listen address (http.addr)"},
		&cli.StringFlag{Name: "roles", Usage: "comma-separated roles to run (roles): " + strings.Join(config.Roles, ",")},
		&cli.IntFlag{Name: "node-id", Usage: "Snowflake node number (node_id)", Value: -1},
		&cli.StringSliceFlag{Name: "set", Usage: "set any key, e.g. --set limits.send_rate=0 (repeatable)"},
	}
	serve := &cli.Command{
		Name:   "serve",
		Usage:  "run chatd (all roles on embedded backends unless configured otherwise)",
		Flags:  serveFlags,
		Action: func(c *cli.Context) error { return runServe(c, stdout, stderr) },
	}
	return &cli.App{
		Name:                 "chatd",
		Usage:                "realtime chat server in one binary",
		Version:              version,
		Writer:               stdout,
		ErrWriter:            stderr,
		HideVersion:          true,
		EnableBashCompletion: false,
		Flags:                serveFlags,
		// `chatd` with no command serves.
		Action: func(c *cli.Context) error { return runServe(c, stdout, stderr) },
		Commands: []*cli.Command{
			serve,
			bench.Command(),
			{
				Name:   "migrate",
				Usage:  "create or upgrade the schemas of the configured backends, then exit",
				Flags:  serveFlags,
				Action: func(c *cli.Context) error { return runMigrate(c, stderr) },
			},
			{
				Name:  "config",
				Usage: "configuration helpers",
				Subcommands: []*cli.Command{
					{
						Name:  "default",
						Usage: "print the full documented configuration with its defaults",
						Action: func(c *cli.Context) error {
							_, err := stdout.Write(chatd.DefaultConfig)
							return err
						},
					},
					{
						Name:      "check",
						Usage:     "validate a config file (with CHATD_* variables applied)",
						ArgsUsage: "FILE",
						Action: func(c *cli.Context) error {
							if c.NArg() != 1 {
								return errors.New("usage: chatd config check FILE")
							}
							if _, err := config.Load(c.Args().First(), os.Environ(), nil); err != nil {
								return err
							}
							fmt.Fprintf(stdout, "%s: ok\n", c.Args().First())
							return nil
						},
					},
				},
			},
			{
				Name:  "version",
				Usage: "print the version",
				Action: func(c *cli.Context) error {
					fmt.Fprintf(stdout, "chatd %s (commit %s, built %s, %s %s/%s)\n", version, commit, date, runtime.Version(), runtime.GOOS, runtime.GOARCH)
					return nil
				},
			},
		},
	}
}

// loadConfig applies flags on top of file and environment.
func loadConfig(c *cli.Context) (config.Config, error) {
	sets := map[string]string{}
	for _, kv := range c.StringSlice("set") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return config.Config{}, fmt.Errorf("--set %q: want key=value", kv)
		}
		sets[strings.TrimSpace(k)] = v
	}
	if v := c.String("data-dir"); v != "" {
		sets["data_dir"] = v
	}
	if v := c.String("http-addr"); v != "" {
		sets["http.addr"] = v
	}
	if v := c.String("roles"); v != "" {
		sets["roles"] = v
	}
	if v := c.Int("node-id"); v >= 0 {
		sets["node_id"] = fmt.Sprint(v)
	}
	return config.Load(c.String("config"), os.Environ(), sets)
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	format := cfg.Log.Format
	if format == "auto" {
		format = "json"
		if f, ok := w.(*os.File); ok {
			if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
				format = "text"
			}
		}
	}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func runServe(c *cli.Context, stdout, stderr io.Writer) error {
	cfg, err := loadConfig(c)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	// A P for each background thread lets the kernel put acks and fanout
	// before the store and index batches (see pkg/prio).
	if procs := prio.EnsureProcs(os.Getenv, app.BackgroundThreads(cfg)); procs != runtime.NumCPU() {
		log.Info("GOMAXPROCS", "procs", procs, "cpus", runtime.NumCPU())
	}
	prio.EnsureGCPercent(os.Getenv)
	m := app.New(cfg, log)
	if err := m.Open(ctx); err != nil {
		return err
	}
	defer m.Close()
	m.Metrics().BuildInfo(version, commit, date)
	log.Info("chatd started", append([]any{"version", version}, m.Summary()...)...)
	if cfg.Has("gateway") {
		fmt.Fprintf(stdout, "chatd is running: open %s\n", openURL(m.Addr()))
	}
	err = m.Run(ctx)
	log.Info("chatd stopped")
	return err
}

// openURL turns a listen address into a URL a person can open.
func openURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr + "/"
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port) + "/"
}

func runMigrate(c *cli.Context, stderr io.Writer) error {
	cfg, err := loadConfig(c)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := app.Migrate(ctx, cfg, log); err != nil {
		return err
	}
	log.Info("migrations applied")
	return nil
}
