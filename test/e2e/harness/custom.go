package harness

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// RootNode is a node laid out like a real one below Root: containerd's main configuration is
// Root/etc/containerd/config.toml, drop-ins go to Root/etc/containerd/config.d, its sockets are
// Root/run/containerd/containerd.sock and Root/var/run/nri/nri.sock, the NRI directories are
// Root/opt/nri/plugins and Root/etc/nri/conf.d and the CNI configuration is in
// Root/etc/cni/net.d. So `sandbox-guard install --root Root --paths-root Root` and a DaemonSet's
// host paths (each one Root + its path) find everything where they would on a node.
type RootNode struct {
	*Node
	Root string
}

// ConfigD is containerd's drop-in directory.
func (n *RootNode) ConfigD() string { return filepath.Join(n.Root, "etc/containerd/config.d") }

// StartNodeWithConfig starts a node like StartNode (network namespace, registry with the sandbox
// image, CNI, hosts.toml), except that containerd's configuration is laid out by configure, which
// runs before containerd starts: it must write n.ConfigFile and may install the plugin.
// TestDropIn gives the settings this machine needs. opts.PluginConfig is not used (the plugin's
// configuration is the test's to install); the other options work as in StartNode.
func StartNodeWithConfig(t testing.TB, env *Env, c Containerd, opts NodeOptions, configure func(n *RootNode)) *RootNode {
	t.Helper()
	if opts.PluginConfig != nil {
		t.Fatal("StartNodeWithConfig: NodeOptions.PluginConfig is not used; install the plugin in configure")
	}
	if opts.SandboxRepo == "" {
		opts.SandboxRepo, opts.SandboxTag = "eks/pause", "3.10"
	}
	dir, err := os.MkdirTemp("/tmp", "sg-") // short: unix socket paths are limited to 108 bytes
	must(t, err)
	n := &RootNode{Node: &Node{t: t, Env: env, C: c, Dir: dir, id: filepath.Base(dir)[3:]}, Root: filepath.Join(dir, "root")}
	t.Cleanup(func() { n.removeDir() })
	n.NS = NewNetNS(t)
	n.Registry = StartRegistry(t, env, n.NS, dir)
	n.SandboxImage, _ = n.Registry.PushPause(t, env, opts.SandboxRepo, opts.SandboxTag)
	n.PushedImage = n.SandboxImage
	if opts.ConfiguredSandbox != "" {
		n.SandboxImage = n.Registry.Host + "/" + opts.ConfiguredSandbox
	}

	at := func(p string) string { return filepath.Join(n.Root, p) }
	n.Socket = at("run/containerd/containerd.sock")
	n.NRISocket = at("var/run/nri/nri.sock")
	n.PluginDir = at("opt/nri/plugins")
	n.PluginConfDir = at("etc/nri/conf.d")
	n.PluginLog = filepath.Join(dir, "sandbox-guard.log")
	n.CertsDir = filepath.Join(dir, "certs.d")
	n.CNIConfDir = at("etc/cni/net.d")
	n.ConfigFile = at("etc/containerd/config.toml")
	n.LogFile = filepath.Join(dir, "containerd.log")
	n.cgroupParent = "/sg-e2e-" + n.id
	for _, d := range []string{n.CNIConfDir, n.ConfigD(), filepath.Dir(n.Socket), filepath.Join(n.CertsDir, n.Registry.Host)} {
		must(t, os.MkdirAll(d, 0o755))
	}
	must(t, os.WriteFile(n.HostsToml(), []byte(fmt.Sprintf("server = \"http://%s\"\n", n.Registry.Host)), 0o644))
	n.WriteCNIConfig()
	configure(n)
	n.CRI = newCRI(t, env, n.Node)
	t.Cleanup(n.teardown)
	if opts.BeforeStart != nil {
		opts.BeforeStart(n.Node)
	}
	n.Start()
	if !opts.NoSandboxImage {
		n.CRI.MustPull(n.SandboxImage, n.Registry.User+":"+n.Registry.Password)
	}
	return n
}

// TestDropIn returns the settings StartNode's configuration gives containerd on this machine
// (own root, state and sockets, runc, CNI, registry, sandbox image, restrict_oom_score_adj; see
// ../shared/reference/test-environment.md), as a drop-in for n.C's containerd with every table
// but NRI's: the test decides how NRI is configured. It is derived from StartNode's template so
// that both kinds of node run with the same settings. containerd 1.7 replaces a whole plugin
// table per drop-in, so it must stay apart from the NRI drop-in.
func (n *RootNode) TestDropIn() string {
	n.t.Helper()
	main := n.ConfigFile
	defer func() { n.ConfigFile = main }()
	n.ConfigFile = filepath.Join(n.Dir, "startnode-config.toml")
	n.writeContainerdConfig()
	b, err := os.ReadFile(n.ConfigFile)
	must(n.t, err)
	must(n.t, os.Remove(n.ConfigFile))
	var doc map[string]any
	must(n.t, toml.Unmarshal(b, &doc))
	plugins, _ := doc["plugins"].(map[string]any)
	if _, ok := plugins["io.containerd.nri.v1.nri"]; !ok {
		n.t.Fatal("StartNode's template has no NRI table any more: TestDropIn needs updating")
	}
	delete(plugins, "io.containerd.nri.v1.nri")
	out, err := toml.Marshal(doc)
	must(n.t, err)
	return "# Test settings (harness.TestDropIn); NRI is configured by another file.\n" + string(out)
}

// ImportingMainConfig returns a main configuration holding nothing but the version line (the
// version the line's `containerd config default` writes) and the imports line that loads every
// drop-in in ConfigD, as on a node that keeps its settings in drop-ins.
func (n *RootNode) ImportingMainConfig() string {
	return fmt.Sprintf("version = %d\nimports = [%q]\n", n.C.ConfigVersion(), filepath.Join(n.ConfigD(), "*.toml"))
}

// Mount is a bind mount into a container.
type Mount struct {
	HostPath, ContainerPath string
	ReadOnly                bool
}

// ContainerSpec is a container for RunContainer: the parts of a Kubernetes container spec
// that matter on one node.
type ContainerSpec struct {
	Name            string
	Image           string   // present in containerd already (imported); never pulled
	Command, Args   []string // as in Kubernetes: Command replaces the image's entrypoint
	Mounts          []Mount
	HostNetwork     bool
	AddCaps         []string // e.g. NET_ADMIN
	DropCaps        []string // e.g. ALL
	Privileged      bool
	ReadOnlyRootfs  bool
	NoNewPrivileges bool
	RunAsUser       *int64
}

// Container is a container started through CRI with crictl (create, start), alone in a pod
// sandbox of its own, the way kubelet runs a DaemonSet's pod.
type Container struct {
	n       *Node
	PodID   string
	ID      string
	LogFile string // the CRI log: "<time> <stream> <P|F> <line>" per line
}

// RunContainer creates and starts a container; it is stopped and removed, with its pod, when
// the test ends.
func (n *Node) RunContainer(spec ContainerSpec) *Container {
	t := n.t
	t.Helper()
	id := randomID()
	dir := filepath.Join(n.Dir, "containers", spec.Name+"-"+id)
	must(t, os.MkdirAll(dir, 0o755))
	network := 0 // POD
	if spec.HostNetwork {
		network = 2 // NODE
	}
	pod := map[string]any{
		"metadata":      map[string]any{"name": spec.Name + "-" + id, "namespace": "sandbox-guard", "uid": "uid-" + id, "attempt": 0},
		"log_directory": dir,
		"linux": map[string]any{
			"cgroup_parent": n.PodCgroupParent(),
			"security_context": map[string]any{
				"namespace_options": map[string]any{"network": network},
				"privileged":        spec.Privileged,
			},
		},
	}
	var mounts []map[string]any
	for _, m := range spec.Mounts {
		mounts = append(mounts, map[string]any{"host_path": m.HostPath, "container_path": m.ContainerPath, "readonly": m.ReadOnly})
	}
	sc := map[string]any{
		"namespace_options": map[string]any{"network": network},
		"capabilities":      map[string]any{"add_capabilities": spec.AddCaps, "drop_capabilities": spec.DropCaps},
		"privileged":        spec.Privileged,
		"readonly_rootfs":   spec.ReadOnlyRootfs,
		"no_new_privs":      spec.NoNewPrivileges,
	}
	if spec.RunAsUser != nil {
		sc["run_as_user"] = map[string]any{"value": *spec.RunAsUser}
	}
	ctr := map[string]any{
		"metadata": map[string]any{"name": spec.Name},
		"image":    map[string]any{"image": spec.Image},
		"command":  spec.Command,
		"args":     spec.Args,
		"log_path": "container.log",
		"mounts":   mounts,
		"linux":    map[string]any{"security_context": sc},
	}
	podFile, ctrFile := filepath.Join(dir, "pod.json"), filepath.Join(dir, "container.json")
	for f, v := range map[string]any{podFile: pod, ctrFile: ctr} {
		b, err := json.Marshal(v)
		must(t, err)
		must(t, os.WriteFile(f, b, 0o644))
	}
	c := &Container{n: n, LogFile: filepath.Join(dir, "container.log")}
	out, err := n.CRI.Run("runp", podFile)
	if err != nil {
		t.Fatalf("starting the pod of container %s: %v", spec.Name, err)
	}
	c.PodID = strings.TrimSpace(out)
	t.Cleanup(c.remove)
	if out, err = n.CRI.Run("create", "--no-pull", c.PodID, ctrFile, podFile); err != nil {
		t.Fatalf("creating container %s: %v", spec.Name, err)
	}
	c.ID = strings.TrimSpace(out)
	if _, err := n.CRI.Run("start", c.ID); err != nil {
		t.Fatalf("starting container %s: %v\nlog:\n%s", spec.Name, err, c.Log())
	}
	return c
}

// Log returns what the container has written to stdout and stderr so far.
func (c *Container) Log() string {
	b, _ := os.ReadFile(c.LogFile)
	return string(b)
}

// State returns the container's CRI state (CONTAINER_RUNNING, CONTAINER_EXITED, ...) and
// exit code.
func (c *Container) State() (string, int, error) {
	out, err := c.n.CRI.Run("inspect", "-o", "json", c.ID)
	if err != nil {
		return "", 0, err
	}
	var v struct {
		Status struct {
			State    string `json:"state"`
			ExitCode int    `json:"exitCode"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		return "", 0, fmt.Errorf("inspect output %q: %w", out, err)
	}
	return v.Status.State, v.Status.ExitCode, nil
}

// WaitExited waits for the container to exit and returns its exit code.
func (c *Container) WaitExited(timeout time.Duration) int {
	c.n.t.Helper()
	code := -1
	Eventually(c.n.t, timeout, "container exits", func() error {
		state, exit, err := c.State()
		if err != nil {
			return err
		}
		if state != "CONTAINER_EXITED" {
			return fmt.Errorf("state %s", state)
		}
		code = exit
		return nil
	})
	return code
}

// remove stops and removes the container and its pod; errors are reported, not fatal, since
// the node's teardown removes whatever is left.
func (c *Container) remove() {
	if !c.n.Running() {
		return
	}
	for _, args := range [][]string{{"stop", "--timeout", "10", c.ID}, {"rm", c.ID}, {"stopp", c.PodID}, {"rmp", c.PodID}} {
		if args[len(args)-1] == "" {
			continue
		}
		if _, err := c.n.CRI.Run(args...); err != nil {
			c.n.t.Errorf("cleaning up container: %v", err)
		}
	}
}
