package containerd

import (
	"context"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	stdlog "log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/sandbox-guard/sandbox-guard/internal/testutil"
)

// manifest is the one image the fake registries serve, as eks/pause:3.10.
var manifest = []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",` +
	`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}`)

// hit is one request a fake registry answered.
type hit struct {
	server, kind, auth string // kind: "tag" (resolve) or "digest" (fetch)
	status             int
}

type hits struct {
	mu  sync.Mutex
	all []hit
}

func (h *hits) add(x hit) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.all = append(h.all, x)
}

func (h *hits) list() []hit {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.all)
}

// fakeRegistry serves manifest as eks/pause:3.10 (unless it lacks it: 404). With auth set it
// answers 401 with a basic challenge to any request that does not carry exactly that
// Authorization header, as a registry behind ECR credentials does.
type fakeRegistry struct {
	name, auth string
	has        bool
	log        *hits
}

func (f fakeRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	kind := ""
	switch r.URL.Path {
	case "/v2/eks/pause/manifests/3.10":
		kind = "tag"
	case "/v2/eks/pause/manifests/" + digest.FromBytes(manifest).String():
		kind = "digest"
	}
	status := http.StatusOK
	defer func() {
		if kind != "" {
			f.log.add(hit{server: f.name, kind: kind, auth: r.Header.Get("Authorization"), status: status})
		}
	}()
	if f.auth != "" && r.Header.Get("Authorization") != f.auth {
		status = http.StatusUnauthorized
		w.Header().Set("WWW-Authenticate", `Basic realm="fake"`)
		http.Error(w, "authentication required", status)
		return
	}
	if kind == "" || !f.has {
		status = http.StatusNotFound
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", ocispec.MediaTypeImageManifest)
	w.Header().Set("Docker-Content-Digest", digest.FromBytes(manifest).String())
	w.Header().Set("Content-Length", strconv.Itoa(len(manifest)))
	if r.Method != http.MethodHead {
		_, _ = w.Write(manifest) // a failed write shows as a failed fetch
	}
}

// mirror is one [host] entry of the test's hosts.toml.
type mirror struct {
	name       string
	tls        bool   // serve https with httptest's self-signed certificate
	hostsExtra string // more keys of the entry: ca, skip_verify, capabilities
	auth, lack bool   // auth: wants the image's token; lack: does not have the image
}

func basic(user, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+secret))
}

// A pull through hosts.toml mirrors behaves like CRI's pull of that image with kubelet's
// credentials: hosts in file order, then server; ca, skip_verify and capabilities honoured; and
// a mirror that answers 401 gets the credentials of the image's registry (its ECR token), asked
// for the image's host, never for the mirror's.
func TestPullThroughMirrorsLikeCRI(t *testing.T) {
	const user, token = "AWS", "ecr-token-of-the-image-host"
	for _, tc := range []struct {
		name    string
		mirrors []mirror
		// secondRoot puts hosts.toml in the second directory of config_path.
		secondRoot bool
		// What the fake registries saw: who answered the resolve (the tag) and the fetch (the
		// digest), and the order in which they were first asked.
		resolvedBy, fetchedBy string
		asked                 []string
	}{
		{
			name:       "a mirror that answers 401 gets the image host's ECR token",
			mirrors:    []mirror{{name: "mirror", auth: true}},
			resolvedBy: "mirror", fetchedBy: "mirror", asked: []string{"mirror"},
		},
		{
			name:       "mirrors in file order, server last",
			mirrors:    []mirror{{name: "mirror-1", lack: true}, {name: "mirror-2", auth: true}},
			resolvedBy: "mirror-2", fetchedBy: "mirror-2", asked: []string{"mirror-1", "mirror-2"},
		},
		{
			name:       "a mirror without resolve is used to pull by digest only",
			mirrors:    []mirror{{name: "mirror", auth: true, hostsExtra: `capabilities = ["pull"]`}},
			resolvedBy: "server", fetchedBy: "mirror", asked: []string{"server", "mirror"},
		},
		{
			name:       "a TLS mirror with its ca",
			mirrors:    []mirror{{name: "mirror", auth: true, tls: true, hostsExtra: `ca = "CA"`}},
			resolvedBy: "mirror", fetchedBy: "mirror", asked: []string{"mirror"},
		},
		{
			name:       "a TLS mirror with skip_verify",
			mirrors:    []mirror{{name: "mirror", auth: true, tls: true, hostsExtra: `skip_verify = true`}},
			resolvedBy: "mirror", fetchedBy: "mirror", asked: []string{"mirror"},
		},
		{
			// The control of the two cases above: an unknown certificate is refused in the
			// handshake (the mirror sees no request) and server serves.
			name:       "a TLS mirror without ca nor skip_verify is refused",
			mirrors:    []mirror{{name: "mirror", auth: true, tls: true}},
			resolvedBy: "server", fetchedBy: "server", asked: []string{"server"},
		},
		{
			name:       "hosts.toml in the second directory of config_path",
			mirrors:    []mirror{{name: "mirror", auth: true}},
			secondRoot: true,
			resolvedBy: "mirror", fetchedBy: "mirror", asked: []string{"mirror"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := basic(user, token)
			log := &hits{}
			server := httptest.NewServer(fakeRegistry{name: "server", auth: want, has: true, log: log})
			t.Cleanup(server.Close)
			imageHost := strings.TrimPrefix(server.URL, "http://")
			roots := []string{t.TempDir(), t.TempDir()}
			root := roots[0]
			if tc.secondRoot {
				root = roots[1]
			}
			dir := filepath.Join(root, imageHost)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			toml := fmt.Sprintf("server = %q\n", server.URL)
			for _, m := range tc.mirrors {
				reg := fakeRegistry{name: m.name, has: !m.lack, log: log}
				if m.auth {
					reg.auth = want
				}
				srv := httptest.NewUnstartedServer(reg)
				if m.tls {
					// A refused certificate is the point of one case, not news.
					srv.Config.ErrorLog = stdlog.New(io.Discard, "", 0)
					srv.StartTLS()
				} else {
					srv.Start()
				}
				t.Cleanup(srv.Close)
				extra := m.hostsExtra
				if strings.Contains(extra, `"CA"`) {
					ca := filepath.Join(dir, m.name+"-ca.pem")
					pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
					if err := os.WriteFile(ca, pemBytes, 0o644); err != nil {
						t.Fatal(err)
					}
					extra = strings.Replace(extra, `"CA"`, strconv.Quote(ca), 1)
				}
				caps := `capabilities = ["pull", "resolve"]`
				if strings.Contains(extra, "capabilities") {
					caps = ""
				}
				toml += fmt.Sprintf("\n[host.%q]\n  %s\n  %s\n", srv.URL, caps, extra)
			}
			if err := os.WriteFile(filepath.Join(dir, "hosts.toml"), []byte(toml), 0o644); err != nil {
				t.Fatal(err)
			}

			var mu sync.Mutex
			var askedFor []string
			creds := func(_ context.Context, host string) (string, string, error) {
				mu.Lock()
				defer mu.Unlock()
				askedFor = append(askedFor, host)
				if host != imageHost { // like the ECR credentials: nothing for other hosts
					return "", "", nil
				}
				return user, token, nil
			}
			ctx, cancel := context.WithTimeout(testutil.Context(testutil.QuietLogger()), 20*time.Second)
			defer cancel()
			c := New(Options{HostsDirs: roots})
			ref := imageHost + "/eks/pause:3.10"
			r, err := c.resolver(ctx, ref, creds)
			if err != nil {
				t.Fatal(err)
			}
			name, desc, err := r.Resolve(ctx, ref)
			if err != nil {
				t.Fatalf("resolving %s: %v\nhosts.toml:\n%s", ref, err, toml)
			}
			if desc.Digest != digest.FromBytes(manifest) {
				t.Fatalf("resolved %s, want %s", desc.Digest, digest.FromBytes(manifest))
			}
			f, err := r.Fetcher(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			rc, err := f.Fetch(ctx, desc)
			if err != nil {
				t.Fatalf("fetching %s: %v", desc.Digest, err)
			}
			got, err := io.ReadAll(rc)
			_ = rc.Close() // read fully
			if err != nil || string(got) != string(manifest) {
				t.Fatalf("fetched %q (%v), want the manifest", got, err)
			}

			var asked []string
			served := map[string]string{}
			for _, h := range log.list() {
				if !slices.Contains(asked, h.server) {
					asked = append(asked, h.server)
				}
				if h.status == http.StatusOK {
					served[h.kind] = h.server
				}
				if h.auth != "" && h.auth != want {
					t.Errorf("%s received credentials other than the image host's token", h.server)
				}
			}
			if served["tag"] != tc.resolvedBy || served["digest"] != tc.fetchedBy {
				t.Errorf("resolved by %q, fetched by %q; want %q and %q\nrequests: %+v", served["tag"], served["digest"], tc.resolvedBy, tc.fetchedBy, log.list())
			}
			if !slices.Equal(asked, tc.asked) {
				t.Errorf("registries asked in the order %v, want %v", asked, tc.asked)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, h := range askedFor {
				if h != imageHost {
					t.Errorf("credentials asked for %s, want only the image's host %s", h, imageHost)
				}
			}
			if len(askedFor) == 0 {
				t.Errorf("credentials never asked, though every registry wants them")
			}
		})
	}
}

// A config_path directory that cannot be read is an error naming it, not a silent default.
func TestHostDirFromRootsReportsUnreadableRoot(t *testing.T) {
	root := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(root, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := hostDirFromRoots([]string{root})("registry.test")
	if err == nil || !strings.Contains(err.Error(), root) {
		t.Fatalf("got %v, want an error naming %s", err, root)
	}
}
