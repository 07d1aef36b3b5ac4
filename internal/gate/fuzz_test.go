package gate

import (
	"strings"
	"testing"
	"time"

	"github.com/sandbox-guard/sandbox-guard/internal/config"
	"github.com/sandbox-guard/sandbox-guard/internal/snapshot"
)

// FuzzDecide: whatever the pod and the checks' details hold, Decide never panics, its verdict
// follows the mode, and a rejection is one line starting with "sandbox-guard:".
func FuzzDecide(f *testing.F) {
	f.Add("default", "web-1", "app", "web", "iptables nat/KUBE-SERVICES missing", "kube-proxy", "x\ny", false, false, true, false, uint8(0), uint16(0), int32(0))
	f.Add("kube-system", "coredns", "tier", "infra", "", "", "", false, true, true, false, uint8(1), uint16(30), int32(10000))
	f.Add("", "", "", "", "\r\n\t", "\u2028", "\x00\xff", true, false, false, true, uint8(2), uint16(1), int32(-5000))
	f.Fuzz(func(t *testing.T, ns, name, labelKey, labelValue, detail1, hint1, detail2 string,
		host, ok1, ok2, nilSnap bool, modeSel uint8, settleSec uint16, readyAgoMs int32) {
		modes := []config.Mode{config.ModeEnforce, config.ModeWarn, config.ModeOff}
		cfg := config.Default()
		cfg.Mode = modes[int(modeSel)%len(modes)]
		cfg.SettleTime = config.Duration{Duration: time.Duration(settleSec) * time.Second}
		cfg.Exempt.Namespaces = []string{"kube-system"}
		cfg.Exempt.PodSelector = &config.LabelSelector{MatchLabels: map[string]string{"sandbox-guard.io/exempt": "true"}}
		p, err := NewPolicy(cfg)
		if err != nil {
			t.Fatal(err)
		}
		pod := Pod{Namespace: ns, Name: name, UID: name, HostNetwork: host, Labels: map[string]string{labelKey: labelValue}}
		var s *snapshot.Snapshot
		if !nilSnap {
			s = &snapshot.Snapshot{Taken: now, Results: []snapshot.Result{
				{Name: "first", Kind: "file", OK: ok1, Detail: detail1, Hint: hint1},
				{Name: "second", Kind: "http", OK: ok2, Detail: detail2, Hint: detail1},
			}}
			if s.Ready() {
				s.ReadySince = now.Add(-time.Duration(readyAgoMs) * time.Millisecond)
			}
		}
		d := p.Decide(pod, s, now)

		switch {
		case cfg.Mode == config.ModeOff, host:
			if d.Verdict != Admit {
				t.Fatalf("mode %s, host network %v: verdict %v, want admit", cfg.Mode, host, d.Verdict)
			}
		case cfg.Mode == config.ModeEnforce && d.Verdict == WouldReject,
			cfg.Mode == config.ModeWarn && d.Verdict == Reject:
			t.Fatalf("mode %s gave verdict %v", cfg.Mode, d.Verdict)
		}
		if d.Verdict != Admit && d.Verdict != Reject && d.Verdict != WouldReject {
			t.Fatalf("unknown verdict %v", d.Verdict)
		}
		if d.Verdict == Admit {
			return
		}
		if !strings.HasPrefix(d.Why, "sandbox-guard:") || !strings.HasSuffix(d.Why, suffix) {
			t.Fatalf("message %q lacks the sandbox-guard: prefix or the retry suffix", d.Why)
		}
		if strings.ContainsAny(d.Why, lineBreaks) {
			t.Fatalf("message spans lines: %q", d.Why)
		}
		if s != nil && !s.Ready() {
			if !strings.Contains(d.Why, "node network not ready: ") || len(d.Failing) == 0 {
				t.Fatalf("not-ready rejection %q (failing %v) does not list the failing checks", d.Why, d.Failing)
			}
			for _, r := range d.Failing {
				if r.OK || !strings.Contains(d.Why, r.Name+": ") {
					t.Fatalf("failing list %+v does not match the message %q", d.Failing, d.Why)
				}
			}
		}
	})
}
