package verify_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/sandbox-guard/sandbox-guard/test/e2e/harness"
)

// apiServer starts a real Kubernetes API server (etcd and kube-apiserver, the binaries
// test/tools/install-deps.sh builds: SG_ETCD, SG_KUBE_BIN) on loopback ports, in a directory
// removed when the test ends, and returns a kubeconfig for it. Nothing else of a cluster runs: no
// controllers, no kubelet (objects are stored, no pod starts). Without the binaries the test is
// skipped, or fails under REQUIRE_E2E=1.
//
// TODO(issue 13): use test/e2e/harness's cluster once it has one (kubeconfig in, same test).
func apiServer(t *testing.T) string {
	t.Helper()
	etcd, kubeBin := os.Getenv("SG_ETCD"), os.Getenv("SG_KUBE_BIN")
	apiserver := filepath.Join(kubeBin, "kube-apiserver")
	if _, err := os.Stat(apiserver); etcd == "" || kubeBin == "" || err != nil {
		msg := "no Kubernetes API server: SG_ETCD and SG_KUBE_BIN name the binaries test/tools/install-deps.sh builds (eval \"$(test/tools/install-deps.sh --env)\")"
		if os.Getenv("REQUIRE_E2E") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	dir, err := os.MkdirTemp("", "sg-apiserver-")
	must(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })

	clientPort, peerPort, apiPort := freePort(t), freePort(t), freePort(t)
	etcdURL := "http://127.0.0.1:" + clientPort
	_ = start(t, dir, "etcd", etcd, "--data-dir", filepath.Join(dir, "etcd"), "--name", "sg",
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", "http://127.0.0.1:"+peerPort, "--initial-advertise-peer-urls", "http://127.0.0.1:"+peerPort,
		"--initial-cluster", "sg=http://127.0.0.1:"+peerPort, "--listen-metrics-urls", "http://127.0.0.1:"+freePort(t))

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	must(t, err)
	saKey := filepath.Join(dir, "sa.key")
	must(t, os.WriteFile(saKey, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600))
	token := rand.Text()
	tokens := filepath.Join(dir, "tokens.csv")
	must(t, os.WriteFile(tokens, []byte(token+",sg-test,sg-test,system:masters\n"), 0o600))
	exited := start(t, dir, "kube-apiserver", apiserver, "--etcd-servers", etcdURL, "--endpoint-reconciler-type", "none",
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", apiPort,
		"--cert-dir", filepath.Join(dir, "certs"), "--token-auth-file", tokens, "--authorization-mode", "RBAC",
		"--service-account-issuer", "https://kubernetes.default.svc", "--service-account-key-file", saKey,
		"--service-account-signing-key-file", saKey, "--service-cluster-ip-range", "10.96.0.0/24")

	server := "https://127.0.0.1:" + apiPort
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} // its own self-signed certificate, on loopback
	// About 5-10 s here; minutes on a machine that compiles meanwhile.
	harness.Eventually(t, 3*time.Minute, "kube-apiserver /readyz", func() error {
		select {
		case err := <-exited:
			t.Fatalf("kube-apiserver exited: %v", err)
		default:
		}
		req, err := http.NewRequest(http.MethodGet, server+"/readyz", nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s", resp.Status)
		}
		return nil
	})
	kubeconfig := filepath.Join(dir, "kubeconfig")
	must(t, os.WriteFile(kubeconfig, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: sg, cluster: {server: %q, insecure-skip-tls-verify: true}}]
users: [{name: sg, user: {token: %q}}]
contexts: [{name: sg, context: {cluster: sg, user: sg}}]
current-context: sg
`, server, token)), 0o600))
	return kubeconfig
}

// start runs a server, its output in dir/<name>.log (shown if the test fails), and stops it when
// the test ends. The channel receives its exit status should it exit before.
func start(t *testing.T, dir, name, bin string, args ...string) <-chan error {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.Create(logPath)
	must(t, err)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	must(t, cmd.Start())
	exited, done := make(chan error, 1), make(chan struct{})
	go func() { exited <- cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		_ = logFile.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 4000 {
				b = b[len(b)-4000:]
			}
			t.Logf("%s log (end):\n%s", name, b)
		}
	})
	return exited
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer func() { _ = l.Close() }()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}
