package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	clog "github.com/containerd/log"
	"github.com/containerd/nri/pkg/adaptation"
	"github.com/containerd/nri/pkg/api"
	nrilog "github.com/containerd/nri/pkg/log"
	"github.com/sirupsen/logrus"

	"github.com/sandbox-guard/sandbox-guard/internal/backoff"
	"github.com/sandbox-guard/sandbox-guard/internal/config"
	"github.com/sandbox-guard/sandbox-guard/internal/gate"
	"github.com/sandbox-guard/sandbox-guard/internal/nriplugin"
	"github.com/sandbox-guard/sandbox-guard/internal/snapshot"
	"github.com/sandbox-guard/sandbox-guard/internal/supervisor"
	"github.com/sandbox-guard/sandbox-guard/internal/testutil"
)

// Measurement 1: the RunPodSandbox decision, in process (Go benchmarks) and through a real NRI
// connection (containerd's runtime side of NRI, in process, on a unix socket).

const hookTarget = 100 * time.Microsecond

// hookAgent runs a supervisor like a ready EKS node's: three gating checks (file checks stand in
// for cni-config, vpc-cni-ipamd and kube-proxy-rules, which all pass), no images, metrics on (as
// shipped: the hook observes every pod), and a warm snapshot. present=false makes the
// kube-proxy check fail (the rejection path). It stops when the test ends.
func hookAgent(tb testing.TB, dir string, present bool, level logrus.Level) (*supervisor.Supervisor, *config.Config) {
	tb.Helper()
	var paths []string
	for _, n := range []string{"cni", "ipamd", "kube-proxy"} {
		p := filepath.Join(dir, n)
		if n != "kube-proxy" || present {
			if err := os.WriteFile(p, nil, 0o600); err != nil {
				tb.Fatal(err)
			}
		}
		paths = append(paths, p)
	}
	doc := fmt.Sprintf(`mode: enforce
preset: none
sandboxImage: ""
metrics: {address: "127.0.0.1:0"}
refresh: {interval: 10m, maxBackoff: 10m}
containerd: {configFile: ""}
checks:
- {name: cni-config, file: {path: %s}, hint: the VPC CNI (aws-node) has not written its CNI config yet}
- {name: vpc-cni-ipamd, file: {path: %s}, hint: the VPC CNI's ipamd (aws-node) is not serving yet}
- {name: kube-proxy-rules, file: {path: %s}, hint: kube-proxy has not synced its rules yet}
`, paths[0], paths[1], paths[2])
	cfg, err := config.Parse([]byte(doc), "bench")
	if err != nil {
		tb.Fatal(err)
	}
	log := testutil.QuietLogger() // formatting still happens for enabled levels; only the write is saved
	log.SetLevel(level)
	ctx, cancel := context.WithCancel(clog.WithLogger(context.Background(), logrus.NewEntry(log)))
	s := supervisor.New("bench", nil)
	if err := s.Apply(ctx, cfg, supervisor.Runtime{}); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cancel(); s.Stop() })
	deadline := time.Now().Add(10 * time.Second)
	for s.Status().Checks == nil {
		if time.Now().After(deadline) {
			tb.Fatal("no snapshot within 10s")
		}
		time.Sleep(time.Millisecond)
	}
	if st := s.Status(); st.Ready() != present {
		tb.Fatalf("warm snapshot ready=%v, want %v: %+v", st.Ready(), present, st.Checks.Results)
	}
	return s, cfg
}

func benchPod() gate.Pod {
	return gate.Pod{Namespace: "default", Name: "web-7d4b9c6f5-x2x8k", UID: "0b6f0c1e-1f7a-4c33-9a57-0e2f1c1f4a10",
		Labels: map[string]string{"app": "web", "pod-template-hash": "7d4b9c6f5", "io.kubernetes.pod.namespace": "default",
			"io.kubernetes.pod.name": "web-7d4b9c6f5-x2x8k", "io.kubernetes.pod.uid": "0b6f0c1e-1f7a-4c33-9a57-0e2f1c1f4a10"}}
}

// BenchmarkDecide is gate.Policy.Decide alone, on a ready snapshot (admit).
func BenchmarkDecide(b *testing.B) {
	_, cfg := hookAgent(b, b.TempDir(), true, logrus.InfoLevel)
	decideBench(b, cfg, true)
}

// BenchmarkDecideReject is Decide on a snapshot with a failing check (builds the message).
func BenchmarkDecideReject(b *testing.B) {
	_, cfg := hookAgent(b, b.TempDir(), true, logrus.InfoLevel)
	decideBench(b, cfg, false)
}

func decideBench(b *testing.B, cfg *config.Config, ready bool) {
	p, err := gate.NewPolicy(cfg)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	snap := &snapshot.Snapshot{Taken: now, ReadySince: now.Add(-time.Minute), Results: []snapshot.Result{
		{Name: "cni-config", Kind: "cni", OK: true, Detail: "10-aws.conflist: aws-cni, egress-cni, portmap"},
		{Name: "vpc-cni-ipamd", Kind: "socket", OK: true, Detail: "unix:///var/run/aws-node/ipamd.sock accepts connections"},
		{Name: "kube-proxy-rules", Kind: "iptables", OK: ready, Detail: "iptables nat/KUBE-SERVICES present (nft backend)", Hint: "kube-proxy has not synced its rules yet"},
	}}
	if !ready {
		snap.ReadySince = time.Time{}
		snap.Results[2].Detail = "iptables nat/KUBE-SERVICES missing (nft backend)"
	}
	pod := benchPod()
	want := gate.Admit
	if !ready {
		want = gate.Reject
	}
	b.ReportAllocs()
	for b.Loop() {
		if d := p.Decide(pod, snap, now); d.Verdict != want {
			b.Fatalf("verdict %v", d.Verdict)
		}
	}
}

// BenchmarkAdmit is Supervisor.Admit (the hook's whole decision path: atomic load, Decide, log call)
// with a warm ready snapshot and the default log level (info: admissions are not logged).
func BenchmarkAdmit(b *testing.B) { admitBench(b, true, logrus.InfoLevel) }

// BenchmarkAdmitDebug is Admit with log.level debug: every admission is formatted as a log line.
func BenchmarkAdmitDebug(b *testing.B) { admitBench(b, true, logrus.DebugLevel) }

// BenchmarkAdmitReject is Admit on a failing check: the rejection message, a warning log line
// and a refresh kick.
func BenchmarkAdmitReject(b *testing.B) { admitBench(b, false, logrus.InfoLevel) }

func admitBench(b *testing.B, ready bool, level logrus.Level) {
	a, _ := hookAgent(b, b.TempDir(), ready, level)
	pod, ctx := benchPod(), context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := a.Admit(ctx, pod); (err == nil) != ready {
			b.Fatalf("Admit = %v", err)
		}
	}
}

// timedAdmitter times the admitter's own work inside the plugin.
type timedAdmitter struct {
	a    nriplugin.Admitter
	took []time.Duration // appended by one NRI request at a time (NRI serialises them)
}

func (t *timedAdmitter) Admit(ctx context.Context, pod gate.Pod) error {
	start := time.Now()
	err := t.a.Admit(ctx, pod)
	t.took = append(t.took, time.Since(start))
	return err
}

type quietNRILog struct{}

func (quietNRILog) Debugf(context.Context, string, ...any) {}
func (quietNRILog) Infof(context.Context, string, ...any)  {}
func (quietNRILog) Warnf(context.Context, string, ...any)  {}
func (quietNRILog) Errorf(context.Context, string, ...any) {}

// nriPod is a pod sandbox as containerd 2.x hands it to NRI plugins.
func nriPod(i int) *api.PodSandbox {
	name := fmt.Sprintf("web-7d4b9c6f5-%05d", i)
	uid := fmt.Sprintf("0b6f0c1e-1f7a-4c33-9a57-%012d", i)
	return &api.PodSandbox{
		Id: fmt.Sprintf("%064x", i+1), Name: name, Uid: uid, Namespace: "default",
		Labels: map[string]string{"app": "web", "pod-template-hash": "7d4b9c6f5", "io.kubernetes.pod.name": name,
			"io.kubernetes.pod.namespace": "default", "io.kubernetes.pod.uid": uid},
		Annotations:    map[string]string{"kubernetes.io/config.seen": "2026-11-22T10:00:00Z", "kubernetes.io/config.source": "api"},
		RuntimeHandler: "runc",
		Linux: &api.LinuxPodSandbox{
			CgroupParent: "/kubepods/besteffort/pod" + uid,
			CgroupsPath:  "/kubepods/besteffort/pod" + uid + "/" + fmt.Sprintf("%064x", i+1),
			Namespaces: []*api.LinuxNamespace{{Type: "ipc"}, {Type: "uts"},
				{Type: "network", Path: fmt.Sprintf("/var/run/netns/cni-%08x-1f7a-4c33-9a57-0e2f1c1f4a10", i)}},
		},
		Pid: uint32(10000 + i), Ips: []string{fmt.Sprintf("10.0.%d.%d", i/256%256, i%256)},
	}
}

func measureHook(t testing.TB, s *section) error {
	s.methodf("**In process.** Go benchmarks (`testing.Benchmark`, `b.Loop`, allocations reported) of the decision path. " +
		"The supervisor runs three gating checks like the `eks` preset (file checks standing in for cni-config, vpc-cni-ipamd, " +
		"kube-proxy-rules, so that the snapshot is realistic without touching the host) and a snapshot warmed by one refresh; " +
		"the logger discards its output but still formats every enabled line. `Admit` is the whole hook: one atomic load of the " +
		"snapshot, `Decide`, the log call, the metrics observation (metrics are on by default, so the hook observes every pod). " +
		"The same benchmarks run alone with `go test -run '^$' -bench . -benchmem ./test/bench`.")
	type bres struct {
		name, what string
		fn         func(*testing.B)
	}
	var rows []struct {
		name, what string
		r          testing.BenchmarkResult
	}
	for _, br := range []bres{
		{"Decide", "gate.Policy.Decide, ready snapshot (admit)", BenchmarkDecide},
		{"DecideReject", "Decide, one failing check (reject, message built)", BenchmarkDecideReject},
		{"Admit", "Supervisor.Admit, ready, log level info (default)", BenchmarkAdmit},
		{"AdmitDebug", "Supervisor.Admit, ready, log level debug (admission line formatted)", BenchmarkAdmitDebug},
		{"AdmitReject", "Supervisor.Admit, failing check (warning logged, refresh kicked)", BenchmarkAdmitReject},
	} {
		say("  benchmark %s", br.name)
		r := testing.Benchmark(br.fn)
		if r.N == 0 {
			return fmt.Errorf("benchmark %s did not run (it failed)", br.name)
		}
		say("  %s: %d ns/op, %d B/op, %d allocs/op (%d iterations)", br.name, r.NsPerOp(), r.AllocedBytesPerOp(), r.AllocsPerOp(), r.N)
		rows = append(rows, struct {
			name, what string
			r          testing.BenchmarkResult
		}{br.name, br.what, r})
	}
	s.printf("| benchmark | what | ns/op | B/op | allocs/op | iterations |\n|---|---|---|---|---|---|\n")
	for _, r := range rows {
		s.printf("| Benchmark%s | %s | %d | %d | %d | %d |\n", r.name, r.what, r.r.NsPerOp(), r.r.AllocedBytesPerOp(), r.r.AllocsPerOp(), r.r.N)
	}
	s.printf("\n")
	admitNs := time.Duration(rows[2].r.NsPerOp())
	if extra := rows[2].r.AllocsPerOp() - rows[0].r.AllocsPerOp(); extra > 0 {
		s.notef("`Admit` at the default level allocates %d times (%d B) per call where `Decide` allocates %d: the log entry's "+
			"fields (pod name, verdict) are built before the logger drops the debug line. Harmless at this size; a level check "+
			"first would make the admit path allocation-free.", rows[2].r.AllocsPerOp(), rows[2].r.AllocedBytesPerOp(), rows[0].r.AllocsPerOp())
	}
	s.row("hook decision in process (`Supervisor.Admit`, ready, default log level)", fmt.Sprintf("%s/op, %d allocs/op", fmtDur(admitNs), rows[2].r.AllocsPerOp()),
		"<= 100 µs", yesNo(admitNs <= hookTarget))
	s.row("`gate.Policy.Decide` alone", fmt.Sprintf("%s/op, %d allocs/op", fmtDur(time.Duration(rows[0].r.NsPerOp())), rows[0].r.AllocsPerOp()), "", "")

	return measureHookNRI(t, s)
}

// nriRuntime is containerd's side of NRI on a socket in a temporary directory.
type nriRuntime struct {
	r    *adaptation.Adaptation
	dir  string
	sock string
}

func startNRIRuntime() (*nriRuntime, error) {
	dir, err := os.MkdirTemp("", "sg-bench-nri-") // short: unix socket path limit
	if err != nil {
		return nil, err
	}
	syncFn := func(ctx context.Context, cb adaptation.SyncCB) error { _, err := cb(ctx, nil, nil); return err }
	updateFn := func(context.Context, []*api.ContainerUpdate) ([]*api.ContainerUpdate, error) { return nil, nil }
	sock := filepath.Join(dir, "nri.sock")
	r, err := adaptation.New("bench-containerd", "v2.2.9", syncFn, updateFn,
		adaptation.WithPluginPath(filepath.Join(dir, "plugins")), adaptation.WithPluginConfigPath(filepath.Join(dir, "conf.d")),
		adaptation.WithSocketPath(sock))
	if err == nil {
		err = r.Start()
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("NRI runtime side: %w", err)
	}
	return &nriRuntime{r: r, dir: dir, sock: sock}, nil
}

func (n *nriRuntime) stop() {
	n.r.Stop()
	os.RemoveAll(n.dir)
}

// runPod is what containerd's CRI does for the hook: block plugin sync, RunPodSandbox.
func (n *nriRuntime) runPod(i int) error {
	b := n.r.BlockPluginSync()
	defer b.Unblock()
	return n.r.RunPodSandbox(context.Background(), &api.RunPodSandboxRequest{Pod: nriPod(i)})
}

// nriTarget is one plugin behind its own runtime side, ready to be timed.
type nriTarget struct {
	name    string
	rt      *nriRuntime
	calls   func() int64 // calls the plugin has received, when it can tell
	after   func() error // a check once timing is over (still connected, calls counted)
	stop    func() error
	samples durations
	wall    time.Duration
}

// timeInterleaved makes warm calls to every target, then times calls to each, in blocks that
// rotate between the targets so that drift and other work on the machine hit them alike.
func timeInterleaved(targets []*nriTarget, warm, calls, block int) error {
	for _, tg := range targets {
		for i := range warm {
			if err := tg.rt.runPod(i); err != nil {
				return fmt.Errorf("%s: warm-up RunPodSandbox: %w", tg.name, err)
			}
		}
		tg.samples = make(durations, 0, calls)
	}
	runtime.GC() // the benchmarks before left garbage; do not collect it during the series
	for round := 0; len(targets[0].samples) < calls; round++ {
		for k := range targets {
			tg := targets[(round+k)%len(targets)]
			n := min(block, calls-len(tg.samples))
			begin := time.Now()
			for i := range n {
				start := time.Now()
				if err := tg.rt.runPod(100000 + len(tg.samples) + i); err != nil {
					return fmt.Errorf("%s: RunPodSandbox through NRI: %w", tg.name, err)
				}
				tg.samples = append(tg.samples, time.Since(start))
			}
			tg.wall += time.Since(begin)
		}
	}
	return nil
}

// measureHookNRI times RunPodSandbox through the runtime side of NRI (what containerd embeds)
// to the real nriplugin.Plugin with the real supervisor behind it, over a unix socket: in this
// process, and the real binary as a process of its own, each next to a no-op plugin.
func measureHookNRI(t testing.TB, s *section) error {
	calls, warm, block := iterations(5000, 300), 300, 250
	s.methodf("**Through NRI.** containerd's side of NRI (`github.com/containerd/nri/pkg/adaptation`, the code containerd "+
		"embeds) runs in the benchmark process, one instance per row, each on a unix socket in a temporary directory. (a) The real "+
		"`nriplugin.Plugin` connects to it from the same process as an external plugin, with the real supervisor behind it (same three "+
		"passing checks, started, so its refresh loop runs every second as in production); the plugin side also times the "+
		"admitter call. (b) The real binary (`bin/sandbox-guard run --config ... --nri-socket ...`, the same checks, log level "+
		"info, metrics on) connects as a process of its own, as with containerd; before timing it was seen to refuse a pod while a check "+
		"failed, and after timing to refuse one again, so every timed call went through it. (a0) and (b0) are NRI's floor: the "+
		"same `nriplugin.Plugin` with an admitter that returns at once, in this process and as a process of its own (this "+
		"binary again), counting the calls it gets. Each row is %d `RunPodSandbox` calls after %d warm-up calls, made as "+
		"containerd's CRI makes them (`BlockPluginSync`, then `RunPodSandbox` with a kubelet-shaped pod: labels, annotations, "+
		"Linux namespaces, cgroup paths, IP), one after the other as NRI serialises them, timed on the runtime side. The four "+
		"plugins are connected at the same time and the calls go to them in blocks of %d, rotating, so that other work on the "+
		"machine hits all rows alike.", calls, warm, block)
	nrilog.Set(quietNRILog{})

	a, _ := hookAgent(t, t.TempDir(), true, logrus.InfoLevel)
	ta := &timedAdmitter{a: a, took: make([]time.Duration, 0, calls+warm+100)}

	var targets []*nriTarget
	defer func() {
		for _, tg := range targets {
			if tg.stop != nil {
				_ = tg.stop()
			}
			tg.rt.stop()
		}
	}()
	for _, start := range []func() (*nriTarget, error){
		func() (*nriTarget, error) {
			return startInProcess(t, "(a0) no-op plugin in the same process (NRI's floor)", admitFunc(func(context.Context, gate.Pod) error { return nil }))
		},
		func() (*nriTarget, error) {
			return startInProcess(t, "(a) plugin + supervisor in the same process", ta)
		},
		func() (*nriTarget, error) {
			return startNoopProcess("(b0) no-op plugin as its own process (NRI's floor)")
		},
		func() (*nriTarget, error) { return startRealBinary(t, "(b) the real binary as its own process") },
	} {
		tg, err := start()
		if err != nil {
			return err
		}
		targets = append(targets, tg)
	}
	before := make([]int64, len(targets))
	for i, tg := range targets {
		if tg.calls != nil {
			before[i] = tg.calls()
		}
	}
	if err := timeInterleaved(targets, warm, calls, block); err != nil {
		return err
	}
	inPlugin := durations(ta.took[len(ta.took)-calls:])
	for i, tg := range targets {
		if tg.after != nil { // while it runs: still connected?
			if err := tg.after(); err != nil {
				return fmt.Errorf("%s after the timed calls: %w", tg.name, err)
			}
		}
		if tg.stop != nil { // then stop: the no-op process reports its count when it exits
			if err := tg.stop(); err != nil {
				return fmt.Errorf("%s: %w", tg.name, err)
			}
			tg.stop = nil
		}
		if tg.calls != nil {
			if got := tg.calls() - before[i]; got < int64(calls+warm) {
				return fmt.Errorf("%s: %d calls reached the plugin, want %d", tg.name, got, calls+warm)
			}
		}
		say("  %-55s p50 %-9s p99 %-9s max %s", tg.name, fmtDur(tg.samples.median()), fmtDur(tg.samples.q(0.99)), fmtDur(tg.samples.max()))
	}
	say("  %-55s p50 %-9s p99 %-9s max %s", "(a) inside the plugin (Admit)", fmtDur(inPlugin.median()), fmtDur(inPlugin.q(0.99)), fmtDur(inPlugin.max()))

	s.printf("| %d calls through NRI | p50 | p90 | p99 | p99.9 | max | calls > 100 µs | calls/s |\n|---|---|---|---|---|---|---|---|\n", calls)
	over := func(d durations) string {
		n := 0
		for _, x := range d {
			if x > hookTarget {
				n++
			}
		}
		return fmt.Sprintf("%.1f%%", 100*float64(n)/float64(len(d)))
	}
	rowf := func(name string, d durations, wall time.Duration) {
		rate := "-"
		if wall > 0 {
			rate = fmt.Sprintf("%.0f", float64(len(d))/wall.Seconds())
		}
		s.printf("| %s | %s | %s | %s | %s | %s | %s | %s |\n", name, fmtDur(d.median()), fmtDur(d.q(0.9)), fmtDur(d.q(0.99)), fmtDur(d.q(0.999)), fmtDur(d.max()), over(d), rate)
	}
	for i, tg := range targets {
		rowf(tg.name+", round trip", tg.samples, tg.wall)
		if i == 1 {
			rowf("(a) inside the plugin: the `Admit` call", inPlugin, 0)
		}
	}
	s.printf("\n")
	noop, inproc, extNoop, ext := targets[0].samples, targets[1].samples, targets[2].samples, targets[3].samples
	s.row("hook inside the plugin (Admit) through NRI, p50 / p99", fmt.Sprintf("%s / %s", fmtDur(inPlugin.median()), fmtDur(inPlugin.q(0.99))),
		"p99 <= 100 µs", yesNo(inPlugin.q(0.99) <= hookTarget))
	verdict := func(d, floor durations) string {
		m := yesNo(d.q(0.99) <= hookTarget)
		if d.q(0.99) > hookTarget {
			m += fmt.Sprintf("; NRI's floor alone is p99 %s (the plugin adds %s at p50, %s at p99)", fmtDur(floor.q(0.99)),
				signedDur(d.median()-floor.median()), signedDur(d.q(0.99)-floor.q(0.99)))
		}
		return m
	}
	s.row("hook round trip through NRI, plugin in process, p50 / p99", fmt.Sprintf("%s / %s (no-op floor %s / %s)",
		fmtDur(inproc.median()), fmtDur(inproc.q(0.99)), fmtDur(noop.median()), fmtDur(noop.q(0.99))), "p99 <= 100 µs", verdict(inproc, noop))
	s.row("hook round trip through NRI, real binary as its own process, p50 / p99", fmt.Sprintf("%s / %s (no-op floor %s / %s)",
		fmtDur(ext.median()), fmtDur(ext.q(0.99)), fmtDur(extNoop.median()), fmtDur(extNoop.q(0.99))), "p99 <= 100 µs", verdict(ext, extNoop))
	s.notef("The hook's own work is the in-process `Admit` number and the \"inside the plugin\" row: one atomic load, a map lookup " +
		"or two, no I/O. The rest of a round trip is NRI's transport (ttrpc over a unix socket, protobuf of the whole pod, " +
		"goroutine and thread wake-ups on both sides), which every NRI plugin pays, as the no-op rows show: they are the same " +
		"`nriplugin.Plugin` with an admitter that returns at once. containerd pays it once per plugin per sandbox, under NRI's " +
		"node-wide lock; a pod start takes hundreds of milliseconds (section 2).")
	s.notef("Plugin minus floor at the median: %s in process, %s as its own process (run-to-run noise is tens of µs); the rest is the transport.",
		signedDur(inproc.median()-noop.median()), signedDur(ext.median()-extNoop.median()))
	if inproc.q(0.99) > hookTarget || ext.q(0.99) > hookTarget {
		s.notef("Round trips above 100 µs are mostly the transport: between two processes each message wakes a sleeping thread " +
			"of the other process (futex wake-up and scheduling on a 2-core VM), which the no-op plugin pays just the same. The " +
			"target holds for the hook itself, not for NRI's transport on this machine; nothing inside the hook can shorten the " +
			"transport.")
		if gap := ext.q(0.99) - extNoop.q(0.99); gap > 50*time.Microsecond {
			s.notef("The real binary's tail is above the no-op process's (p99 %s): its own background work (the refresh loop "+
				"every second, garbage collection of a heap that holds the AWS SDK and containerd client) shares the 2 cores "+
				"with the calls. At the median the two differ by %s.", signedDur(gap), signedDur(ext.median()-extNoop.median()))
		}
	}
	return nil
}

// admitFunc adapts a function to nriplugin.Admitter.
type admitFunc func(context.Context, gate.Pod) error

func (f admitFunc) Admit(ctx context.Context, pod gate.Pod) error { return f(ctx, pod) }

// countingAdmitter counts calls into an admitter.
type countingAdmitter struct {
	a     nriplugin.Admitter
	calls atomic.Int64
}

func (c *countingAdmitter) Admit(ctx context.Context, pod gate.Pod) error {
	c.calls.Add(1)
	return c.a.Admit(ctx, pod)
}

// startInProcess connects an nriplugin.Plugin with admitter behind it, in this process, to a
// fresh runtime side.
func startInProcess(t testing.TB, name string, admitter nriplugin.Admitter) (*nriTarget, error) {
	rt, err := startNRIRuntime()
	if err != nil {
		return nil, err
	}
	ca := &countingAdmitter{a: admitter}
	p := nriplugin.New(testutil.Context(testutil.QuietLogger()), nriplugin.Options{SocketPath: rt.sock, Name: "sandbox-guard", Idx: "10",
		Reconnect: backoff.Policy{Initial: 10 * time.Millisecond, Max: 100 * time.Millisecond}})
	p.SetAdmitter(ca)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	tg := &nriTarget{name: name, rt: rt, calls: ca.calls.Load, stop: func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			return errors.New("the NRI plugin did not stop")
		}
	}}
	// The runtime registers the plugin a little after Configure: wait until calls reach it.
	if err := pollEvery(20*time.Second, 5*time.Millisecond, func() error {
		if err := rt.runPod(0); err != nil {
			return err
		}
		if ca.calls.Load() == 0 {
			return errors.New("the plugin never received a RunPodSandbox through NRI")
		}
		return nil
	}); err != nil {
		_ = tg.stop()
		rt.stop()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return tg, nil
}

const noopEnv = "SG_BENCH_NRI_NOOP_CHILD"

// TestNRINoopChild is a no-op NRI plugin process (nriplugin.Plugin admitting every pod at
// once) for the transport floor; it does nothing unless started by startNoopProcess.
func TestNRINoopChild(t *testing.T) {
	sock := os.Getenv(noopEnv)
	if sock == "" {
		t.Skip("only run by the benchmark")
	}
	nrilog.Set(quietNRILog{})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	var calls atomic.Int64
	p := nriplugin.New(clog.WithLogger(ctx, logrus.NewEntry(testutil.QuietLogger())), nriplugin.Options{SocketPath: sock, Name: "noop", Idx: "10"})
	p.SetAdmitter(admitFunc(func(context.Context, gate.Pod) error {
		if calls.Add(1) == 1 {
			fmt.Println("SGBENCH-NOOP-FIRST-CALL")
		}
		return nil
	}))
	if err := p.Run(ctx); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("SGBENCH-NOOP-CALLS %d\n", calls.Load())
}

// lockedBuffer is a bytes.Buffer safe for a writing process and a reading poller.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startProcess starts cmd with its output in a buffer and returns a stop function (SIGTERM,
// then SIGKILL after 10 s) that may be called more than once.
func startProcess(cmd *exec.Cmd) (*lockedBuffer, func() error, error) {
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var once sync.Once
	var stopErr error
	return out, func() error {
		once.Do(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case stopErr = <-exited:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				_ = <-exited // killed: the exit status says no more than that
				stopErr = fmt.Errorf("%s ignored SIGTERM", cmd.Path)
			}
		})
		return stopErr
	}, nil
}

// startNoopProcess connects a no-op plugin that is a process of its own (this binary again,
// TestNRINoopChild) to a fresh runtime side.
func startNoopProcess(name string) (*nriTarget, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	rt, err := startNRIRuntime()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, "-test.run", "^TestNRINoopChild$", "-test.count", "1")
	cmd.Env = append(os.Environ(), noopEnv+"="+rt.sock)
	out, stop, err := startProcess(cmd)
	if err != nil {
		rt.stop()
		return nil, err
	}
	counted := func() int64 { // what the child printed when it exited
		var got int64
		for _, line := range strings.Split(out.String(), "\n") {
			if rest, ok := strings.CutPrefix(line, "SGBENCH-NOOP-CALLS "); ok {
				got, _ = strconv.ParseInt(strings.TrimSpace(rest), 10, 64) // garbled: 0, reported as too few calls
			}
		}
		return got
	}
	tg := &nriTarget{name: name, rt: rt, calls: counted, stop: stop}
	if err := pollEvery(20*time.Second, 5*time.Millisecond, func() error {
		if err := rt.runPod(0); err != nil {
			return err
		}
		if !strings.Contains(out.String(), "SGBENCH-NOOP-FIRST-CALL") {
			return fmt.Errorf("no call reached the no-op plugin: %s", lastLines(out.String(), 5))
		}
		return nil
	}); err != nil {
		_ = stop()
		rt.stop()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return tg, nil
}

// startRealBinary connects the real plugin binary (`run`, external mode) to a fresh runtime
// side, having seen it refuse a pod while a check failed and admit once it passed. Its after
// check removes the marker again and waits for a refusal: it was connected all along.
func startRealBinary(t testing.TB, name string) (*nriTarget, error) {
	bin := os.Getenv("SG_PLUGIN")
	if bin == "" {
		return nil, errors.New("SG_PLUGIN is not set (make bench sets it)")
	}
	rt, err := startNRIRuntime()
	if err != nil {
		return nil, err
	}
	dir := t.TempDir()
	var paths []string
	for _, n := range []string{"cni", "ipamd", "kube-proxy"} {
		paths = append(paths, filepath.Join(dir, n))
	}
	for _, p := range paths[:2] {
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			rt.stop()
			return nil, err
		}
	}
	cfgFile := filepath.Join(dir, "config.yaml")
	// Metrics on, as by default, but on a free loopback port: this process runs in the host's
	// network namespace, where the default port may be taken.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		rt.stop()
		return nil, err
	}
	metricsAddr := l.Addr().String()
	_ = l.Close() // only reserved the port
	doc := fmt.Sprintf("mode: enforce\npreset: none\nsandboxImage: \"\"\nlog: {level: info}\nmetrics: {address: %q}\nchecks:\n"+
		"- {name: cni-config, file: {path: %s}}\n- {name: vpc-cni-ipamd, file: {path: %s}}\n- {name: kube-proxy-rules, file: {path: %s}}\n",
		metricsAddr, paths[0], paths[1], paths[2])
	if err := os.WriteFile(cfgFile, []byte(doc), 0o600); err != nil {
		rt.stop()
		return nil, err
	}
	out, stop, err := startProcess(exec.Command(bin, "run", "--config", cfgFile, "--nri-socket", rt.sock))
	if err != nil {
		rt.stop()
		return nil, err
	}
	refused := func(within time.Duration) error {
		return pollEvery(within, 5*time.Millisecond, func() error {
			err := rt.runPod(0)
			if err != nil && strings.Contains(err.Error(), "kube-proxy-rules") {
				return nil
			}
			return fmt.Errorf("RunPodSandbox = %v, want the plugin's refusal; plugin log: %s", err, lastLines(out.String(), 5))
		})
	}
	fail := func(err error) (*nriTarget, error) {
		_ = stop()
		rt.stop()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if err := refused(20 * time.Second); err != nil {
		return fail(err)
	}
	if err := os.WriteFile(paths[2], nil, 0o600); err != nil {
		return fail(err)
	}
	if err := pollEvery(10*time.Second, 5*time.Millisecond, func() error { return rt.runPod(0) }); err != nil {
		return fail(fmt.Errorf("not admitted once every check passes: %w", err))
	}
	return &nriTarget{name: name, rt: rt, stop: stop, after: func() error {
		if err := os.Remove(paths[2]); err != nil {
			return err
		}
		return refused(10 * time.Second)
	}}, nil
}

// pollEvery polls cond every interval until it returns nil or within has passed.
func pollEvery(within, interval time.Duration, cond func() error) error {
	deadline := time.Now().Add(within)
	for {
		err := cond()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(interval)
	}
}
