package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sandbox-guard/sandbox-guard/test/e2e/harness"
)

// eksConfig is the EKS preset with its paths adapted to the test node: the CNI check reads
// agentConfDir (the directory the CNI agent writes; containerd's own stays intact so CNI setup
// works), and kube-proxy's check also wants a KUBE-SVC- chain.
func eksConfig(n *harness.Node, agentConfDir string) string {
	return fmt.Sprintf(`mode: enforce
%spreset: eks
refresh: {interval: 200ms}
disableChecks: [vpc-cni-ipamd]
checks:
  - name: cni-config
    cni: {confDir: %s, binDirs: [%s]}
    hint: the VPC CNI (aws-node) has not written its CNI config yet
  - name: kube-proxy-rules
    iptables: {table: nat, chain: KUBE-SERVICES, chainPrefix: KUBE-SVC-}
    hint: kube-proxy has not synced its rules yet
`, n.PluginBase(), agentConfDir, n.Env.CNIBin)
}

func TestNetworkGateIptablesBothBackends(t *testing.T) {
	harness.ForEachContainerd(t, func(t *testing.T, c harness.Containerd) {
		for _, backend := range []string{"nft", "legacy"} {
			t.Run(backend, func(t *testing.T) {
				env := harness.Load(t)
				var agentDir string
				n := harness.StartNode(t, env, c, harness.NodeOptions{PluginConfig: func(n *harness.Node) string {
					agentDir = filepath.Join(n.Dir, "agent-net.d")
					copyFile(t, filepath.Join(n.CNIConfDir, "10-sg.conflist"), filepath.Join(agentDir, "10-aws.conflist"))
					return eksConfig(n, agentDir)
				}})
				ipt := "iptables-" + backend

				// After a reboot: CNI config in place, kube-proxy's rules not yet.
				_, err := n.CRI.RunP(harness.Pod{Name: "web-1"})
				wantRejection(t, err, "default/web-1", "kube-proxy-rules", "nat/KUBE-SERVICES missing", "kube-proxy has not synced its rules yet")

				// Host-network pods (kube-proxy itself) start regardless.
				id := n.CRI.MustRunP(harness.Pod{Name: "kube-proxy-x", Namespace: "kube-system", HostNetwork: true})
				n.CRI.Remove(id)

				// kube-proxy writes its rules in steps: the top chain first, services later.
				n.NS.MustRun(t, ipt, "-t", "nat", "-N", "KUBE-SERVICES")
				harness.Eventually(t, 2*time.Second, "rejection names the missing service chains", func() error {
					_, err := n.CRI.RunP(harness.Pod{Name: "web-1"})
					if err == nil || !strings.Contains(err.Error(), "KUBE-SVC-") {
						return fmt.Errorf("runp: %v, want a rejection naming KUBE-SVC-", err)
					}
					return nil
				})
				n.NS.MustRun(t, ipt, "-t", "nat", "-N", "KUBE-SVC-ERIFXISQEP7F7OF4")
				n.NS.MustRun(t, ipt, "-t", "nat", "-A", "KUBE-SERVICES", "-d", "10.100.0.10/32", "-p", "tcp", "--dport", "53", "-j", "KUBE-SVC-ERIFXISQEP7F7OF4")
				admitted(t, n, "web-1", 2*time.Second)
				harness.Eventually(t, 2*time.Second, "log names the backend", func() error {
					if log := readFile(t, n.PluginLog); !strings.Contains(log, "("+backend+" backend)") {
						return fmt.Errorf("plugin log does not mention the %s backend", backend)
					}
					return nil
				})
			})
		}
	})
}

func TestNetworkGateCNIConfig(t *testing.T) {
	harness.ForEachContainerd(t, func(t *testing.T, c harness.Containerd) {
		env := harness.Load(t)
		var agentDir string
		n := harness.StartNode(t, env, c, harness.NodeOptions{PluginConfig: func(n *harness.Node) string {
			agentDir = filepath.Join(n.Dir, "agent-net.d")
			if err := os.MkdirAll(agentDir, 0o755); err != nil {
				t.Fatal(err)
			}
			return eksConfig(n, agentDir)
		}})
		n.NS.MustRun(t, "iptables-nft", "-t", "nat", "-N", "KUBE-SERVICES")
		n.NS.MustRun(t, "iptables-nft", "-t", "nat", "-N", "KUBE-SVC-A")

		_, err := n.CRI.RunP(harness.Pod{Name: "web-1"})
		wantRejection(t, err, "cni-config", "no network config in CNI conf dir "+agentDir, "VPC CNI")

		// A config that names a plugin binary not installed yet.
		conf := `{"cniVersion": "1.0.0", "name": "aws-cni", "plugins": [{"type": "aws-cni"}, {"type": "portmap"}]}`
		if err := os.WriteFile(filepath.Join(agentDir, "10-aws.conflist"), []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		harness.Eventually(t, 2*time.Second, "rejection names the missing binary", func() error {
			_, err := n.CRI.RunP(harness.Pod{Name: "web-1"})
			if err == nil || !strings.Contains(err.Error(), "CNI plugin binary aws-cni (named by 10-aws.conflist) not found") {
				return fmt.Errorf("runp: %v", err)
			}
			return nil
		})
		copyFile(t, filepath.Join(n.CNIConfDir, "10-sg.conflist"), filepath.Join(agentDir, "10-aws.conflist"))
		admitted(t, n, "web-1", 2*time.Second)
	})
}

func TestNetworkGateHTTPAndSocket(t *testing.T) {
	harness.ForEachContainerd(t, func(t *testing.T, c harness.Containerd) {
		env := harness.Load(t)
		var status atomic.Int32
		status.Store(http.StatusServiceUnavailable)
		var url, sock string
		n := harness.StartNode(t, env, c, harness.NodeOptions{PluginConfig: func(n *harness.Node) string {
			l := n.NS.Listen(t)
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(int(status.Load()))
			})}
			go func() { _ = srv.Serve(l) }()
			t.Cleanup(func() { _ = srv.Close() })
			url = fmt.Sprintf("http://%s/readiness", l.Addr())
			sock = filepath.Join(n.Dir, "ipamd.sock")
			return fmt.Sprintf(`mode: enforce
%spreset: none
refresh: {interval: 200ms}
checks:
  - name: felix
    http: {url: "%s"}
    hint: calico-node is not ready yet
  - name: ipamd
    socket: {addresses: ["unix://%s", "tcp://127.0.0.1:1"]}
    hint: the VPC CNI's ipamd is not serving yet
`, n.PluginBase(), url, sock)
		}})
		_, err := n.CRI.RunP(harness.Pod{Name: "web-1"})
		wantRejection(t, err, "felix: GET "+url+" answered 503", "ipamd: no socket accepts connections")

		status.Store(http.StatusOK)
		rejectedFor(t, n, "ipamd", 2*time.Second)
		l, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		admitted(t, n, "web-1", 2*time.Second)

		status.Store(http.StatusInternalServerError)
		rejectedFor(t, n, "felix", 2*time.Second)
		status.Store(http.StatusOK)
		admitted(t, n, "web-1", 2*time.Second)

		if err := l.Close(); err != nil { // the unix socket file goes with it
			t.Fatal(err)
		}
		rejectedFor(t, n, "ipamd", 2*time.Second)
	})
}

// The check command on its own, in a network namespace: it asks no containerd (the checks are
// iptables and a file, sandboxImage is off), so it runs once, not per containerd line.
func TestCheckCommand(t *testing.T) {
	env := harness.Load(t)
	ns := harness.NewNetNS(t)
	dir := t.TempDir()
	marker := filepath.Join(dir, "ready")
	cfg := filepath.Join(dir, "sg.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`preset: none
sandboxImage: ""
checks:
  - name: kube-proxy-rules
    iptables: {table: nat, chain: KUBE-SERVICES}
    hint: kube-proxy has not synced its rules yet
  - name: marker
    file: {path: %s}
`, marker)), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, int) {
		out, err := ns.Command(env.Plugin, append([]string{"check", "--config", cfg}, args...)...).Output()
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), 0
	}
	out, code := run()
	if code != 1 || !strings.Contains(out, "kube-proxy-rules") || !strings.Contains(out, "FAIL") || !strings.Contains(out, "KUBE-SERVICES missing") {
		t.Fatalf("check (not ready): exit %d, output:\n%s", code, out)
	}
	out, code = run("-o", "json")
	var rep struct {
		Ready  bool `json:"ready"`
		Checks []struct {
			Name   string `json:"name"`
			OK     bool   `json:"ok"`
			Detail string `json:"detail"`
		} `json:"checks"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("check -o json: %v\n%s", err, out)
	}
	if code != 1 || rep.Ready || len(rep.Checks) != 2 || rep.Checks[0].Name != "kube-proxy-rules" || rep.Checks[0].OK || rep.Checks[1].OK {
		t.Fatalf("check -o json (not ready): exit %d, %+v", code, rep)
	}
	ns.MustRun(t, "iptables-nft", "-t", "nat", "-N", "KUBE-SERVICES")
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	out, code = run("-o", "json")
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 || !rep.Ready || !rep.Checks[0].OK || !rep.Checks[1].OK {
		t.Fatalf("check -o json (ready): exit %d, %v, %s", code, err, out)
	}
	if out, code := run("-o", "yaml"); code != 2 {
		t.Fatalf("check -o yaml: exit %d, want 2\n%s", code, out)
	}
}

func wantRejection(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("runp succeeded, want a rejection containing %q", parts)
	}
	for _, p := range append([]string{"sandbox-guard: pod "}, parts...) {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("rejection does not contain %q:\n%v", p, err)
		}
	}
}

// admitted polls until a pod named name starts, then removes it.
func admitted(t *testing.T, n *harness.Node, name string, within time.Duration) {
	t.Helper()
	harness.Eventually(t, within, "pod "+name+" admitted", func() error {
		id, err := n.CRI.RunP(harness.Pod{Name: name})
		if err == nil {
			n.CRI.Remove(id)
		}
		return err
	})
}

// rejectedFor polls until a pod is rejected because of check.
func rejectedFor(t *testing.T, n *harness.Node, check string, within time.Duration) {
	t.Helper()
	harness.Eventually(t, within, "rejection naming "+check, func() error {
		id, err := n.CRI.RunP(harness.Pod{Name: "probe"})
		if err == nil {
			n.CRI.Remove(id)
			return fmt.Errorf("admitted")
		}
		if !strings.Contains(err.Error(), check+": ") {
			return fmt.Errorf("rejected, but not for %s: %v", check, err)
		}
		if strings.Contains(err.Error(), "sandbox-guard:") {
			return nil
		}
		return err
	})
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
