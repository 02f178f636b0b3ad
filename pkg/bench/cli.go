package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
)

// Command is `chatd bench`.
func Command() *cli.Command {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "url", Value: "http://127.0.0.1:8080", Usage: "server to load (loopback only unless --allow-remote)"},
		&cli.BoolFlag{Name: "allow-remote", Usage: "allow a non-loopback --url"},
		&cli.StringFlag{Name: "metrics-url", Usage: "where the server's Prometheus metrics are, when http.metrics_addr moved them off --url (default: --url + /metrics)"},
		&cli.BoolFlag{Name: "bar", Usage: "the exact shape of this scenario's bar in issue 6 for every size not given (idle: 1, fanout: 2, durable: 3, persist: 4)"},
		&cli.IntFlag{Name: "conns", Usage: "connections (durable: senders); default per scenario"},
		&cli.IntFlag{Name: "rooms", Usage: "rooms the connections are spread over; default per scenario"},
		&cli.IntFlag{Name: "room-size", Usage: "chat: connections per room (default 5)"},
		&cli.DurationFlag{Name: "duration", Usage: "hold (idle), send phase (chat, durable), each step (fanout)"},
		&cli.Float64Flag{Name: "rate", Usage: "total sends/s (fanout: of the first step)"},
		&cli.StringFlag{Name: "rates", Usage: "fanout: comma-separated total sends/s of each step, e.g. 250,500,1000,1600 (instead of --rate, --rate-factor, --steps)"},
		&cli.Float64Flag{Name: "rate-factor", Usage: "fanout: rate multiplier per step (default 2)"},
		&cli.IntFlag{Name: "steps", Usage: "fanout: most rate steps (default 4)"},
		&cli.IntFlag{Name: "refine", Usage: "fanout: after the first step that breaks a bound, up to this many more steps bisecting between it and the last good rate (default 0)"},
		&cli.DurationFlag{Name: "max-p99", Usage: "fanout: delivery p99 bound (default 50ms)"},
		&cli.Float64Flag{Name: "max-loss", Usage: "fanout: lost fraction bound (default 0)"},
		&cli.IntFlag{Name: "body-size", Usage: "message body bytes (default 100)"},
		&cli.IntFlag{Name: "conns-per-user", Usage: "connections sharing one user (server's gateway.max_conns_per_user; default 32)"},
		&cli.IntFlag{Name: "concurrency", Usage: "connections opened at once per worker (default 64)"},
		&cli.IntFlag{Name: "max-errors", Usage: "connect: stop once more connections than this failed (default 0)"},
		&cli.DurationFlag{Name: "drain", Usage: "after sending, wait for outstanding acks and deliveries until none came for this long (default 5s; 2m at most)"},
		&cli.DurationFlag{Name: "settle", Usage: "idle: wait after connecting before reading memory (default 2s)"},
		&cli.DurationFlag{Name: "lag-wait", Usage: "persist: after sending, wait at most this long for the store and index lag to reach 0 (default 60s)"},
		&cli.DurationFlag{Name: "sample", Usage: "persist: /metrics lag sampling interval (default 1s)"},
		&cli.StringFlag{Name: "cpuprofile", Usage: "write CPU profiles: FILE for this process, FILE.wN for worker N"},
		&cli.DurationFlag{Name: "batch-wait", Usage: "above 10,000 frames/s per worker, pause this long between small epoll batches so each returns many sockets (latencies read at most this much high; default 500µs; negative: never)"},
		&cli.IntFlag{Name: "pid", Usage: "server pid to read VmRSS from (default: /metrics process_resident_memory_bytes)"},
		&cli.IntFlag{Name: "workers", Usage: "worker processes to spread connections over (each holds at most its share of open files); 0: in this process"},
		&cli.StringFlag{Name: "json", Usage: "write the results to this file"},
	}
	run := func(scenario string) *cli.Command {
		return &cli.Command{
			Name:   scenario,
			Usage:  usage[scenario],
			Flags:  flags,
			Action: func(c *cli.Context) error { return runCLI(c, scenario) },
		}
	}
	var subs []*cli.Command
	for _, s := range Scenarios {
		subs = append(subs, run(s))
	}
	subs = append(subs, &cli.Command{
		Name:      "table",
		Usage:     "print one table from the JSON files of several runs",
		ArgsUsage: "FILE...",
		Action: func(c *cli.Context) error {
			all, err := readAll(c.Args().Slice())
			if err != nil {
				return err
			}
			return WriteTable(c.App.Writer, all)
		},
	})
	subs = append(subs, &cli.Command{
		Name:      "bars",
		Usage:     "check the bars of issue 6 against the JSON of a bench.sh run and print PASS/FAIL per bar",
		ArgsUsage: "RESULT.json...",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "ready-ms", Usage: "comma-separated times to ready of chatd serve, in ms (bar 6)"},
			&cli.StringFlag{Name: "reads", Usage: "go test -bench output kept by scripts/bench-reads.sh (its $OUT; bar 5)"},
			&cli.BoolFlag{Name: "reads-partial", Usage: "that run was cut short (a timeout): bar 5 cannot pass"},
			&cli.Int64Flag{Name: "reads-store", Value: 10_000_000, Usage: "messages stored in that run (bench-reads.sh -s)"},
			&cli.Int64Flag{Name: "reads-index", Value: 1_000_000, Usage: "messages indexed in that run (bench-reads.sh -i)"},
			&cli.StringFlag{Name: "selftest", Usage: "JSON of chatd bench selftest (the tool's own capacity)"},
		},
		Action: func(c *cli.Context) error {
			all, err := readAll(c.Args().Slice())
			if err != nil {
				return err
			}
			ready, err := parseReadyMS(c.String("ready-ms"))
			if err != nil {
				return err
			}
			var reads *ReadsResult
			if f := c.String("reads"); f != "" {
				if rf, err := os.Open(f); err == nil {
					reads, err = ParseReadsBench(rf, c.Int64("reads-store"), c.Int64("reads-index"))
					rf.Close()
					if err != nil {
						return fmt.Errorf("%s: %w", f, err)
					}
					reads.Partial = c.Bool("reads-partial")
				}
			}
			var self *SelfTestResult
			if f := c.String("selftest"); f != "" {
				if _, err := os.Stat(f); err == nil {
					self = &SelfTestResult{}
					if err := readJSONFile(f, self); err != nil {
						return err
					}
				}
			}
			return WriteBars(outWriter(c), Bars(all, ready, reads, self))
		},
	})
	subs = append(subs, &cli.Command{
		Name:  "selftest",
		Usage: "measure the tool's own receive capacity against a trivial local sender (no chatd): frames per CPU-second of the workers",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "conns", Value: 10000, Usage: "connections"},
			&cli.IntFlag{Name: "rooms", Value: 100, Usage: "rooms the connections are spread over"},
			&cli.IntFlag{Name: "workers", Value: 2, Usage: "worker processes"},
			&cli.DurationFlag{Name: "duration", Value: 5 * time.Second, Usage: "send phase"},
			&cli.Float64Flag{Name: "rate", Value: 1500, Usage: "messages/s in total, each written to every connection of its room"},
			&cli.IntFlag{Name: "coalesce", Value: 1, Usage: "frames per sender write (1: one write per frame and connection)"},
			&cli.IntFlag{Name: "sender-cpu", Value: -1, Usage: "pin the sender process to this CPU with taskset (-1: do not)"},
			&cli.StringFlag{Name: "json", Usage: "write the result to this file"},
			&cli.StringFlag{Name: "cpuprofile", Usage: "write the workers' CPU profiles to FILE.wN"},
			&cli.DurationFlag{Name: "batch-wait", Usage: "pause between small epoll batches under load (default 500µs; negative: never)"},
		},
		Action: func(c *cli.Context) error {
			if err := checkWritable("--json", c.String("json")); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
			defer stop()
			r, err := SelfTest(ctx, SelfTestOptions{
				Conns: c.Int("conns"), Rooms: c.Int("rooms"), Workers: c.Int("workers"), Duration: c.Duration("duration"),
				Rate: c.Float64("rate"), Coalesce: c.Int("coalesce"), SenderCPU: c.Int("sender-cpu"), Progress: errWriter(c), CPUProfile: c.String("cpuprofile"),
				BatchWait: c.Duration("batch-wait"),
			})
			if err != nil {
				return fmt.Errorf("bench selftest: %w", err)
			}
			WriteSelfTest(outWriter(c), r)
			if f := c.String("json"); f != "" {
				b, err := json.MarshalIndent(r, "", "  ")
				if err != nil {
					return err
				}
				return os.WriteFile(f, append(b, '\n'), 0o644)
			}
			return nil
		},
	})
	return &cli.Command{
		Name:  "bench",
		Usage: "load a running chatd through its public API and measure it (start it with --set limits.send_rate=0)",
		Description: "Scenarios: idle, fanout, chat, connect, durable, persist. Each creates its own users and rooms,\n" +
			"prints progress once a second and a table at the end. Loopback targets only unless --allow-remote.",
		Flags:       []cli.Flag{&cli.BoolFlag{Name: "worker", Hidden: true}, &cli.BoolFlag{Name: "sender", Hidden: true}},
		Subcommands: subs,
		Action: func(c *cli.Context) error {
			if c.Bool("worker") {
				return RunWorker(os.Stdin, os.Stdout)
			}
			if c.Bool("sender") {
				return RunSender(os.Stdin, os.Stdout)
			}
			return cli.ShowSubcommandHelp(c)
		},
	}
}

var usage = map[string]string{
	"idle":    "N connections, each joined to one room; reports server RSS per connection",
	"fanout":  "N connections over R rooms, one publisher per room; steps the total send rate up until --max-p99 or --max-loss breaks",
	"chat":    "many small rooms (--room-size), everyone sends (--rate total)",
	"connect": "connection storm: opens --conns connections (dial+join) as fast as --concurrency allows, until errors",
	"durable": "sends with acks at --rate, reports ack latency, then reads every acked message back from history",
	"persist": "durable sends at --rate (default 10,000/s) for --duration (default 60s) over --rooms; samples the store and index lag from /metrics, waits for it to reach 0, then checks every acked message is stored once",
}

func errWriter(c *cli.Context) io.Writer {
	if c.App.ErrWriter != nil {
		return c.App.ErrWriter
	}
	return os.Stderr
}

func outWriter(c *cli.Context) io.Writer {
	if c.App.Writer != nil {
		return c.App.Writer
	}
	return os.Stdout
}

func runCLI(c *cli.Context, scenario string) error {
	o := Options{
		Scenario: scenario, URL: c.String("url"), MetricsURL: c.String("metrics-url"), AllowRemote: c.Bool("allow-remote"), Bar: c.Bool("bar"),
		Conns: c.Int("conns"), Rooms: c.Int("rooms"), RoomSize: c.Int("room-size"), Duration: c.Duration("duration"),
		Rate: c.Float64("rate"), RateFactor: c.Float64("rate-factor"), Steps: c.Int("steps"), Refine: c.Int("refine"),
		MaxP99: c.Duration("max-p99"), MaxLoss: c.Float64("max-loss"), BodySize: c.Int("body-size"),
		ConnsPerUser: c.Int("conns-per-user"), Concurrency: c.Int("concurrency"), MaxErrors: c.Int("max-errors"),
		Drain: c.Duration("drain"), Settle: c.Duration("settle"), PID: c.Int("pid"), Workers: c.Int("workers"),
		LagWait: c.Duration("lag-wait"), Sample: c.Duration("sample"), CPUProfile: c.String("cpuprofile"), BatchWait: c.Duration("batch-wait"),
		Progress: c.App.ErrWriter,
	}
	if o.Progress == nil {
		o.Progress = os.Stderr
	}
	rates, err := parseNumbers("--rates", c.String("rates"))
	if err != nil {
		return err
	}
	o.Rates = rates
	if err := checkWritable("--json", c.String("json")); err != nil {
		return err
	}
	if f := o.CPUProfile; f != "" {
		pf, err := os.Create(f)
		if err != nil {
			return err
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := Run(ctx, o)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return errors.New("interrupted")
		}
		return fmt.Errorf("bench %s: %w", scenario, err)
	}
	w := c.App.Writer
	if w == nil {
		w = os.Stdout
	}
	if err := WriteTable(w, []*Result{res}); err != nil {
		return err
	}
	if f := c.String("json"); f != "" {
		return WriteJSON(f, []*Result{res})
	}
	return nil
}

// parseNumbers reads a list flag (--rates, --ready-ms): numbers separated
// by commas or spaces. What each may be is the caller's to check.
func parseNumbers(flag, s string) ([]float64, error) {
	var vs []float64
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		v, err := strconv.ParseFloat(f, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: %q is not a number", flag, f)
		}
		vs = append(vs, v)
	}
	return vs, nil
}

// parseReadyMS reads --ready-ms: times to ready in ms, each 0 or more.
func parseReadyMS(s string) ([]float64, error) {
	ready, err := parseNumbers("--ready-ms", s)
	if err != nil {
		return nil, err
	}
	for _, v := range ready {
		if err := checkNumber("--ready-ms", v); err != nil {
			return nil, err
		}
	}
	return ready, nil
}

// checkWritable fails now, not after a run of up to an hour, when the
// results could not be written to path: a missing or read-only directory,
// or a path that is a directory. It leaves nothing behind.
func checkWritable(flag, path string) error {
	if path == "" {
		return nil
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return fmt.Errorf("%s %s: is a directory", flag, path)
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".chatd-bench-*")
	if err != nil {
		return fmt.Errorf("%s %s: cannot write there: %w", flag, path, err)
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}
