package iptables

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
)

// Real-kernel tests. Every one works in its own named network namespace (ip netns add), where
// the iptables binaries create chains and the Inspector runs via ns.WithNetNSPath, so the host's
// tables are never touched.

// requireKernel skips (or fails under REQUIRE_E2E=1) unless we are root with the tools.
func requireKernel(tb testing.TB, tools ...string) {
	tb.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, tool := range append([]string{"ip", "iptables-nft", "iptables-legacy", "ip6tables-nft", "ip6tables-legacy"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := fmt.Sprintf("!!! REAL-KERNEL IPTABLES TESTS NOT RUN: missing %s !!!", strings.Join(missing, ", "))
	if os.Getenv("REQUIRE_E2E") == "1" {
		tb.Fatal(msg)
	}
	tb.Skip(msg)
}

// newNetns creates a named network namespace deleted at cleanup.
func newNetns(tb testing.TB) string {
	tb.Helper()
	name := fmt.Sprintf("sg-ipt-%d-%08x", os.Getpid(), rand.Uint32())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		tb.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	tb.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			tb.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	return name
}

// nsRun runs a command inside the namespace, with stdin when given.
func nsRun(tb testing.TB, netns, stdin string, args ...string) {
	tb.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", netns}, args...)...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// inNetns runs fn on a thread switched into the namespace.
func inNetns(tb testing.TB, netns string, fn func()) {
	tb.Helper()
	err := ns.WithNetNSPath("/run/netns/"+netns, func(ns.NetNS) error { fn(); return nil })
	if err != nil {
		tb.Fatalf("entering netns %s: %v", netns, err)
	}
}

// kubeProxyRuleset returns iptables-restore input shaped like kube-proxy's: a hint chain in
// mangle and, in nat, KUBE-SERVICES -> KUBE-SVC-* (2 endpoints) -> KUBE-SEP-* (masq + DNAT),
// about `rules` rules in total (7 per service). family 6 uses IPv6 addresses.
func kubeProxyRuleset(rules int, family Family) string {
	services := max(1, (rules-7)/7)
	var chains, body strings.Builder
	ip := func(prefix string, n int) string {
		if family == IPv6 {
			return fmt.Sprintf("fd00:%s::%x", prefix, n)
		}
		return fmt.Sprintf("10.%s.%d.%d", prefix, n/256%256, n%256)
	}
	hash := func(s string) string {
		h := fnv.New64a()
		h.Write([]byte(s))
		return fmt.Sprintf("%016X", h.Sum64())
	}
	plen := "/32"
	if family == IPv6 {
		plen = "/128"
	}
	for s := range services {
		svc := fmt.Sprintf("ns%d/svc%d:http", s%50, s)
		svcChain := "KUBE-SVC-" + hash(svc)
		fmt.Fprintf(&chains, ":%s - [0:0]\n", svcChain)
		fmt.Fprintf(&body, "-A KUBE-SERVICES -d %s%s -p tcp -m comment --comment \"%s cluster IP\" -m tcp --dport 80 -j %s\n",
			ip("96", s), plen, svc, svcChain)
		for e := range 2 {
			ep := ip("244", 2*s+e)
			sepChain := "KUBE-SEP-" + hash(svc+ep)
			fmt.Fprintf(&chains, ":%s - [0:0]\n", sepChain)
			if e == 0 {
				fmt.Fprintf(&body, "-A %s -m comment --comment \"%s -> %s\" -m statistic --mode random --probability 0.50000000000 -j %s\n", svcChain, svc, ep, sepChain)
			} else {
				fmt.Fprintf(&body, "-A %s -m comment --comment \"%s -> %s\" -j %s\n", svcChain, svc, ep, sepChain)
			}
			fmt.Fprintf(&body, "-A %s -s %s%s -m comment --comment \"%s\" -j KUBE-MARK-MASQ\n", sepChain, ep, plen, svc)
			dst := ep + ":8080"
			if family == IPv6 {
				dst = "[" + ep + "]:8080"
			}
			fmt.Fprintf(&body, "-A %s -p tcp -m comment --comment \"%s\" -m tcp -j DNAT --to-destination %s\n", sepChain, svc, dst)
		}
	}
	return "*mangle\n:KUBE-IPTABLES-HINT - [0:0]\nCOMMIT\n" +
		"*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n" +
		":KUBE-SERVICES - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n:KUBE-POSTROUTING - [0:0]\n" + chains.String() +
		"-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n" +
		"-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n" +
		"-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n" +
		"-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000\n" +
		"-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n" +
		"-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000\n" +
		"-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully\n" +
		body.String() + "COMMIT\n"
}

// restoreCmd is the restore binary for a backend and family.
func restoreCmd(b Backend, f Family) string {
	prefix := "iptables-"
	if f == IPv6 {
		prefix = "ip6tables-"
	}
	return prefix + string(b) + "-restore"
}

func mustExist(t *testing.T, i *Inspector, b Backend, f Family, table, chain string, want bool) {
	t.Helper()
	got, err := i.ChainExists(context.Background(), b, f, table, chain)
	if err != nil {
		t.Fatalf("ChainExists(%s, %s, %s, %s): %v", b, f, table, chain, err)
	}
	if got != want {
		t.Errorf("ChainExists(%s, %s, %s, %s) = %v, want %v", b, f, table, chain, got, want)
	}
}

func mustChains(t *testing.T, i *Inspector, b Backend, f Family, table string) []string {
	t.Helper()
	got, err := i.Chains(context.Background(), b, f, table)
	if err != nil {
		t.Fatalf("Chains(%s, %s, %s): %v", b, f, table, err)
	}
	return got
}

// TestKernelChains fills one backend of a namespace at a time and checks that exactly what was
// created is seen, in that backend and family only.
func TestKernelChains(t *testing.T) {
	requireKernel(t, "iptables-nft-restore", "iptables-legacy-restore", "ip6tables-nft-restore", "ip6tables-legacy-restore")
	for _, b := range []Backend{NFT, Legacy} {
		other := Legacy
		if b == Legacy {
			other = NFT
		}
		t.Run(string(b), func(t *testing.T) {
			netns := newNetns(t)
			nsRun(t, netns, kubeProxyRuleset(100, IPv4), restoreCmd(b, IPv4))
			nsRun(t, netns, "", "ip6tables-"+string(b), "-t", "nat", "-N", "KUBE-V6-ONLY")
			nsRun(t, netns, "", "iptables-"+string(b), "-t", "filter", "-N", "SG-FILTER-ONLY")
			i := New()
			inNetns(t, netns, func() {
				mustExist(t, i, b, IPv4, "nat", "KUBE-SERVICES", true)
				mustExist(t, i, b, IPv4, "nat", "KUBE-POSTROUTING", true)
				mustExist(t, i, b, IPv4, "nat", "POSTROUTING", true) // builtin, has a rule
				mustExist(t, i, b, IPv4, "mangle", HintChain, true)
				mustExist(t, i, b, IPv4, "nat", "KUBE-NOPE", false)
				mustExist(t, i, b, IPv4, "nat", "kube-services", false)     // names are case-sensitive
				mustExist(t, i, b, IPv4, "nat", "SG-FILTER-ONLY", false)    // other table
				mustExist(t, i, b, IPv4, "filter", "SG-FILTER-ONLY", true)  //
				mustExist(t, i, b, IPv4, "raw", "PREROUTING", false)        // table absent
				mustExist(t, i, b, IPv4, "no-such-table", "KUBE-X", false)  // not a table at all
				mustExist(t, i, b, IPv4, "nat", "KUBE-V6-ONLY", false)      // other family
				mustExist(t, i, b, IPv6, "nat", "KUBE-V6-ONLY", true)       //
				mustExist(t, i, b, IPv6, "nat", "KUBE-SERVICES", false)     //
				mustExist(t, i, other, IPv4, "nat", "KUBE-SERVICES", false) // other backend
				mustExist(t, i, b, IPv4, "nat", strings.Repeat("K", 40), false)
				mustExist(t, i, b, IPv4, "nat", strings.Repeat("K", 300), false)
				mustExist(t, i, b, IPv4, strings.Repeat("t", 300), "KUBE-SERVICES", false)

				nat := mustChains(t, i, b, IPv4, "nat")
				if n := countPrefix(nat, "KUBE-SVC-"); n != 13 {
					t.Errorf("%d KUBE-SVC- chains, want 13: %q", n, nat)
				}
				if n := countPrefix(nat, "KUBE-SEP-"); n != 26 {
					t.Errorf("%d KUBE-SEP- chains, want 26", n)
				}
				for _, want := range []string{"KUBE-SERVICES", "KUBE-MARK-MASQ", "PREROUTING", "OUTPUT", "POSTROUTING"} {
					if !slices.Contains(nat, want) {
						t.Errorf("nat chains lack %s: %q", want, nat)
					}
				}
				if slices.Contains(nat, "SG-FILTER-ONLY") || slices.Contains(nat, "ERROR") {
					t.Errorf("nat chains hold foreign names: %q", nat)
				}
				if got := mustChains(t, i, b, IPv4, "raw"); got != nil {
					t.Errorf("absent raw table: chains %q, want nil", got)
				}
				if got := mustChains(t, i, b, IPv6, "nat"); !slices.Contains(got, "KUBE-V6-ONLY") {
					t.Errorf("ipv6 nat chains = %q, want KUBE-V6-ONLY", got)
				}
				if got := mustChains(t, i, other, IPv4, "nat"); got != nil {
					t.Errorf("%s nat chains = %q, want nil", other, got)
				}
				if b == Legacy {
					// Legacy reports builtins from the valid hooks, in hook order, user chains after.
					if got := mustChains(t, i, b, IPv4, "filter"); !slices.Equal(got, []string{"INPUT", "FORWARD", "OUTPUT", "SG-FILTER-ONLY"}) {
						t.Errorf("legacy filter chains = %q", got)
					}
				}
			})
		})
	}
}

// TestKernelIPv6Ruleset parses a full kube-proxy-shaped ip6 table in both backends (the ip6t
// entry layout differs from ipt).
func TestKernelIPv6Ruleset(t *testing.T) {
	requireKernel(t, "ip6tables-nft-restore", "ip6tables-legacy-restore")
	netns := newNetns(t)
	for _, b := range []Backend{NFT, Legacy} {
		nsRun(t, netns, kubeProxyRuleset(300, IPv6), restoreCmd(b, IPv6))
	}
	i := New()
	inNetns(t, netns, func() {
		for _, b := range []Backend{NFT, Legacy} {
			nat := mustChains(t, i, b, IPv6, "nat")
			if n := countPrefix(nat, "KUBE-SEP-"); n != 82 {
				t.Errorf("%s: %d KUBE-SEP- chains, want 82", b, n)
			}
			mustExist(t, i, b, IPv6, "nat", "KUBE-SERVICES", true)
			mustExist(t, i, b, IPv6, "mangle", HintChain, true)
			mustExist(t, i, b, IPv4, "nat", "KUBE-SERVICES", false)
		}
	})
}

// TestKernelLegacyNoSideEffect: asking about a legacy table the namespace never used must not
// instantiate it (which a bare IPT_SO_GET_INFO would do), and a table unknown to the kernel is
// ENOENT = absent when asked directly.
func TestKernelLegacyNoSideEffect(t *testing.T) {
	requireKernel(t)
	netns := newNetns(t)
	i := New()
	inNetns(t, netns, func() {
		for _, table := range []string{"nat", "filter", "mangle", "raw", "security"} {
			if got := mustChains(t, i, Legacy, IPv4, table); got != nil {
				t.Errorf("fresh namespace: legacy %s chains %q", table, got)
			}
		}
		names, err := os.ReadFile("/proc/thread-self/net/ip_tables_names")
		if err == nil && len(names) > 0 {
			t.Errorf("legacy tables instantiated by reading: %q", names)
		}
		for _, f := range []Family{IPv4, IPv6} {
			got, err := readLegacyTable(f, "no-such-table")
			if err != nil || got != nil {
				t.Errorf("readLegacyTable(%s, no-such-table) = %q, %v; want nil, nil", f, got, err)
			}
		}
		// The direct read of an existing-but-unused table instantiates it with builtins only.
		got, err := readLegacyTable(IPv4, "raw")
		if err != nil || !slices.Equal(got, []string{"PREROUTING", "OUTPUT"}) {
			t.Errorf("readLegacyTable(raw) = %q, %v", got, err)
		}
	})
}

// TestKernelDetect covers the decision on real chains, including a switched node where both
// backends hold kube-proxy chains.
func TestKernelDetect(t *testing.T) {
	requireKernel(t, "iptables-nft-restore", "iptables-legacy-restore")
	noBinary := []string{"/nonexistent/iptables"}
	detect := func(t *testing.T, netns string) Detection {
		t.Helper()
		var d Detection
		inNetns(t, netns, func() {
			var err error
			if d, err = (&Inspector{binaryPaths: noBinary}).Detect(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
		t.Logf("%s: %s (nft %+v, legacy %+v)", d.Backend, d.Reason, d.NFT, d.Legacy)
		return d
	}

	t.Run("hint in nft, stale legacy", func(t *testing.T) {
		netns := newNetns(t)
		nsRun(t, netns, kubeProxyRuleset(50, IPv4), "iptables-nft-restore")
		nsRun(t, netns, "", "iptables-legacy", "-t", "nat", "-N", "KUBE-SERVICES")
		nsRun(t, netns, "", "iptables-legacy", "-t", "mangle", "-N", CanaryChain)
		d := detect(t, netns)
		if d.Backend != NFT || !strings.Contains(d.Reason, "only nft has "+HintChain) || !d.BothInUse() {
			t.Errorf("Detect = %+v", d)
		}
		if !d.NFT.Hint || d.Legacy.Hint || !d.Legacy.Canary || d.NFT.NAT || d.Legacy.NAT {
			t.Errorf("facts = nft %+v legacy %+v (nat asked although the hint decided)", d.NFT, d.Legacy)
		}
	})
	t.Run("hint in legacy ipv6", func(t *testing.T) {
		netns := newNetns(t)
		nsRun(t, netns, "", "ip6tables-legacy", "-t", "mangle", "-N", HintChain)
		nsRun(t, netns, "", "iptables-nft", "-t", "nat", "-N", "CNI-abc")
		if d := detect(t, netns); d.Backend != Legacy || !strings.Contains(d.Reason, "only legacy has "+HintChain) {
			t.Errorf("Detect = %+v", d)
		}
	})
	t.Run("canary without hint", func(t *testing.T) {
		netns := newNetns(t)
		nsRun(t, netns, "", "iptables-legacy", "-t", "mangle", "-N", CanaryChain)
		nsRun(t, netns, "", "iptables-nft", "-t", "nat", "-A", "POSTROUTING", "-j", "MASQUERADE")
		if d := detect(t, netns); d.Backend != Legacy || !strings.Contains(d.Reason, "only legacy has "+CanaryChain) {
			t.Errorf("Detect = %+v", d)
		}
	})
	t.Run("legacy nat rules, nothing in mangle", func(t *testing.T) {
		netns := newNetns(t)
		nsRun(t, netns, "", "iptables-legacy", "-t", "nat", "-A", "POSTROUTING", "-j", "MASQUERADE")
		nsRun(t, netns, "", "iptables-nft", "-t", "filter", "-N", "SG-X") // nft in use, but not its nat
		d := detect(t, netns)
		if d.Backend != Legacy || !strings.Contains(d.Reason, "only legacy has a nat table in use") {
			t.Errorf("Detect = %+v", d)
		}
	})
	t.Run("an empty legacy nat table is not in use", func(t *testing.T) {
		netns := newNetns(t)
		nsRun(t, netns, "", "iptables-legacy", "-t", "nat", "-L", "-n") // instantiates it, empty
		nsRun(t, netns, "", "iptables-nft", "-t", "nat", "-N", "KUBE-SERVICES")
		if d := detect(t, netns); d.Backend != NFT || !strings.Contains(d.Reason, "only nft has a nat table in use") {
			t.Errorf("Detect = %+v", d)
		}
	})
	t.Run("empty namespace follows the binary", func(t *testing.T) {
		netns := newNetns(t)
		if d := detect(t, netns); d.Backend != NFT || !strings.Contains(d.Reason, "defaulting to nft") || d.BothInUse() {
			t.Errorf("Detect = %+v", d)
		}
		inNetns(t, netns, func() {
			d, err := New().Detect(context.Background()) // this machine's real /usr/sbin/iptables
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("system binary: %s -> %s (%s)", d.Binary, d.BinaryBackend, d.Reason)
			if d.BinaryBackend != "" && d.Backend != d.BinaryBackend {
				t.Errorf("Detect = %+v", d)
			}
		})
	})
}

// TestKernelCountChainsGeneration: a prefix count on nft dumps the chains again only after the
// ruleset changed, in this namespace; a change in another namespace does not count.
func TestKernelCountChainsGeneration(t *testing.T) {
	requireKernel(t, "iptables-nft-restore")
	netns, other := newNetns(t), newNetns(t)
	nsRun(t, netns, kubeProxyRuleset(100, IPv4), "iptables-nft-restore")
	k := &countingKernel{kernel: realKernel{}}
	i := &Inspector{kernel: k}
	count := func(want int) {
		t.Helper()
		inNetns(t, netns, func() {
			n, err := i.CountChains(context.Background(), NFT, IPv4, "nat", "KUBE-SVC-")
			if err != nil || n != want {
				t.Fatalf("CountChains = %d, %v; want %d", n, err, want)
			}
		})
	}
	count(13)
	count(13)
	if k.dumps.Load() != 1 {
		t.Fatalf("%d dumps for two counts of a steady ruleset", k.dumps.Load())
	}
	nsRun(t, other, "", "iptables-nft", "-t", "nat", "-N", "KUBE-SVC-OTHER-NS")
	count(13)
	if k.dumps.Load() != 1 {
		t.Fatalf("a change in another namespace caused a dump (%d)", k.dumps.Load())
	}
	nsRun(t, netns, "", "iptables-nft", "-t", "nat", "-N", "KUBE-SVC-NEW")
	count(14)
	nsRun(t, netns, "", "iptables-nft", "-t", "filter", "-N", "SG-ELSEWHERE") // any table's change is a new generation
	count(14)
	if k.dumps.Load() != 3 {
		t.Fatalf("%d dumps, want 3 (one per generation)", k.dumps.Load())
	}
	var gens [2]uint32
	inNetns(t, netns, func() {
		for j := range gens {
			g, err := nftGeneration(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			gens[j] = g
		}
	})
	if gens[0] != gens[1] {
		t.Errorf("generation moved without a change: %d, %d", gens[0], gens[1])
	}
}

// countingKernel counts the nft chain dumps of a kernel.
type countingKernel struct {
	kernel
	dumps atomic.Int64
}

func (c *countingKernel) nftChains(ctx context.Context, f Family, table string) ([]string, error) {
	c.dumps.Add(1)
	return c.kernel.nftChains(ctx, f, table)
}

// TestKernelLegacyInUse: the entry count tells an empty table from one with rules or user
// chains, and asking does not create the table.
func TestKernelLegacyInUse(t *testing.T) {
	requireKernel(t)
	netns := newNetns(t)
	inUse := func(table string) bool {
		t.Helper()
		var ok bool
		inNetns(t, netns, func() {
			var err error
			if ok, err = legacyTableInUse(IPv4, table); err != nil {
				t.Fatal(err)
			}
		})
		return ok
	}
	if inUse("nat") {
		t.Error("absent nat in use")
	}
	inNetns(t, netns, func() {
		if names, _ := os.ReadFile("/proc/thread-self/net/ip_tables_names"); len(names) > 0 {
			t.Errorf("asking instantiated %q", names)
		}
	})
	nsRun(t, netns, "", "iptables-legacy", "-t", "nat", "-L", "-n")
	if inUse("nat") {
		t.Error("empty nat in use")
	}
	nsRun(t, netns, "", "iptables-legacy", "-t", "nat", "-N", "KUBE-X")
	if !inUse("nat") {
		t.Error("nat with a user chain not in use")
	}
	nsRun(t, netns, "", "iptables-legacy", "-t", "filter", "-A", "INPUT", "-j", "ACCEPT")
	if !inUse("filter") {
		t.Error("filter with a rule not in use")
	}
}

func TestKernelContext(t *testing.T) {
	requireKernel(t)
	netns := newNetns(t)
	i := New()
	inNetns(t, netns, func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		for _, b := range []Backend{NFT, Legacy} {
			if _, err := i.ChainExists(ctx, b, IPv4, "nat", "X"); !errors.Is(err, context.Canceled) {
				t.Errorf("%s: cancelled ctx: err = %v", b, err)
			}
		}
		ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, b := range []Backend{NFT, Legacy} {
			if ok, err := i.ChainExists(ctx, b, IPv4, "nat", "X"); ok || err != nil {
				t.Errorf("%s: with deadline: %v, %v", b, ok, err)
			}
		}
		expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
		defer cancel2()
		if _, err := nftChains(expired, IPv4, "nat"); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("expired deadline: err = %v", err)
		}
		if _, err := i.ChainExists(ctx, "ebtables", IPv4, "nat", "X"); err == nil {
			t.Error("unknown backend accepted")
		}
		if _, err := i.Chains(ctx, NFT, Family(5), "nat"); err == nil {
			t.Error("unknown family accepted")
		}
	})
}
