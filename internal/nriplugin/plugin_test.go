package nriplugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/adaptation"
	"github.com/containerd/nri/pkg/api"
	nrilog "github.com/containerd/nri/pkg/log"
	"go.uber.org/goleak"

	"github.com/sandbox-guard/sandbox-guard/internal/backoff"
	"github.com/sandbox-guard/sandbox-guard/internal/gate"
	"github.com/sandbox-guard/sandbox-guard/internal/standby"
	"github.com/sandbox-guard/sandbox-guard/internal/testutil"
)

func TestMain(m *testing.M) {
	nrilog.Set(nriLogger{testutil.QuietLogger()}) // the runtime side logs through the same package
	goleak.VerifyTestMain(m)
}

// quietCtx carries a logger that discards.
func quietCtx() context.Context { return testutil.Context(testutil.QuietLogger()) }

func podNetNS() []*api.LinuxNamespace {
	return []*api.LinuxNamespace{
		{Type: "ipc"}, {Type: "uts"},
		{Type: "network", Path: "/var/run/netns/cni-1234"},
	}
}

func TestPodFromNRI(t *testing.T) {
	hugeLabels := map[string]string{}
	for i := 0; i < 10000; i++ {
		hugeLabels[fmt.Sprintf("label-%d", i)] = strings.Repeat("v", 1000)
	}
	hugeLabels[strings.Repeat("k", 1<<16)] = strings.Repeat("x", 1<<20)

	tests := []struct {
		name string
		pod  *api.PodSandbox
		want gate.Pod
	}{
		{"nil pod", nil, gate.Pod{}},
		{"empty pod", &api.PodSandbox{}, gate.Pod{}},
		{"nil Linux is a pod-network pod", &api.PodSandbox{Namespace: "ns", Name: "n", Uid: "u"},
			gate.Pod{Namespace: "ns", Name: "n", UID: "u"}},
		{"Linux without namespaces is host network", &api.PodSandbox{Namespace: "ns", Name: "n", Linux: &api.LinuxPodSandbox{}},
			gate.Pod{Namespace: "ns", Name: "n", HostNetwork: true}},
		{"namespaces without network is host network", &api.PodSandbox{Namespace: "ns", Name: "n", Linux: &api.LinuxPodSandbox{
			Namespaces: []*api.LinuxNamespace{{Type: "ipc"}, {Type: "uts"}, {Type: "pid"}}}},
			gate.Pod{Namespace: "ns", Name: "n", HostNetwork: true}},
		{"network namespace is pod network", &api.PodSandbox{Namespace: "ns", Name: "n", Linux: &api.LinuxPodSandbox{Namespaces: podNetNS()}},
			gate.Pod{Namespace: "ns", Name: "n"}},
		{"network namespace first", &api.PodSandbox{Linux: &api.LinuxPodSandbox{
			Namespaces: []*api.LinuxNamespace{{Type: "network"}, {Type: "ipc"}}}},
			gate.Pod{}},
		{"nil namespace entries", &api.PodSandbox{Linux: &api.LinuxPodSandbox{
			Namespaces: []*api.LinuxNamespace{nil, {Type: "network"}, nil}}},
			gate.Pod{}},
		{"only nil namespace entries", &api.PodSandbox{Linux: &api.LinuxPodSandbox{
			Namespaces: []*api.LinuxNamespace{nil}}},
			gate.Pod{HostNetwork: true}},
		{"type is case sensitive", &api.PodSandbox{Linux: &api.LinuxPodSandbox{
			Namespaces: []*api.LinuxNamespace{{Type: "Network"}, {Type: "net"}}}},
			gate.Pod{HostNetwork: true}},
		{"labels copied", &api.PodSandbox{Namespace: "default", Name: "web", Uid: "1-2-3",
			Labels:      map[string]string{"app": "web", "io.kubernetes.pod.namespace": "default"},
			Annotations: map[string]string{"ignored": "yes"},
			Linux:       &api.LinuxPodSandbox{Namespaces: podNetNS()}},
			gate.Pod{Namespace: "default", Name: "web", UID: "1-2-3", Labels: map[string]string{"app": "web", "io.kubernetes.pod.namespace": "default"}}},
		{"huge labels", &api.PodSandbox{Name: "big", Labels: hugeLabels},
			gate.Pod{Name: "big", Labels: hugeLabels}},
		{"empty names", &api.PodSandbox{Namespace: "", Name: "", Uid: "", Labels: map[string]string{}},
			gate.Pod{Labels: map[string]string{}}},
		{"odd bytes", &api.PodSandbox{Namespace: "n\ns", Name: "\x00\xff", Uid: "\u2028"},
			gate.Pod{Namespace: "n\ns", Name: "\x00\xff", UID: "\u2028"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := PodFromNRI(tt.pod)
			if !reflect.DeepEqual(got, tt.want) {
				if len(tt.want.Labels) > 10 {
					t.Errorf("PodFromNRI: %d labels, want %d; host %v", len(got.Labels), len(tt.want.Labels), got.HostNetwork)
				} else {
					t.Errorf("PodFromNRI = %+v, want %+v", got, tt.want)
				}
			}
		})
	}
}

// recordingAdmitter rejects the pods its reject function says, and remembers every pod.
type recordingAdmitter struct {
	mu     sync.Mutex
	pods   []gate.Pod
	reject func(gate.Pod) error
}

func (a *recordingAdmitter) Admit(_ context.Context, pod gate.Pod) error {
	a.mu.Lock()
	a.pods = append(a.pods, pod)
	a.mu.Unlock()
	if a.reject == nil {
		return nil
	}
	return a.reject(pod)
}

func (a *recordingAdmitter) seen() []gate.Pod {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]gate.Pod(nil), a.pods...)
}

var errRejected = errors.New("sandbox-guard: pod default/web not started: node network not ready: kube-proxy-rules: missing; kubelet will retry")

func TestRunPodSandbox(t *testing.T) {
	pod := &api.PodSandbox{Namespace: "default", Name: "web", Uid: "u", Labels: map[string]string{"app": "web"},
		Linux: &api.LinuxPodSandbox{Namespaces: podNetNS()}}

	t.Run("no admitter admits", func(t *testing.T) {
		p := New(quietCtx(), Options{})
		if err := p.RunPodSandbox(context.Background(), pod); err != nil {
			t.Errorf("RunPodSandbox without an admitter = %v", err)
		}
		if err := p.RunPodSandbox(context.Background(), nil); err != nil {
			t.Errorf("RunPodSandbox(nil) without an admitter = %v", err)
		}
	})

	t.Run("rejection returned verbatim", func(t *testing.T) {
		p := New(quietCtx(), Options{})
		a := &recordingAdmitter{reject: func(gate.Pod) error { return errRejected }}
		p.SetAdmitter(a)
		err := p.RunPodSandbox(context.Background(), pod)
		if err != errRejected {
			t.Errorf("RunPodSandbox = %v, want the admitter's error itself", err)
		}
		want := []gate.Pod{{Namespace: "default", Name: "web", UID: "u", Labels: map[string]string{"app": "web"}}}
		if got := a.seen(); !reflect.DeepEqual(got, want) {
			t.Errorf("admitter saw %+v, want %+v", got, want)
		}
	})

	t.Run("admitting admitter", func(t *testing.T) {
		p := New(quietCtx(), Options{})
		a := &recordingAdmitter{}
		p.SetAdmitter(a)
		if err := p.RunPodSandbox(context.Background(), nil); err != nil {
			t.Errorf("RunPodSandbox = %v", err)
		}
		if got := a.seen(); len(got) != 1 || !reflect.DeepEqual(got[0], gate.Pod{}) {
			t.Errorf("admitter saw %+v for a nil pod", got)
		}
	})

	t.Run("SetAdmitter nil turns the gate off", func(t *testing.T) {
		p := New(quietCtx(), Options{})
		a := &recordingAdmitter{reject: func(gate.Pod) error { return errRejected }}
		p.SetAdmitter(a)
		p.SetAdmitter(nil)
		if err := p.RunPodSandbox(context.Background(), pod); err != nil {
			t.Errorf("RunPodSandbox after SetAdmitter(nil) = %v", err)
		}
		if len(a.seen()) != 0 {
			t.Error("the removed admitter was asked")
		}
	})

	t.Run("admitter replaced concurrently", func(t *testing.T) {
		p := New(quietCtx(), Options{})
		var wg sync.WaitGroup
		for i := 0; i < 4; i++ {
			wg.Add(2)
			go func() {
				defer wg.Done()
				for j := 0; j < 200; j++ {
					p.SetAdmitter(&recordingAdmitter{})
					p.SetAdmitter(nil)
				}
			}()
			go func() {
				defer wg.Done()
				for j := 0; j < 200; j++ {
					if err := p.RunPodSandbox(context.Background(), pod); err != nil {
						t.Errorf("RunPodSandbox = %v", err)
						return
					}
				}
			}()
		}
		wg.Wait()
	})
}

func TestConfigure(t *testing.T) {
	var got []string
	p := New(quietCtx(), Options{Configure: func(_ context.Context, cfg, runtime, version string) { got = append(got, cfg+"|"+runtime+"|"+version) }})
	if p.Connected() || p.Connects() != 0 {
		t.Fatal("a new plugin is not connected")
	}
	mask, err := p.Configure(context.Background(), "mode: warn\n", "containerd", "v2.1.0")
	if err != nil || mask != 0 {
		t.Errorf("Configure = %v, %v; want 0 (every implemented event), nil", mask, err)
	}
	if !p.Connected() || p.Connects() != 1 {
		t.Errorf("after Configure: Connected %v, Connects %d", p.Connected(), p.Connects())
	}
	if _, err := p.Configure(context.Background(), "", "containerd", "v2.1.0"); err != nil {
		t.Fatal(err)
	}
	if p.Connects() != 2 || !reflect.DeepEqual(got, []string{"mode: warn\n|containerd|v2.1.0", "|containerd|v2.1.0"}) {
		t.Errorf("Connects %d, Configure hook saw %q", p.Connects(), got)
	}
}

// fakeRuntime is the runtime side of NRI, as containerd embeds it. The adaptation listens on a
// private socket behind a byte-for-byte proxy on the socket the plugin dials: stopping both
// closes the plugin's connection and removes the socket, as a containerd restart does (the
// adaptation's Stop leaves external plugins' connections open, since in containerd the process
// exits).
type fakeRuntime struct {
	t   *testing.T
	dir string
	r   *adaptation.Adaptation
	px  *proxy
}

func (f *fakeRuntime) start() {
	f.t.Helper()
	sync := func(ctx context.Context, cb adaptation.SyncCB) error {
		_, err := cb(ctx, nil, nil)
		return err
	}
	update := func(context.Context, []*api.ContainerUpdate) ([]*api.ContainerUpdate, error) { return nil, nil }
	r, err := adaptation.New("fake-containerd", "v0.0.0", sync, update,
		adaptation.WithPluginPath(filepath.Join(f.dir, "plugins")),
		adaptation.WithPluginConfigPath(filepath.Join(f.dir, "conf.d")),
		adaptation.WithSocketPath(filepath.Join(f.dir, "rt.sock")))
	if err != nil {
		f.t.Fatalf("adaptation.New: %v", err)
	}
	if err := r.Start(); err != nil {
		f.t.Fatalf("adaptation Start: %v", err)
	}
	f.r = r
	f.px = startProxy(f.t, f.socket(), filepath.Join(f.dir, "rt.sock"))
}

func (f *fakeRuntime) socket() string { return filepath.Join(f.dir, "nri.sock") }

func (f *fakeRuntime) stop() {
	if f.r != nil {
		f.r.Stop()
		f.r = nil
	}
	if f.px != nil {
		f.px.close()
		f.px = nil
	}
}

func (f *fakeRuntime) runPodSandbox(pod *api.PodSandbox) error {
	b := f.r.BlockPluginSync()
	defer b.Unblock()
	return f.r.RunPodSandbox(context.Background(), &api.RunPodSandboxRequest{Pod: pod})
}

// proxy forwards unix socket connections from path to target until closed.
type proxy struct {
	path  string
	l     net.Listener
	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func startProxy(t *testing.T, path, target string) *proxy {
	t.Helper()
	os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatalf("proxy listen: %v", err)
	}
	p := &proxy{path: path, l: l}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			d, err := net.Dial("unix", target)
			if err != nil {
				_ = c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, d)
			p.mu.Unlock()
			p.wg.Add(2)
			pipe := func(dst, src net.Conn) {
				defer p.wg.Done()
				_, _ = io.Copy(dst, src)
				_ = dst.Close()
				_ = src.Close()
			}
			go pipe(c, d)
			go pipe(d, c)
		}
	}()
	return p
}

func (p *proxy) close() {
	_ = p.l.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	os.Remove(p.path)
}

// startFakeRuntime starts NRI's runtime side in a short temporary directory (the socket path must
// stay below the unix socket limit); it stops when the test ends.
func startFakeRuntime(t *testing.T) *fakeRuntime {
	t.Helper()
	dir, err := os.MkdirTemp("", "sg-nri-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	rt := &fakeRuntime{t: t, dir: dir}
	rt.start()
	t.Cleanup(rt.stop)
	return rt
}

// runExternal connects an external plugin with admitter behind it to rt; when the test ends it
// must stop cleanly.
func runExternal(t *testing.T, rt *fakeRuntime, admitter Admitter) *Plugin {
	t.Helper()
	p := New(quietCtx(), Options{SocketPath: rt.socket(), Name: "sandbox-guard", Idx: "10",
		Reconnect: backoff.Policy{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond}})
	p.SetAdmitter(admitter)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run returned %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	return p
}

// TestAgainstNRIRuntime runs the plugin in external mode against the real runtime side of NRI
// (the code containerd embeds), over a unix socket.
func TestAgainstNRIRuntime(t *testing.T) {
	rt := startFakeRuntime(t)

	admitter := &recordingAdmitter{reject: func(p gate.Pod) error {
		if p.HostNetwork {
			return nil
		}
		return fmt.Errorf("sandbox-guard: pod %s not started: node network not ready: marker: /run/x does not exist; kubelet will retry", p)
	}}
	p := runExternal(t, rt, admitter)

	blocked := &api.PodSandbox{Id: "sb1", Namespace: "default", Name: "web", Uid: "uid-1",
		Labels: map[string]string{"app": "web"}, Linux: &api.LinuxPodSandbox{Namespaces: podNetNS()}}
	hostNet := &api.PodSandbox{Id: "sb2", Namespace: "kube-system", Name: "kube-proxy-x", Uid: "uid-2",
		Linux: &api.LinuxPodSandbox{Namespaces: []*api.LinuxNamespace{{Type: "ipc"}}}}
	wantText := "sandbox-guard: pod default/web not started: node network not ready: marker: /run/x does not exist; kubelet will retry"

	// The runtime registers the plugin after synchronising it, a little after Configure.
	expectRejection := func(phase string) {
		t.Helper()
		testutil.WaitFor(t, phase+": connected", p.Connected)
		var err error
		testutil.WaitFor(t, phase+": a rejection through NRI", func() bool {
			err = rt.runPodSandbox(blocked)
			return err != nil
		})
		if !strings.Contains(err.Error(), wantText) {
			t.Errorf("%s: RunPodSandbox error %q does not carry the plugin's text %q", phase, err, wantText)
		}
		if err := rt.runPodSandbox(hostNet); err != nil {
			t.Errorf("%s: host-network pod rejected: %v", phase, err)
		}
	}

	expectRejection("first connection")
	if p.Connects() != 1 {
		t.Errorf("Connects = %d after the first connection", p.Connects())
	}
	// The pod crossed the wire intact.
	var sawBlocked, sawHost bool
	for _, got := range admitter.seen() {
		switch got.Name {
		case "web":
			sawBlocked = reflect.DeepEqual(got, gate.Pod{Namespace: "default", Name: "web", UID: "uid-1", Labels: map[string]string{"app": "web"}})
		case "kube-proxy-x":
			sawHost = got.HostNetwork && got.Namespace == "kube-system" && got.UID == "uid-2"
		}
	}
	if !sawBlocked || !sawHost {
		t.Errorf("admitter saw %+v", admitter.seen())
	}

	// containerd restarts: the plugin notices and reconnects to the new runtime.
	rt.stop()
	testutil.WaitFor(t, "disconnect after the runtime stopped", func() bool { return !p.Connected() })
	rt.start()
	testutil.WaitFor(t, "a second registration", func() bool { return p.Connects() >= 2 })
	expectRejection("after reconnecting")
	if p.Connects() != 2 {
		t.Errorf("Connects = %d, want 2", p.Connects())
	}

	// Turning the gate off is seen by the live connection.
	p.SetAdmitter(nil)
	if err := rt.runPodSandbox(blocked); err != nil {
		t.Errorf("with no admitter: %v", err)
	}
}

// An external plugin keeps retrying while the socket does not exist, and connects once it does.
func TestReconnectsUntilRuntimeAppears(t *testing.T) {
	dir, err := os.MkdirTemp("", "sg-nri-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	rt := &fakeRuntime{t: t, dir: dir}
	t.Cleanup(rt.stop)

	p := New(quietCtx(), Options{SocketPath: rt.socket(), Name: "sandbox-guard", Idx: "10",
		Reconnect: backoff.Policy{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()

	if p.Connected() {
		t.Fatal("connected before the runtime exists")
	}
	rt.start()
	testutil.WaitFor(t, "connection once the runtime listens", p.Connected)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if p.Connected() {
		t.Error("still connected after Run returned")
	}
}

func TestRunReturnsWhenCancelledWhileDisconnected(t *testing.T) {
	p := New(quietCtx(), Options{SocketPath: filepath.Join(t.TempDir(), "absent.sock"), Name: "sandbox-guard", Idx: "10",
		Reconnect: backoff.Policy{Initial: time.Hour, Max: time.Hour}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after cancel while waiting to reconnect")
	}
}

// While StandBy says so (a pre-registered sandbox-guard is installed), an external plugin does
// not connect; once it stops saying so, the plugin connects.
func TestStandsByWhileToldTo(t *testing.T) {
	rt := startFakeRuntime(t)

	var standBy atomic.Bool
	var asked atomic.Int32
	standBy.Store(true)
	p := New(quietCtx(), Options{SocketPath: rt.socket(), Name: "sandbox-guard", Idx: "10",
		Reconnect:      backoff.Policy{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond},
		StandByRecheck: 5 * time.Millisecond,
		StandBy: func() (bool, string) {
			asked.Add(1)
			return standBy.Load(), "test"
		}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	testutil.WaitFor(t, "StandBy asked several times", func() bool { return asked.Load() >= 5 })
	if p.Connects() != 0 {
		t.Fatalf("connected %d times while standing by", p.Connects())
	}
	standBy.Store(false)
	testutil.WaitFor(t, "connection once no longer standing by", p.Connected)
	cancel()
	_ = <-done
}

// The plugin asks for NRI's failure policy: a hook that overruns the request timeout fails the
// pod instead of admitting it, and the plugin stays registered. The runtime side here is NRI
// v0.12.5, which honours it (containerd releases embed older NRI and ignore it).
func TestFailurePolicyFailsTimedOutRequests(t *testing.T) {
	adaptation.SetPluginRequestTimeout(300 * time.Millisecond)
	t.Cleanup(func() { adaptation.SetPluginRequestTimeout(adaptation.DefaultPluginRequestTimeout) })
	rt := startFakeRuntime(t)

	release := make(chan struct{})
	var slow atomic.Bool
	slow.Store(true)
	admitter := &recordingAdmitter{reject: func(gate.Pod) error {
		if slow.Load() {
			<-release
		}
		return nil
	}}
	p := runExternal(t, rt, admitter)
	pod := &api.PodSandbox{Id: "sb1", Namespace: "default", Name: "web", Uid: "uid-1", Linux: &api.LinuxPodSandbox{Namespaces: podNetNS()}}
	testutil.WaitFor(t, "connected", p.Connected)
	var err1 error
	testutil.WaitFor(t, "the runtime to send the pod to the plugin", func() bool {
		err1 = rt.runPodSandbox(pod)
		return len(admitter.seen()) > 0
	})
	close(release)
	if err1 == nil {
		t.Fatal("a hook that overran the request timeout admitted the pod")
	}
	slow.Store(false)
	connects := p.Connects()
	if err := rt.runPodSandbox(pod); err != nil {
		t.Errorf("the next pod, answered in time: %v", err)
	}
	if !p.Connected() || p.Connects() != connects {
		t.Errorf("the plugin was dropped after the timeout (connected %v, connects %d -> %d)", p.Connected(), connects, p.Connects())
	}
}

// With the stand-by lock of a pre-registered plugin: standing by while it is held, connected
// within a recheck once it is released (the holder died), and disconnected again once it is held
// again (containerd restarted the pre-registered plugin), so that one plugin gates at a time.
func TestStandsByWhileTheLockIsHeld(t *testing.T) {
	rt := startFakeRuntime(t)
	path := standby.Path(t.TempDir())
	holder, err := standby.Hold(path)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var changes []bool
	l, hook := testutil.CaptureLogger()
	p := New(testutil.Context(l), Options{SocketPath: rt.socket(), Name: "sandbox-guard", Idx: "10",
		Reconnect:      backoff.Policy{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond},
		StandByRecheck: 5 * time.Millisecond,
		StandBy: func() (bool, string) {
			h, err := standby.Probe(path)
			if err != nil {
				return false, err.Error()
			}
			return h.Held, fmt.Sprintf("held %v", h.Held)
		},
		OnStandBy: func(yes bool) {
			mu.Lock()
			changes = append(changes, yes)
			mu.Unlock()
		}})
	admitter := &recordingAdmitter{reject: func(gate.Pod) error { return errors.New("rejected by the external plugin") }}
	p.SetAdmitter(admitter)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	}()
	pod := &api.PodSandbox{Id: "sb1", Namespace: "default", Name: "web", Uid: "uid-1", Linux: &api.LinuxPodSandbox{Namespaces: podNetNS()}}
	logged := func(text string) bool {
		for _, e := range hook.AllEntries() {
			if strings.Contains(e.Message, text) {
				return true
			}
		}
		return false
	}

	testutil.WaitFor(t, "standing by", func() bool { yes, why := p.StandingBy(); return yes && why == "held true" })
	if err := rt.runPodSandbox(pod); err != nil || p.Connects() != 0 || len(admitter.seen()) != 0 {
		t.Fatalf("standing by: pod %v, %d connects, %d pods seen", err, p.Connects(), len(admitter.seen()))
	}
	if !logged("standing by: held true") {
		t.Error("no log line says it stands by")
	}

	_ = holder.Release()
	testutil.WaitFor(t, "taking over: the external plugin's rejection", func() bool {
		err := rt.runPodSandbox(pod) // admitted until the runtime has synchronised the plugin
		return err != nil && strings.Contains(err.Error(), "rejected by the external plugin")
	})
	if yes, _ := p.StandingBy(); yes || !logged("taking over: held false; connecting to containerd") {
		t.Error("not reported as taking over")
	}

	testutil.WaitFor(t, "the lock held again", func() bool {
		holder, err = standby.Hold(path) // the plugin's probe may hold it for an instant
		return err == nil
	})
	defer func() { _ = holder.Release() }()
	testutil.WaitFor(t, "disconnected again", func() bool { yes, _ := p.StandingBy(); return yes && !p.Connected() })
	seen := len(admitter.seen())
	if err := rt.runPodSandbox(pod); err != nil || len(admitter.seen()) != seen || p.Connects() != 1 {
		t.Errorf("standing by again: pod %v, %d pods seen (was %d), %d connects", err, len(admitter.seen()), seen, p.Connects())
	}
	if !logged("gates this node again (held true): disconnecting from containerd") {
		t.Error("no log line says why it disconnected")
	}
	mu.Lock()
	defer mu.Unlock()
	if !reflect.DeepEqual(changes, []bool{true, false, true}) {
		t.Errorf("OnStandBy heard %v, want [true false true]", changes)
	}
}
