package harness

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// The test cluster's addresses inside the node's network namespace. The node needs an address
// that is not loopback (kubelet refuses a loopback node IP and the API server advertises one):
// a veth interface holds it, like a node's primary interface. Pods get addresses from the
// node's bridge CNI network (10.99.0.0/24, see WriteCNIConfig); Services would get theirs from
// ServiceCIDR.
const (
	NodeIP      = "10.98.0.1"
	ServiceCIDR = "10.96.0.0/16"
	ClusterDNS  = "10.96.0.10"
)

// KubeOptions shape a test cluster.
type KubeOptions struct {
	// KubeletConfig, when set, edits kubelet's configuration (a KubeletConfiguration as a map)
	// before it is written, e.g. to make image garbage collection run during a test.
	KubeletConfig func(cfg map[string]any)
}

// Kube is a one-node Kubernetes cluster around a test node: etcd and kube-apiserver on the
// node namespace's loopback with TLS and client-certificate authentication, kube-controller-manager
// and kube-scheduler, and a kubelet registered to the API server that runs pods through the node's
// containerd, on the node's CNI network. Everything runs in the node's network namespace and
// stops when the test ends, pass or fail, before the node's own teardown.
type Kube struct {
	t          testing.TB
	Node       *Node
	Dir        string // the cluster's files: certificates, kubeconfigs, etcd data, logs
	NodeName   string // the Node object's name
	Server     string // the API server's URL
	Kubeconfig string // cluster-admin's kubeconfig (O=system:masters)

	// Measured at start: from etcd's start until the API server is ready, and until the node is
	// Ready with the default namespace usable (ServiceAccount and kube-root-ca.crt published).
	ControlPlaneStartup, ClusterStartup time.Duration

	kubectl        string
	kubelet        string
	tlsConfig      *tls.Config
	kubeletCmdline []string
	mu             sync.Mutex // guards daemons and kubeletStarted
	daemons        map[string]*daemon
	kubeletStarted time.Time
}

// kubeBinaries returns the directory holding the Kubernetes binaries (env SG_KUBE_BIN) and etcd
// (env SG_ETCD), or skips (fails under REQUIRE_E2E=1) the test when they are missing.
func kubeBinaries(t testing.TB) (kubeDir, etcd string) {
	t.Helper()
	kubeDir, etcd = os.Getenv("SG_KUBE_BIN"), os.Getenv("SG_ETCD")
	var missing []string
	for _, p := range []string{filepath.Join(kubeDir, "kubelet"), filepath.Join(kubeDir, "kube-apiserver"),
		filepath.Join(kubeDir, "kube-controller-manager"), filepath.Join(kubeDir, "kube-scheduler"), filepath.Join(kubeDir, "kubectl"), etcd} {
		if st, err := os.Stat(p); kubeDir == "" || etcd == "" || err != nil || st.IsDir() {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		msg := fmt.Sprintf("KUBELET TESTS NOT RUN: Kubernetes binaries missing (SG_KUBE_BIN=%q, SG_ETCD=%q): %s; "+
			"test/tools/install-deps.sh builds them into $SG_CACHE and exports both", kubeDir, etcd, strings.Join(missing, ", "))
		if Required() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return kubeDir, etcd
}

// StartKube starts a one-node cluster around n (started with StartNode and not stopped) and
// waits until the node is Ready and pods can be created in namespace default. Every process
// stops when the test ends.
func StartKube(t testing.TB, n *Node, opts KubeOptions) *Kube {
	t.Helper()
	kubeDir, etcdBin := kubeBinaries(t)
	k := &Kube{
		t: t, Node: n, Dir: filepath.Join(n.Dir, "kube"), NodeName: "node-" + n.id,
		kubectl: filepath.Join(kubeDir, "kubectl"), kubelet: filepath.Join(kubeDir, "kubelet"),
		daemons: map[string]*daemon{},
	}
	// kubelet keeps its device plugin socket in /var/lib/kubelet/device-plugins whatever its root
	// directory: a test kubelet must not run beside a node's own.
	if pids := kubeletsBut(k.kubelet); len(pids) > 0 {
		msg := fmt.Sprintf("KUBELET TESTS NOT RUN: a kubelet that is not the harness's runs on this machine (pids %v); "+
			"the test's kubelet would share its /var/lib/kubelet/device-plugins", pids)
		if Required() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	must(t, os.MkdirAll(k.Dir, 0o755))
	t.Cleanup(k.stop)
	// A veth pair stands in for the node's network card (these kernels lack the dummy driver).
	n.NS.MustRun(t, "ip", "link", "add", "sgnode", "type", "veth", "peer", "name", "sgnode-peer")
	n.NS.MustRun(t, "ip", "addr", "add", NodeIP+"/24", "dev", "sgnode")
	n.NS.MustRun(t, "ip", "link", "set", "sgnode", "up")
	n.NS.MustRun(t, "ip", "link", "set", "sgnode-peer", "up")

	p, err := newPKI(filepath.Join(k.Dir, "pki"))
	must(t, err)
	loopback := []net.IP{net.ParseIP("127.0.0.1")}
	issue := func(s certSpec) pair {
		pr, err := p.issue(s)
		must(t, err)
		return pr
	}
	etcdServer := issue(certSpec{file: "etcd-server", cn: "etcd", server: true, client: true, dns: []string{"localhost"}, ips: loopback})
	etcdClient := issue(certSpec{file: "apiserver-etcd-client", cn: "kube-apiserver-etcd-client", client: true})
	apiServing := issue(certSpec{file: "apiserver", cn: "kube-apiserver", server: true,
		dns: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		ips: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP(NodeIP), net.ParseIP("10.96.0.1")}})
	apiKubeletClient := issue(certSpec{file: "apiserver-kubelet-client", cn: "kube-apiserver-kubelet-client", groups: []string{"system:masters"}, client: true})
	admin := issue(certSpec{file: "admin", cn: "kubernetes-admin", groups: []string{"system:masters"}, client: true})
	kcm := issue(certSpec{file: "controller-manager", cn: "system:kube-controller-manager", client: true})
	sched := issue(certSpec{file: "scheduler", cn: "system:kube-scheduler", client: true})
	kubeletClient := issue(certSpec{file: "kubelet-client", cn: "system:node:" + k.NodeName, groups: []string{"system:nodes"}, client: true})
	kubeletServing := issue(certSpec{file: "kubelet-serving", cn: k.NodeName, server: true, dns: []string{k.NodeName}, ips: []net.IP{net.ParseIP(NodeIP)}})
	sa, err := p.serviceAccountKey()
	must(t, err)

	etcdPort, etcdPeerPort, apiPort := n.NS.FreePort(t), n.NS.FreePort(t), n.NS.FreePort(t)
	k.Server = fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	kubeconfig := func(name string, c pair) string {
		f := filepath.Join(k.Dir, name+".kubeconfig")
		must(t, os.WriteFile(f, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster: {server: %q, certificate-authority: %q}
users:
- name: %s
  user: {client-certificate: %q, client-key: %q}
contexts:
- name: e2e
  context: {cluster: e2e, user: %s}
current-context: e2e
`, k.Server, p.CA, name, c.Cert, c.Key, name)), 0o600))
		return f
	}
	k.Kubeconfig = kubeconfig("admin", admin)
	kcmConfig, schedConfig, kubeletConfig := kubeconfig("controller-manager", kcm), kubeconfig("scheduler", sched), kubeconfig("kubelet", kubeletClient)
	k.tlsConfig = clientTLS(t, p.CA, admin)

	begin := time.Now()
	etcdURL := fmt.Sprintf("https://127.0.0.1:%d", etcdPort)
	peerURL := fmt.Sprintf("https://127.0.0.1:%d", etcdPeerPort)
	k.start("etcd", etcdBin,
		"--name", "e2e", "--data-dir", filepath.Join(k.Dir, "etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL, "--initial-cluster", "e2e="+peerURL,
		"--cert-file", etcdServer.Cert, "--key-file", etcdServer.Key, "--client-cert-auth", "--trusted-ca-file", p.CA,
		"--peer-cert-file", etcdServer.Cert, "--peer-key-file", etcdServer.Key, "--peer-client-cert-auth", "--peer-trusted-ca-file", p.CA,
		// The test's etcd never outlives the test: no fsync spares a loaded machine's disk.
		"--unsafe-no-fsync", "--log-level", "warn")
	k.waitHTTPS("etcd", etcdURL+"/health", clientTLS(t, p.CA, etcdClient), 60*time.Second)

	k.start("kube-apiserver", filepath.Join(kubeDir, "kube-apiserver"),
		"--bind-address", "127.0.0.1", "--advertise-address", NodeIP, "--secure-port", fmt.Sprint(apiPort),
		"--etcd-servers", etcdURL, "--etcd-cafile", p.CA, "--etcd-certfile", etcdClient.Cert, "--etcd-keyfile", etcdClient.Key,
		"--tls-cert-file", apiServing.Cert, "--tls-private-key-file", apiServing.Key, "--client-ca-file", p.CA,
		"--authorization-mode", "Node,RBAC", "--enable-admission-plugins", "NodeRestriction", "--allow-privileged=true",
		"--service-cluster-ip-range", ServiceCIDR,
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", sa.Cert, "--service-account-signing-key-file", sa.Key,
		"--kubelet-client-certificate", apiKubeletClient.Cert, "--kubelet-client-key", apiKubeletClient.Key,
		"--kubelet-certificate-authority", p.CA, "--kubelet-preferred-address-types", "InternalIP",
		"--cert-dir", filepath.Join(k.Dir, "apiserver-certs"), "--profiling=false", "--v", "1")
	k.waitHTTPS("kube-apiserver", k.Server+"/readyz", k.tlsConfig, 3*time.Minute)
	k.ControlPlaneStartup = time.Since(begin)

	k.start("kube-controller-manager", filepath.Join(kubeDir, "kube-controller-manager"),
		"--kubeconfig", kcmConfig, "--authentication-kubeconfig", kcmConfig, "--authorization-kubeconfig", kcmConfig,
		"--bind-address", "127.0.0.1", "--secure-port", fmt.Sprint(n.NS.FreePort(t)), "--leader-elect=false",
		"--service-account-private-key-file", sa.Key, "--root-ca-file", p.CA, "--use-service-account-credentials=true",
		"--cluster-signing-cert-file", p.CA, "--cluster-signing-key-file", filepath.Join(p.dir, "ca.key"),
		"--profiling=false", "--v", "1")
	k.start("kube-scheduler", filepath.Join(kubeDir, "kube-scheduler"),
		"--kubeconfig", schedConfig, "--authentication-kubeconfig", schedConfig, "--authorization-kubeconfig", schedConfig,
		"--bind-address", "127.0.0.1", "--secure-port", fmt.Sprint(n.NS.FreePort(t)), "--leader-elect=false",
		"--profiling=false", "--v", "1")

	cfg := k.kubeletConfiguration(p.CA, kubeletServing, n.NS.FreePort(t))
	if opts.KubeletConfig != nil {
		opts.KubeletConfig(cfg)
	}
	b, err := yaml.Marshal(cfg)
	must(t, err)
	cfgFile := filepath.Join(k.Dir, "kubelet.yaml")
	must(t, os.WriteFile(cfgFile, b, 0o644))
	k.kubeletCmdline = []string{"--config", cfgFile, "--kubeconfig", kubeletConfig, "--root-dir", k.KubeletRoot(),
		"--hostname-override", k.NodeName, "--node-ip", NodeIP, "--v", "2"}
	k.StartKubelet()

	k.WaitFor(3*time.Minute, "node "+k.NodeName+" Ready", func() error {
		var node corev1.Node
		if err := k.GetJSON(&node, "get", "node", k.NodeName); err != nil {
			return err
		}
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady {
				if c.Status != corev1.ConditionTrue {
					return fmt.Errorf("node Ready=%s: %s", c.Status, c.Message)
				}
				return nil
			}
		}
		return fmt.Errorf("node has no Ready condition yet")
	})
	// Pods in namespace default need its ServiceAccount and the cluster's CA bundle, which the
	// controller manager creates.
	k.WaitFor(2*time.Minute, "namespace default usable", func() error {
		if _, err := k.Kubectl("get", "serviceaccount", "default"); err != nil {
			return err
		}
		_, err := k.Kubectl("get", "configmap", "kube-root-ca.crt")
		return err
	})
	k.ClusterStartup = time.Since(begin)
	t.Logf("%s: Kubernetes control plane ready %.1fs after etcd's start, node %s Ready and namespace default usable after %.1fs",
		n.C.Name, k.ControlPlaneStartup.Seconds(), k.NodeName, k.ClusterStartup.Seconds())
	return k
}

// kubeletConfiguration is the kubelet's configuration for this node: authentication and
// authorization as in a real cluster (client certificates from the cluster CA, webhooks to the
// API server), cgroupfs under the node's cgroup parent (so the node's teardown finds every pod
// process), pod logs and state under the node's directory, and no garbage collection or
// eviction by disk usage (a test that wants image GC sets it).
func (k *Kube) kubeletConfiguration(ca string, serving pair, port int) map[string]any {
	return map[string]any{
		"apiVersion": "kubelet.config.k8s.io/v1beta1",
		"kind":       "KubeletConfiguration",
		"authentication": map[string]any{
			"anonymous": map[string]any{"enabled": false},
			"webhook":   map[string]any{"enabled": true},
			"x509":      map[string]any{"clientCAFile": ca},
		},
		"authorization":               map[string]any{"mode": "Webhook"},
		"tlsCertFile":                 serving.Cert,
		"tlsPrivateKeyFile":           serving.Key,
		"address":                     NodeIP,
		"port":                        port,
		"readOnlyPort":                0,
		"healthzPort":                 0,
		"containerRuntimeEndpoint":    "unix://" + k.Node.Socket,
		"cgroupDriver":                "cgroupfs",
		"cgroupRoot":                  k.Node.PodCgroupParent(),
		"cgroupsPerQOS":               true,
		"failCgroupV1":                false, // these machines run cgroup v1 (hybrid): kubelet refuses it without this
		"failSwapOn":                  false,
		"podLogsDir":                  filepath.Join(k.Dir, "pod-logs"),
		"resolvConf":                  "",
		"clusterDomain":               "cluster.local",
		"clusterDNS":                  []string{ClusterDNS}, // no DNS server runs there; pods need none
		"imageGCHighThresholdPercent": 100,
		"imageGCLowThresholdPercent":  99,
		// Only memory is watched: unlisted signals are off (mergeDefaultEvictionSettings false).
		"evictionHard":        map[string]any{"memory.available": "100Mi"},
		"serializeImagePulls": false,
	}
}

// KubeletRoot is kubelet's --root-dir (/var/lib/kubelet on a node).
func (k *Kube) KubeletRoot() string { return filepath.Join(k.Dir, "kubelet") }

// KubeletLog is where kubelet logs.
func (k *Kube) KubeletLog() string { return filepath.Join(k.Dir, "kubelet.log") }

// StartKubelet starts the kubelet (again).
func (k *Kube) StartKubelet() {
	k.t.Helper()
	must(k.t, makeCgroupV1(k.Node.PodCgroupParent()))
	k.start("kubelet", k.kubelet, k.kubeletCmdline...)
	k.mu.Lock()
	k.kubeletStarted = time.Now()
	k.mu.Unlock()
}

// makeCgroupV1 creates the cgroup parent in every cgroup v1 hierarchy: kubelet's --cgroup-root
// must exist. cpuset starts empty in a new cgroup, so it gets its parent's CPUs and memory
// nodes, or nothing could be created below it.
func makeCgroupV1(parent string) error {
	hierarchies, _ := filepath.Glob("/sys/fs/cgroup/*")
	for _, h := range hierarchies {
		if filepath.Base(h) == "unified" || !isDir(h) {
			continue
		}
		dir := filepath.Join(h, parent)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("cgroup root for kubelet: %w", err)
		}
		if filepath.Base(h) == "cpuset" {
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				b, err := os.ReadFile(filepath.Join(h, f))
				if err != nil {
					return err
				}
				if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
					return fmt.Errorf("cgroup root for kubelet: %s: %w", f, err)
				}
			}
		}
	}
	return nil
}

// StopKubelet stops the kubelet as systemd would (SIGTERM; SIGKILL after 10 s); pods keep running.
func (k *Kube) StopKubelet() { k.stopDaemon("kubelet", 10*time.Second) }

// KillKubelet kills the kubelet at once, as a crash or a power cut would.
func (k *Kube) KillKubelet() { k.stopDaemon("kubelet", 0) }

// Kubectl runs kubectl as cluster-admin inside the node's network namespace and returns its
// standard output; the error carries its standard error.
func (k *Kube) Kubectl(args ...string) (string, error) { return k.KubectlIn("", args...) }

// KubectlIn is Kubectl with stdin as kubectl's standard input (`kubectl apply -f -`).
func (k *Kube) KubectlIn(stdin string, args ...string) (string, error) {
	cmd := k.Node.NS.Command(k.kubectl, append([]string{"--kubeconfig", k.Kubeconfig}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("kubectl %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// MustKubectl runs kubectl and fails the test when it fails.
func (k *Kube) MustKubectl(args ...string) string {
	k.t.Helper()
	out, err := k.Kubectl(args...)
	if err != nil {
		k.t.Fatal(err)
	}
	return out
}

// Apply applies manifests (YAML, several documents allowed) with `kubectl apply -f -`.
func (k *Kube) Apply(manifests string) {
	k.t.Helper()
	if out, err := k.KubectlIn(manifests, "apply", "-f", "-"); err != nil {
		k.t.Fatalf("%v\n%s", err, out)
	}
}

// ApplyKustomize applies a kustomization directory with `kubectl apply -k`.
func (k *Kube) ApplyKustomize(dir string) string {
	k.t.Helper()
	out, err := k.Kubectl("apply", "-k", dir)
	if err != nil {
		k.t.Fatalf("%v\n%s", err, out)
	}
	return out
}

// GetJSON runs kubectl with args and `-o json` and decodes the answer into v.
func (k *Kube) GetJSON(v any, args ...string) error {
	out, err := k.Kubectl(append(args, "-o", "json")...)
	if err != nil {
		return err
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		return fmt.Errorf("kubectl %s: decoding its JSON: %w", strings.Join(args, " "), err)
	}
	return nil
}

// Pods lists the pods of namespace ns matching selector (a label selector; "" for all).
func (k *Kube) Pods(ns, selector string) ([]corev1.Pod, error) {
	args := []string{"get", "pods", "-n", ns}
	if selector != "" {
		args = append(args, "-l", selector)
	}
	var list corev1.PodList
	if err := k.GetJSON(&list, args...); err != nil {
		return nil, err
	}
	return list.Items, nil
}

// Events lists the events of namespace ns.
func (k *Kube) Events(ns string) ([]corev1.Event, error) {
	var list corev1.EventList
	if err := k.GetJSON(&list, "get", "events", "-n", ns); err != nil {
		return nil, err
	}
	return list.Items, nil
}

// PodReady reports whether the pod's Ready condition is True.
func PodReady(p corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// WaitPodsReady waits until exactly count pods of ns match selector and every one is Ready,
// and returns them.
func (k *Kube) WaitPodsReady(ns, selector string, count int, timeout time.Duration) []corev1.Pod {
	k.t.Helper()
	var pods []corev1.Pod
	k.WaitFor(timeout, fmt.Sprintf("%d pods %s in %s Ready", count, selector, ns), func() error {
		var err error
		if pods, err = k.Pods(ns, selector); err != nil {
			return err
		}
		ready := 0
		for _, p := range pods {
			if PodReady(p) {
				ready++
			}
		}
		if len(pods) != count || ready != count {
			return fmt.Errorf("%d pods, %d Ready", len(pods), ready)
		}
		return nil
	})
	return pods
}

// WaitDaemonSetReady waits until the DaemonSet has scheduled its pods and every one is ready
// and up to date.
func (k *Kube) WaitDaemonSetReady(ns, name string, timeout time.Duration) {
	k.t.Helper()
	k.WaitFor(timeout, "DaemonSet "+ns+"/"+name+" ready", func() error {
		var ds appsv1.DaemonSet
		if err := k.GetJSON(&ds, "get", "daemonset", "-n", ns, name); err != nil {
			return err
		}
		s := ds.Status
		if s.ObservedGeneration < ds.Generation || s.DesiredNumberScheduled == 0 ||
			s.NumberReady != s.DesiredNumberScheduled || s.UpdatedNumberScheduled != s.DesiredNumberScheduled {
			return fmt.Errorf("desired %d, ready %d, up to date %d", s.DesiredNumberScheduled, s.NumberReady, s.UpdatedNumberScheduled)
		}
		return nil
	})
}

// WaitFor polls cond (typically a kubectl get) every 250 ms until it returns nil, or fails the
// test after timeout with its last error and the cluster's state. kubectl is a process start
// per call: a slower pace than Eventually's keeps the polling from loading the machine.
func (k *Kube) WaitFor(timeout time.Duration, what string, cond func() error) {
	k.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			k.t.Fatalf("%s: not within %v: %v", what, timeout, err)
		}
		if err := k.exitedDaemon(); err != nil {
			k.t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// CreatePullSecret creates, in namespace ns, a docker-registry Secret named name with the test
// registry's credentials, for pods' imagePullSecrets: kubelet hands them to containerd's pull
// through CRI, as for a private registry.
func (k *Kube) CreatePullSecret(ns, name string) {
	k.t.Helper()
	r := k.Node.Registry
	k.MustKubectl("create", "secret", "docker-registry", name, "-n", ns,
		"--docker-server", r.Host, "--docker-username", r.User, "--docker-password", r.Password)
}

// LoadImage imports an image archive (OCI or Docker) into the node's containerd, namespace
// k8s.io, where kubelet finds it (pods then use imagePullPolicy: Never or IfNotPresent).
func (k *Kube) LoadImage(archive string) {
	k.t.Helper()
	if out, err := k.Node.Ctr("images", "import", archive); err != nil {
		k.t.Fatalf("importing %s into %s: %v\n%s", archive, k.Node.C.Name, err, out)
	}
}

// Describe returns what a reader needs when a test fails: the cluster's pods, recent events
// and the tails of the kubelet's and API server's logs.
func (k *Kube) Describe() string {
	var b strings.Builder
	out, err := k.Kubectl("get", "pods", "-A", "-o", "wide")
	fmt.Fprintf(&b, "kubectl get pods -A -o wide (%v):\n%s\n", err, out)
	out, err = k.Kubectl("get", "events", "-A", "--sort-by", ".lastTimestamp")
	fmt.Fprintf(&b, "kubectl get events -A (%v):\n%s\n", err, tailLines(out, 40))
	for _, name := range []string{"kubelet", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd"} {
		fmt.Fprintf(&b, "%s log (last lines):\n%s\n", name, tailFile(filepath.Join(k.Dir, name+".log"), 25))
	}
	return b.String()
}

// stop stops every component, kubelet first (so it starts nothing more), and removes the
// symlinks kubelet made in /var/log/containers, a path fixed in kubelet.
func (k *Kube) stop() {
	k.mu.Lock()
	apiServer := k.daemons["kube-apiserver"] != nil
	k.mu.Unlock()
	if k.t.Failed() && apiServer {
		k.t.Logf("cluster state at the end of the failed test:\n%s", k.Describe())
	}
	for _, name := range []string{"kubelet", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"} {
		k.stopDaemon(name, 10*time.Second)
	}
	links, _ := filepath.Glob("/var/log/containers/*.log")
	for _, l := range links {
		if target, err := os.Readlink(l); err == nil && strings.HasPrefix(target, k.Node.Dir+"/") {
			_ = os.Remove(l)
		}
	}
	// The device plugin socket and the directories kubelet made outside its root: removed by
	// the last test kubelet to stop (empty directories only).
	if len(kubeletsBut("")) == 0 {
		_ = os.Remove("/var/lib/kubelet/device-plugins/kubelet.sock")
		for _, d := range []string{"/var/lib/kubelet/device-plugins", "/var/lib/kubelet", "/var/log/containers"} {
			_ = os.Remove(d) // fails, as it should, when not empty
		}
	}
}

// kubeletsBut lists the running processes called kubelet whose binary is not exe.
func kubeletsBut(exe string) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil || strings.TrimSpace(string(comm)) != "kubelet" {
			continue
		}
		if path, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil && path == exe {
			continue
		}
		out = append(out, pid)
	}
	return out
}

// waitHTTPS polls url with the given client certificate until it answers 200.
func (k *Kube) waitHTTPS(what, url string, cfg *tls.Config, timeout time.Duration) {
	k.t.Helper()
	client := k.Node.NS.HTTPClient()
	tr := client.Transport.(*http.Transport)
	tr.TLSClientConfig = cfg
	client.Timeout = 5 * time.Second
	defer tr.CloseIdleConnections()
	k.WaitFor(timeout, what+" ready", func() error {
		resp, err := client.Get(url)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return nil
	})
}

func clientTLS(t testing.TB, ca string, c pair) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(ca)
	must(t, err)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", ca)
	}
	cert, err := tls.LoadX509KeyPair(c.Cert, c.Key)
	must(t, err)
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

// daemon is one component's process, in the node's network namespace, logging to a file.
type daemon struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // how it exited, once done is closed
}

func (k *Kube) start(name, bin string, args ...string) {
	k.t.Helper()
	logf, err := os.OpenFile(filepath.Join(k.Dir, name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	must(k.t, err)
	defer func() { _ = logf.Close() }() // the child holds its own descriptor
	d := &daemon{name: name, cmd: k.Node.NS.Command(bin, args...), done: make(chan struct{})}
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	// kubelet looks for mount, iptables and the like on PATH.
	d.cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	must(k.t, d.cmd.Start())
	go func() { d.err = d.cmd.Wait(); close(d.done) }()
	k.mu.Lock()
	k.daemons[name] = d
	k.mu.Unlock()
}

// stopDaemon sends SIGTERM and waits up to grace before SIGKILL (grace 0: SIGKILL at once).
func (k *Kube) stopDaemon(name string, grace time.Duration) {
	k.mu.Lock()
	d := k.daemons[name]
	delete(k.daemons, name)
	k.mu.Unlock()
	if d == nil {
		return
	}
	if grace > 0 {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
			return
		case <-time.After(grace):
		}
	}
	_ = d.cmd.Process.Kill()
	<-d.done
}

// exitedDaemon returns an error naming a component that exited by itself, with its log.
func (k *Kube) exitedDaemon() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	for name, d := range k.daemons {
		select {
		case <-d.done:
			return fmt.Errorf("%s exited: %v; log:\n%s", name, d.err, tailFile(filepath.Join(k.Dir, name+".log"), 30))
		default:
		}
	}
	return nil
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// AggressiveImageGC is a KubeOptions.KubeletConfig that makes kubelet's image garbage
// collection remove every image it may: the high threshold is 1% of the image filesystem
// (always exceeded), the low one 0%, and an image may go one second after kubelet first saw it.
// kubelet runs a pass when it starts, which removes nothing (every image is seen for the first
// time), and then every 5 minutes (ImageGCPeriod in kubelet.go, fixed): the first removals come
// 5 minutes after the kubelet's start, of images present when it started (an image it first
// sees later goes at the pass after).
func AggressiveImageGC(cfg map[string]any) {
	cfg["imageGCHighThresholdPercent"] = 1
	cfg["imageGCLowThresholdPercent"] = 0
	cfg["imageMinimumGCAge"] = "1s" // 0 means the default, 2 minutes
}

// KubeletStarted is when the kubelet last started.
func (k *Kube) KubeletStarted() time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.kubeletStarted
}

// WaitUnpinned polls CRI until image is present and not pinned.
func (n *Node) WaitUnpinned(image string, within time.Duration) {
	n.t.Helper()
	Eventually(n.t, within, image+" unpinned", func() error {
		st, err := n.CRI.Image(image)
		if err != nil {
			return err
		}
		if !st.Present || st.Pinned {
			return fmt.Errorf("CRI image status of %s: present %v, pinned %v", image, st.Present, st.Pinned)
		}
		return nil
	})
}
