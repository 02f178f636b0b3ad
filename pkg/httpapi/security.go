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
// network path.
func (a *API) originOK(r *http.Request, origin string) bool {
	if a.origins[origin] {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	host := trimLower(r.Host)
	return u.Host == stripDefaultPort("http", host) || u.Host == stripDefaultPort("https", host)
}

// requestOrigin returns the normalized Origin of r, falling back to the
// Referer's origin (some browsers omit Origin on same-origin requests).
func requestOrigin(r *http.Request) (origin string, present bool) {
	if o := r.Header.Get("Origin"); o != "" {
		n, _ := normalizeOrigin(o)
		return n, true
	}
	if ref := r.Header.Get("Referer"); ref != "" {
		u, err := url.Parse(ref)
		if err != nil || u.Host == "" {
			return "", true
		}
		n, _ := normalizeOrigin(u.Scheme + "://" + u.Host)
		return n, true
	}
	return "", false
}

// csrf refuses state-changing requests a foreign site could have made the
// browser send. A cookie-authenticated request must prove its origin; a
// request carrying a bearer header cannot be forged cross-site (browsers
// only add it after a CORS preflight), and one without credentials (sign
// up, log in) is refused only when it names a foreign origin, which stops
// login CSRF without breaking non-browser clients.
func (a *API) csrf(r *http.Request) error {
	if isSafeMethod(r.Method) {
		return nil
	}
	if r.Header.Get("Authorization") != "" {
		return nil
	}
	origin, present := requestOrigin(r)
	if !present {
		if cookieAuthenticated(r) {
			return chat.Errorf(chat.EFORBIDDEN, "cross-site request refused: Origin header required with cookie authentication")
		}
		return nil
	}
	if origin == "" || !a.originOK(r, origin) {
		return chat.Errorf(chat.EFORBIDDEN, "cross-site request refused: origin not allowed")
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
