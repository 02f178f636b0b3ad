package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// lookupIP is net.LookupIP; tests replace it.
var lookupIP = net.LookupIP

// checkTarget parses the server URL and refuses anything that is not on this
// machine's loopback unless allowRemote: a load tool must not be pointed at
// someone else's server by accident.
func checkTarget(raw string, allowRemote bool) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("--url %q: %v", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("--url %q: want http:// or https://", raw)
	}
	host := u.Hostname()
	if host == "" {
		return nil, fmt.Errorf("--url %q: no host", raw)
	}
	if allowRemote || isLoopback(host) {
		return u, nil
	}
	return nil, fmt.Errorf("refusing to load %s: not a loopback address (pass --allow-remote to bench another machine)", host)
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	if ip := net.ParseIP(host); ip != nil {
		return ip.IsLoopback()
	}
	ips, err := lookupIP(host)
	if err != nil || len(ips) == 0 {
		return false
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return false
		}
	}
	return true
}

// apiError is a non-2xx answer.
type apiError struct {
	Status int
	Code   string
	Msg    string
}

func (e *apiError) Error() string {
	if e.Code == "rate_limited" {
		return fmt.Sprintf("%d rate_limited: %s%s", e.Status, e.Msg, rateLimitHint)
	}
	return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Msg)
}

const rateLimitHint = "\n  the server rate-limits sends (and logins) per user: run it with" +
	" --set limits.send_rate=0 --set limits.login_rate=0" +
	" (or CHATD_LIMITS_SEND_RATE=0 CHATD_LIMITS_LOGIN_RATE=0) for a benchmark"

// api is a minimal REST client.
type api struct {
	base       string
	metricsURL string // "": base + "/metrics"
	hc         *http.Client
}

func newAPI(base string) *api {
	return &api{base: strings.TrimSuffix(base, "/"), hc: &http.Client{Timeout: 30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second}}}
}

func (a *api) do(ctx context.Context, method, path, token string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := a.hc.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return err
	}
	if res.StatusCode/100 != 2 {
		var e struct {
			Error struct{ Code, Message string }
		}
		_ = json.Unmarshal(b, &e)
		if e.Error.Code == "" {
			e.Error.Code, e.Error.Message = "http", strings.TrimSpace(string(b))
		}
		return &apiError{res.StatusCode, e.Error.Code, e.Error.Message}
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// account registers username and logs in, returning the session token.
func (a *api) account(ctx context.Context, username, password string) (string, error) {
	err := a.do(ctx, "POST", "/api/v1/users", "", map[string]string{"username": username, "password": password}, nil)
	if err != nil {
		return "", fmt.Errorf("register %s: %w", username, err)
	}
	var s struct {
		Token string `json:"token"`
	}
	if err := a.do(ctx, "POST", "/api/v1/sessions", "", map[string]string{"username": username, "password": password}, &s); err != nil {
		return "", fmt.Errorf("log in %s: %w", username, err)
	}
	return s.Token, nil
}

func (a *api) createRoom(ctx context.Context, token, name string) (string, error) {
	var r struct {
		ID json.Number `json:"id"`
	}
	if err := a.do(ctx, "POST", "/api/v1/rooms", token, map[string]any{"name": name}, &r); err != nil {
		return "", fmt.Errorf("create room: %w", err)
	}
	return strings.Trim(r.ID.String(), `"`), nil
}

// rss reads the server's resident memory in bytes: from /proc/PID/status
// when pid > 0, else from the process_resident_memory_bytes gauge of
// /metrics. ok is false when neither is available.
func (a *api) rss(ctx context.Context, pid int) (int64, bool) {
	if pid > 0 {
		n, err := procRSS(pid)
		return n, err == nil
	}
	ms, _ := a.metrics(ctx) // what parsed before an error still counts
	return rssOf(ms)
}

func procRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseVmRSS(b)
}

// parseVmRSS reads the VmRSS line of /proc/PID/status ("VmRSS:  1234 kB").
func parseVmRSS(status []byte) (int64, error) {
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				n, err := strconv.ParseInt(f[0], 10, 64)
				if err != nil {
					return 0, err
				}
				return n * 1024, nil
			}
		}
	}
	return 0, fmt.Errorf("no VmRSS line")
}

// rssOf finds the process_resident_memory_bytes gauge among scraped samples.
func rssOf(ms []promSample) (int64, bool) {
	for _, m := range ms {
		if m.name == "process_resident_memory_bytes" {
			return int64(m.value), true
		}
	}
	return 0, false
}
