package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sandbox-guard/sandbox-guard/test/e2e/harness"
)

func TestMetricsAndHealthEndpoints(t *testing.T) {
	harness.ForEachContainerd(t, func(t *testing.T, c harness.Containerd) {
		env := harness.Load(t)
		n := harness.StartNode(t, env, c, harness.NodeOptions{PluginConfig: markerConfig("enforce")})
		if _, err := n.CRI.RunP(harness.Pod{Name: "web-1"}); err == nil {
			t.Fatal("runp admitted while the marker is missing")
		}
		client := n.NS.HTTPClient()
		get := func(path string) (int, string, error) {
			resp, err := client.Get("http://127.0.0.1:9809" + path)
			if err != nil {
				return 0, "", err
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			return resp.StatusCode, string(b), err
		}
		harness.Eventually(t, 5*time.Second, "metrics", func() error {
			code, body, err := get("/metrics")
			if err != nil {
				return err
			}
			for _, want := range []string{
				`sandbox_guard_pods_total{verdict="reject"} 1`,
				`sandbox_guard_pod_rejections_total{check="marker",verdict="reject"} 1`,
				`sandbox_guard_check_ok{check="marker",kind="file"} 0`,
				`sandbox_guard_image_pinned{`,
				`sandbox_guard_nri_connected 1`,
				`sandbox_guard_hook_duration_seconds_count 1`,
			} {
				if code != http.StatusOK || !strings.Contains(body, want) {
					return fmt.Errorf("/metrics (%d) lacks %q", code, want)
				}
			}
			return nil
		})
		for path, want := range map[string]int{"/healthz": 200, "/readyz": 200} {
			harness.Eventually(t, 5*time.Second, path, func() error {
				code, body, err := get(path)
				if err != nil || code != want {
					return fmt.Errorf("%s = %d %q (%v), want %d", path, code, body, err, want)
				}
				return nil
			})
		}
	})
}
