package iptables

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
)

// fakeKernel stands in for the kernel at the Inspector's boundary: chains per backend, family
// and table, an nft generation, and a record of every question asked.
type fakeKernel struct {
	mu     sync.Mutex
	chains map[string][]string // "nft/ipv4/nat" -> chain names; a key present = the table exists
	inUse  map[string]bool     // legacy tables holding rules ("legacy/ipv4/nat")
	gen    uint32
	ns     netnsID
	nsErr  error
	fail   map[string]error // question kind ("nftGeneration"...) -> error
	asked  []string
}

func tableKey(b Backend, f Family, table string) string { return fmt.Sprintf("%s/%s/%s", b, f, table) }

func (k *fakeKernel) note(q string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.asked = append(k.asked, q)
	kind, _, _ := strings.Cut(q, " ")
	return k.fail[kind]
}

func (k *fakeKernel) count(prefix string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := 0
	for _, q := range k.asked {
		if strings.HasPrefix(q, prefix) {
			n++
		}
	}
	return n
}

func (k *fakeKernel) nftChainExists(_ context.Context, f Family, table, chain string) (bool, error) {
	if err := k.note("nftChainExists " + tableKey(NFT, f, table) + " " + chain); err != nil {
		return false, err
	}
	return slices.Contains(k.chains[tableKey(NFT, f, table)], chain), nil
}

func (k *fakeKernel) nftChains(_ context.Context, f Family, table string) ([]string, error) {
	if err := k.note("nftChains " + tableKey(NFT, f, table)); err != nil {
		return nil, err
	}
	return slices.Clone(k.chains[tableKey(NFT, f, table)]), nil
}

func (k *fakeKernel) nftGeneration(context.Context) (uint32, error) {
	if err := k.note("nftGeneration"); err != nil {
		return 0, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.gen, nil
}

func (k *fakeKernel) nftTableExists(_ context.Context, f Family, table string) (bool, error) {
	if err := k.note("nftTableExists " + tableKey(NFT, f, table)); err != nil {
		return false, err
	}
	_, ok := k.chains[tableKey(NFT, f, table)]
	return ok, nil
}

func (k *fakeKernel) legacyChains(f Family, table string) ([]string, error) {
	if err := k.note("legacyChains " + tableKey(Legacy, f, table)); err != nil {
		return nil, err
	}
	return slices.Clone(k.chains[tableKey(Legacy, f, table)]), nil
}

func (k *fakeKernel) legacyInUse(f Family, table string) (bool, error) {
	if err := k.note("legacyInUse " + tableKey(Legacy, f, table)); err != nil {
		return false, err
	}
	return k.inUse[tableKey(Legacy, f, table)], nil
}

func (k *fakeKernel) netns() (netnsID, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.ns, k.nsErr
}

func (k *fakeKernel) set(key string, chains ...string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.chains == nil {
		k.chains = map[string][]string{}
	}
	k.chains[key] = chains
	k.gen++
}

// TestDetectAsksLittle: detection answers from the mangle tables when they tell, and never
// reads a nat table: legacy nat only by its entry count, and only when mangle leaves it open.
func TestDetectAsksLittle(t *testing.T) {
	noBinary := []string{"/nonexistent/iptables"}
	kubeNat := []string{"PREROUTING", "OUTPUT", "POSTROUTING", "KUBE-SERVICES", "KUBE-SVC-A"}
	for _, tt := range []struct {
		name   string
		setup  func(k *fakeKernel)
		want   Backend
		reason string
		asked  []string // every question, in order
	}{
		{name: "hint in nft (ipv4): GETCHAINs and legacy mangle, no nat",
			setup: func(k *fakeKernel) {
				k.set("nft/ipv4/mangle", HintChain)
				k.set("nft/ipv4/nat", kubeNat...)
			},
			want: NFT, reason: "only nft has " + HintChain,
			asked: []string{"nftChainExists nft/ipv4/mangle " + HintChain, "legacyChains legacy/ipv4/mangle", "legacyChains legacy/ipv6/mangle",
				"nftChainExists nft/ipv4/mangle " + CanaryChain, "nftChainExists nft/ipv6/mangle " + CanaryChain}},
		{name: "hint in legacy ipv6: mangle of each family read once",
			setup: func(k *fakeKernel) {
				k.set("legacy/ipv6/mangle", "PREROUTING", HintChain)
				k.set("legacy/ipv4/nat", kubeNat...)
			},
			want: Legacy, reason: "only legacy has " + HintChain,
			asked: []string{"nftChainExists nft/ipv4/mangle " + HintChain, "nftChainExists nft/ipv6/mangle " + HintChain,
				"legacyChains legacy/ipv4/mangle", "legacyChains legacy/ipv6/mangle",
				"nftChainExists nft/ipv4/mangle " + CanaryChain, "nftChainExists nft/ipv6/mangle " + CanaryChain}},
		{name: "no hint, canary in legacy: mangle read once per family for both chains",
			setup: func(k *fakeKernel) { k.set("legacy/ipv4/mangle", "PREROUTING", CanaryChain) },
			want:  Legacy, reason: "only legacy has " + CanaryChain,
			asked: []string{"nftChainExists nft/ipv4/mangle " + HintChain, "nftChainExists nft/ipv6/mangle " + HintChain,
				"legacyChains legacy/ipv4/mangle", "legacyChains legacy/ipv6/mangle",
				"nftChainExists nft/ipv4/mangle " + CanaryChain, "nftChainExists nft/ipv6/mangle " + CanaryChain}},
		{name: "neither: nat in use asked without reading it",
			setup: func(k *fakeKernel) {
				k.set("legacy/ipv4/nat", kubeNat...)
				k.inUse = map[string]bool{"legacy/ipv4/nat": true}
			},
			want: Legacy, reason: "only legacy has a nat table in use",
			asked: []string{"nftChainExists nft/ipv4/mangle " + HintChain, "nftChainExists nft/ipv6/mangle " + HintChain,
				"legacyChains legacy/ipv4/mangle", "legacyChains legacy/ipv6/mangle",
				"nftChainExists nft/ipv4/mangle " + CanaryChain, "nftChainExists nft/ipv6/mangle " + CanaryChain,
				"nftTableExists nft/ipv4/nat", "nftTableExists nft/ipv6/nat", "legacyInUse legacy/ipv4/nat"}},
		{name: "nothing anywhere: nft by default",
			setup: func(*fakeKernel) {}, want: NFT, reason: "defaulting to nft"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			k := &fakeKernel{}
			tt.setup(k)
			i := &Inspector{kernel: k, binaryPaths: noBinary}
			d, err := i.Detect(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if d.Backend != tt.want || !strings.Contains(d.Reason, tt.reason) {
				t.Errorf("Detect = %s (%s), want %s (%s)", d.Backend, d.Reason, tt.want, tt.reason)
			}
			for _, q := range k.asked {
				if strings.HasSuffix(q, "/nat") && (strings.HasPrefix(q, "legacyChains") || strings.HasPrefix(q, "nftChains")) {
					t.Errorf("detection read a nat table: %s", q)
				}
			}
			if tt.asked != nil && !slices.Equal(k.asked, tt.asked) {
				t.Errorf("asked:\n  %s\nwant:\n  %s", strings.Join(k.asked, "\n  "), strings.Join(tt.asked, "\n  "))
			}
		})
	}
}

func TestDetectErrors(t *testing.T) {
	k := &fakeKernel{fail: map[string]error{"legacyChains": errors.New("EPERM")}}
	k.set("nft/ipv4/mangle", HintChain)
	d, err := (&Inspector{kernel: k, binaryPaths: []string{"/nonexistent"}}).Detect(context.Background())
	if err != nil || d.Backend != NFT || d.Legacy.Err == nil {
		t.Errorf("legacy unreadable: %+v, %v", d, err)
	}
	k.fail["nftChainExists"], k.fail["nftTableExists"], k.fail["legacyInUse"] = errors.New("EPERM"), errors.New("EPERM"), errors.New("EPERM")
	if _, err := (&Inspector{kernel: k, binaryPaths: []string{"/nonexistent"}}).Detect(context.Background()); err == nil {
		t.Error("no error with both backends unreadable")
	}
}

// TestCountChainsNFTGeneration: the nft chain dump behind a prefix count runs only when the
// ruleset generation (or the namespace) changed; legacy reads its table every time.
func TestCountChainsNFTGeneration(t *testing.T) {
	ctx := context.Background()
	k := &fakeKernel{ns: netnsID{1, 100}}
	k.set("nft/ipv4/nat", "KUBE-SERVICES", "KUBE-SVC-A", "KUBE-SVC-B")
	i := &Inspector{kernel: k}
	count := func(prefix string, want int) {
		t.Helper()
		n, err := i.CountChains(ctx, NFT, IPv4, "nat", prefix)
		if err != nil || n != want {
			t.Fatalf("CountChains(%s) = %d, %v; want %d", prefix, n, err, want)
		}
	}
	dumps := func() int { return k.count("nftChains ") }

	count("KUBE-SVC-", 2)
	count("KUBE-SVC-", 2)
	count("KUBE-SVC-", 2)
	if dumps() != 1 || k.count("nftGeneration") != 3 {
		t.Fatalf("steady ruleset: %d dumps, %d generations; want 1 and 3", dumps(), k.count("nftGeneration"))
	}
	count("KUBE-SEP-", 0) // another question: its own count
	if dumps() != 2 {
		t.Fatalf("another prefix: %d dumps, want 2", dumps())
	}
	k.set("nft/ipv4/nat", "KUBE-SERVICES", "KUBE-SVC-A", "KUBE-SVC-B", "KUBE-SVC-C") // a commit: generation + 1
	count("KUBE-SVC-", 3)
	if dumps() != 3 {
		t.Fatalf("after a change: %d dumps, want 3", dumps())
	}
	count("KUBE-SVC-", 3)
	if dumps() != 3 {
		t.Fatalf("steady again: %d dumps, want 3", dumps())
	}
	n, err := i.CountChains(ctx, NFT, IPv6, "nat", "KUBE-SVC-") // another family
	if err != nil || n != 0 || dumps() != 4 {
		t.Fatalf("ipv6: %d, %v, %d dumps", n, err, dumps())
	}

	// Another namespace with the same generation number is not the same ruleset.
	k.mu.Lock()
	k.ns = netnsID{1, 200}
	k.mu.Unlock()
	count("KUBE-SVC-", 3)
	if dumps() != 5 {
		t.Fatalf("other namespace: %d dumps, want 5", dumps())
	}
	// Without the namespace's identity nothing is reused.
	k.mu.Lock()
	k.nsErr = errors.New("no /proc")
	k.mu.Unlock()
	count("KUBE-SVC-", 3)
	count("KUBE-SVC-", 3)
	if dumps() != 7 {
		t.Fatalf("unknown namespace: %d dumps, want 7", dumps())
	}
	// Without a generation the count comes from a dump every time, never from memory.
	k.mu.Lock()
	k.nsErr = nil
	k.mu.Unlock()
	k.fail = map[string]error{"nftGeneration": errors.New("EOPNOTSUPP")}
	before := dumps()
	count("KUBE-SVC-", 3)
	count("KUBE-SVC-", 3)
	if dumps() != before+2 {
		t.Fatalf("no generation: %d dumps for 2 counts", dumps()-before)
	}
	k.fail["nftChains"] = errors.New("EPERM")
	if _, err := i.CountChains(ctx, NFT, IPv4, "nat", "KUBE-SVC-"); err == nil {
		t.Error("no error when neither the generation nor the chains can be read")
	}

	// Legacy: every count is one read of the table.
	k.fail = nil
	k.set("legacy/ipv4/nat", "KUBE-SVC-A")
	for range 2 {
		if n, err := i.CountChains(ctx, Legacy, IPv4, "nat", "KUBE-SVC-"); err != nil || n != 1 {
			t.Fatalf("legacy: %d, %v", n, err)
		}
	}
	if reads := k.count("legacyChains legacy/ipv4/nat"); reads != 2 {
		t.Errorf("legacy: %d reads for 2 counts", reads)
	}
}

// TestCountChainsCacheBounded: many questions do not grow the remembered answers without end.
func TestCountChainsCacheBounded(t *testing.T) {
	k := &fakeKernel{ns: netnsID{1, 1}}
	k.set("nft/ipv4/nat", "A")
	i := &Inspector{kernel: k}
	for n := range 3 * countCacheMax {
		if _, err := i.CountChains(context.Background(), NFT, IPv4, "nat", fmt.Sprint(n)); err != nil {
			t.Fatal(err)
		}
	}
	if len(i.counts) > countCacheMax {
		t.Errorf("%d answers kept, at most %d", len(i.counts), countCacheMax)
	}
}
