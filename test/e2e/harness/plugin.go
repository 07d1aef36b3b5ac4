package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sandbox-guard/sandbox-guard/internal/standby"
)

// ExternalPlugin is sandbox-guard running as `sandbox-guard run`, the way the DaemonSet runs it.
type ExternalPlugin struct {
	t       testing.TB
	Config  string
	LogFile string
	cmd     *exec.Cmd
	done    chan error
}

// StartExternalPlugin writes config to a file and runs the plugin against the node's NRI socket,
// inside the node's network namespace, with args added to `run`'s. It is stopped when the test
// ends.
func (n *Node) StartExternalPlugin(config string, args ...string) *ExternalPlugin {
	t := n.t
	t.Helper()
	p := &ExternalPlugin{t: t, Config: filepath.Join(n.Dir, fmt.Sprintf("external-%s.yaml", randomID())), LogFile: filepath.Join(n.Dir, "external-plugin.log")}
	must(t, os.WriteFile(p.Config, []byte(config), 0o644))
	logf, err := os.OpenFile(p.LogFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	must(t, err)
	defer func() { _ = logf.Close() }() // the child holds its own descriptor
	p.cmd = n.NS.Command(n.Env.Plugin, append([]string{"run", "--config", p.Config, "--nri-socket", n.NRISocket}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	must(t, p.cmd.Start())
	p.done = make(chan error, 1)
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(p.Stop)
	return p
}

// WaitConnected waits until the plugin has registered with containerd n times in all.
func (p *ExternalPlugin) WaitConnected(times int) {
	p.t.Helper()
	Eventually(p.t, 20*time.Second, "external plugin connected", func() error {
		if got := strings.Count(p.Log(), "connected to the container runtime"); got < times {
			return fmt.Errorf("connected %d times, want %d; log:\n%s", got, times, tailFile(p.LogFile, 10))
		}
		return nil
	})
}

// Log returns what the plugin has logged.
func (p *ExternalPlugin) Log() string {
	b, _ := os.ReadFile(p.LogFile)
	return string(b)
}

// Stop sends SIGTERM and waits for a clean exit.
func (p *ExternalPlugin) Stop() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil {
			p.t.Errorf("external plugin exited with %v after SIGTERM; log:\n%s", err, tailFile(p.LogFile, 20))
		}
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		_ = <-p.done // killed: the exit status says no more than that
		p.t.Errorf("external plugin ignored SIGTERM for 10s")
	}
	p.cmd = nil
}

// Pid is the plugin's process ID (nsenter execs it in place).
func (p *ExternalPlugin) Pid() int { return p.cmd.Process.Pid }

// OpenFiles counts the plugin's open file descriptors.
func (p *ExternalPlugin) OpenFiles() int {
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.Pid()))
	if err != nil {
		p.t.Fatalf("reading the plugin's fds: %v", err)
	}
	return len(entries)
}

// Threads is the plugin's OS thread count.
func (p *ExternalPlugin) Threads() int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Pid()))
	if err != nil {
		p.t.Fatalf("reading the plugin's status: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "Threads:") {
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(l, "Threads:")))
			if err != nil {
				p.t.Fatalf("the plugin's thread count: %v", err)
			}
			return n
		}
	}
	return 0
}

// StandbyLock is the stand-by lock a pre-registered plugin configured with PluginBase holds (in
// its stateDir), for an external plugin's --standby-lock.
func (n *Node) StandbyLock() string { return standby.Path(filepath.Join(n.Dir, "state")) }

// PreRegisteredPID is the process ID of the plugin containerd started, 0 when none runs (an
// exited plugin containerd has not reaped yet counts as gone: it holds no file, and no lock).
func (n *Node) PreRegisteredPID() int {
	for _, p := range n.NS.pids() {
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", p)); err == nil && filepath.Base(exe) == "10-sandbox-guard" {
			return p
		}
	}
	return 0
}

// WaitGone waits until process pid has ended (or is a zombie).
func WaitGone(t testing.TB, pid int, within time.Duration) {
	t.Helper()
	Eventually(t, within, fmt.Sprintf("process %d gone", pid), func() error {
		// containerd reaps its plugins only when it stops: a zombie is gone enough.
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err == nil && !strings.Contains(string(b), ") Z ") {
			return fmt.Errorf("pid %d still running", pid)
		}
		return nil
	})
}

// ProcessState is the state letter of process pid in /proc/<pid>/stat (R, S, T for stopped, Z
// for a zombie), or "" when there is no such process.
func ProcessState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	if i := strings.LastIndexByte(string(b), ')'); i > 0 && len(b) > i+2 {
		return string(b[i+2])
	}
	return ""
}

// StopPreRegisteredPlugin stops the plugin containerd started (containerd runs on without it,
// as after a plugin crash) and waits until it is gone.
func (n *Node) StopPreRegisteredPlugin() {
	n.t.Helper()
	pid := n.PreRegisteredPID()
	if pid == 0 {
		n.t.Fatal("no pre-registered sandbox-guard process in the node's namespace")
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	WaitGone(n.t, pid, 10*time.Second)
}
