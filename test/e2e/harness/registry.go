package harness

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/crypto/bcrypt"
)

// Registry is a distribution registry on loopback inside a test's namespace that requires
// basic auth, like a private ECR repository.
type Registry struct {
	Host     string // 127.0.0.1:port
	User     string
	Password string
	LogFile  string
	ns       *NetNS
	dir      string
	cmd      *exec.Cmd
	port     int
}

// StartRegistry starts an auth-protected registry in ns; it stops when the test ends.
func StartRegistry(t testing.TB, env *Env, ns *NetNS, dir string) *Registry {
	t.Helper()
	r := &Registry{User: "AWS", Password: "pw-" + randomID() + randomID(), ns: ns, dir: filepath.Join(dir, "registry")}
	r.port = ns.FreePort(t)
	r.Host = fmt.Sprintf("127.0.0.1:%d", r.port)
	r.LogFile = filepath.Join(r.dir, "registry.log")
	must(t, os.MkdirAll(filepath.Join(r.dir, "data"), 0o755))
	hash, err := bcrypt.GenerateFromPassword([]byte(r.Password), bcrypt.MinCost)
	must(t, err)
	must(t, os.WriteFile(filepath.Join(r.dir, "htpasswd"), []byte(r.User+":"+string(hash)+"\n"), 0o600))
	r.start(t, env)
	t.Cleanup(r.Stop)
	return r
}

func (r *Registry) start(t testing.TB, env *Env) {
	t.Helper()
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
auth:
  htpasswd:
    realm: sandbox-guard-e2e
    path: %s
`, filepath.Join(r.dir, "data"), r.Host, filepath.Join(r.dir, "htpasswd"))
	cfgPath := filepath.Join(r.dir, "config.yml")
	must(t, os.WriteFile(cfgPath, []byte(cfg), 0o644))
	logf, err := os.OpenFile(r.LogFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	must(t, err)
	defer func() { _ = logf.Close() }() // the child holds its own descriptor
	r.cmd = r.ns.Command(env.Registry, "serve", cfgPath)
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	must(t, r.cmd.Start())
	client := r.ns.HTTPClient()
	Eventually(t, 20*time.Second, "registry answers", func() error {
		resp, err := client.Get("http://" + r.Host + "/v2/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			return errorf("GET /v2/ = %d, want 401 (auth required)", resp.StatusCode)
		}
		return nil
	})
}

// Stop stops the registry (its data stays, so Restart serves the same images).
func (r *Registry) Stop() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = r.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = r.cmd.Process.Kill()
		<-done
	}
	r.cmd = nil
}

// Restart starts a stopped registry again on the same address.
func (r *Registry) Restart(t testing.TB, env *Env) {
	t.Helper()
	r.Stop()
	r.start(t, env)
}

// Log returns what the registry has logged so far (access log included).
func (r *Registry) Log(t testing.TB) string {
	b, err := os.ReadFile(r.LogFile)
	must(t, err)
	return string(b)
}

// PushPause pushes a pause image built from env.Pause as repo:tag and returns its full
// reference and manifest digest.
func (r *Registry) PushPause(t testing.TB, env *Env, repo, tag string) (ref string, digest v1.Hash) {
	t.Helper()
	return r.push(t, pauseImage(t, env), repo, tag)
}

// PushApp pushes as repo:tag the kubelet tests' application image: the static test/app binary at
// /app, its entrypoint. It returns the full reference.
func (r *Registry) PushApp(t testing.TB, env *Env, repo, tag string) string {
	t.Helper()
	ref, _ := r.push(t, staticImage(t, env.App, "app"), repo, tag)
	return ref
}

// PushPauseVariant pushes as repo:tag a pause image whose config carries variant as a label,
// so that each variant is another image (manifest and config) over the same layer. It returns
// the reference, the manifest digest and the config digest.
func (r *Registry) PushPauseVariant(t testing.TB, env *Env, repo, tag, variant string) (ref string, digest, config v1.Hash) {
	t.Helper()
	img := pauseImage(t, env)
	cf, err := img.ConfigFile()
	must(t, err)
	cf = cf.DeepCopy()
	cf.Config.Labels = map[string]string{"sandbox-guard.test/variant": variant}
	img, err = mutate.ConfigFile(img, cf)
	must(t, err)
	config, err = img.ConfigName()
	must(t, err)
	ref, digest = r.push(t, img, repo, tag)
	return ref, digest, config
}

func (r *Registry) push(t testing.TB, img v1.Image, repo, tag string) (ref string, digest v1.Hash) {
	t.Helper()
	ref = fmt.Sprintf("%s/%s:%s", r.Host, repo, tag)
	parsed, err := name.ParseReference(ref, name.Insecure)
	must(t, err)
	err = remote.Write(parsed, img,
		remote.WithAuth(&authn.Basic{Username: r.User, Password: r.Password}),
		remote.WithTransport(r.ns.HTTPClient().Transport))
	if err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
	digest, err = img.Digest()
	must(t, err)
	return ref, digest
}

// pauseImage is a one-layer image holding the static pause binary at /pause.
func pauseImage(t testing.TB, env *Env) v1.Image {
	t.Helper()
	return staticImage(t, env.Pause, "pause")
}

// staticImage is a one-layer image holding the static binary bin at /name, its entrypoint.
func staticImage(t testing.TB, bin, name string) v1.Image {
	t.Helper()
	content, err := os.ReadFile(bin)
	must(t, err)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	must(t, tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(content)), Typeflag: tar.TypeReg, ModTime: time.Unix(0, 0)}))
	_, err = tw.Write(content)
	must(t, err)
	must(t, tw.Close())
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil })
	must(t, err)
	img, err := mutate.AppendLayers(empty.Image, layer)
	must(t, err)
	cf, err := img.ConfigFile()
	must(t, err)
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config.Entrypoint = []string{"/" + name}
	img, err = mutate.ConfigFile(img, cf)
	must(t, err)
	return img
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
