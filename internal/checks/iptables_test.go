package checks

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sandbox-guard/sandbox-guard/internal/iptables"
)

// fakeChains is a ChainReader over fixed chain lists per backend (family and table ignored
// but recorded), counting every question.
type fakeChains struct {
	mu      sync.Mutex
	chains  map[iptables.Backend][]string
	backend iptables.Backend // what Detect answers
	asked   []string
}

func (f *fakeChains) note(q string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, q)
}

func (f *fakeChains) ChainExists(_ context.Context, b iptables.Backend, _ iptables.Family, table, chain string) (bool, error) {
	f.note("ChainExists " + string(b) + " " + table)
	return slices.Contains(f.chains[b], chain), nil
}

func (f *fakeChains) Chains(_ context.Context, b iptables.Backend, _ iptables.Family, table string) ([]string, error) {
	f.note("Chains " + string(b) + " " + table)
	return slices.Clone(f.chains[b]), nil
}

func (f *fakeChains) CountChains(_ context.Context, b iptables.Backend, _ iptables.Family, table, prefix string) (int, error) {
	f.note("CountChains " + string(b) + " " + table)
	n := 0
	for _, c := range f.chains[b] {
		if strings.HasPrefix(c, prefix) {
			n++
		}
	}
	return n, nil
}

func (f *fakeChains) Detect(context.Context) (iptables.Detection, error) {
	f.note("Detect")
	f.mu.Lock()
	defer f.mu.Unlock()
	return iptables.Detection{Backend: f.backend, Reason: "test"}, nil
}

// TestIptablesProberQuestions: what one probe asks the kernel. Legacy reads its table once per
// probe, whatever it asks and also when the chain is missing; nft asks for one chain by name
// and counts a prefix with CountChains; a missing chain re-detects and asks the other backend
// only when the detection changed its mind.
func TestIptablesProberQuestions(t *testing.T) {
	kube := []string{"PREROUTING", "KUBE-SERVICES", "KUBE-SVC-A", "KUBE-SVC-B"}
	tests := []struct {
		name    string
		chains  map[iptables.Backend][]string
		pinned  iptables.Backend
		detects iptables.Backend
		prefix  string
		ok      bool
		detail  string
		asked   []string
	}{
		{name: "legacy chain", chains: map[iptables.Backend][]string{iptables.Legacy: kube}, detects: iptables.Legacy, ok: true,
			detail: "iptables nat/KUBE-SERVICES present (legacy backend)", asked: []string{"Detect", "Chains legacy nat"}},
		{name: "legacy chain and prefix: one read", chains: map[iptables.Backend][]string{iptables.Legacy: kube}, detects: iptables.Legacy,
			prefix: "KUBE-SVC-", ok: true, detail: "iptables nat/KUBE-SERVICES present, 2 iptables nat/KUBE-SVC-* chains (legacy backend)",
			asked: []string{"Detect", "Chains legacy nat"}},
		{name: "legacy miss, detection unchanged: no second read", chains: map[iptables.Backend][]string{iptables.Legacy: {"PREROUTING"}},
			detects: iptables.Legacy, detail: "iptables nat/KUBE-SERVICES missing (legacy backend)",
			asked: []string{"Detect", "Chains legacy nat", "Detect"}},
		{name: "nft chain: one GETCHAIN", chains: map[iptables.Backend][]string{iptables.NFT: kube}, detects: iptables.NFT, ok: true,
			asked: []string{"Detect", "ChainExists nft nat"}},
		{name: "nft chain and prefix: no chain list", chains: map[iptables.Backend][]string{iptables.NFT: kube}, detects: iptables.NFT,
			prefix: "KUBE-SVC-", ok: true, detail: "iptables nat/KUBE-SERVICES present, 2 iptables nat/KUBE-SVC-* chains (nft backend)",
			asked: []string{"Detect", "ChainExists nft nat", "CountChains nft nat"}},
		{name: "nft prefix missing", chains: map[iptables.Backend][]string{iptables.NFT: {"KUBE-SERVICES"}}, detects: iptables.NFT,
			prefix: "KUBE-SVC-", detail: "no iptables nat/KUBE-SVC-* chain (nft backend)",
			asked: []string{"Detect", "ChainExists nft nat", "CountChains nft nat", "Detect"}},
		{name: "pinned backend: no detection", chains: map[iptables.Backend][]string{iptables.Legacy: kube}, pinned: iptables.Legacy, ok: true,
			asked: []string{"Chains legacy nat"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeChains{chains: tt.chains, backend: tt.detects}
			p := IptablesProber{Reader: f, Detector: &BackendDetector{Reader: f, RecheckAfter: time.Hour}, Backend: tt.pinned,
				Family: iptables.IPv4, Table: "nat", Chain: "KUBE-SERVICES", Prefix: tt.prefix}
			out := p.Probe(context.Background())
			if out.OK != tt.ok || out.Err || (tt.detail != "" && out.Detail != tt.detail) {
				t.Errorf("Probe = %+v, want ok %v detail %q", out, tt.ok, tt.detail)
			}
			if !slices.Equal(f.asked, tt.asked) {
				t.Errorf("asked %q, want %q", f.asked, tt.asked)
			}
		})
	}
}

// TestIptablesProberFollowsSwitch: after a switch of backend, a probe that misses its chain
// re-detects and finds it in the other backend, in the same probe; later probes ask that one.
func TestIptablesProberFollowsSwitch(t *testing.T) {
	f := &fakeChains{chains: map[iptables.Backend][]string{iptables.NFT: {"KUBE-SERVICES"}}, backend: iptables.NFT}
	p := IptablesProber{Reader: f, Detector: &BackendDetector{Reader: f, RecheckAfter: time.Hour},
		Family: iptables.IPv4, Table: "nat", Chain: "KUBE-SERVICES"}
	if out := p.Probe(context.Background()); !out.OK {
		t.Fatalf("before the switch: %+v", out)
	}
	f.mu.Lock()
	f.chains = map[iptables.Backend][]string{iptables.Legacy: {"KUBE-SERVICES"}}
	f.backend, f.asked = iptables.Legacy, nil
	f.mu.Unlock()
	if out := p.Probe(context.Background()); !out.OK || !strings.Contains(out.Detail, "legacy backend") {
		t.Fatalf("after the switch: %+v", out)
	}
	if want := []string{"ChainExists nft nat", "Detect", "Chains legacy nat"}; !slices.Equal(f.asked, want) {
		t.Errorf("asked %q, want %q", f.asked, want)
	}
	f.asked = nil
	if out := p.Probe(context.Background()); !out.OK || !slices.Equal(f.asked, []string{"Chains legacy nat"}) {
		t.Errorf("steady after the switch: %+v, asked %q", out, f.asked)
	}
}
