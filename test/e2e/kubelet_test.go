package e2e

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/sandbox-guard/sandbox-guard/test/e2e/harness"
)

// TestKubeletRunsPod is the kubelet harness's smoke test: a pod applied with kubectl is
// scheduled to the node, its image pulled from the auth registry with an imagePullSecret, its
// sandbox given an address of the node's CNI network, and `kubectl logs` reaches it through the
// kubelet. No plugin: it tests the cluster.
func TestKubeletRunsPod(t *testing.T) {
	harness.ForEachContainerd(t, func(t *testing.T, c harness.Containerd) {
		env := harness.Load(t)
		n := harness.StartNode(t, env, c, harness.NodeOptions{})
		k := harness.StartKube(t, n, harness.KubeOptions{})
		image := n.Registry.PushApp(t, env, "e2e/app", "1")
		k.CreatePullSecret("default", "registry")
		k.Apply(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: smoke, namespace: default, labels: {app: smoke}}
spec:
  imagePullSecrets: [{name: registry}]
  terminationGracePeriodSeconds: 2
  containers:
  - {name: app, image: %s}
`, image))
		pods := k.WaitPodsReady("default", "app=smoke", 1, 3*time.Minute)
		p := pods[0]
		if p.Spec.NodeName != k.NodeName {
			t.Errorf("pod scheduled to %q, want %q", p.Spec.NodeName, k.NodeName)
		}
		ip, err := netip.ParseAddr(p.Status.PodIP)
		if err != nil || !netip.MustParsePrefix("10.99.0.0/24").Contains(ip) {
			t.Errorf("pod IP %q is not of the node's CNI network 10.99.0.0/24", p.Status.PodIP)
		}
		k.WaitFor(time.Minute, "kubectl logs", func() error {
			out, err := k.Kubectl("logs", "smoke")
			if err != nil {
				return err
			}
			if !strings.Contains(out, "app: running") {
				return fmt.Errorf("kubectl logs smoke: %q", out)
			}
			return nil
		})
	})
}
