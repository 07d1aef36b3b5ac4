package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sandbox-guard/sandbox-guard/internal/checks"
	"github.com/sandbox-guard/sandbox-guard/internal/config"
	"github.com/sandbox-guard/sandbox-guard/internal/iptables"
	"github.com/sandbox-guard/sandbox-guard/internal/snapshot"
	"github.com/sandbox-guard/sandbox-guard/test/e2e/harness"
)

// Measurement 3: checks.Runner.Refresh of the eks preset's kube-proxy-rules check against
// kube-proxy-shaped nat tables of 100, 10k and 100k rules, in both iptables backends.
//
// The refresh runs in a child process (this binary again) that lives entirely in the rule
// set's network namespace, as the plugin lives in the node's. Entering the namespace from this
// process (ns.WithNetNSPath, NetNS.Do) switches only the calling thread, and Refresh probes on
// goroutines of their own: they would run on other threads and read the host's tables.

const childEnv = "SG_BENCH_REFRESH_CHILD"

var ruleSizes = []struct {
	label string
	rules int
}{{"100", 100}, {"10k", 10_000}, {"100k", 100_000}}

type refreshSpec struct {
	Backend string        `json:"backend"`
	Rules   int           `json:"rules"`
	Budget  time.Duration `json:"budget"` // per timed series
	MinN    int           `json:"minN"`
	MaxN    int           `json:"maxN"`
}

type series struct {
	Name    string          `json:"name"`
	Samples []time.Duration `json:"samples"`
	OK      bool            `json:"ok"`
	Detail  string          `json:"detail"`
	Reads   map[string]int  `json:"reads,omitempty"` // kernel questions per refresh
}

type refreshResult struct {
	Series []series `json:"series"`
}

// TestRefreshChild is the child side; it does nothing unless started by measureRefresh.
func TestRefreshChild(t *testing.T) {
	raw := os.Getenv(childEnv)
	if raw == "" {
		t.Skip("only run by the benchmark, inside a network namespace")
	}
	var spec refreshSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		t.Fatal(err)
	}
	res, err := refreshChild(spec)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(res)
	fmt.Println("SGBENCH-REFRESH " + string(b))
}

// countingReader counts the kernel questions a refresh asks.
type countingReader struct {
	r                             checks.ChainReader
	chains, exists, count, detect atomic.Int64
}

func (c *countingReader) ChainExists(ctx context.Context, b iptables.Backend, f iptables.Family, table, chain string) (bool, error) {
	c.exists.Add(1)
	return c.r.ChainExists(ctx, b, f, table, chain)
}

func (c *countingReader) Chains(ctx context.Context, b iptables.Backend, f iptables.Family, table string) ([]string, error) {
	c.chains.Add(1)
	return c.r.Chains(ctx, b, f, table)
}

func (c *countingReader) CountChains(ctx context.Context, b iptables.Backend, f iptables.Family, table, prefix string) (int, error) {
	c.count.Add(1)
	return c.r.CountChains(ctx, b, f, table, prefix)
}

func (c *countingReader) Detect(ctx context.Context) (iptables.Detection, error) {
	c.detect.Add(1)
	return c.r.Detect(ctx)
}

// autoSeries is the refresh with backend detection included.
const autoSeries = "Refresh: auto backend, detection included (as `check`)"

// kubeProxyCheck is the eks preset's kube-proxy-rules check with the backend pinned (the
// preset's auto detects it once per 30 s, see the notes) and optionally a chainPrefix.
func kubeProxyCheck(backend, prefix string) ([]config.Check, error) {
	preset, _ := config.PresetChecks(config.PresetEKS)
	for _, c := range preset {
		if c.Name == "kube-proxy-rules" && c.Iptables != nil {
			ipt := *c.Iptables
			ipt.Backend = backend
			ipt.ChainPrefix = prefix
			c.Iptables = &ipt
			return []config.Check{c}, nil
		}
	}
	return nil, errors.New("the eks preset has no kube-proxy-rules iptables check")
}

// timeSeries runs fn at least minN and at most maxN times, stopping after budget.
func timeSeries(spec refreshSpec, fn func() error) ([]time.Duration, error) {
	runtime.GC() // garbage of the previous series (a 100k chain list) must not be collected during this one
	var out []time.Duration
	start := time.Now()
	for len(out) < spec.MaxN && (len(out) < spec.MinN || time.Since(start) < spec.Budget) {
		t0 := time.Now()
		if err := fn(); err != nil {
			return out, err
		}
		out = append(out, time.Since(t0))
	}
	return out, nil
}

func refreshChild(spec refreshSpec) (*refreshResult, error) {
	ctx := context.Background()
	b := iptables.Backend(spec.Backend)
	res := &refreshResult{}
	insp := iptables.New()

	type timed struct {
		name   string
		fn     func() error
		sample []time.Duration
		detail string
		reads  map[string]int
	}
	var all []*timed
	for _, row := range []struct{ name, prefix string }{
		{"Refresh: chain KUBE-SERVICES (eks preset)", ""},
		{"Refresh: chain KUBE-SERVICES + chainPrefix KUBE-SVC-", "KUBE-SVC-"},
	} {
		specs, err := kubeProxyCheck(spec.Backend, row.prefix)
		if err != nil {
			return nil, err
		}
		built, err := checks.Build(specs, checks.Deps{})
		if err != nil {
			return nil, err
		}
		var store snapshot.Store
		r := checks.NewRunner(built.Checks, &store, checks.Options{}) // production defaults: 1 s probe timeout
		tm := &timed{name: row.name}
		tm.fn = func() error {
			snap := r.Refresh(ctx)
			tm.detail = snap.Results[0].Detail
			if !snap.Ready() {
				return fmt.Errorf("check fails: %s", tm.detail)
			}
			return nil
		}
		if tm.reads, err = refreshReads(ctx, specs); err != nil {
			return nil, err
		}
		all = append(all, tm)
	}
	// The auto backend as `check` runs it: a runner built afresh, so every refresh detects the
	// backend first (a running plugin detects once per 30 s).
	{
		specs, err := kubeProxyCheck("", "")
		if err != nil {
			return nil, err
		}
		tm := &timed{name: autoSeries}
		tm.fn = func() error {
			built, err := checks.Build(specs, checks.Deps{})
			if err != nil {
				return err
			}
			var store snapshot.Store
			snap := checks.NewRunner(built.Checks, &store, checks.Options{}).Refresh(ctx)
			tm.detail = snap.Results[0].Detail
			if !snap.Ready() || !strings.Contains(tm.detail, "("+spec.Backend+" backend)") {
				return fmt.Errorf("check fails or detects another backend: %s", tm.detail)
			}
			return nil
		}
		if tm.reads, err = refreshReads(ctx, specs); err != nil {
			return nil, err
		}
		all = append(all, tm)
	}
	// The kernel questions alone, for reference: one chain (nft: one netlink request; legacy:
	// a whole-table read), and all chain names of nat (nft: a chain dump; legacy: the same read).
	all = append(all,
		&timed{name: "raw: ChainExists(nat, KUBE-SERVICES)", fn: func() error {
			ok, err := insp.ChainExists(ctx, b, iptables.IPv4, "nat", "KUBE-SERVICES")
			if err == nil && !ok {
				err = errors.New("KUBE-SERVICES missing")
			}
			return err
		}},
		&timed{name: "raw: Chains(nat)", fn: func() error { _, err := insp.Chains(ctx, b, iptables.IPv4, "nat"); return err }},
		&timed{name: "raw: CountChains(nat, KUBE-SVC-), ruleset unchanged", fn: func() error {
			n, err := insp.CountChains(ctx, b, iptables.IPv4, "nat", "KUBE-SVC-")
			if err == nil && n == 0 {
				err = errors.New("no KUBE-SVC- chain")
			}
			return err
		}})

	for _, tm := range all {
		if err := tm.fn(); err != nil { // warm
			return nil, fmt.Errorf("%s: %w", tm.name, err)
		}
	}
	if b == iptables.Legacy {
		// Interleaved: each round runs every series once, in a rotating order, so that drift
		// hits all series alike and a refresh compares with the table read of its own round.
		runtime.GC()
		start := time.Now()
		for round := 0; round < spec.MaxN && (round < spec.MinN || time.Since(start) < time.Duration(len(all))*spec.Budget); round++ {
			for k := range all {
				tm := all[(round+k)%len(all)]
				t0 := time.Now()
				if err := tm.fn(); err != nil {
					return nil, fmt.Errorf("%s: %w", tm.name, err)
				}
				tm.sample = append(tm.sample, time.Since(t0))
			}
		}
	} else {
		// One series after the other: the garbage of a 40k-chain dump (and the collection it
		// causes) would otherwise slow the microsecond questions next to it.
		for _, tm := range all {
			var err error
			if tm.sample, err = timeSeries(spec, tm.fn); err != nil {
				return nil, fmt.Errorf("%s: %w", tm.name, err)
			}
		}
	}
	for _, tm := range all {
		res.Series = append(res.Series, series{Name: tm.name, Samples: tm.sample, OK: true, Detail: tm.detail, Reads: tm.reads})
	}

	// Detection (the auto backend, once per 30 s in a running plugin).
	det := spec
	det.MinN, det.MaxN, det.Budget = min(spec.MinN, 15), min(spec.MaxN, 100), spec.Budget/3
	samples, err := timeSeries(det, func() error { _, err := insp.Detect(ctx); return err })
	if err != nil {
		return nil, fmt.Errorf("Detect: %w", err)
	}
	d, _ := insp.Detect(ctx)
	res.Series = append(res.Series, series{Name: "raw: Detect (auto backend)", Samples: samples, OK: string(d.Backend) == spec.Backend, Detail: string(d.Backend) + ": " + d.Reason})
	return res, nil
}

// kubeProxyRuleset is iptables-restore input shaped like kube-proxy's (a copy of the one in
// internal/iptables/kernel_test.go): a hint chain in mangle and, in nat, KUBE-SERVICES ->
// KUBE-SVC-* (2 endpoints) -> KUBE-SEP-* (masquerade mark + DNAT), 7 rules per service.
func kubeProxyRuleset(rules int) string {
	services := max(1, (rules-7)/7)
	var chains, body strings.Builder
	ip := func(prefix string, n int) string { return fmt.Sprintf("10.%s.%d.%d", prefix, n/256%256, n%256) }
	hash := func(s string) string {
		h := fnv.New64a()
		h.Write([]byte(s))
		return fmt.Sprintf("%016X", h.Sum64())
	}
	for s := range services {
		svc := fmt.Sprintf("ns%d/svc%d:http", s%50, s)
		svcChain := "KUBE-SVC-" + hash(svc)
		fmt.Fprintf(&chains, ":%s - [0:0]\n", svcChain)
		fmt.Fprintf(&body, "-A KUBE-SERVICES -d %s/32 -p tcp -m comment --comment \"%s cluster IP\" -m tcp --dport 80 -j %s\n", ip("96", s), svc, svcChain)
		for e := range 2 {
			ep := ip("244", 2*s+e)
			sepChain := "KUBE-SEP-" + hash(svc+ep)
			fmt.Fprintf(&chains, ":%s - [0:0]\n", sepChain)
			if e == 0 {
				fmt.Fprintf(&body, "-A %s -m comment --comment \"%s -> %s\" -m statistic --mode random --probability 0.50000000000 -j %s\n", svcChain, svc, ep, sepChain)
			} else {
				fmt.Fprintf(&body, "-A %s -m comment --comment \"%s -> %s\" -j %s\n", svcChain, svc, ep, sepChain)
			}
			fmt.Fprintf(&body, "-A %s -s %s/32 -m comment --comment \"%s\" -j KUBE-MARK-MASQ\n", sepChain, ep, svc)
			fmt.Fprintf(&body, "-A %s -p tcp -m comment --comment \"%s\" -m tcp -j DNAT --to-destination %s:8080\n", sepChain, svc, ep)
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

// privateNetns creates a network namespace and returns its path and a function deleting it.
func privateNetns(name string) (string, func(), error) {
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return "", nil, fmt.Errorf("ip netns add %s: %v: %s", name, err, out)
	}
	return "/run/netns/" + name, func() { _ = exec.Command("ip", "netns", "del", name).Run() }, nil
}

type refreshCase struct {
	backend string
	size    string
	rules   int
	built   int // rules in the nat table
	chains  int
	restore time.Duration
	res     *refreshResult
	// The plugin binary run in the namespace, whole processes: `check` of the kube-proxy-rules
	// check (auto backend) and, as the process floor, `version`.
	check, version       durations
	checkCPU, versionCPU durations // user + system time of each run
	checkDetail          string
}

func measureRefresh(t testing.TB, s *section) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	budget, minN, maxN := 3*time.Second, 15, 200
	if *quick {
		budget, minN, maxN = 300*time.Millisecond, 3, 20
	}
	s.methodf("For each backend and size, a fresh network namespace gets a kube-proxy-shaped ruleset (KUBE-SERVICES -> "+
		"KUBE-SVC-* -> KUBE-SEP-*, 7 rules and 3 chains per service, the generator of internal/iptables/bench_test.go) through "+
		"`iptables-nft-restore` or `iptables-legacy-restore`. Then this binary runs again *inside* that namespace (nsenter), as "+
		"the plugin runs inside the node's, and times `checks.Runner.Refresh` of a runner built by `checks.Build` from the eks "+
		"preset's `kube-proxy-rules` check (iptables, table nat, chain KUBE-SERVICES) with the backend set explicitly, and again "+
		"with `chainPrefix: KUBE-SVC-` added, and with the auto backend through a runner built afresh for every refresh, so that "+
		"each one detects the backend first, as `check` does. Production defaults otherwise (1 s probe timeout); every refresh must "+
		"find the chain. The raw kernel questions (`iptables.Inspector.ChainExists`, `.Chains`, `.CountChains` and `.Detect`) are "+
		"timed alongside. "+
		"nft: each series runs alone after a garbage collection (a 40k-chain dump's garbage would slow the microsecond questions "+
		"next to it), at least %[1]d times and until %[2]v have passed (at most %[3]d). legacy: the six series run interleaved, one "+
		"call of each per round in a rotating order, so drift hits them alike and each refresh pairs with the table read of its "+
		"round, for at least %[1]d rounds and until %[4]v have passed (at most %[3]d rounds). Medians are reported. One refresh with a "+
		"counting reader shows what a refresh asks the kernel.", minN, budget, maxN, 6*budget)
	s.notef("Why a child process: entering a namespace from the benchmark process (`NetNS.Do`, `ns.WithNetNSPath`) switches only " +
		"the calling OS thread, while `Refresh` runs each probe on a goroutine of its own, which the Go runtime schedules on other " +
		"threads still in the host's namespace: the probes would read the host's tables.")
	plugin := harness.Load(t).Plugin
	checkRuns := iterations(25, 3)
	s.methodf("The one-shot `sandbox-guard check` (the binary `make build` made, configuration: preset none and the "+
		"kube-proxy-rules check with the auto backend) runs %d times per ruleset as a whole process inside the namespace, "+
		"alternating with `sandbox-guard version` (the same binary starting and exiting: the process floor); medians of wall time, "+
		"and of the CPU time `check` uses beyond `version`.", checkRuns)
	var cases []*refreshCase
	for _, backend := range []string{"nft", "legacy"} {
		for _, size := range ruleSizes {
			c := &refreshCase{backend: backend, size: size.label, rules: size.rules}
			if err := runRefreshCase(t, exe, plugin, checkRuns, c, refreshSpec{Backend: backend, Rules: size.rules, Budget: budget, MinN: minN, MaxN: maxN}); err != nil {
				return fmt.Errorf("%s %s rules: %w", backend, size.label, err)
			}
			cases = append(cases, c)
		}
	}

	get := func(c *refreshCase, prefix string) series {
		for _, sr := range c.res.Series {
			if strings.HasPrefix(sr.Name, prefix) {
				return sr
			}
		}
		return series{}
	}
	const (
		refreshChain  = "Refresh: chain KUBE-SERVICES (eks preset)"
		refreshPrefix = "Refresh: chain KUBE-SERVICES + chainPrefix KUBE-SVC-"
		rawExists     = "raw: ChainExists(nat, KUBE-SERVICES)"
		rawChains     = "raw: Chains(nat)"
		rawCount      = "raw: CountChains(nat, KUBE-SVC-), ruleset unchanged"
	)
	med := func(c *refreshCase, name string) time.Duration { return durations(get(c, name).Samples).median() }
	s.printf("Rulesets built (nat table):\n\n| backend | size | rules | chains | restore took |\n|---|---|---|---|---|\n")
	for _, c := range cases {
		s.printf("| %s | %s | %d | %d | %s |\n", c.backend, c.size, c.built, c.chains, fmtDur(c.restore))
	}
	s.printf("\nMedians (n = samples; p90 in brackets). **Floor**: one kernel question about one chain at the same size, " +
		"`raw: ChainExists` (nft: one `NFT_MSG_GETCHAIN`; legacy: one read of the whole table, which is what any legacy question " +
		"costs); the last column is the 100k median over that floor.\n\n" +
		"| backend | what | 100 rules | 10k rules | 100k rules | 100k / 100 | 100k / floor |\n|---|---|---|---|---|---|---|\n")
	byBackend := func(backend string) []*refreshCase {
		var bc []*refreshCase
		for _, c := range cases {
			if c.backend == backend {
				bc = append(bc, c)
			}
		}
		return bc
	}
	for _, backend := range []string{"nft", "legacy"} {
		bc := byBackend(backend)
		for _, name := range []string{refreshChain, refreshPrefix, autoSeries, rawExists, rawChains, rawCount, "raw: Detect (auto backend)"} {
			s.printf("| %s | %s |", backend, strings.Replace(name, "Refresh: ", "**Refresh**: ", 1))
			for _, c := range bc {
				d := durations(get(c, name).Samples)
				s.printf(" %s (%s, n=%d) |", fmtDur(d.median()), fmtDur(d.q(0.9)), len(d))
			}
			small, big := med(bc[0], name), med(bc[2], name)
			s.printf(" %.2fx | %s |\n", float64(big)/float64(max(small, 1)), ratioOf(big, med(bc[2], rawExists)))
		}
		s.printf("| %s | **`sandbox-guard check`, whole process** |", backend)
		for _, c := range bc {
			s.printf(" %s (%s, n=%d) |", fmtDur(c.check.median()), fmtDur(c.check.q(0.9)), len(c.check))
		}
		s.printf(" %.2fx | - |\n", float64(bc[2].check.median())/float64(max(bc[0].check.median(), 1)))
		s.printf("| %s | `sandbox-guard version`, whole process (the process floor) |", backend)
		for _, c := range bc {
			s.printf(" %s (%s, n=%d) |", fmtDur(c.version.median()), fmtDur(c.version.q(0.9)), len(c.version))
		}
		s.printf(" %.2fx | - |\n", float64(bc[2].version.median())/float64(max(bc[0].version.median(), 1)))
		s.printf("| %s | **`check` minus the process floor, CPU time** (user + system; median of the pairs: each check with the version run after it) |", backend)
		for _, c := range bc {
			s.printf(" %s |", signedDur(checkNet(c)))
		}
		s.printf(" %.2fx | - |\n", float64(checkNet(bc[2]))/float64(max(checkNet(bc[0]), 1)))
	}
	s.printf("\nKernel questions per refresh through the checks' reader (counting reader; detection's own questions are inside " +
		"`Detect`: the mangle tables, never nat), and the detail the check reported at 100k rules:\n\n" +
		"| backend | check | Chains | ChainExists | CountChains | Detect | detail |\n|---|---|---|---|---|---|---|\n")
	for _, c := range cases {
		if c.rules != 100_000 {
			continue
		}
		for _, name := range []string{refreshChain, refreshPrefix, autoSeries} {
			sr := get(c, name)
			s.printf("| %s | %s | %d | %d | %d | %d | %s |\n", c.backend, strings.TrimPrefix(name, "Refresh: "), sr.Reads["Chains"],
				sr.Reads["ChainExists"], sr.Reads["CountChains"], sr.Reads["Detect"], sr.Detail)
		}
		s.printf("| %s | `sandbox-guard check` | | | | | %s |\n", c.backend, c.checkDetail)
	}
	s.printf("\n")

	// Targets (issue 14): nft at 100k <= 1.2x of 100; legacy: one nat read + <= 1.2x of 100.
	for _, backend := range []string{"nft", "legacy"} {
		bc := byBackend(backend)
		small, big := bc[0], bc[2]
		read100k := med(big, rawChains)
		for _, row := range []struct{ name, label string }{
			{refreshChain, "refresh, chain KUBE-SERVICES"},
			{refreshPrefix, "refresh, + chainPrefix KUBE-SVC- (ruleset unchanged)"},
			{autoSeries, "refresh with detection (auto backend)"},
			{"", "`check` minus the process floor (CPU time)"},
		} {
			var r100, r100k time.Duration
			if row.name == "" {
				r100, r100k = checkNet(small), checkNet(big) // CPU time: the process floor drifts with the load
			} else {
				r100, r100k = med(small, row.name), med(big, row.name)
			}
			value := fmt.Sprintf("%s at 100 -> %s at 100k (%.2fx)", fmtDur(r100), fmtDur(r100k), float64(r100k)/float64(max(r100, 1)))
			if backend == "nft" {
				s.row(backend+", "+row.label, value+fmt.Sprintf("; floor (one GETCHAIN) %s", fmtDur(med(big, rawExists))),
					"100k <= 1.2x 100", yesNo(float64(r100k) <= 1.2*float64(r100)))
				continue
			}
			// Legacy: one read of the table plus at most 1.2x the small-table cost. Refresh
			// series are paired with the read of their own round (interleaved); the process
			// is compared with the median read.
			var extra time.Duration
			reads := 1
			if row.name != "" {
				rs, raws := get(big, row.name).Samples, get(big, rawChains).Samples
				var diffs []float64
				for i := range min(len(rs), len(raws)) {
					diffs = append(diffs, float64(rs[i]-raws[i])/1e9)
				}
				extra = time.Duration(medianFloat(diffs) * 1e9)
				reads = get(big, row.name).Reads["Chains"] + get(big, row.name).Reads["ChainExists"]
			} else {
				extra = r100k - read100k
			}
			noise := read100k / 20
			allow := max(time.Duration(1.2*float64(r100)), noise)
			s.row(backend+", "+row.label, value+fmt.Sprintf("; one read %s, minus the read %s", fmtDur(read100k), signedDur(extra)),
				fmt.Sprintf("one nat read + 1.2x 100 (%s; 5%% noise allowance %s)", fmtDur(time.Duration(1.2*float64(r100))), fmtDur(noise)),
				fmt.Sprintf("%s (%d nat read through the reader)", yesNo(extra <= allow && reads <= 1), reads))
		}
	}
	s.notef("**nft, one chain** (the eks preset): one `NFT_MSG_GETCHAIN` netlink request names table and chain; the kernel answers " +
		"from its chain hash without looking at rules, so the cost is flat in the ruleset size.")
	s.notef("**nft, chainPrefix**: a prefix question needs the names of all chains of the table, a netlink chain dump (chains only, " +
		"no rules, the `raw: Chains` row), which grows with the number of chains. `Inspector.CountChains` keeps the count with the " +
		"ruleset generation (`NFT_MSG_GETGEN`, bumped by every committed change of any nf_tables table) and the network namespace, and " +
		"dumps again only when the generation moved: the refresh rows measure a steady ruleset (after the first dump), a node whose " +
		"kube-proxy just synced pays one dump. kube-proxy commits only when services or endpoints change.")
	s.notef("**legacy**: ip_tables has no per-chain query; the kernel only hands out the whole table (`IPT_SO_GET_ENTRIES`). " +
		"A refresh reads it once and answers both the chain and the prefix question from that read (counting reader: 1 `Chains`, " +
		"0 `ChainExists`), so the refresh costs one table read plus a small constant. \"1.2x the cost at 100 rules\" cannot hold " +
		"for legacy by construction: the read itself grows linearly. The runner compensates: a refresh that takes longer than a " +
		"tenth of the interval stretches the interval to 10x its cost (capped at refresh.maxBackoff), so a 100k legacy table " +
		"costs about 10%% of one core at most, not a read every second.")
	s.notef("**detection** (the auto backend, the preset's default) asks kube-proxy's `KUBE-IPTABLES-HINT` and kubelet's " +
		"`KUBE-KUBELET-CANARY` chains in mangle of both backends (nft: `GETCHAIN`; legacy: the small mangle table) and never reads " +
		"a nat table (`raw: Detect` row, flat in the nat size); only when neither backend has them, whether each nat table is in use, " +
		"without reading it. A running plugin detects once per 30 s and when its chain goes missing; `check` and the " +
		"`auto backend` row detect on every run. The generated rulesets carry the hint chain, as kube-proxy's do.")
	s.notef("**`check`, whole process**: start of the binary, package initialisation, configuration, detection, the question, JSON " +
		"out. Most of it is the process floor (`version`: the same binary starting and exiting), which does not depend on the ruleset " +
		"but moves with the machine's load; the target compares the CPU time `check` adds to it (user + system: the kernel's work for " +
		"the questions counts, waiting for a core does not), paired run by run. On legacy that is the one nat read plus the " +
		"small-table cost; the legacy read it is compared with is wall time in the child, the same work when a core is free.")
	s.notef("Where a `check` row misses its target: nft's CPU beyond the floor is a few milliseconds, the difference of two " +
		"whole-process medians, and moves by more than the target's 20%% between runs on this machine at the same size (1.9 -> 2.7 ms " +
		"in one run, 9.7 -> 5.2 ms in the run before); the in-process refresh rows, which time the same questions without the " +
		"process around them, are flat. Legacy `check` reads nat once (counting reader: 1 read) like the refresh, which meets its " +
		"target; what the whole process adds beyond the in-process read at 100k rules is not broken down further here (likely: a " +
		"fresh process holds the 100k-rule table in a heap grown from nothing, where the in-process rows reuse a warm one).")
	return nil
}

func runRefreshCase(t testing.TB, exe, plugin string, checkRuns int, c *refreshCase, spec refreshSpec) error {
	name := fmt.Sprintf("sg-bench-%d-%s-%s", os.Getpid(), c.backend, c.size)
	path, del, err := privateNetns(name)
	if err != nil {
		return err
	}
	defer del()
	ruleset := kubeProxyRuleset(c.rules)
	_, nat, ok := strings.Cut(ruleset, "*nat")
	if !ok {
		return fmt.Errorf("kube-proxy ruleset has no nat table")
	}
	c.built, c.chains = strings.Count(nat, "\n-A "), strings.Count(nat, "\n:")
	restore := exec.Command("nsenter", "--net="+path, "--", "iptables-"+c.backend+"-restore")
	restore.Stdin = strings.NewReader(ruleset)
	start := time.Now()
	if out, err := restore.CombinedOutput(); err != nil {
		return fmt.Errorf("iptables-%s-restore: %v: %s", c.backend, err, out)
	}
	c.restore = time.Since(start)
	say("  %s %s: %d rules, %d chains restored in %v; timing refreshes", c.backend, c.size, c.built, c.chains, c.restore.Round(time.Millisecond))

	raw, _ := json.Marshal(spec)
	cmd := exec.Command("nsenter", "--net="+path, "--", exe, "-test.run", "^TestRefreshChild$", "-test.count", "1", "-test.timeout", "10m")
	cmd.Env = append(os.Environ(), childEnv+"="+string(raw))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("refresh child: %v: %s %s", err, lastLines(stdout.String(), 15), lastLines(stderr.String(), 5))
	}
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "SGBENCH-REFRESH "); ok {
			c.res = &refreshResult{}
			if err := json.Unmarshal([]byte(rest), c.res); err != nil {
				return fmt.Errorf("child output: %w", err)
			}
		}
	}
	if c.res == nil {
		return fmt.Errorf("refresh child printed no result: %s", lastLines(stdout.String(), 15))
	}
	for _, sr := range c.res.Series {
		d := durations(sr.Samples)
		say("    %-55s median %-9s p90 %-9s n=%d %s", sr.Name, fmtDur(d.median()), fmtDur(d.q(0.9)), len(d), sr.Detail)
	}
	return timeCheckProcess(path, plugin, checkRuns, c)
}

// timeCheckProcess runs `plugin check` (kube-proxy-rules, auto backend) and `plugin version`
// inside the namespace, alternately, runs times each.
func timeCheckProcess(netns, plugin string, runs int, c *refreshCase) error {
	cfg, err := os.CreateTemp("", "sg-bench-check-*.yaml")
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(cfg.Name()) }()
	if _, err := cfg.WriteString("mode: enforce\npreset: none\nsandboxImage: \"\"\nchecks:\n  - name: kube-proxy-rules\n" +
		"    iptables: {table: nat, chain: KUBE-SERVICES}\n"); err != nil {
		return err
	}
	if err := cfg.Close(); err != nil {
		return err
	}
	var cpu time.Duration
	run := func(args ...string) (time.Duration, string, error) {
		cmd := exec.Command("nsenter", append([]string{"--net=" + netns, "--", plugin}, args...)...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		start := time.Now()
		err := cmd.Run()
		took := time.Since(start)
		if cmd.ProcessState != nil {
			cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		}
		return took, out.String(), err
	}
	for range runs + 1 { // the first pair warms the page cache
		took, out, err := run("check", "--config", cfg.Name(), "-o", "json")
		checkCPU := cpu
		if err != nil {
			return fmt.Errorf("sandbox-guard check: %v: %s", err, out)
		}
		var res struct {
			Checks []struct{ Detail string } `json:"checks"`
		}
		if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Checks) != 1 {
			return fmt.Errorf("sandbox-guard check printed %q", out)
		}
		c.checkDetail = res.Checks[0].Detail
		if !strings.Contains(c.checkDetail, "("+c.backend+" backend)") {
			return fmt.Errorf("sandbox-guard check detected another backend: %s", c.checkDetail)
		}
		floor, out, err := run("version")
		if err != nil {
			return fmt.Errorf("sandbox-guard version: %v: %s", err, out)
		}
		c.check, c.version = append(c.check, took), append(c.version, floor)
		c.checkCPU, c.versionCPU = append(c.checkCPU, checkCPU), append(c.versionCPU, cpu)
	}
	c.check, c.version, c.checkCPU, c.versionCPU = c.check[1:], c.version[1:], c.checkCPU[1:], c.versionCPU[1:]
	say("    %-55s median %-9s (process floor: version, median %s)", "check process", fmtDur(c.check.median()), fmtDur(c.version.median()))
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

func signedDur(d time.Duration) string {
	if d < 0 {
		return "-" + fmtDur(-d)
	}
	return "+" + fmtDur(d)
}

// checkNet is the check process's own work: the median over runs of the CPU time (user +
// system: the kernel's work for the questions counts, waiting for a core on a loaded machine
// does not) of check minus that of the version run right after it.
func checkNet(c *refreshCase) time.Duration {
	var diffs []float64
	for i := range min(len(c.checkCPU), len(c.versionCPU)) {
		diffs = append(diffs, float64(c.checkCPU[i]-c.versionCPU[i])/1e9)
	}
	return time.Duration(medianFloat(diffs) * 1e9)
}

// ratioOf prints a/b, with more digits when it is small.
func ratioOf(a, b time.Duration) string {
	r := float64(a) / float64(max(b, 1))
	if r < 0.01 {
		return fmt.Sprintf("%.1gx", r)
	}
	return fmt.Sprintf("%.2fx", r)
}

// refreshReads runs one refresh of specs with a counting reader: what a refresh asks the kernel.
func refreshReads(ctx context.Context, specs []config.Check) (map[string]int, error) {
	cr := &countingReader{r: iptables.New()}
	built, err := checks.Build(specs, checks.Deps{Chains: cr})
	if err != nil {
		return nil, err
	}
	var store snapshot.Store
	checks.NewRunner(built.Checks, &store, checks.Options{}).Refresh(ctx)
	return map[string]int{"Chains": int(cr.chains.Load()), "ChainExists": int(cr.exists.Load()),
		"CountChains": int(cr.count.Load()), "Detect": int(cr.detect.Load())}, nil
}
