package iptables

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// Benchmarks run only with -bench. Each backend and size gets its own namespace holding a
// kube-proxy-shaped nat table built with *-restore (100k rules take a while), built only when a
// matching sub-benchmark runs and deleted when the benchmark function ends.
//
//	go test -run '^$' -bench . -benchtime 2s ./internal/iptables/

var benchSizes = []struct {
	label string
	rules int
}{{"100", 100}, {"10k", 10_000}, {"100k", 100_000}}

// benchNamespaces builds namespaces lazily, one per backend and size, kept for tb's lifetime.
func benchNamespaces(tb testing.TB) func(b Backend, rules int) string {
	made := map[string]string{}
	return func(b Backend, rules int) string {
		key := fmt.Sprintf("%s/%d", b, rules)
		if netns, ok := made[key]; ok {
			return netns
		}
		netns := newNetns(tb)
		start := time.Now()
		ruleset := kubeProxyRuleset(rules, IPv4)
		nsRun(tb, netns, ruleset, restoreCmd(b, IPv4))
		tb.Logf("built %s: %d rules, %d chains in %v", key, strings.Count(ruleset, "\n-A "), strings.Count(ruleset, "\n:"), time.Since(start).Round(time.Millisecond))
		made[key] = netns
		return netns
	}
}

// BenchmarkChainExists: one question about one chain. nft must be flat in the ruleset size;
// legacy reads the whole table each time (callers should use Chains once per refresh).
func BenchmarkChainExists(b *testing.B) {
	requireKernel(b, "iptables-nft-restore", "iptables-legacy-restore")
	namespaces := benchNamespaces(b)
	for _, backend := range []Backend{NFT, Legacy} {
		for _, size := range benchSizes {
			b.Run(string(backend)+"/"+size.label, func(b *testing.B) {
				netns := namespaces(backend, size.rules)
				i, ctx := New(), context.Background()
				inNetns(b, netns, func() {
					for b.Loop() {
						ok, err := i.ChainExists(ctx, backend, IPv4, "nat", "KUBE-SERVICES")
						if err != nil || !ok {
							b.Fatalf("ChainExists = %v, %v", ok, err)
						}
					}
				})
			})
		}
	}
}

// BenchmarkChains: all chain names of nat, the prefix question ("any KUBE-SVC-*?"). nft dumps
// chains without rules, so it grows with the chain count (3 chains per 7 rules here).
func BenchmarkChains(b *testing.B) {
	requireKernel(b, "iptables-nft-restore", "iptables-legacy-restore")
	namespaces := benchNamespaces(b)
	for _, backend := range []Backend{NFT, Legacy} {
		for _, size := range benchSizes {
			b.Run(string(backend)+"/"+size.label, func(b *testing.B) {
				netns := namespaces(backend, size.rules)
				i, ctx := New(), context.Background()
				inNetns(b, netns, func() {
					for b.Loop() {
						chains, err := i.Chains(ctx, backend, IPv4, "nat")
						if err != nil || countPrefix(chains, "KUBE-SVC-") == 0 {
							b.Fatalf("Chains = %d chains, %v", len(chains), err)
						}
					}
				})
			})
		}
	}
}
