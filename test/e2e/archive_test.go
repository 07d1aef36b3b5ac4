package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sandbox-guard/sandbox-guard/test/e2e/harness"
)

// An EKS AL2023-like node: containerd's sandbox image is localhost/kubernetes/pause:latest, which
// no registry serves, and the image exists as an archive written by `ctr images export` (like
// /etc/eks/pause.tar). With the archive as a digest-pinned fallback and no registry reachable, the
// keeper imports it under containerd's name with the archive as its source, pins it, repairs a
// deletion from it (local copies off, so nothing else can serve), and never creates a record of
// the name inside the archive.
func TestKeeperImportsArchiveFallback(t *testing.T) {
	harness.ForEachContainerd(t, func(t *testing.T, c harness.Containerd) {
		env := harness.Load(t)
		const name = "localhost/kubernetes/pause:latest"
		n := harness.StartNode(t, env, c, harness.NodeOptions{NoSandboxImage: true, SandboxImageFor: func(*harness.Node) string { return name }})

		// The archive, as the AMI build makes it: pull, export, and the image gone again.
		_, manifest := n.Registry.PushPause(t, env, "eks/pause", "3.10") // what StartNode pushed; the push tells its digest
		n.CRI.MustPull(n.PushedImage, n.Registry.User+":"+n.Registry.Password)
		archive := filepath.Join(n.Dir, "etc-eks", "pause.tar")
		if err := os.MkdirAll(filepath.Dir(archive), 0o755); err != nil {
			t.Fatal(err)
		}
		if out, err := n.Ctr("images", "export", archive, n.PushedImage); err != nil {
			t.Fatalf("ctr images export: %v: %s", err, out)
		}
		deleteSandboxImage(t, n) // every pause and sha256: record
		n.Registry.Stop()        // nothing can be pulled: the archive is the only source

		src := fmt.Sprintf("oci-archive:%s@%s", archive, manifest)
		p := n.StartExternalPlugin(n.PluginBase() + fmt.Sprintf("mode: enforce\npreset: none\nsandboxImage: auto\nsandboxImageFallbacks: [%q]\nkeeper: {localCopy: false}\nmetrics: {address: \"\"}\n", src))
		n.WaitPinned(name, 20*time.Second, "sandbox image imported from the archive")
		assertFromArchive := func(when string) {
			t.Helper()
			out, err := n.Ctr("images", "ls", "name=="+name)
			if err != nil {
				t.Fatalf("ctr images ls: %v: %s", err, out)
			}
			if !strings.Contains(out, manifest.String()) || !strings.Contains(out, "io.cri-containerd.source="+archive) {
				t.Errorf("%s: %s is not the archive's image %s labelled with its source %s:\n%s", when, name, manifest, archive, out)
			}
			all, err := n.Ctr("images", "ls", "-q")
			if err != nil {
				t.Fatalf("ctr images ls -q: %v: %s", err, all)
			}
			if strings.Contains(all, n.PushedImage) {
				t.Errorf("%s: a record of the archive's own name %s appeared:\n%s", when, n.PushedImage, all)
			}
		}
		assertFromArchive("first import")
		imports := func(want int) {
			t.Helper()
			harness.Eventually(t, 5*time.Second, "the import logged", func() error {
				if got := strings.Count(p.Log(), "image imported, present and pinned"); got != want {
					return fmt.Errorf("the plugin log shows %d imports, want %d:\n%s", got, want, p.Log())
				}
				return nil
			})
		}
		imports(1)
		id := n.CRI.MustRunP(harness.Pod{Name: "web-1"})
		n.CRI.Remove(id)

		if out, err := n.Ctr("images", "rm", name); err != nil {
			t.Fatalf("ctr images rm: %v: %s", err, out)
		}
		n.WaitPinned(name, 5*time.Second, "sandbox image imported again after deletion")
		assertFromArchive("repair")
		imports(2) // no local copy is kept: the archive served the repair
	})
}
