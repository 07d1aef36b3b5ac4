package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
)

// NetNS is a named network namespace for one test: containerd, the plugin, the registry and
// every loopback server of the test live in it.
type NetNS struct {
	Name string
	Path string
}

func randomID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// NewNetNS creates a network namespace with loopback up; it is deleted (and every process in it
// killed) when the test ends.
func NewNetNS(t testing.TB) *NetNS {
	t.Helper()
	n := &NetNS{Name: "sg-e2e-" + randomID()}
	n.Path = "/run/netns/" + n.Name
	if out, err := exec.Command("ip", "netns", "add", n.Name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { n.destroy(t) })
	n.MustRun(t, "ip", "link", "set", "lo", "up")
	return n
}

// Command returns a command that runs inside the namespace. nsenter switches only the network
// namespace (`ip netns exec` would also remount /sys and hide the cgroup hierarchy from runc).
func (n *NetNS) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("nsenter", append([]string{"--net=" + n.Path, "--", name}, args...)...)
}

// Run runs a command in the namespace and returns its combined output.
func (n *NetNS) Run(name string, args ...string) (string, error) {
	out, err := n.Command(name, args...).CombinedOutput()
	return string(out), err
}

// MustRun runs a command in the namespace and fails the test if it fails.
func (n *NetNS) MustRun(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := n.Run(name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// Do runs fn with the calling goroutine's thread in the namespace: sockets created inside stay
// in it.
func (n *NetNS) Do(fn func() error) error {
	return ns.WithNetNSPath(n.Path, func(ns.NetNS) error { return fn() })
}

// Listen opens a TCP listener on loopback inside the namespace.
func (n *NetNS) Listen(t testing.TB) net.Listener {
	t.Helper()
	var l net.Listener
	if err := n.Do(func() (err error) { l, err = net.Listen("tcp", "127.0.0.1:0"); return err }); err != nil {
		t.Fatalf("listen in %s: %v", n.Name, err)
	}
	return l
}

// FreePort returns a loopback port that was free inside the namespace a moment ago.
func (n *NetNS) FreePort(t testing.TB) int {
	l := n.Listen(t)
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatalf("freeing port %d in %s: %v", port, n.Name, err)
	}
	return port
}

// HTTPClient returns a client whose connections are made inside the namespace.
func (n *NetNS) HTTPClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := n.Do(func() (err error) {
			c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// Forward relays a loopback port of the test process's own network namespace to addr inside
// the namespace, for clients that run in the test process: the containerd Go client fetches
// images itself, not in containerd. It returns the relay's address; the relay and its
// connections close when the test ends.
func (n *NetNS) Forward(t testing.TB, addr string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("relay to %s in %s: %v", addr, n.Name, err)
	}
	var (
		mu     sync.Mutex
		conns  []net.Conn
		closed bool
		wg     sync.WaitGroup
	)
	track := func(c net.Conn) bool {
		mu.Lock()
		defer mu.Unlock()
		if closed {
			_ = c.Close()
			return false
		}
		conns = append(conns, c)
		return true
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			in, err := l.Accept()
			if err != nil {
				return // closed at cleanup
			}
			if !track(in) {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				var out net.Conn
				if err := n.Do(func() (err error) {
					out, err = (&net.Dialer{Timeout: 5 * time.Second}).Dial("tcp", addr)
					return err
				}); err != nil {
					_ = in.Close()
					return
				}
				if !track(out) {
					_ = in.Close()
					return
				}
				relay(in, out)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		mu.Lock()
		closed = true
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return l.Addr().String()
}

// relay copies both ways until either side is done, then closes both.
func relay(a, b net.Conn) {
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		done <- struct{}{}
	}
	go cp(a, b)
	go cp(b, a)
	<-done
	_ = a.Close()
	_ = b.Close()
	<-done
}

// destroy kills whatever still runs in the namespace and deletes it.
func (n *NetNS) destroy(t testing.TB) {
	for i := 0; i < 20; i++ {
		pids := n.pids()
		if len(pids) == 0 {
			break
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond) // waiting for the kernel to reap; nothing to poll but the pid list itself
	}
	if left := n.pids(); len(left) > 0 {
		t.Errorf("processes still in %s after SIGKILL: %v", n.Name, left)
	}
	if out, err := exec.Command("ip", "netns", "del", n.Name).CombinedOutput(); err != nil {
		t.Errorf("ip netns del %s: %v: %s", n.Name, err, out)
	}
}

// pids lists the processes whose network namespace is this one.
func (n *NetNS) pids() []int {
	var st syscall.Stat_t
	if err := syscall.Stat(n.Path, &st); err != nil {
		return nil
	}
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		var ps syscall.Stat_t
		if err := syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &ps); err != nil {
			continue
		}
		if ps.Ino == st.Ino && ps.Dev == st.Dev {
			out = append(out, pid)
		}
	}
	return out
}
