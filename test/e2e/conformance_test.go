package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	digest "github.com/opencontainers/go-digest"

	"github.com/sandbox-guard/sandbox-guard/internal/containerd"
	"github.com/sandbox-guard/sandbox-guard/internal/keeper/keepertest"
	"github.com/sandbox-guard/sandbox-guard/test/e2e/harness"
)

// The keeper's containerd interface meets its contract on real containerd: the conformance
// suite the keeper's unit tests run on their fake, here on the internal/containerd adapter
// against each containerd line, in CRI's namespace and snapshotter, pulling from the
// auth-protected registry.
func TestConformanceContainerdAdapter(t *testing.T) {
	harness.ForEachContainerd(t, func(t *testing.T, c harness.Containerd) {
		env := harness.Load(t)
		n := harness.StartNode(t, env, c, harness.NodeOptions{NoSandboxImage: true})

		// The adapter pulls in this process, outside the node's network namespace: it reaches
		// the registry through a relay, configured like the node's own hosts.toml.
		host := n.NS.Forward(t, n.Registry.Host)
		hostsDir := t.TempDir()
		if err := os.MkdirAll(filepath.Join(hostsDir, host), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(hostsDir, host, "hosts.toml"), []byte(fmt.Sprintf("server = \"http://%s\"\n", host)), 0o644); err != nil {
			t.Fatal(err)
		}
		client := containerd.New(containerd.Options{Address: n.Socket, Namespace: "k8s.io", Snapshotter: "overlayfs", HostsDirs: []string{hostsDir}})
		t.Cleanup(func() {
			if err := client.Close(); err != nil {
				t.Errorf("closing the containerd client: %v", err)
			}
		})

		var mu sync.Mutex
		pushed := 0
		keepertest.Conformance(t, keepertest.Subject{
			Images: client,
			Pullable: func(t *testing.T) keepertest.Pullable {
				mu.Lock()
				pushed++
				tag := fmt.Sprintf("v%d", pushed)
				mu.Unlock()
				ref, manifest, config := n.Registry.PushPauseVariant(t, env, "conformance/pause", tag, tag)
				return keepertest.Pullable{
					Ref:    host + strings.TrimPrefix(ref, n.Registry.Host),
					Target: digest.Digest(manifest.String()),
					Config: config.String(),
				}
			},
			Creds: func(_ context.Context, h string) (string, string, error) {
				if h != host {
					return "", "", nil
				}
				return n.Registry.User, n.Registry.Password, nil
			},
			Missing: host + "/conformance/pause:missing",
			Delete: func(t *testing.T, name string) {
				if out, err := n.Ctr("images", "rm", name); err != nil {
					t.Fatalf("ctr images rm %s: %v: %s", name, err, out)
				}
			},
		})
	})
}
