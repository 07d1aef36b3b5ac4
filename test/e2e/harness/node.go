package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"
)

// NodeOptions shape a test node.
type NodeOptions struct {
	// SandboxRepo and SandboxTag name the sandbox image in the test registry (eks/pause:3.10).
	SandboxRepo, SandboxTag string
	// PluginConfig, when set, installs the plugin pre-registered (binary in plugin_path, this
	// text in plugin_config_path) so that containerd starts it. It is called with the node so it
	// can name the node's paths (PluginLog, Dir, Registry).
	PluginConfig func(n *Node) string
	// NoSandboxImage leaves the sandbox image out of containerd (the keeper's job to pull it).
	NoSandboxImage bool
	// ConfiguredSandbox, when set, is the repository:tag containerd's configuration names as
	// the sandbox image instead of the one pushed (a wrong account or region).
	ConfiguredSandbox string
	// BeforeStart runs after the node's files are written and before containerd starts.
	BeforeStart func(n *Node)
	// SandboxImageFor, when set, returns the full sandbox image reference for containerd's
	// configuration; it runs before the configuration is written (e.g. to start a registry front).
	SandboxImageFor func(n *Node) string
}

// Node is one containerd with CRI and NRI, in its own directory and network namespace.
type Node struct {
	t        testing.TB
	Env      *Env
	C        Containerd
	NS       *NetNS
	Registry *Registry
	Dir      string // every file of the node lives under it

	Socket        string // containerd's gRPC socket
	NRISocket     string
	PluginDir     string // plugin_path
	PluginConfDir string // plugin_config_path
	PluginLog     string // where test configs send the plugin's log
	CertsDir      string // registry config_path (hosts.toml per host)
	CNIConfDir    string
	ConfigFile    string // containerd's main config
	LogFile       string // containerd's log
	SandboxImage  string // what containerd's configuration names
	PushedImage   string // what the registry holds
	CRI           *CRI

	id           string
	cgroupParent string
	cmd          *exec.Cmd
	waitErr      chan error
}

// StartNode starts a registry holding the sandbox image and a containerd using it, both in a
// fresh network namespace; everything is removed when the test ends.
func StartNode(t testing.TB, env *Env, c Containerd, opts NodeOptions) *Node {
	t.Helper()
	if opts.SandboxRepo == "" {
		opts.SandboxRepo, opts.SandboxTag = "eks/pause", "3.10"
	}
	dir, err := os.MkdirTemp("/tmp", "sg-") // short: unix socket paths are limited to 108 bytes
	must(t, err)
	n := &Node{t: t, Env: env, C: c, Dir: dir, id: filepath.Base(dir)[3:]}
	t.Cleanup(func() { n.removeDir() })
	n.NS = NewNetNS(t)
	n.Registry = StartRegistry(t, env, n.NS, dir)
	n.SandboxImage, _ = n.Registry.PushPause(t, env, opts.SandboxRepo, opts.SandboxTag)
	n.PushedImage = n.SandboxImage
	if opts.ConfiguredSandbox != "" {
		n.SandboxImage = n.Registry.Host + "/" + opts.ConfiguredSandbox
	}

	n.Socket = filepath.Join(dir, "containerd.sock")
	n.NRISocket = filepath.Join(dir, "nri.sock")
	n.PluginDir = filepath.Join(dir, "nri", "plugins")
	n.PluginConfDir = filepath.Join(dir, "nri", "conf.d")
	n.PluginLog = filepath.Join(dir, "sandbox-guard.log")
	n.CertsDir = filepath.Join(dir, "certs.d")
	n.CNIConfDir = filepath.Join(dir, "cni", "net.d")
	n.ConfigFile = filepath.Join(dir, "config.toml")
	n.LogFile = filepath.Join(dir, "containerd.log")
	n.cgroupParent = "/sg-e2e-" + n.id
	for _, d := range []string{n.PluginDir, n.PluginConfDir, n.CNIConfDir, filepath.Join(n.CertsDir, n.Registry.Host)} {
		must(t, os.MkdirAll(d, 0o755))
	}
	// The server entry alone (all capabilities) is enough for pulls over plain http; it leaves
	// room for the credential bridge's same-URL [host] entry.
	must(t, os.WriteFile(n.HostsToml(), []byte(fmt.Sprintf("server = \"http://%s\"\n", n.Registry.Host)), 0o644))
	n.WriteCNIConfig()
	if opts.SandboxImageFor != nil {
		n.SandboxImage = opts.SandboxImageFor(n)
	}
	n.writeContainerdConfig()
	if opts.PluginConfig != nil {
		n.InstallPlugin(opts.PluginConfig(n))
	}
	n.CRI = newCRI(t, env, n)
	t.Cleanup(n.teardown)
	if opts.BeforeStart != nil {
		opts.BeforeStart(n)
	}
	n.Start()
	n.checkNotMigrated()
	if !opts.NoSandboxImage {
		n.CRI.MustPull(n.SandboxImage, n.Registry.User+":"+n.Registry.Password)
	}
	return n
}

// checkNotMigrated fails the test when containerd migrated the configuration the harness wrote
// (containerd 2.x logs "Configuration migrated from version N" for every file of an older
// version): the node would then not run on its line's own format.
func (n *Node) checkNotMigrated() {
	n.t.Helper()
	b, err := os.ReadFile(n.LogFile)
	must(n.t, err)
	if strings.Contains(string(b), "Configuration migrated from version") {
		n.t.Errorf("%s migrated the harness's version-%d configuration instead of reading it as is; log:\n%s", n.C.Name, n.C.ConfigVersion(), n.Tail(40))
	}
}

// WriteCNIConfig (re)writes the node's CNI network: a bridge with host-local IPAM. Pods get a
// default route through the bridge, as on a node, so that they reach addresses kube-proxy's
// rules translate on the node (the kubelet tests' Service).
func (n *Node) WriteCNIConfig() {
	conf := fmt.Sprintf(`{"cniVersion": "1.0.0", "name": "sg-%[1]s", "plugins": [
  {"type": "bridge", "bridge": "sg%[1]s", "isGateway": true, "isDefaultGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.99.0.0/24"}]], "dataDir": "%[2]s"}}]}
`, n.id, filepath.Join(n.Dir, "cni", "ipam"))
	must(n.t, os.WriteFile(filepath.Join(n.CNIConfDir, "10-sg.conflist"), []byte(conf), 0o644))
}

// InstallPlugin puts the plugin binary and its configuration where containerd looks for
// pre-registered plugins; containerd starts it at its next start.
func (n *Node) InstallPlugin(config string) {
	bin, err := os.ReadFile(n.Env.Plugin)
	must(n.t, err)
	// Written aside and renamed: the binary may be running (a reinstall with a new
	// configuration), and a running executable cannot be opened for writing.
	tmp := filepath.Join(n.PluginDir, ".10-sandbox-guard.tmp")
	must(n.t, os.WriteFile(tmp, bin, 0o755))
	must(n.t, os.Rename(tmp, filepath.Join(n.PluginDir, "10-sandbox-guard")))
	n.WritePluginConfig(config)
}

// WritePluginConfig replaces the pre-registered plugin's configuration file.
func (n *Node) WritePluginConfig(config string) {
	must(n.t, os.WriteFile(filepath.Join(n.PluginConfDir, "10-sandbox-guard.conf"), []byte(config), 0o644))
}

// Start starts containerd and waits until CRI answers.
func (n *Node) Start() {
	t := n.t
	t.Helper()
	logf, err := os.OpenFile(n.LogFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	must(t, err)
	defer func() { _ = logf.Close() }() // the child holds its own descriptor
	n.cmd = n.NS.Command(filepath.Join(n.C.BinDir, "containerd"), "--config", n.ConfigFile)
	n.cmd.Env = []string{"PATH=" + strings.Join([]string{n.C.BinDir, filepath.Dir(n.Env.Runc), "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"}, ":")}
	n.cmd.Stdout, n.cmd.Stderr = logf, logf
	must(t, n.cmd.Start())
	n.waitErr = make(chan error, 1)
	go func(c *exec.Cmd, ch chan error) { ch <- c.Wait() }(n.cmd, n.waitErr)
	Eventually(t, 30*time.Second, n.C.Name+" serves CRI", func() error {
		select {
		case err := <-n.waitErr:
			n.waitErr <- err
			return fmt.Errorf("containerd exited: %v; log:\n%s", err, n.Tail(40))
		default:
		}
		_, err := n.CRI.Run("info")
		return err
	})
}

// Stop stops containerd (SIGTERM, then SIGKILL after 10 s). Shims and pods keep running, as on
// a real node.
func (n *Node) Stop() {
	if n.cmd == nil {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case _ = <-n.waitErr: // how containerd exits on SIGTERM is not under test
	case <-time.After(10 * time.Second):
		_ = n.cmd.Process.Kill()
		_ = <-n.waitErr
	}
	n.cmd = nil
}

// Restart restarts containerd.
func (n *Node) Restart() {
	n.t.Helper()
	n.Stop()
	n.Start()
}

// Running reports whether containerd is still running.
func (n *Node) Running() bool {
	if n.cmd == nil {
		return false
	}
	select {
	case err := <-n.waitErr:
		n.waitErr <- err
		return false
	default:
		return true
	}
}

// Tail returns the last lines of containerd's log, for failure messages.
func (n *Node) Tail(lines int) string { return tailFile(n.LogFile, lines) }

// Ctr runs ctr against this containerd in namespace k8s.io.
func (n *Node) Ctr(args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(n.C.BinDir, "ctr"), append([]string{"--address", n.Socket, "--namespace", "k8s.io"}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// PodCgroupParent is the cgroup parent every test pod uses, so teardown finds its processes.
func (n *Node) PodCgroupParent() string { return n.cgroupParent }

func (n *Node) teardown() {
	if n.Running() {
		if out, err := n.CRI.Run("pods", "-q"); err == nil {
			for _, id := range strings.Fields(out) {
				_, _ = n.CRI.Run("stopp", id)
				_, _ = n.CRI.Run("rmp", id)
			}
		}
	}
	n.Stop()
	if n.t.Failed() {
		n.t.Logf("containerd log (last lines):\n%s", n.Tail(60))
		if _, err := os.Stat(n.PluginLog); err == nil {
			n.t.Logf("plugin log (last lines):\n%s", tailFile(n.PluginLog, 60))
		}
	}
	killCgroup(n.cgroupParent)
	matches, _ := filepath.Glob("/var/lib/cni/results/sg-" + n.id + "-*")
	for _, m := range matches {
		_ = os.Remove(m)
	}
}

// removeDir unmounts what containerd left under the node's directory and removes it.
func (n *Node) removeDir() {
	unmountUnder(n.Dir)
	if err := os.RemoveAll(n.Dir); err != nil {
		n.t.Errorf("removing %s: %v", n.Dir, err)
	}
}

// killCgroup kills every process in the cgroup subtree under parent, in every v1 hierarchy
// (and the unified one), then removes the cgroups.
func killCgroup(parent string) {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*" + parent)
	if u := "/sys/fs/cgroup" + parent; isDir(u) {
		roots = append(roots, u)
	}
	for attempt := 0; attempt < 20; attempt++ {
		alive := false
		for _, root := range roots {
			_ = filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
				if err == nil && !info.IsDir() && info.Name() == "cgroup.procs" {
					b, _ := os.ReadFile(p)
					for _, f := range strings.Fields(string(b)) {
						if pid, err := strconv.Atoi(f); err == nil {
							alive = true
							_ = syscall.Kill(pid, syscall.SIGKILL)
						}
					}
				}
				return nil
			})
		}
		if !alive {
			break
		}
		time.Sleep(50 * time.Millisecond) // let the kernel reap before looking again
	}
	for _, root := range roots {
		var dirs []string
		_ = filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
			if err == nil && info.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
		for _, d := range dirs {
			_ = syscall.Rmdir(d)
		}
	}
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// unmountUnder lazily unmounts every mount point below dir, deepest first.
func unmountUnder(dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var points []string
	for line := range strings.Lines(string(b)) {
		fields := strings.Fields(line)
		if len(fields) > 4 && (fields[4] == dir || strings.HasPrefix(fields[4], dir+"/")) {
			points = append(points, fields[4])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(points)))
	for _, p := range points {
		_ = syscall.Unmount(p, syscall.MNT_DETACH)
	}
}

func tailFile(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

func (n *Node) writeContainerdConfig() {
	var tmpl string
	switch n.C.ConfigVersion() {
	case 2:
		tmpl = containerd17Config
	case 3:
		tmpl = containerd22Config
	case 4:
		tmpl = containerd23Config
	default:
		n.t.Fatalf("%s: no configuration template for config version %d", n.C.Name, n.C.ConfigVersion())
	}
	var b strings.Builder
	must(n.t, template.Must(template.New("config").Parse(tmpl)).Execute(&b, map[string]string{
		"Dir": n.Dir, "Socket": n.Socket, "NRISocket": n.NRISocket, "PluginDir": n.PluginDir,
		"PluginConfDir": n.PluginConfDir, "SandboxImage": n.SandboxImage, "CertsDir": n.CertsDir,
		"CNIBin": n.Env.CNIBin, "CNIConfDir": n.CNIConfDir, "Runc": n.Env.Runc,
	}))
	must(n.t, os.WriteFile(n.ConfigFile, []byte(b.String()), 0o644))
}

// Each line's configuration is written in the format its own `containerd config default`
// writes, so that no line runs on a migrated configuration: version 2 for 1.7, 3 for 2.0-2.2, 4
// for 2.3 and 2.4 (StartNode checks that containerd logged no migration).
//
// Facts from ../shared/reference/test-environment.md: restrict_oom_score_adj because these
// machines lack CAP_SYS_RESOURCE; cgroupfs because cgroup v1; own root/state/sockets.
//
// Version 3 (containerd 2.0-2.2): the server settings are top-level sections.
const containerd22Config = `version = 3
root = "{{.Dir}}/root"
state = "{{.Dir}}/state"

[grpc]
  address = "{{.Socket}}"
[ttrpc]
  address = "{{.Socket}}.ttrpc"
[metrics]
  address = ""
` + containerd2Plugins

// Version 4 (containerd 2.3 and later): [grpc], [ttrpc], [debug] and [metrics] became the
// server plugins io.containerd.server.v1.* (containerd v2.3.7 cmd/containerd/server/config
// serviceMigrate; `containerd config default` of 2.3.7 and 2.4.2). A version-4 ttrpc address is
// no longer derived from the gRPC one: without its own it would be the machine-wide
// /run/containerd/containerd.sock.ttrpc. The debug socket stays off, as by default.
const containerd23Config = `version = 4
root = "{{.Dir}}/root"
state = "{{.Dir}}/state"

[plugins.'io.containerd.server.v1.grpc']
  address = "{{.Socket}}"
[plugins.'io.containerd.server.v1.ttrpc']
  address = "{{.Socket}}.ttrpc"
[plugins.'io.containerd.server.v1.metrics']
  address = ""
` + containerd2Plugins

// containerd2Plugins are the plugin settings of versions 3 and 4: the CRI and NRI plugin tables
// kept their names and keys.
const containerd2Plugins = `
[plugins.'io.containerd.internal.v1.opt']
  path = "{{.Dir}}/opt"
[plugins.'io.containerd.nri.v1.nri']
  disable = false
  socket_path = "{{.NRISocket}}"
  plugin_path = "{{.PluginDir}}"
  plugin_config_path = "{{.PluginConfDir}}"
  plugin_registration_timeout = "5s"
  plugin_request_timeout = "2s"
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "{{.SandboxImage}}"
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = "{{.CertsDir}}"
[plugins.'io.containerd.cri.v1.runtime']
  enable_selinux = false
  netns_mounts_under_state_dir = true
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["{{.CNIBin}}"]
    conf_dir = "{{.CNIConfDir}}"
    max_conf_num = 1
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "{{.Runc}}"
        SystemdCgroup = false
        Root = "{{.Dir}}/runc"
[plugins.'io.containerd.grpc.v1.cri']
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
`

const containerd17Config = `version = 2
root = "{{.Dir}}/root"
state = "{{.Dir}}/state"

[grpc]
  address = "{{.Socket}}"
[ttrpc]
  address = "{{.Socket}}.ttrpc"
[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{{.Dir}}/opt"
[plugins."io.containerd.nri.v1.nri"]
  disable = false
  socket_path = "{{.NRISocket}}"
  plugin_path = "{{.PluginDir}}"
  plugin_config_path = "{{.PluginConfDir}}"
  plugin_registration_timeout = "5s"
  plugin_request_timeout = "2s"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{{.SandboxImage}}"
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  netns_mounts_under_state_dir = true
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{{.Runc}}"
        SystemdCgroup = false
        Root = "{{.Dir}}/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{{.CNIBin}}"
    conf_dir = "{{.CNIConfDir}}"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{{.CertsDir}}"
`

// PluginBase is the part of a plugin configuration that ties it to this node: its log file,
// containerd socket and configuration, and a state directory. Test configurations start with it.
func (n *Node) PluginBase() string {
	return fmt.Sprintf("log: {file: %s, level: debug}\ncontainerd: {address: %s, configFile: %s}\nstateDir: %s\n",
		n.PluginLog, n.Socket, n.ConfigFile, filepath.Join(n.Dir, "state"))
}

// HostsToml is the path of the test registry's hosts.toml.
func (n *Node) HostsToml() string { return filepath.Join(n.CertsDir, n.Registry.Host, "hosts.toml") }
