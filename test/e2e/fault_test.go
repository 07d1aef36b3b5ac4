package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sandbox-guard/sandbox-guard/internal/ecr/ecrtest"

	"github.com/sandbox-guard/sandbox-guard/test/e2e/harness"
)

// containerd restarted ten times in a row: the external plugin reconnects each time and keeps
// gating, and what it holds (open files, threads) does not grow with the restarts.
func TestExternalPluginSurvivesTenContainerdRestarts(t *testing.T) {
	harness.ForEachContainerd(t, func(t *testing.T, c harness.Containerd) {
		env := harness.Load(t)
		n := harness.StartNode(t, env, c, harness.NodeOptions{})
		p := n.StartExternalPlugin(markerConfig("enforce")(n))
		p.WaitConnected(1)
		rejected := func(round int) {
			t.Helper()
			if _, err := n.CRI.RunP(harness.Pod{Name: "web"}); err == nil || !strings.Contains(err.Error(), "sandbox-guard:") {
				t.Fatalf("after restart %d: runp = %v, want a sandbox-guard rejection", round, err)
			}
		}
		rejected(0)
		fds, threads := p.OpenFiles(), p.Threads()
		for i := 1; i <= 10; i++ {
			n.Restart()
			p.WaitConnected(i + 1)
			rejected(i)
		}
		if got := p.OpenFiles(); got > fds+2 {
			t.Errorf("open files grew from %d to %d over 10 restarts", fds, got)
		}
		if got := p.Threads(); got > threads+4 {
			t.Errorf("threads grew from %d to %d over 10 restarts", threads, got)
		}
		t.Logf("after 10 restarts: %d open files (was %d), %d threads (was %d)", p.OpenFiles(), fds, p.Threads(), threads)
	})
}

// A registry answering 500, or hanging: the keeper backs off (no hot loop against it) and the
// image comes back when the registry does.
func TestKeeperBacksOffWhileTheRegistryFails(t *testing.T) {
	harness.ForEachContainerd(t, func(t *testing.T, c harness.Containerd) {
		for _, tc := range []struct {
			name string
			mode harness.FrontMode
		}{{"500", harness.Front500}, {"hang", harness.FrontHang}} {
			t.Run(tc.name, func(t *testing.T) {
				env := harness.Load(t)
				var front *harness.Front
				n := harness.StartNode(t, env, c, harness.NodeOptions{NoSandboxImage: true,
					SandboxImageFor: func(n *harness.Node) string {
						front = n.StartFront(harness.FrontOptions{InjectAuth: true})
						return front.Host + "/eks/pause:3.10"
					},
					PluginConfig: func(n *harness.Node) string {
						return n.PluginBase() + "mode: enforce\npreset: none\nsandboxImage: auto\nkeeper: {localCopy: false, pullTimeout: 2s}\n"
					}})
				imagePinned(t, n, 20*time.Second, "sandbox image pulled through the front")

				front.SetMode(tc.mode)
				failedBefore := strings.Count(readFile(t, n.PluginLog), "pull failed")
				requestsBefore := front.Requests()
				start := time.Now()
				if out, err := n.Ctr("images", "rm", n.SandboxImage); err != nil {
					t.Fatalf("ctr images rm: %v: %s", err, out)
				}
				const failures = 4
				harness.Eventually(t, 60*time.Second, "four failed repairs", func() error {
					if got := strings.Count(readFile(t, n.PluginLog), "pull failed") - failedBefore; got < failures {
						return fmt.Errorf("%d failed pulls so far", got)
					}
					return nil
				})
				elapsed, requests := time.Since(start), front.Requests()-requestsBefore
				// Back-off 0.5 s doubling (±20 %) puts at least ~2.8 s between the first and the
				// fourth attempt; without it four failures take milliseconds.
				if elapsed < 2500*time.Millisecond {
					t.Errorf("%d failed pulls within %v: no back-off", failures, elapsed)
				}
				if requests > failures*8 {
					t.Errorf("%d requests for %d failed pulls: retries are not bounded", requests, failures)
				}
				t.Logf("%d failed pulls in %v, %d requests to the registry", failures, elapsed.Round(time.Millisecond), requests)

				front.SetMode(harness.FrontPass)
				imagePinned(t, n, 30*time.Second, "sandbox image back once the registry is")
			})
		}
	})
}

// ECR refusing the token request (denied, throttled, an empty or malformed token): a clear error
// naming the AWS error, no crash, and the fallback source is used.
func TestKeeperUsesFallbackWhenECRRefuses(t *testing.T) {
	harness.ForEachContainerd(t, func(t *testing.T, c harness.Containerd) {
		for _, tc := range []struct {
			mode ecrtest.Mode
			want string
		}{
			{ecrtest.AccessDenied, "AccessDeniedException"},
			{ecrtest.Throttling, "ThrottlingException"},
			{ecrtest.EmptyToken, "token"},
			{ecrtest.MalformedToken, "token"},
		} {
			t.Run(string(tc.mode), func(t *testing.T) {
				env := harness.Load(t)
				var public *harness.Front
				n := harness.StartNode(t, env, c, harness.NodeOptions{NoSandboxImage: true, PluginConfig: func(n *harness.Node) string {
					fake := n.StartFakeECR(12 * time.Hour)
					fake.SetMode(tc.mode)
					public = n.StartFront(harness.FrontOptions{InjectAuth: true}) // anonymous, like public.ecr.aws
					return n.PluginBase() + fake.PluginECRConfig(n) +
						fmt.Sprintf("mode: enforce\npreset: none\nsandboxImage: auto\nsandboxImageFallbacks: [%s/eks/pause:3.10]\n", public.Host)
				}})
				t.Cleanup(func() { assertNoSecrets(t, n) })
				imagePinned(t, n, 30*time.Second, "sandbox image from the fallback")
				out, err := n.Ctr("images", "ls", "name=="+n.SandboxImage)
				if err != nil || !strings.Contains(out, "io.cri-containerd.source="+public.Host) {
					t.Fatalf("not tagged from the fallback: %v\n%s", err, out)
				}
				log := readFile(t, n.PluginLog)
				if !strings.Contains(log, "ecr GetAuthorizationToken in us-west-2") || !strings.Contains(log, tc.want) {
					t.Errorf("the log does not explain the ECR failure (want %q):\n%s", tc.want, log)
				}
				if !n.Running() {
					t.Fatal("containerd exited")
				}
			})
		}
	})
}
