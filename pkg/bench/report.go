package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
)

// WriteTable prints one row per run (fanout: one per step, the last good one
// marked) with the notes under the table.
func WriteTable(w io.Writer, results []*Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tconns\trooms\tsends/s\tdeliveries/s\tlost\tdup\treord\tp50 ms\tp99 ms\tp99.9 ms\tmax ms\tack p99 ms\tRSS MB\t")
	var notes []string
	for _, r := range results {
		rss := "-"
		if r.RSSAfter > 0 {
			rss = fmt.Sprintf("%.0f", float64(r.RSSAfter)/(1<<20))
		}
		switch {
		case len(r.Steps) == 0:
			fmt.Fprintf(tw, "%s\t%d\t%d\t-\t-\t-\t-\t-\t%.2f\t%.2f\t%.2f\t%.2f\t-\t-\t%s\t\n", r.Scenario, r.Connected, r.Rooms,
				r.ConnectLatency.P50, r.ConnectLatency.P99, r.ConnectLatency.P999, r.ConnectLatency.Max, rss)
		default:
			for i, s := range r.Steps {
				name := r.Scenario
				if len(r.Steps) > 1 {
					mark := ""
					if i == r.LastGood {
						mark = "*"
					} else if !s.OK {
						mark = "x"
					}
					name = fmt.Sprintf("%s#%d%s", r.Scenario, i+1, mark)
				}
				ack := "-"
				if s.AckLatency.Count > 0 {
					ack = fmt.Sprintf("%.2f", s.AckLatency.P99)
				}
				cpu := "-"
				if us := s.CPUPerDelivery(); us > 0 {
					cpu = fmt.Sprintf("%.2f", us)
				}
				fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%.0f\t%d\t%d\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%s\t%s\t%s\t\n", name, r.Connected, r.Rooms,
					s.Rate, s.DeliveriesPerSec, s.Lost, s.Tally.Dups, s.Tally.Reorders,
					s.Latency.P50, s.Latency.P99, s.Latency.P999, s.Latency.Max, ack, cpu, rss)
			}
		}
		notes = append(notes, r.notes()...)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range notes {
		fmt.Fprintln(w, n)
	}
	return nil
}

func (r *Result) notes() []string {
	var out []string
	add := func(format string, args ...any) { out = append(out, r.Scenario+": "+fmt.Sprintf(format, args...)) }
	switch r.Scenario {
	case "idle":
		if r.RSSPerConn != 0 {
			add("server RSS %.1f MB -> %.1f MB: %.1f KB per connection", float64(r.RSSBefore)/(1<<20), float64(r.RSSAfter)/(1<<20), r.RSSPerConn/1024)
		}
		add("latencies are connect+join")
	case "connect":
		add("%d connected in %.2fs: %.0f connects/s (dial+join), %d errors%s; latencies are connect+join", r.Connected, r.ConnectSeconds, r.ConnectPerSec, r.ConnectErrors, firstErr(r.FirstConnError))
	case "fanout":
		if s := r.Main(); r.LastGood >= 0 && s != nil {
			add("last good step (*) %.0f sends/s: %.0f deliveries/s", s.Rate, s.DeliveriesPerSec)
		} else {
			add("no step stayed within the bounds")
		}
		for i, s := range r.Steps {
			if !s.OK {
				add("step %d (%.0f sends/s) broke: %s", i+1, s.Rate, s.Broke)
			}
		}
	case "durable", "persist":
		if p := r.Persist; p != nil {
			add("offered %.0f sends/s, sent %.0f/s, acked %.0f/s", p.OfferedRate, p.SentRate, p.AckedRate)
			if s := r.Main(); s != nil {
				l := s.AckLatency
				add("ack latency p50 %.2fms p99 %.2fms p99.9 %.2fms max %.2fms", l.P50, l.P99, l.P999, l.Max)
			}
			if p.NoLagMetric {
				add("no chatd_log_lag on /metrics: store and index lag unknown")
			}
			for _, g := range sortedKeys(p.Lag) {
				l := p.Lag[g]
				add("%s lag: max %.2fs, %d log entries (%d samples)", g, l.MaxSeconds, l.MaxEntries, p.Samples)
			}
			caught := "caught up"
			if !p.CaughtUp {
				caught = "did NOT catch up"
			}
			add("consumers %s %.1fs after the send phase; written by the consumers: %s", caught, p.CatchUpSecs, counts(p.SinkWritten))
		}
		if r.Store != nil {
			add("stored exactly once: %d of %d acked (missing %d, doubled %d, sends stored under two IDs %d; %d pages)",
				r.Store.Found, r.Store.Acked, r.Store.Missing, r.Store.Doubled, r.Store.DupSends, r.Store.Pages)
		}
	}
	for i, s := range r.Steps {
		if s.ToolCPU > 0.8 {
			add("step %d: the load workers used %.2f CPUs; on one CPU the tool may have been the bottleneck", i+1, s.ToolCPU)
		}
	}
	if r.Dropped > 0 {
		add("%d connections closed by the server", r.Dropped)
	}
	for k, v := range r.ErrCodes {
		add("%d %s errors", v, k)
	}
	for _, n := range r.Notes {
		add("%s", n)
	}
	return out
}

func counts(m map[string]int64) string {
	if len(m) == 0 {
		return "unknown"
	}
	var out []string
	for _, k := range sortedKeys(m) {
		out = append(out, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(out, ", ")
}

// WriteJSON writes results to path.
func WriteJSON(path string, results []*Result) error {
	b, err := json.MarshalIndent(results, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// ReadJSON reads results written by WriteJSON.
func ReadJSON(path string) ([]*Result, error) {
	var rs []*Result
	if err := readJSONFile(path, &rs); err != nil {
		return nil, err
	}
	return rs, nil
}

// readAll reads and concatenates the results of several WriteJSON files.
func readAll(paths []string) ([]*Result, error) {
	var all []*Result
	for _, f := range paths {
		rs, err := ReadJSON(f)
		if err != nil {
			return nil, err
		}
		all = append(all, rs...)
	}
	return all, nil
}
