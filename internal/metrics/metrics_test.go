package metrics

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// header is the HELP and TYPE lines of one metric family.
func header(metric, help, typ string) string {
	return fmt.Sprintf("# HELP %s %s\n# TYPE %s %s\n", metric, help, metric, typ)
}

// histogramText is the exposition of one histogram series after obs were observed in order.
func histogramText(metric, labels string, buckets, obs []float64) string {
	var b strings.Builder
	sep := ""
	if labels != "" {
		sep = ","
	}
	sum := 0.0
	for _, o := range obs {
		sum += o
	}
	for _, ub := range buckets {
		n := 0
		for _, o := range obs {
			if o <= ub {
				n++
			}
		}
		fmt.Fprintf(&b, "%s_bucket{%s%sle=\"%s\"} %d\n", metric, labels, sep, strconv.FormatFloat(ub, 'g', -1, 64), n)
	}
	fmt.Fprintf(&b, "%s_bucket{%s%sle=\"+Inf\"} %d\n", metric, labels, sep, len(obs))
	braces := ""
	if labels != "" {
		braces = "{" + labels + "}"
	}
	fmt.Fprintf(&b, "%s_sum%s %s\n%s_count%s %d\n", metric, braces, strconv.FormatFloat(sum, 'g', -1, 64), metric, braces, len(obs))
	return b.String()
}

// compare asserts the exact exposition of the named metrics (absent families must be absent).
func compare(t *testing.T, m *Metrics, want string, names ...string) {
	t.Helper()
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
}

// sampleCount is the observation count of a histogram series with the given label values.
func sampleCount(t *testing.T, m *Metrics, metric string, labels map[string]string) uint64 {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != metric {
			continue
		}
	series:
		for _, s := range mf.GetMetric() {
			for _, lp := range s.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue series
				}
			}
			return s.GetHistogram().GetSampleCount()
		}
	}
	return 0
}

func TestObservePod(t *testing.T) {
	m := New()
	type step struct {
		verdict    string
		failing    []string
		took       time.Duration
		pods       string // expected sandbox_guard_pods_total samples
		rejections string // expected sandbox_guard_pod_rejections_total samples
	}
	steps := []step{
		{"admit", nil, 2 * time.Microsecond,
			`sandbox_guard_pods_total{verdict="admit"} 1
sandbox_guard_pods_total{verdict="reject"} 0
sandbox_guard_pods_total{verdict="would-reject"} 0
`, ""},
		{"reject", []string{"kube-proxy-rules", "cni-config"}, 7 * time.Microsecond,
			`sandbox_guard_pods_total{verdict="admit"} 1
sandbox_guard_pods_total{verdict="reject"} 1
sandbox_guard_pods_total{verdict="would-reject"} 0
`, `sandbox_guard_pod_rejections_total{check="cni-config",verdict="reject"} 1
sandbox_guard_pod_rejections_total{check="kube-proxy-rules",verdict="reject"} 1
`},
		{"reject", []string{"kube-proxy-rules"}, 30 * time.Microsecond,
			`sandbox_guard_pods_total{verdict="admit"} 1
sandbox_guard_pods_total{verdict="reject"} 2
sandbox_guard_pods_total{verdict="would-reject"} 0
`, `sandbox_guard_pod_rejections_total{check="cni-config",verdict="reject"} 1
sandbox_guard_pod_rejections_total{check="kube-proxy-rules",verdict="reject"} 2
`},
		{"would-reject", []string{"kube-proxy-rules"}, 3 * time.Millisecond,
			`sandbox_guard_pods_total{verdict="admit"} 1
sandbox_guard_pods_total{verdict="reject"} 2
sandbox_guard_pods_total{verdict="would-reject"} 1
`, `sandbox_guard_pod_rejections_total{check="cni-config",verdict="reject"} 1
sandbox_guard_pod_rejections_total{check="kube-proxy-rules",verdict="reject"} 2
sandbox_guard_pod_rejections_total{check="kube-proxy-rules",verdict="would-reject"} 1
`},
		{"bogus", []string{"cni-config"}, time.Second,
			`sandbox_guard_pods_total{verdict="_other"} 1
sandbox_guard_pods_total{verdict="admit"} 1
sandbox_guard_pods_total{verdict="reject"} 2
sandbox_guard_pods_total{verdict="would-reject"} 1
`, `sandbox_guard_pod_rejections_total{check="cni-config",verdict="_other"} 1
sandbox_guard_pod_rejections_total{check="cni-config",verdict="reject"} 1
sandbox_guard_pod_rejections_total{check="kube-proxy-rules",verdict="reject"} 2
sandbox_guard_pod_rejections_total{check="kube-proxy-rules",verdict="would-reject"} 1
`},
		{"admit", []string{}, 0,
			`sandbox_guard_pods_total{verdict="_other"} 1
sandbox_guard_pods_total{verdict="admit"} 2
sandbox_guard_pods_total{verdict="reject"} 2
sandbox_guard_pods_total{verdict="would-reject"} 1
`, `sandbox_guard_pod_rejections_total{check="cni-config",verdict="_other"} 1
sandbox_guard_pod_rejections_total{check="cni-config",verdict="reject"} 1
sandbox_guard_pod_rejections_total{check="kube-proxy-rules",verdict="reject"} 2
sandbox_guard_pod_rejections_total{check="kube-proxy-rules",verdict="would-reject"} 1
`},
	}
	var obs []float64
	for i, s := range steps {
		t.Run(fmt.Sprintf("%d-%s", i, s.verdict), func(t *testing.T) {
			m.ObservePod(s.verdict, s.failing, s.took)
			obs = append(obs, s.took.Seconds())
			want := header("sandbox_guard_pods_total", helpPods, "counter") + s.pods
			if s.rejections != "" {
				want += header("sandbox_guard_pod_rejections_total", helpRejections, "counter") + s.rejections
			}
			want += header("sandbox_guard_hook_duration_seconds", helpHook, "histogram") +
				histogramText("sandbox_guard_hook_duration_seconds", "", HookBuckets(), obs)
			compare(t, m, want, "sandbox_guard_pods_total", "sandbox_guard_pod_rejections_total", "sandbox_guard_hook_duration_seconds")
			if got := sampleCount(t, m, "sandbox_guard_hook_duration_seconds", nil); got != uint64(i+1) {
				t.Errorf("hook histogram count = %d, want %d", got, i+1)
			}
			admits := 0
			for _, done := range steps[:i+1] {
				if done.verdict == "admit" {
					admits++
				}
			}
			if got := testutil.ToFloat64(m.pods[verdictIndex("admit")]); got != float64(admits) {
				t.Errorf("admit counter = %v, want %d", got, admits)
			}
		})
	}
}

func TestHookBuckets(t *testing.T) {
	b := HookBuckets()
	if b[0] != 1e-6 || b[len(b)-1] != 0.05 {
		t.Fatalf("hook buckets span %v..%v, want 1e-06..0.05", b[0], b[len(b)-1])
	}
	for i := 1; i < len(b); i++ {
		if b[i] <= b[i-1] || b[i]/b[i-1] > 2.5+1e-9 {
			t.Fatalf("hook buckets not increasing finely enough at %d: %v", i, b)
		}
	}
	// Each typical hook duration lands in its own bucket.
	m := New()
	for _, d := range []time.Duration{time.Microsecond, 10 * time.Microsecond, 100 * time.Microsecond, time.Millisecond, 10 * time.Millisecond} {
		m.ObservePod("admit", nil, d)
	}
	want := header("sandbox_guard_hook_duration_seconds", helpHook, "histogram") +
		histogramText("sandbox_guard_hook_duration_seconds", "", b, []float64{1e-6, 1e-5, 1e-4, 1e-3, 1e-2})
	compare(t, m, want, "sandbox_guard_hook_duration_seconds")
	HookBuckets()[0] = 42 // callers get a copy
	if HookBuckets()[0] != 1e-6 {
		t.Fatal("HookBuckets shares its slice")
	}
}

func TestWatchChecks(t *testing.T) {
	res := func(name, kind string, ok bool, took time.Duration) Check {
		return Check{Name: name, Kind: kind, OK: ok, Took: took}
	}
	okHdr := header("sandbox_guard_check_ok", helpCheckOK, "gauge")
	tookHdr := header("sandbox_guard_check_duration_seconds", helpCheckTook, "gauge")
	readyHdr := header("sandbox_guard_ready", helpReady, "gauge")
	tests := []struct {
		name   string
		none   bool // no source
		checks []Check
		ready  bool
		want   string
	}{
		{"no source yet", true, nil, false, readyHdr + "sandbox_guard_ready 0\n"},
		{"all ok", false, []Check{
			res("kube-proxy-rules", "iptables", true, 1500*time.Microsecond),
			res("cni-config", "cni", true, 250*time.Millisecond),
		}, true, okHdr +
			`sandbox_guard_check_ok{check="cni-config",kind="cni"} 1
sandbox_guard_check_ok{check="kube-proxy-rules",kind="iptables"} 1
` + tookHdr +
			`sandbox_guard_check_duration_seconds{check="cni-config"} 0.25
sandbox_guard_check_duration_seconds{check="kube-proxy-rules"} 0.0015
` + readyHdr + "sandbox_guard_ready 1\n"},
		{"one fails", false, []Check{
			res("kube-proxy-rules", "iptables", false, time.Millisecond),
			res("cni-config", "cni", true, 2*time.Millisecond),
		}, false, okHdr +
			`sandbox_guard_check_ok{check="cni-config",kind="cni"} 1
sandbox_guard_check_ok{check="kube-proxy-rules",kind="iptables"} 0
` + tookHdr +
			`sandbox_guard_check_duration_seconds{check="cni-config"} 0.002
sandbox_guard_check_duration_seconds{check="kube-proxy-rules"} 0.001
` + readyHdr + "sandbox_guard_ready 0\n"},
		{"checks replaced, duplicates once", false, []Check{
			res("marker", "file", true, 0),
			res("dns", "socket", false, 3*time.Second),
			res("marker", "file", false, time.Second),
		}, false, okHdr +
			`sandbox_guard_check_ok{check="dns",kind="socket"} 0
sandbox_guard_check_ok{check="marker",kind="file"} 1
` + tookHdr +
			`sandbox_guard_check_duration_seconds{check="dns"} 3
sandbox_guard_check_duration_seconds{check="marker"} 0
` + readyHdr + "sandbox_guard_ready 0\n"},
		{"no checks, ready", false, []Check{}, true, readyHdr + "sandbox_guard_ready 1\n"},
		{"source removed", true, nil, false, readyHdr + "sandbox_guard_ready 0\n"},
	}
	m := New()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.none {
				m.WatchChecks(nil)
			} else {
				m.WatchChecks(func() ([]Check, bool) { return tt.checks, tt.ready })
			}
			compare(t, m, tt.want, "sandbox_guard_check_ok", "sandbox_guard_check_duration_seconds", "sandbox_guard_ready")
		})
	}
}

func TestWatchImages(t *testing.T) {
	repaired := time.Unix(1700000000, 500000000)
	hdr := func(n, help string) string { return header(n, help, "gauge") }
	tests := []struct {
		name string
		st   []Image
		want string
	}{
		{"none yet", nil, ""},
		{"present and pinned, never repaired", []Image{
			{Name: "602401143452.dkr.ecr.us-west-2.amazonaws.com/eks/pause:3.10", Role: "sandbox image", Present: true, Pinned: true},
		}, hdr("sandbox_guard_image_present", helpImagePresent) +
			`sandbox_guard_image_present{image="602401143452.dkr.ecr.us-west-2.amazonaws.com/eks/pause:3.10",role="sandbox image"} 1
` + hdr("sandbox_guard_image_pinned", helpImagePinned) +
			`sandbox_guard_image_pinned{image="602401143452.dkr.ecr.us-west-2.amazonaws.com/eks/pause:3.10",role="sandbox image"} 1
` + hdr("sandbox_guard_image_repairs", helpImageRepairs) +
			`sandbox_guard_image_repairs{image="602401143452.dkr.ecr.us-west-2.amazonaws.com/eks/pause:3.10",role="sandbox image"} 0
`},
		{"repaired twice, second missing", []Image{
			{Name: "registry.k8s.io/pause:3.10", Role: "sandbox image", Present: true, Pinned: true, LastRepair: repaired, Repairs: 2},
			{Name: "docker.io/library/busybox:1", Role: "pinned image"},
			{Name: "registry.k8s.io/pause:3.10", Role: "sandbox image"}, // duplicate: ignored
		}, hdr("sandbox_guard_image_present", helpImagePresent) +
			`sandbox_guard_image_present{image="docker.io/library/busybox:1",role="pinned image"} 0
sandbox_guard_image_present{image="registry.k8s.io/pause:3.10",role="sandbox image"} 1
` + hdr("sandbox_guard_image_pinned", helpImagePinned) +
			`sandbox_guard_image_pinned{image="docker.io/library/busybox:1",role="pinned image"} 0
sandbox_guard_image_pinned{image="registry.k8s.io/pause:3.10",role="sandbox image"} 1
` + hdr("sandbox_guard_image_last_repair_timestamp_seconds", helpImageRepair) +
			`sandbox_guard_image_last_repair_timestamp_seconds{image="registry.k8s.io/pause:3.10",role="sandbox image"} 1.7000000005e+09
` + hdr("sandbox_guard_image_repairs", helpImageRepairs) +
			`sandbox_guard_image_repairs{image="docker.io/library/busybox:1",role="pinned image"} 0
sandbox_guard_image_repairs{image="registry.k8s.io/pause:3.10",role="sandbox image"} 2
`},
		{"emptied", []Image{}, ""},
	}
	m := New()
	names := []string{"sandbox_guard_image_present", "sandbox_guard_image_pinned", "sandbox_guard_image_last_repair_timestamp_seconds", "sandbox_guard_image_repairs"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m.WatchImages(func() []Image { return tt.st })
			compare(t, m, tt.want, names...)
		})
	}

	// The source is read at every scrape: its owner's change shows at the next one.
	st := []Image{{Name: "a", Role: "pinned image", Present: true}}
	m.WatchImages(func() []Image { return st })
	compare(t, m, hdr("sandbox_guard_image_present", helpImagePresent)+`sandbox_guard_image_present{image="a",role="pinned image"} 1
`, "sandbox_guard_image_present")
	st = []Image{{Name: "a", Role: "pinned image"}}
	compare(t, m, hdr("sandbox_guard_image_present", helpImagePresent)+`sandbox_guard_image_present{image="a",role="pinned image"} 0
`, "sandbox_guard_image_present")

	// A local copy that cannot be kept (a full state directory) shows, as the log may be full too.
	st = []Image{{Name: "a", Role: "sandbox image", Present: true, CopyFailing: true}, {Name: "b", Role: "pinned image", Present: true}}
	compare(t, m, hdr("sandbox_guard_image_local_copy_failing", helpImageCopyFailing)+`sandbox_guard_image_local_copy_failing{image="a",role="sandbox image"} 1
sandbox_guard_image_local_copy_failing{image="b",role="pinned image"} 0
`, "sandbox_guard_image_local_copy_failing")
}

func TestObserveEnsure(t *testing.T) {
	const pause = "registry.k8s.io/pause:3.10"
	type call struct {
		image, outcome, source string
		took                   time.Duration
	}
	tests := []struct {
		call
		ensures   string
		pullCount uint64 // pulls of pause so far
	}{
		{call{pause, "present", pause, 0}, `sandbox_guard_image_ensures_total{image="registry.k8s.io/pause:3.10",outcome="present",source="registry.k8s.io/pause:3.10"} 1
`, 0},
		{call{pause, "repaired", "mirror.example/pause:3.10", 1500 * time.Millisecond}, `sandbox_guard_image_ensures_total{image="registry.k8s.io/pause:3.10",outcome="present",source="registry.k8s.io/pause:3.10"} 1
sandbox_guard_image_ensures_total{image="registry.k8s.io/pause:3.10",outcome="repaired",source="mirror.example/pause:3.10"} 1
`, 1},
		{call{pause, "failed", "", 40 * time.Second}, `sandbox_guard_image_ensures_total{image="registry.k8s.io/pause:3.10",outcome="failed",source=""} 1
sandbox_guard_image_ensures_total{image="registry.k8s.io/pause:3.10",outcome="present",source="registry.k8s.io/pause:3.10"} 1
sandbox_guard_image_ensures_total{image="registry.k8s.io/pause:3.10",outcome="repaired",source="mirror.example/pause:3.10"} 1
`, 2},
		{call{pause, "present", pause, 0}, `sandbox_guard_image_ensures_total{image="registry.k8s.io/pause:3.10",outcome="failed",source=""} 1
sandbox_guard_image_ensures_total{image="registry.k8s.io/pause:3.10",outcome="present",source="registry.k8s.io/pause:3.10"} 2
sandbox_guard_image_ensures_total{image="registry.k8s.io/pause:3.10",outcome="repaired",source="mirror.example/pause:3.10"} 1
`, 2},
	}
	m := New()
	var pulls []float64
	for i, tt := range tests {
		t.Run(strconv.Itoa(i)+"-"+tt.outcome, func(t *testing.T) {
			m.ObserveEnsure(tt.image, tt.outcome, tt.source, tt.took)
			if tt.took > 0 {
				pulls = append(pulls, tt.took.Seconds())
			}
			want := header("sandbox_guard_image_ensures_total", helpEnsures, "counter") + tt.ensures
			if len(pulls) > 0 {
				want += header("sandbox_guard_image_pull_duration_seconds", helpPulls, "histogram") +
					histogramText("sandbox_guard_image_pull_duration_seconds", `image="registry.k8s.io/pause:3.10"`, PullBuckets(), pulls)
			}
			compare(t, m, want, "sandbox_guard_image_ensures_total", "sandbox_guard_image_pull_duration_seconds")
			if got := sampleCount(t, m, "sandbox_guard_image_pull_duration_seconds", map[string]string{"image": pause}); got != tt.pullCount {
				t.Errorf("pull histogram count = %d, want %d", got, tt.pullCount)
			}
		})
	}
}

func TestWatchECR(t *testing.T) {
	m := New()
	names := []string{"sandbox_guard_ecr_token_fetches_total", "sandbox_guard_ecr_token_errors_total"}
	compare(t, m, "", names...) // absent until watched

	var mu sync.Mutex
	fetches, errs := uint64(0), uint64(0)
	m.WatchECR(func() (uint64, uint64) {
		mu.Lock()
		defer mu.Unlock()
		return fetches, errs
	})
	want := func(f, e int) string {
		return header(names[1], helpECRErrors, "counter") + fmt.Sprintf("%s %d\n", names[1], e) +
			header(names[0], helpECRFetches, "counter") + fmt.Sprintf("%s %d\n", names[0], f)
	}
	for _, tt := range []struct{ f, e uint64 }{{0, 0}, {1, 0}, {5, 2}, {6, 2}} {
		mu.Lock()
		fetches, errs = tt.f, tt.e
		mu.Unlock()
		compare(t, m, want(int(tt.f), int(tt.e)), names...)
	}
	m.WatchECR(func() (uint64, uint64) { return 10, 1 }) // replaced
	compare(t, m, want(10, 1), names...)
	m.WatchECR(nil)
	compare(t, m, "", names...)
}

func TestNRI(t *testing.T) {
	m := New()
	if got := testutil.ToFloat64(m.nriConnected); got != 0 {
		t.Fatalf("nri_connected before any call = %v", got)
	}
	for _, c := range []bool{true, false, true} {
		m.SetNRIConnected(c)
		compare(t, m, header("sandbox_guard_nri_connected", helpNRIConnected, "gauge")+
			fmt.Sprintf("sandbox_guard_nri_connected %v\n", b2f(c)), "sandbox_guard_nri_connected")
	}

	compare(t, m, header("sandbox_guard_standing_by", helpStandingBy, "gauge")+"sandbox_guard_standing_by 0\n", "sandbox_guard_standing_by")
	for _, s := range []bool{true, false} {
		m.SetStandingBy(s)
		compare(t, m, header("sandbox_guard_standing_by", helpStandingBy, "gauge")+
			fmt.Sprintf("sandbox_guard_standing_by %v\n", b2f(s)), "sandbox_guard_standing_by")
	}
	(*Metrics)(nil).SetStandingBy(true) // a no-op, like every method on nil

	compare(t, m, "", "sandbox_guard_nri_connects_total")
	var n int64
	var mu sync.Mutex
	m.WatchNRIConnects(func() int64 { mu.Lock(); defer mu.Unlock(); return n })
	for _, v := range []int64{0, 1, 4} {
		mu.Lock()
		n = v
		mu.Unlock()
		compare(t, m, header("sandbox_guard_nri_connects_total", helpNRIConnects, "counter")+
			fmt.Sprintf("sandbox_guard_nri_connects_total %d\n", v), "sandbox_guard_nri_connects_total")
	}
	m.WatchNRIConnects(nil)
	compare(t, m, "", "sandbox_guard_nri_connects_total")
}

func TestObserveBridgeWrite(t *testing.T) {
	m := New()
	hdr := header("sandbox_guard_bridge_writes_total", helpBridge, "counter")
	steps := []struct {
		host, outcome, want string
	}{
		{"123.dkr.ecr.us-east-1.amazonaws.com", "written", `sandbox_guard_bridge_writes_total{host="123.dkr.ecr.us-east-1.amazonaws.com",outcome="written"} 1
`},
		{"123.dkr.ecr.us-east-1.amazonaws.com", "written", `sandbox_guard_bridge_writes_total{host="123.dkr.ecr.us-east-1.amazonaws.com",outcome="written"} 2
`},
		{"AWS:s3cr3t@123.dkr.ecr.us-east-1.amazonaws.com", "failed", `sandbox_guard_bridge_writes_total{host="123.dkr.ecr.us-east-1.amazonaws.com",outcome="failed"} 1
sandbox_guard_bridge_writes_total{host="123.dkr.ecr.us-east-1.amazonaws.com",outcome="written"} 2
`},
	}
	for i, s := range steps {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			m.ObserveBridgeWrite(s.host, s.outcome)
			compare(t, m, hdr+s.want, "sandbox_guard_bridge_writes_total")
			if strings.Contains(scrape(t, m), "s3cr3t") {
				t.Error("credentials in a host leaked into the metrics")
			}
		})
	}
}

func TestWatchBridge(t *testing.T) {
	const ecrHost = "123.dkr.ecr.us-east-1.amazonaws.com"
	hdr := header("sandbox_guard_credential_bridge_effective", helpBridgeEffective, "gauge")
	tests := []struct {
		name  string
		hosts func() []BridgeHost // nil: never watched
		want  string
	}{
		{"not watched", nil, ""},
		{"bridge off: no host", func() []BridgeHost { return nil }, ""},
		{"effective", func() []BridgeHost { return []BridgeHost{{Host: ecrHost, Effective: true}} },
			hdr + `sandbox_guard_credential_bridge_effective{host="` + ecrHost + `"} 1
`},
		{"one effective, one not", func() []BridgeHost {
			return []BridgeHost{{Host: ecrHost, Effective: true}, {Host: "456.dkr.ecr.eu-west-1.amazonaws.com"}}
		}, hdr + `sandbox_guard_credential_bridge_effective{host="123.dkr.ecr.us-east-1.amazonaws.com"} 1
sandbox_guard_credential_bridge_effective{host="456.dkr.ecr.eu-west-1.amazonaws.com"} 0
`},
		{"user information dropped; the same host twice is effective only if both are", func() []BridgeHost {
			return []BridgeHost{{Host: ecrHost, Effective: true}, {Host: "AWS:s3cr3t@" + ecrHost}}
		}, hdr + `sandbox_guard_credential_bridge_effective{host="` + ecrHost + `"} 0
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New()
			if tt.hosts != nil {
				m.WatchBridge(tt.hosts)
			}
			compare(t, m, tt.want, "sandbox_guard_credential_bridge_effective")
			if strings.Contains(scrape(t, m), "s3cr3t") {
				t.Error("credentials in a host leaked into the metrics")
			}
		})
	}

	// Read at every scrape; nil stops it.
	m := New()
	effective := true
	m.WatchBridge(func() []BridgeHost { return []BridgeHost{{Host: "h", Effective: effective}} })
	compare(t, m, hdr+"sandbox_guard_credential_bridge_effective{host=\"h\"} 1\n", "sandbox_guard_credential_bridge_effective")
	effective = false
	compare(t, m, hdr+"sandbox_guard_credential_bridge_effective{host=\"h\"} 0\n", "sandbox_guard_credential_bridge_effective")
	m.WatchBridge(nil)
	compare(t, m, "", "sandbox_guard_credential_bridge_effective")
}

// Beyond maxSeries hosts, the rest share the overflow series, which is 0 when any of them is.
func TestWatchBridgeBounded(t *testing.T) {
	hosts := func(brokenFrom int) []BridgeHost {
		var out []BridgeHost
		for i := range maxSeries + 10 {
			out = append(out, BridgeHost{Host: fmt.Sprintf("host-%d.example.com", i), Effective: i < brokenFrom})
		}
		return out
	}
	for _, tt := range []struct {
		name       string
		brokenFrom int
		want       float64
	}{
		{"all effective", maxSeries + 10, 1},
		{"the last not effective", maxSeries + 9, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := New()
			m.WatchBridge(func() []BridgeHost { return hosts(tt.brokenFrom) })
			if got, err := testutil.GatherAndCount(m.Registry(), "sandbox_guard_credential_bridge_effective"); err != nil || got != maxSeries+1 {
				t.Errorf("%d series (%v), want %d", got, err, maxSeries+1)
			}
			want := fmt.Sprintf("sandbox_guard_credential_bridge_effective{host=%q} %v", overflow, tt.want)
			if out := scrape(t, m); !strings.Contains(out, want+"\n") {
				t.Errorf("/metrics lacks %q", want)
			}
		})
	}
}

func TestBuildInfo(t *testing.T) {
	m := New()
	compare(t, m, "", "sandbox_guard_build_info")
	hdr := header("sandbox_guard_build_info", helpBuildInfo, "gauge")
	for _, tt := range []struct{ version, label string }{{"v1.2.3", "v1.2.3"}, {"", "unknown"}, {"v1.3.0-rc.1+dirty", "v1.3.0-rc.1+dirty"}} {
		m.SetBuildInfo(tt.version)
		compare(t, m, hdr+fmt.Sprintf("sandbox_guard_build_info{version=%q} 1\n", tt.label), "sandbox_guard_build_info")
	}
}

// TestCardinalityBounded: however many distinct names arrive, each metric keeps at most
// maxSeries label sets plus the overflow one.
func TestCardinalityBounded(t *testing.T) {
	m := New()
	n := maxSeries + 50
	for i := range n {
		c := fmt.Sprintf("check-%d", i)
		m.ObservePod("reject", []string{c}, time.Microsecond)
		m.ObservePod("reject", []string{c}, time.Microsecond) // again: overflow is not cached per name
		img := fmt.Sprintf("example.com/img-%d:1", i)
		m.ObserveEnsure(img, "repaired", img, time.Second)
		m.ObserveBridgeWrite(fmt.Sprintf("host-%d.example.com", i), "written")
	}
	for _, tt := range []struct {
		metric string
		want   int
	}{
		{"sandbox_guard_pod_rejections_total", maxSeries + 1},
		{"sandbox_guard_image_ensures_total", maxSeries + 1},
		{"sandbox_guard_image_pull_duration_seconds", maxSeries + 1},
		{"sandbox_guard_bridge_writes_total", maxSeries + 1},
	} {
		got, err := testutil.GatherAndCount(m.Registry(), tt.metric)
		if err != nil {
			t.Fatal(err)
		}
		if got != tt.want {
			t.Errorf("%s: %d series, want %d", tt.metric, got, tt.want)
		}
	}
	if got := testutil.ToFloat64(m.rejections[verdictIndex("reject")].get("check-0")); got != 2 {
		t.Errorf("check-0 rejections = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.rejections[verdictIndex("reject")].get(overflow)); got != 100 {
		t.Errorf("overflow rejections = %v, want 100", got)
	}
	if got := sampleCount(t, m, "sandbox_guard_image_pull_duration_seconds", map[string]string{"image": overflow}); got != 50 {
		t.Errorf("overflow pulls = %d, want 50", got)
	}
	if len(*m.rejections[verdictIndex("reject")].m.Load()) != maxSeries+1 {
		t.Error("the rejection cache grew past its bound")
	}
}

func TestOddLabelValuesDoNotPanic(t *testing.T) {
	m := New()
	bad := "bad\xff\xfe" + strings.Repeat("x", 1000)
	m.ObservePod("reject", []string{bad}, time.Microsecond)
	m.ObserveEnsure(bad, bad, bad, time.Second)
	m.ObserveBridgeWrite(bad, bad)
	m.SetBuildInfo(bad)
	m.WatchChecks(func() ([]Check, bool) { return []Check{{Name: bad, Kind: bad}}, false })
	m.WatchImages(func() []Image { return []Image{{Name: bad, Role: bad}} })
	m.WatchBridge(func() []BridgeHost { return []BridgeHost{{Host: bad}} })
	if _, err := m.Registry().Gather(); err != nil {
		t.Fatal(err)
	}
	out := scrape(t, m)
	if strings.Contains(out, strings.Repeat("x", maxLabelLen)) {
		t.Error("a label value was not bounded")
	}
}

// TestNilMetrics: every method on a nil *Metrics is a no-op.
func TestNilMetrics(t *testing.T) {
	var m *Metrics
	m.ObservePod("reject", []string{"a"}, time.Millisecond)
	m.WatchChecks(func() ([]Check, bool) { return nil, true })
	m.WatchChecks(nil)
	m.WatchImages(func() []Image { return nil })
	m.WatchImages(nil)
	m.ObserveEnsure("a", "repaired", "a", time.Second)
	m.WatchECR(func() (uint64, uint64) { return 1, 1 })
	m.WatchECR(nil)
	m.SetNRIConnected(true)
	m.WatchNRIConnects(func() int64 { return 1 })
	m.WatchNRIConnects(nil)
	m.ObserveBridgeWrite("h", "written")
	m.WatchBridge(func() []BridgeHost { return nil })
	m.WatchBridge(nil)
	m.SetBuildInfo("v1")
	if m.Registry() != nil {
		t.Error("Registry() on nil is not nil")
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("nil Handler answered %d, want 404", rec.Code)
	}
}

func TestHandler(t *testing.T) {
	m := New()
	m.ObservePod("admit", nil, time.Microsecond)
	out := scrape(t, m)
	for _, want := range []string{
		`sandbox_guard_pods_total{verdict="admit"} 1`,
		"sandbox_guard_hook_duration_seconds_count 1",
		"sandbox_guard_ready 0",
		"sandbox_guard_nri_connected 0",
		"go_goroutines ",
		"promhttp_metric_handler_requests_total",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// Separate instances do not share state.
	if strings.Contains(scrape(t, New()), `sandbox_guard_pods_total{verdict="admit"} 1`) {
		t.Error("a new Metrics sees another's counts")
	}
}

// TestConcurrent exercises every method while scraping (run with -race).
func TestConcurrent(t *testing.T) {
	m := New()
	m.WatchECR(func() (uint64, uint64) { return 1, 0 })
	m.WatchNRIConnects(func() int64 { return 1 })
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				c := fmt.Sprintf("c%d", i%5)
				m.ObservePod([]string{"admit", "reject", "would-reject"}[i%3], []string{c}, time.Duration(i)*time.Microsecond)
				if i%20 == 0 {
					ok := i%2 == 0
					m.WatchChecks(func() ([]Check, bool) { return []Check{{Name: c, Kind: "file", OK: ok}}, ok })
					m.WatchImages(func() []Image { return []Image{{Name: "img", Role: "sandbox image", Present: true}} })
					m.ObserveEnsure("img", "present", "img", time.Duration(g)*time.Second)
					m.SetNRIConnected(i%40 == 0)
					m.ObserveBridgeWrite("h", "written")
					m.WatchBridge(func() []BridgeHost { return []BridgeHost{{Host: "h", Effective: ok}} })
					m.SetBuildInfo("v" + strconv.Itoa(g))
				}
			}
		})
	}
	for range 20 {
		if _, err := m.Registry().Gather(); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	total := 0.0
	for i := range numVerdicts - 1 {
		total += testutil.ToFloat64(m.pods[i])
	}
	if total != 8*200 {
		t.Errorf("pods counted %v, want %d", total, 8*200)
	}
	if got := sampleCount(t, m, "sandbox_guard_hook_duration_seconds", nil); got != 8*200 {
		t.Errorf("hook histogram count %d, want %d", got, 8*200)
	}
}

// TestObservePodDoesNotAllocate: the hook's metrics cost no garbage once check names are known.
func TestObservePodDoesNotAllocate(t *testing.T) {
	m := New()
	failing := []string{"kube-proxy-rules", "cni-config"}
	m.ObservePod("reject", failing, time.Microsecond) // first sight of the names
	for _, v := range []string{"admit", "reject", "would-reject"} {
		if n := testing.AllocsPerRun(100, func() { m.ObservePod(v, failing, 3*time.Microsecond) }); n != 0 {
			t.Errorf("ObservePod(%s) allocates %v times per call", v, n)
		}
	}
}

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics answered %d: %s", rec.Code, rec.Body)
	}
	return rec.Body.String()
}

func BenchmarkObservePod(b *testing.B) {
	for _, bc := range []struct {
		name    string
		verdict string
		failing []string
	}{
		{"admit", "admit", nil},
		{"reject-2-checks", "reject", []string{"kube-proxy-rules", "cni-config"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			m := New()
			b.ReportAllocs()
			for b.Loop() {
				m.ObservePod(bc.verdict, bc.failing, 3*time.Microsecond)
			}
		})
		b.Run(bc.name+"-parallel", func(b *testing.B) {
			m := New()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					m.ObservePod(bc.verdict, bc.failing, 3*time.Microsecond)
				}
			})
		})
	}
	b.Run("nil", func(b *testing.B) {
		var m *Metrics
		b.ReportAllocs()
		for b.Loop() {
			m.ObservePod("reject", []string{"a"}, time.Microsecond)
		}
	})
}
