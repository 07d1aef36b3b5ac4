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
// inside the node's network namespace. It is stopped when the test ends.
func (n *Node) StartExternalPlugin(config string) *ExternalPlugin {
	t := n.t
	t.Helper()
	p := &ExternalPlugin{t: t, Config: filepath.Join(n.Dir, fmt.Sprintf("external-%s.yaml", randomID())), LogFile: filepath.Join(n.Dir, "external-plugin.log")}
	must(t, os.WriteFile(p.Config, []byte(config), 0o644))
	logf, err := os.OpenFile(p.LogFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	must(t, err)
	defer func() { _ = logf.Close() }() // the child holds its own descriptor
	p.cmd = n.NS.Command(n.Env.Plugin, "run", "--config", p.Config, "--nri-socket", n.NRISocket)
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

// StopPreRegisteredPlugin stops the plugin containerd started (containerd runs on without it,
// as after a plugin crash) and waits until it is gone.
func (n *Node) StopPreRegisteredPlugin() {
	n.t.Helper()
	var pid int
	for _, p := range n.NS.pids() {
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", p)); err == nil && filepath.Base(exe) == "10-sandbox-guard" {
			pid = p
		}
	}
	if pid == 0 {
		n.t.Fatal("no pre-registered sandbox-guard process in the node's namespace")
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	Eventually(n.t, 10*time.Second, "pre-registered plugin gone", func() error {
		// containerd reaps its plugins only when it stops: a zombie is gone enough.
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err == nil && !strings.Contains(string(b), ") Z ") {
			return fmt.Errorf("pid %d still running", pid)
		}
		return nil
	})
}
