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
	addr := m.Config.Debug.PprofAddr
	if addr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("in debug.pprof_addr: listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	m.serveAux("pprof", ln, mux)
	return nil
}

// openMetrics serves /metrics, /healthz and /readyz on http.metrics_addr,
// if set, for a monitoring network; /metrics then leaves the public
// listener.
func (m *Main) openMetrics() error {
	addr := m.Config.HTTP.MetricsAddr
	if addr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("in http.metrics_addr: listen: %w", err)
	}
	m.metricsListener = ln
	mux := http.NewServeMux()
	m.handleProbes(mux)
	m.serveAux("metrics", ln, mux)
	return nil
}

// serveAux serves mux on ln until the process stops.
func (m *Main) serveAux(name string, ln net.Listener, mux *http.ServeMux) {
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
}
