package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// StartMirrorRegistry starts a second auth-protected registry in n's namespace that accepts
// exactly the credentials of n.Registry: a registry mirror that wants the image registry's
// credentials, as a pull-through cache in front of ECR does. It starts empty (push to it) and
// stops when the test ends.
func (n *Node) StartMirrorRegistry() *Registry {
	t := n.t
	t.Helper()
	r := &Registry{User: n.Registry.User, Password: n.Registry.Password, ns: n.NS, dir: filepath.Join(n.Dir, "mirror-registry")}
	r.port = n.NS.FreePort(t)
	r.Host = fmt.Sprintf("127.0.0.1:%d", r.port)
	r.LogFile = filepath.Join(r.dir, "registry.log")
	must(t, os.MkdirAll(filepath.Join(r.dir, "data"), 0o755))
	hash, err := bcrypt.GenerateFromPassword([]byte(r.Password), bcrypt.MinCost)
	must(t, err)
	must(t, os.WriteFile(filepath.Join(r.dir, "htpasswd"), []byte(r.User+":"+string(hash)+"\n"), 0o600))
	r.start(t, n.Env)
	t.Cleanup(r.Stop)
	return r
}

// WriteMirrorsFirst rewrites the test registry's hosts.toml so that containerd (and the plugin)
// try mirrors, in this order, before the registry itself, as a mirror's installer writes it.
func (n *Node) WriteMirrorsFirst(mirrors ...string) string {
	text := fmt.Sprintf("server = \"http://%s\"\n", n.Registry.Host)
	for _, m := range mirrors {
		text += fmt.Sprintf("\n[host.\"http://%s\"]\n  capabilities = [\"pull\", \"resolve\"]\n", m)
	}
	must(n.t, os.WriteFile(n.HostsToml(), []byte(text), 0o644))
	return text
}

// ManifestsServed counts the manifest requests of repo (GET or HEAD, by tag or digest) that
// the registry answered with 200, from its access log.
func (r *Registry) ManifestsServed(t testing.TB, repo string) int {
	t.Helper()
	re := regexp.MustCompile(`"(?:GET|HEAD) /v2/` + regexp.QuoteMeta(repo) + `/manifests/[^ "]+ HTTP/[0-9.]+" 200 `)
	return len(re.FindAllString(r.Log(t), -1))
}
