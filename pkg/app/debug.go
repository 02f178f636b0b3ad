package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// openDebug starts net/http/pprof on debug.pprof_addr, if set. It has its
// own listener so profiling is never exposed on the public one.
func (m *Main) openDebug() error {
	if m.Config.Debug.PprofAddr == "" {
		return nil
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	_, err := m.serveAux("pprof", "debug.pprof_addr", m.Config.Debug.PprofAddr, mux)
	return err
}

// openMetrics serves /metrics, /healthz and /readyz on http.metrics_addr,
// if set, for a monitoring network; /metrics then leaves the public
// listener.
func (m *Main) openMetrics() error {
	if m.Config.HTTP.MetricsAddr == "" {
		return nil
	}
	mux := http.NewServeMux()
	m.handleProbes(mux)
	ln, err := m.serveAux("metrics", "http.metrics_addr", m.Config.HTTP.MetricsAddr, mux)
	m.metricsListener = ln
	return err
}

// serveAux listens on addr (the setting key) and serves mux there until the
// process stops.
func (m *Main) serveAux(name, key, addr string, mux *http.ServeMux) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("in %s: listen: %w", key, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	m.Log.Info(name+" listening", "addr", ln.Addr().String())
	m.addRunner(name, func(ctx context.Context) error {
		go func() {
			<-ctx.Done()
			_ = srv.Close()
		}()
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	return ln, nil
}
