package harness

import (
	"fmt"
	"maps"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
)

// FrontMode is how a registry front answers.
type FrontMode int32

const (
	FrontPass FrontMode = iota // forward to the registry
	Front500                   // answer 500 Internal Server Error
	FrontHang                  // hold the request until the client gives up
)

// Front is a registry front on loopback inside the node's namespace: a registry under another
// host name whose failures the test controls. With InjectAuth it adds the registry's
// credentials itself, acting as an anonymous public registry; with Forbid it answers 403 to
// exactly that Authorization header, as ECR answers an expired token.
type Front struct {
	Host     string // 127.0.0.1:port, to use in image references
	mode     atomic.Int32
	requests atomic.Int64
	anon     atomic.Int64
	denied   atomic.Int64

	mu    sync.Mutex
	auths map[string]int // Authorization headers clients sent, before InjectAuth
}

// FrontOptions shape a Front.
type FrontOptions struct {
	InjectAuth bool
	Forbid     string
}

// StartFront starts a front for the node's registry and writes its hosts.toml (plain http).
func (n *Node) StartFront(opts FrontOptions) *Front {
	t := n.t
	target, _ := url.Parse("http://" + n.Registry.Host)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.Transport = n.NS.HTTPClient().Transport // the registry listens inside the namespace
	f := &Front{auths: map[string]int{}}
	l := n.NS.Listen(t)
	f.Host = l.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.requests.Add(1)
		auth := r.Header.Get("Authorization")
		if auth == "" {
			f.anon.Add(1)
		} else {
			f.mu.Lock()
			f.auths[auth]++
			f.mu.Unlock()
		}
		switch FrontMode(f.mode.Load()) {
		case Front500:
			http.Error(w, "injected failure", http.StatusInternalServerError)
			return
		case FrontHang:
			<-r.Context().Done()
			return
		}
		if opts.Forbid != "" && auth == opts.Forbid {
			f.denied.Add(1)
			http.Error(w, `{"errors":[{"code":"DENIED","message":"Your authorization token has expired."}]}`, http.StatusForbidden)
			return
		}
		if opts.InjectAuth {
			r.SetBasicAuth(n.Registry.User, n.Registry.Password)
		}
		proxy.ServeHTTP(w, r)
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	must(t, os.MkdirAll(filepath.Join(n.CertsDir, f.Host), 0o755))
	must(t, os.WriteFile(filepath.Join(n.CertsDir, f.Host, "hosts.toml"), []byte(fmt.Sprintf("server = \"http://%s\"\n", f.Host)), 0o644))
	return f
}

// SetMode changes how the front answers from the next request on.
func (f *Front) SetMode(m FrontMode) { f.mode.Store(int32(m)) }

// Requests counts every request; Anonymous those without Authorization; Denied the 403s.
func (f *Front) Requests() int64  { return f.requests.Load() }
func (f *Front) Anonymous() int64 { return f.anon.Load() }
func (f *Front) Denied() int64    { return f.denied.Load() }

// Authorizations counts the requests per Authorization header the clients sent (before
// InjectAuth adds the registry's own).
func (f *Front) Authorizations() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.auths)
}
