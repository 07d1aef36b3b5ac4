package gate

import (
	"strings"
	"testing"
	"time"

	"github.com/sandbox-guard/sandbox-guard/internal/config"
	"github.com/sandbox-guard/sandbox-guard/internal/snapshot"
)

var now = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

const (
	prefix = "sandbox-guard: pod default/web-1 not started: "
	suffix = "; kubelet will retry"
)

// lineBreaks are the characters that start a new line in a log viewer or an event.
const lineBreaks = "\n\r\v\f\u0085\u2028\u2029"

func policy(t testing.TB, mutate func(c *config.Config)) *Policy {
	t.Helper()
	cfg := config.Default()
	if mutate != nil {
		mutate(cfg)
	}
	p, err := NewPolicy(cfg)
	if err != nil {
		t.Fatalf("NewPolicy: %v", err)
	}
	return p
}

func pod(mut ...func(*Pod)) Pod {
	p := Pod{Namespace: "default", Name: "web-1", UID: "uid-1", Labels: map[string]string{"app": "web"}}
	for _, m := range mut {
		m(&p)
	}
	return p
}

func ok(name string) snapshot.Result {
	return snapshot.Result{Name: name, Kind: "file", OK: true, Detail: "ok"}
}

func failing(name, detail, hint string) snapshot.Result {
	return snapshot.Result{Name: name, Kind: "file", Detail: detail, Hint: hint}
}

func snap(readyAgo time.Duration, rs ...snapshot.Result) *snapshot.Snapshot {
	s := &snapshot.Snapshot{Results: rs, Taken: now}
	if s.Ready() {
		s.ReadySince = now.Add(-readyAgo)
	}
	return s
}

var (
	readySnap   = snap(time.Hour, ok("cni-config"), ok("kube-proxy-rules"))
	kubeProxy   = failing("kube-proxy-rules", "iptables nat/KUBE-SERVICES missing", "kube-proxy has not synced its rules yet")
	oneFailing  = snap(0, ok("cni-config"), kubeProxy)
	multiDetail = failing("vpc-cni-ipamd", "dial unix /var/run/aws-node/ipamd.sock:\n  connect: no such file\r\n\tor directory  ", "the VPC CNI's ipamd\n(aws-node) is not serving yet")
	noHint      = failing("marker", "/run/ready does not exist", "")
	several     = snap(0, kubeProxy, ok("cni-config"), multiDetail, noHint)
)

func TestDecide(t *testing.T) {
	withNS := func(ns ...string) func(*config.Config) {
		return func(c *config.Config) { c.Exempt.Namespaces = ns }
	}
	withSelector := func(s *config.LabelSelector) func(*config.Config) {
		return func(c *config.Config) { c.Exempt.PodSelector = s }
	}
	mode := func(m config.Mode) func(*config.Config) { return func(c *config.Config) { c.Mode = m } }
	settle := func(d time.Duration) func(*config.Config) {
		return func(c *config.Config) { c.SettleTime = config.Duration{Duration: d} }
	}
	hostNet := func(p *Pod) { p.HostNetwork = true }
	labels := func(kv ...string) func(*Pod) {
		return func(p *Pod) {
			p.Labels = map[string]string{}
			for i := 0; i+1 < len(kv); i += 2 {
				p.Labels[kv[i]] = kv[i+1]
			}
		}
	}
	inNS := func(ns string) func(*Pod) { return func(p *Pod) { p.Namespace = ns } }
	selector := &config.LabelSelector{
		MatchLabels: map[string]string{"app": "net-agent"},
	}
	exprSelector := &config.LabelSelector{MatchExpressions: []config.LabelSelectorRequirement{
		{Key: "tier", Operator: config.LabelSelectorOpIn, Values: []string{"infra", "system"}},
		{Key: "sandbox-guard/gate", Operator: config.LabelSelectorOpNotIn, Values: []string{"on"}},
	}}

	kubeProxyMsg := prefix + "node network not ready: kube-proxy-rules: iptables nat/KUBE-SERVICES missing (kube-proxy has not synced its rules yet)" + suffix
	severalMsg := prefix + "node network not ready: " +
		"kube-proxy-rules: iptables nat/KUBE-SERVICES missing (kube-proxy has not synced its rules yet); " +
		"vpc-cni-ipamd: dial unix /var/run/aws-node/ipamd.sock: connect: no such file or directory (the VPC CNI's ipamd (aws-node) is not serving yet); " +
		"marker: /run/ready does not exist" + suffix
	startingMsg := prefix + "node network is not ready: not checked yet (sandbox-guard is starting)" + suffix

	tests := []struct {
		name    string
		cfg     []func(*config.Config)
		pod     Pod
		snap    *snapshot.Snapshot
		verdict Verdict
		why     string   // exact, when set
		failing []string // names of Decision.Failing
	}{
		// mode
		{name: "off admits when failing", cfg: mods(mode(config.ModeOff)), pod: pod(), snap: several, verdict: Admit, why: "mode off"},
		{name: "off admits while starting", cfg: mods(mode(config.ModeOff)), pod: pod(), snap: nil, verdict: Admit, why: "mode off"},
		{name: "enforce rejects", pod: pod(), snap: oneFailing, verdict: Reject, why: kubeProxyMsg, failing: []string{"kube-proxy-rules"}},
		{name: "warn would reject", cfg: mods(mode(config.ModeWarn)), pod: pod(), snap: oneFailing, verdict: WouldReject, why: kubeProxyMsg, failing: []string{"kube-proxy-rules"}},
		{name: "warn while starting", cfg: mods(mode(config.ModeWarn)), pod: pod(), snap: nil, verdict: WouldReject, why: startingMsg},
		{name: "warn ready admits", cfg: mods(mode(config.ModeWarn)), pod: pod(), snap: readySnap, verdict: Admit, why: "ready"},
		// host network
		{name: "host network admitted when failing", pod: pod(hostNet), snap: several, verdict: Admit, why: "host network"},
		{name: "host network admitted while starting", pod: pod(hostNet), snap: nil, verdict: Admit, why: "host network"},
		{name: "host network admitted before settling", cfg: mods(settle(time.Hour)), pod: pod(hostNet), snap: readySnap, verdict: Admit, why: "host network"},
		{name: "host network in warn mode", cfg: mods(mode(config.ModeWarn)), pod: pod(hostNet), snap: several, verdict: Admit, why: "host network"},
		// exempt namespaces
		{name: "exempt namespace", cfg: mods(withNS("kube-system", "monitoring")), pod: pod(inNS("monitoring")), snap: several, verdict: Admit, why: "exempt namespace"},
		{name: "exempt namespace while starting", cfg: mods(withNS("kube-system")), pod: pod(inNS("kube-system")), snap: nil, verdict: Admit, why: "exempt namespace"},
		{name: "other namespace not exempt", cfg: mods(withNS("kube-system")), pod: pod(), snap: oneFailing, verdict: Reject, why: kubeProxyMsg},
		{name: "namespace match is exact", cfg: mods(withNS("kube-system")), pod: pod(inNS("kube-system-2")), snap: oneFailing, verdict: Reject},
		// podSelector
		{name: "matchLabels exempts", cfg: mods(withSelector(selector)), pod: pod(labels("app", "net-agent", "x", "y")), snap: several, verdict: Admit, why: "exempt by podSelector"},
		{name: "matchLabels other value", cfg: mods(withSelector(selector)), pod: pod(labels("app", "net-agent2")), snap: oneFailing, verdict: Reject, why: kubeProxyMsg},
		{name: "matchLabels no labels", cfg: mods(withSelector(selector)), pod: pod(func(p *Pod) { p.Labels = nil }), snap: oneFailing, verdict: Reject},
		{name: "matchExpressions exempts", cfg: mods(withSelector(exprSelector)), pod: pod(labels("tier", "infra")), snap: several, verdict: Admit, why: "exempt by podSelector"},
		{name: "matchExpressions NotIn excludes", cfg: mods(withSelector(exprSelector)), pod: pod(labels("tier", "infra", "sandbox-guard/gate", "on")), snap: oneFailing, verdict: Reject},
		{name: "matchExpressions In misses", cfg: mods(withSelector(exprSelector)), pod: pod(labels("tier", "web")), snap: oneFailing, verdict: Reject},
		{name: "matchExpressions Exists", cfg: mods(withSelector(&config.LabelSelector{MatchExpressions: []config.LabelSelectorRequirement{
			{Key: "critical", Operator: config.LabelSelectorOpExists}}})), pod: pod(labels("critical", "")), snap: oneFailing, verdict: Admit, why: "exempt by podSelector"},
		{name: "empty podSelector exempts nothing", cfg: mods(withSelector(&config.LabelSelector{})), pod: pod(), snap: oneFailing, verdict: Reject, why: kubeProxyMsg},
		{name: "selector exempts while starting", cfg: mods(withSelector(selector)), pod: pod(labels("app", "net-agent")), snap: nil, verdict: Admit, why: "exempt by podSelector"},
		// snapshot states
		{name: "nil snapshot rejects as starting", pod: pod(), snap: nil, verdict: Reject, why: startingMsg},
		{name: "ready admits", pod: pod(), snap: readySnap, verdict: Admit, why: "ready"},
		{name: "no checks at all is ready", pod: pod(), snap: snap(time.Hour), verdict: Admit, why: "ready"},
		{name: "several failing", pod: pod(), snap: several, verdict: Reject, why: severalMsg, failing: []string{"kube-proxy-rules", "vpc-cni-ipamd", "marker"}},
		// settle time
		{name: "settle not reached", cfg: mods(settle(30 * time.Second)), pod: pod(), snap: snap(10*time.Second, ok("a")), verdict: Reject,
			why: prefix + "node network not ready: ready for only 10s of the 30s settle time" + suffix},
		{name: "settle truncated", cfg: mods(settle(30 * time.Second)), pod: pod(), snap: snap(12345*time.Millisecond, ok("a")), verdict: Reject,
			why: prefix + "node network not ready: ready for only 12.3s of the 30s settle time" + suffix},
		{name: "settle just reached", cfg: mods(settle(30 * time.Second)), pod: pod(), snap: snap(30*time.Second, ok("a")), verdict: Admit, why: "ready"},
		{name: "settle passed", cfg: mods(settle(30 * time.Second)), pod: pod(), snap: snap(31*time.Second, ok("a")), verdict: Admit, why: "ready"},
		{name: "settle in warn mode", cfg: mods(settle(time.Minute), mode(config.ModeWarn)), pod: pod(), snap: snap(time.Second, ok("a")), verdict: WouldReject},
		{name: "settle but failing reports failure", cfg: mods(settle(time.Minute)), pod: pod(), snap: oneFailing, verdict: Reject, why: kubeProxyMsg},
		{name: "no settle admits at once", pod: pod(), snap: snap(0, ok("a")), verdict: Admit, why: "ready"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := policy(t, func(c *config.Config) {
				for _, m := range tt.cfg {
					m(c)
				}
			})
			d := p.Decide(tt.pod, tt.snap, now)
			if d.Verdict != tt.verdict {
				t.Errorf("Verdict = %v, want %v (why: %s)", d.Verdict, tt.verdict, d.Why)
			}
			if tt.why != "" && d.Why != tt.why {
				t.Errorf("Why =\n  %q\nwant\n  %q", d.Why, tt.why)
			}
			if d.Verdict == Admit {
				if d.Failing != nil {
					t.Errorf("admitted with Failing = %v", d.Failing)
				}
				return
			}
			assertMessage(t, d.Why)
			var got []string
			for _, r := range d.Failing {
				got = append(got, r.Name)
			}
			want := tt.failing
			if want == nil && tt.snap != nil && !tt.snap.Ready() {
				for _, r := range tt.snap.Failing() {
					want = append(want, r.Name)
				}
			}
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("Failing = %v, want %v", got, want)
			}
		})
	}
}

func mods(m ...func(*config.Config)) []func(*config.Config) { return m }

func assertMessage(t testing.TB, msg string) {
	t.Helper()
	if !strings.HasPrefix(msg, "sandbox-guard: pod ") {
		t.Errorf("message %q does not start with sandbox-guard: pod", msg)
	}
	if !strings.HasSuffix(msg, suffix) {
		t.Errorf("message %q does not end with %q", msg, suffix)
	}
	if strings.ContainsAny(msg, lineBreaks) {
		t.Errorf("message %q spans more than one line", msg)
	}
}

// kubeletNetworkNotReady is kubelet's NetworkNotReadyErrorMsg (pkg/kubelet/errors.go): a sync
// error containing it is retried after about 1 s (pod_workers.go completeWork), others after
// 10-15 s.
const kubeletNetworkNotReady = "network is not ready"

func TestKubeletRetry(t *testing.T) {
	settled := snap(0, ok("a"))
	settled.ReadySince = now
	for _, tc := range []struct {
		retry string
		snap  *snapshot.Snapshot
		fast  bool // the rejection asks kubelet for its 1 s retry
	}{
		{config.KubeletRetryBackoff, nil, true}, // starting: the first check comes within a second
		{config.KubeletRetryBackoff, oneFailing, false},
		{config.KubeletRetryBackoff, settled, false},
		{config.KubeletRetryFast, nil, true},
		{config.KubeletRetryFast, oneFailing, true},
		{config.KubeletRetryFast, settled, true},
	} {
		p := policy(t, func(c *config.Config) {
			c.Mode, c.KubeletRetry, c.SettleTime = config.ModeEnforce, tc.retry, config.Duration{Duration: time.Minute}
		})
		d := p.Decide(pod(), tc.snap, now)
		if d.Verdict != Reject || strings.Contains(d.Why, kubeletNetworkNotReady) != tc.fast {
			t.Errorf("kubeletRetry %s, snapshot %v: %v %q; want a rejection that contains %q: %v", tc.retry, tc.snap != nil, d.Verdict, d.Why, kubeletNetworkNotReady, tc.fast)
		}
	}
}

func TestSettleAfterRecovery(t *testing.T) {
	p := policy(t, func(c *config.Config) { c.SettleTime = config.Duration{Duration: 5 * time.Second} })
	s := snap(0, ok("a"))
	s.ReadySince = now
	for _, tc := range []struct {
		after time.Duration
		want  Verdict
	}{{0, Reject}, {4900 * time.Millisecond, Reject}, {5 * time.Second, Admit}, {time.Hour, Admit}} {
		d := p.Decide(pod(), s, now.Add(tc.after))
		if d.Verdict != tc.want {
			t.Errorf("%v after ready: %v (%s), want %v", tc.after, d.Verdict, d.Why, tc.want)
		}
		if d.Verdict == Reject && !strings.Contains(d.Why, "settle time") {
			t.Errorf("rejection before settling does not mention the settle time: %q", d.Why)
		}
	}
}

func TestNewPolicy(t *testing.T) {
	cfg := config.Default()
	cfg.Mode = config.ModeWarn
	p, err := NewPolicy(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if p.Mode() != config.ModeWarn {
		t.Errorf("Mode() = %v", p.Mode())
	}

	cfg.Exempt.PodSelector = &config.LabelSelector{MatchExpressions: []config.LabelSelectorRequirement{{Key: "a", Operator: "Like"}}}
	if _, err := NewPolicy(cfg); err == nil || !strings.Contains(err.Error(), "exempt.podSelector") {
		t.Errorf("NewPolicy with a bad selector = %v, want an error naming exempt.podSelector", err)
	}

	// The policy keeps its own copy of the namespaces: editing the configuration later does not
	// change decisions.
	cfg = config.Default()
	cfg.Exempt.Namespaces = []string{"kube-system"}
	p = policy(t, func(c *config.Config) { *c = *cfg })
	cfg.Exempt.Namespaces[0] = "default"
	if d := p.Decide(pod(), nil, now); d.Verdict != Reject {
		t.Errorf("policy follows later edits of the configuration: %v", d.Verdict)
	}
}

func TestMessage(t *testing.T) {
	got := Message(Pod{Namespace: "ns", Name: "name"}, "the problem")
	if want := "sandbox-guard: pod ns/name not started: the problem; kubelet will retry"; got != want {
		t.Errorf("Message = %q, want %q", got, want)
	}
}

// A pod's namespace and name are part of the message too; they must not break the line either.
func TestMessageOneLineWhateverThePod(t *testing.T) {
	p := policy(t, nil)
	d := p.Decide(Pod{Namespace: "ns\nx", Name: "name\r\ny"}, oneFailing, now)
	if strings.ContainsAny(d.Why, lineBreaks) {
		t.Fatalf("message spans lines: %q", d.Why)
	}
	assertMessage(t, d.Why)
}

func TestVerdictString(t *testing.T) {
	for v, want := range map[Verdict]string{Admit: "admit", Reject: "reject", WouldReject: "would-reject", Verdict(7): "Verdict(7)", Verdict(-1): "Verdict(-1)"} {
		if got := v.String(); got != want {
			t.Errorf("Verdict(%d).String() = %q, want %q", int(v), got, want)
		}
	}
}

func TestPodString(t *testing.T) {
	if got := (Pod{Namespace: "a", Name: "b"}).String(); got != "a/b" {
		t.Errorf("String() = %q", got)
	}
	if got := (Pod{}).String(); got != "/" {
		t.Errorf("zero Pod String() = %q", got)
	}
}

// Decide reads the snapshot only: the same snapshot can be shared by concurrent hooks.
func TestDecideDoesNotModifySnapshot(t *testing.T) {
	s := snap(0, kubeProxy, multiDetail)
	before := *s
	results := append([]snapshot.Result(nil), s.Results...)
	d := policy(t, nil).Decide(pod(), s, now)
	if d.Verdict != Reject {
		t.Fatalf("Verdict = %v", d.Verdict)
	}
	d.Failing[0].Name = "changed"
	if s.Results[0].Name != "kube-proxy-rules" || s.Results[1].Detail != results[1].Detail || !before.Taken.Equal(s.Taken) {
		t.Errorf("snapshot modified: %+v", s)
	}
}
