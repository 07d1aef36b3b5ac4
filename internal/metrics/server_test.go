package metrics

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sandbox-guard/sandbox-guard/internal/testutil"
)

type fakeHealth struct {
	connected atomic.Bool
	mu        sync.Mutex
	err       error
	block     bool   // ContainerdReachable waits for ctx
	standBy   string // non-empty: standing by, for this reason
}

func (f *fakeHealth) NRIConnected() bool { return f.connected.Load() }

func (f *fakeHealth) StandingBy() (bool, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.standBy != "", f.standBy
}

func (f *fakeHealth) ContainerdReachable(ctx context.Context) error {
	f.mu.Lock()
	err, block := f.err, f.block
	f.mu.Unlock()
	if block {
		<-ctx.Done()
		return ctx.Err()
	}
	return err
}

func (f *fakeHealth) setStandingBy(connected bool, err error, block bool, why string) {
	f.connected.Store(connected)
	f.mu.Lock()
	f.err, f.block, f.standBy = err, block, why
	f.mu.Unlock()
}

// startServer starts s on a free port and stops it (waiting for the shutdown) when the test ends.
func startServer(t *testing.T, s *Server) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Start(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		s.Wait()
	})
}

// get fetches path without keeping connections open (no goroutines left behind).
func get(t *testing.T, s *Server, method, path string) (int, string) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	req, err := http.NewRequest(method, "http://"+s.Addr()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestServerEndpoints(t *testing.T) {
	m := New()
	m.ObservePod("admit", nil, time.Microsecond)
	h := &fakeHealth{}
	s := NewServer("127.0.0.1:0", m, h)
	s.readyTimeout = 100 * time.Millisecond
	startServer(t, s)
	if strings.HasSuffix(s.Addr(), ":0") {
		t.Fatalf("Addr() = %s, want the real port", s.Addr())
	}

	if code, body := get(t, s, http.MethodGet, "/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz = %d %q, want 200 ok", code, body)
	}
	if code, _ := get(t, s, http.MethodHead, "/healthz"); code != 200 {
		t.Errorf("HEAD /healthz = %d, want 200", code)
	}
	if code, _ := get(t, s, http.MethodPost, "/healthz"); code != http.StatusMethodNotAllowed {
		t.Errorf("POST /healthz = %d, want 405", code)
	}
	if code, _ := get(t, s, http.MethodGet, "/"); code != http.StatusNotFound {
		t.Errorf("/ = %d, want 404", code)
	}
	if code, body := get(t, s, http.MethodGet, "/metrics"); code != 200 || !strings.Contains(body, `sandbox_guard_pods_total{verdict="admit"} 1`) {
		t.Errorf("/metrics = %d, lacks sandbox_guard_pods_total:\n%s", code, body)
	}

	tests := []struct {
		name      string
		connected bool
		err       error
		block     bool
		standBy   string
		code      int
		body      string
	}{
		{"both fine", true, nil, false, "", 200, "ok\n"},
		{"nri disconnected", false, nil, false, "", 503, "nri: not connected to containerd\n"},
		{"containerd unreachable", true, errors.New("dial unix /run/containerd/containerd.sock:\n  connect: no such file or directory"), false, "", 503,
			"containerd: unreachable: dial unix /run/containerd/containerd.sock: connect: no such file or directory\n"},
		{"both failing", false, errors.New("connection refused"), false, "", 503,
			"nri: not connected to containerd\ncontainerd: unreachable: connection refused\n"},
		{"containerd hangs: bounded", true, nil, true, "", 503, "containerd: unreachable: context deadline exceeded\n"},
		// An external plugin standing by for a pre-registered one is where it should be: ready,
		// and it says why it does not gate (neither NRI nor containerd is asked).
		{"standing by", false, errors.New("gate off"), true, "pre-registered sandbox-guard holds\n/x.lock (pid 7)", 200,
			"standing by: pre-registered sandbox-guard holds /x.lock (pid 7)\n"},
		{"fine again", true, nil, false, "", 200, "ok\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h.setStandingBy(tt.connected, tt.err, tt.block, tt.standBy)
			code, body := get(t, s, http.MethodGet, "/readyz")
			if code != tt.code || body != tt.body {
				t.Errorf("/readyz = %d %q, want %d %q", code, body, tt.code, tt.body)
			}
			if code, _ := get(t, s, http.MethodGet, "/healthz"); code != 200 {
				t.Errorf("/healthz = %d while readiness is %d", code, tt.code)
			}
		})
	}
}

func TestServerWithoutMetricsOrHealth(t *testing.T) {
	s := NewServer("127.0.0.1:0", nil, nil)
	startServer(t, s)
	if code, _ := get(t, s, http.MethodGet, "/metrics"); code != http.StatusNotFound {
		t.Errorf("/metrics without metrics = %d, want 404", code)
	}
	if code, body := get(t, s, http.MethodGet, "/readyz"); code != 503 || body != "health: no health source configured\n" {
		t.Errorf("/readyz without health = %d %q", code, body)
	}
	if code, _ := get(t, s, http.MethodGet, "/healthz"); code != 200 {
		t.Errorf("/healthz = %d", code)
	}
}

func TestReasonIsOneBoundedLine(t *testing.T) {
	long := strings.Repeat("word\n", 500)
	got := oneLine(long)
	if strings.Contains(got, "\n") || len(got) > maxReasonLen+3 {
		t.Errorf("oneLine gave %d bytes: %q", len(got), got)
	}
}

func TestServerBusyAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	s := NewServer(ln.Addr().String(), New(), &fakeHealth{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	err = s.Start(ctx)
	if err == nil {
		t.Fatal("Start on a busy address succeeded")
	}
	if !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("error %q does not say the address is in use", err)
	}
	if time.Since(start) > time.Second {
		t.Error("Start did not fail at once")
	}
	s.Wait() // never started: returns at once
	// A failed Start can be retried.
	s2 := NewServer("127.0.0.1:0", nil, nil)
	startServer(t, s2)
}

func TestServerBadAddress(t *testing.T) {
	s := NewServer("not an address", nil, nil)
	if err := s.Start(context.Background()); err == nil {
		t.Fatal("Start with a bad address succeeded")
	}
}

func TestServerStopsWhenCtxEnds(t *testing.T) {
	log, hook := testutil.CaptureLogger()
	s := NewServer("127.0.0.1:0", New(), &fakeHealth{})
	ctx, cancel := context.WithCancel(testutil.Context(log))
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	addr := s.Addr()
	if code, _ := get(t, s, http.MethodGet, "/healthz"); code != 200 {
		t.Fatalf("/healthz = %d", code)
	}
	// An idle keep-alive connection must not hold the shutdown up.
	idle := &http.Client{Transport: &http.Transport{}}
	resp, err := idle.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	cancel()
	done := make(chan struct{})
	go func() { s.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("server did not stop after ctx ended")
	}
	idle.CloseIdleConnections()
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		_ = c.Close()
		t.Fatal("server still accepts connections after ctx ended")
	}
	var logged bool
	for _, e := range hook.AllEntries() {
		if strings.Contains(e.Message, "serving /metrics") && e.Data["addr"] == addr {
			logged = true
		}
	}
	if !logged {
		t.Error("the listening address was not logged")
	}
	if err := s.Start(context.Background()); err == nil {
		t.Error("a second Start succeeded")
	}
}

func TestServerStartWithEndedCtx(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s := NewServer("127.0.0.1:0", nil, nil)
	if err := s.Start(ctx); err == nil {
		t.Fatal("Start with an ended ctx succeeded")
	}
	s.Wait()
}

func TestServerAddrBeforeStart(t *testing.T) {
	if got := NewServer(":9464", nil, nil).Addr(); got != ":9464" {
		t.Errorf("Addr() before Start = %q", got)
	}
}
