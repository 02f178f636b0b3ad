package httpapi

import (
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/chatd/chatd/pkg/chat"
	"github.com/chatd/chatd/pkg/httpx"
)

// tokenOf returns the request's bearer token: the Authorization header or
// the session cookie. The ?token= form is for WebSocket upgrades only.
func tokenOf(r *http.Request) string { return httpx.Token(r, false) }

// cookieAuthenticated reports whether the credentials of r come from the
// session cookie, which a browser attaches to cross-site requests too.
func cookieAuthenticated(r *http.Request) bool {
	if r.Header.Get("Authorization") != "" {
		return false
	}
	c, err := r.Cookie(httpx.SessionCookie)
	return err == nil && c.Value != ""
}

// normalizeOrigin returns scheme://host[:port] in lower case without a
// default port, or false if s is not an http(s) origin.
func normalizeOrigin(s string) (string, bool) {
	s = trimLower(s)
	if s == "" || s == "*" || s == "null" {
		return "", false
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return "", false
	}
	if u.Path != "" && u.Path != "/" {
		return "", false
	}
	return u.Scheme + "://" + stripDefaultPort(u.Scheme, u.Host), true
}

func stripDefaultPort(scheme, host string) string {
	h, p, err := net.SplitHostPort(host)
	if err != nil {
		return host
	}
	if (scheme == "http" && p == "80") || (scheme == "https" && p == "443") {
		if strings.Contains(h, ":") {
			return "[" + h + "]"
		}
		return h
	}
	return host
}

// originOK reports whether origin (normalized) is the server's own or an
// allowed one. Same origin compares hosts only: behind a TLS-terminating
// proxy the request reaches us over plain HTTP while the page is https, and
// an attacker able to serve http:// on our own host name already sits on the
// network path. X-Forwarded-Host counts as our host too, for proxies that
// rewrite Host; trusting it is safe here because a cross-site page cannot
// set that header without a CORS preflight, which only allowed origins pass.
func (a *API) originOK(r *http.Request, origin string) bool {
	if a.origins[origin] {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	hosts := []string{r.Host}
	if fh := r.Header.Get("X-Forwarded-Host"); fh != "" {
		hosts = append(hosts, strings.Split(fh, ",")[0])
	}
	for _, h := range hosts {
		h = trimLower(h)
		if h != "" && (u.Host == stripDefaultPort("http", h) || u.Host == stripDefaultPort("https", h)) {
			return true
		}
	}
	return false
}

// refererOrigin returns the normalized origin of r's Referer, or "".
func refererOrigin(r *http.Request) string {
	u, err := url.Parse(r.Header.Get("Referer"))
	if err != nil || u.Host == "" {
		return ""
	}
	n, _ := normalizeOrigin(u.Scheme + "://" + u.Host)
	return n
}

// csrf refuses state-changing requests a foreign site could have made the
// browser send.
//   - A request with an Authorization header cannot be forged cross-site:
//     browsers add it only after a CORS preflight.
//   - A cookie-authenticated request must prove its origin with Origin, or
//     Referer where a browser omitted Origin.
//   - A request without credentials (sign up, log in) is refused only when
//     its Origin names a foreign site, which stops login CSRF without
//     troubling non-browser clients, which send no Origin.
func (a *API) csrf(r *http.Request) error {
	if isSafeMethod(r.Method) || r.Header.Get("Authorization") != "" {
		return nil
	}
	refuse := chat.Errorf(chat.EFORBIDDEN, "cross-site request refused: origin not allowed")
	if o := r.Header.Get("Origin"); o != "" {
		if n, ok := normalizeOrigin(o); !ok || !a.originOK(r, n) {
			return refuse
		}
		return nil
	}
	if !cookieAuthenticated(r) {
		return nil
	}
	if r.Header.Get("Referer") == "" {
		return chat.Errorf(chat.EFORBIDDEN, "cross-site request refused: Origin header required with cookie authentication")
	}
	if n := refererOrigin(r); n == "" || !a.originOK(r, n) {
		return refuse
	}
	return nil
}

// cors adds CORS headers for an allowed foreign origin. Other origins get
// none, so browsers keep their pages from reading our answers.
func (a *API) cors(w http.ResponseWriter, r *http.Request) {
	o := r.Header.Get("Origin")
	if o == "" {
		return
	}
	w.Header().Add("Vary", "Origin")
	n, ok := normalizeOrigin(o)
	if !ok || !a.origins[n] {
		return
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", o)
	h.Set("Access-Control-Allow-Credentials", "true")
	h.Set("Access-Control-Expose-Headers", "Retry-After")
}

// preflight answers a CORS preflight: 204 for an allowed origin (cors has
// set the origin headers already), 403 otherwise.
func (a *API) preflight(w http.ResponseWriter, r *http.Request) {
	o := r.Header.Get("Origin")
	n, ok := normalizeOrigin(o)
	if o == "" || !ok || !a.origins[n] {
		writeErr(w, r, a.log, chat.Errorf(chat.EFORBIDDEN, "origin not allowed"))
		return
	}
	h := w.Header()
	h.Add("Vary", "Access-Control-Request-Method")
	h.Add("Vary", "Access-Control-Request-Headers")
	h.Set("Access-Control-Allow-Methods", allowedMethods)
	h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
	h.Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
}
