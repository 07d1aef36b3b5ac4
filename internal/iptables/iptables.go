// Package iptables answers "does chain C exist in table T" for both iptables backends without
// listing rules or running the iptables binaries, so that the cost of a check does not grow
// with the size of kube-proxy's ruleset.
//
//   - nft (iptables-nft): the iptables tables are nf_tables tables of family ip / ip6. One
//     NFT_MSG_GETCHAIN netlink request names table and chain; the kernel answers from its chain
//     hash without touching rules.
//   - legacy (ip_tables / ip6_tables): the kernel has no per-chain query and only hands out a
//     whole table (IPT_SO_GET_ENTRIES). Chains reads it once and returns every chain name so a
//     caller can ask many questions of one read.
//
// Every call works in the network namespace of the calling OS thread, so an Inspector is safe
// for concurrent use and works under ns.WithNetNSPath. The one state it keeps is CountChains'
// answers for nft, each with the ruleset generation and network namespace it holds for.
package iptables

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Backend is an iptables implementation in the kernel.
type Backend string

const (
	NFT    Backend = "nft"    // iptables-nft: nf_tables tables of family ip/ip6
	Legacy Backend = "legacy" // iptables-legacy: ip_tables/ip6_tables (x_tables)
)

// Family is the IP version of a table (iptables vs ip6tables).
type Family int

const (
	IPv4 Family = 4
	IPv6 Family = 6
)

func (f Family) String() string {
	switch f {
	case IPv4:
		return "ipv4"
	case IPv6:
		return "ipv6"
	}
	return fmt.Sprintf("Family(%d)", int(f))
}

// Inspector reads chain names from the kernel. The zero value is ready to use.
type Inspector struct {
	// binaryPaths overrides where Detect looks for the iptables binary; tests only.
	binaryPaths []string
	// kernel answers the questions; nil is the real kernel, tests put a fake here.
	kernel kernel

	mu     sync.Mutex
	counts map[countKey]countEntry // CountChains' nft answers
}

// kernel is the boundary between the Inspector and the kernel's netlink and getsockopt
// interfaces: every question it asks goes through one of these.
type kernel interface {
	nftChainExists(ctx context.Context, f Family, table, chain string) (bool, error)
	nftChains(ctx context.Context, f Family, table string) ([]string, error)
	nftGeneration(ctx context.Context) (uint32, error)
	nftTableExists(ctx context.Context, f Family, table string) (bool, error)
	legacyChains(f Family, table string) ([]string, error)
	legacyInUse(f Family, table string) (bool, error)
	// netns identifies the calling thread's network namespace.
	netns() (netnsID, error)
}

// netnsID is a network namespace's inode: generations of two namespaces are not comparable.
type netnsID struct{ dev, ino uint64 }

func (i *Inspector) k() kernel {
	if i.kernel == nil {
		return realKernel{}
	}
	return i.kernel
}

// New returns an Inspector.
func New() *Inspector { return &Inspector{} }

// ChainExists reports whether chain exists in table of backend b and family f, in the network
// namespace of the calling thread. A missing table (or a kernel without that backend) means the
// chain is absent, not an error. For nft this is one netlink request whose cost does not depend
// on the ruleset; for legacy it reads the whole table, so callers asking several questions
// should call Chains once instead.
func (i *Inspector) ChainExists(ctx context.Context, b Backend, f Family, table, chain string) (bool, error) {
	if err := validate(b, f, table); err != nil {
		return false, err
	}
	if chain == "" {
		return false, errors.New("iptables: empty chain name")
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	switch b {
	case NFT:
		if len(table) >= nftMaxNameLen || len(chain) >= nftMaxNameLen {
			return false, nil // nf_tables cannot hold such a name (and rejects the request)
		}
		ok, err := i.k().nftChainExists(ctx, f, table, chain)
		if err != nil {
			return false, fmt.Errorf("asking nft %s table %s for chain %s: %w", f, table, chain, err)
		}
		return ok, nil
	default: // Legacy; validate rejected anything else
		if len(chain) > legacyMaxChainLen {
			return false, nil // x_tables cannot hold such a name
		}
		chains, err := i.Chains(ctx, b, f, table)
		if err != nil {
			return false, err
		}
		return slices.Contains(chains, chain), nil
	}
}

// Chains returns the names of all chains in table, builtin chains included, or nil when the
// table does not exist (or, for nft, holds no chain). For legacy this is the one full-table
// read; builtins come first in hook order, then user chains in table order (alphabetical, as
// iptables keeps them). For nft the order is the kernel's, and builtin chains appear only if
// they exist in the kernel: iptables-nft creates base chains on demand, so an unused INPUT in
// nat may be missing. The nft cost grows with the number of chains of all tables of the
// family (a chain dump carries no rules), not with rules.
func (i *Inspector) Chains(ctx context.Context, b Backend, f Family, table string) ([]string, error) {
	if err := validate(b, f, table); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	switch b {
	case NFT:
		chains, err := i.k().nftChains(ctx, f, table)
		if err != nil {
			return nil, fmt.Errorf("listing nft %s chains of table %s: %w", f, table, err)
		}
		return chains, nil
	default:
		chains, err := i.k().legacyChains(f, table)
		if err != nil {
			return nil, fmt.Errorf("reading legacy iptables %s table %s: %w", f, table, err)
		}
		return chains, nil
	}
}

func validate(b Backend, f Family, table string) error {
	if b != NFT && b != Legacy {
		return fmt.Errorf("iptables: unknown backend %q", b)
	}
	if f != IPv4 && f != IPv6 {
		return fmt.Errorf("iptables: unknown family %v", f)
	}
	if table == "" {
		return errors.New("iptables: empty table name")
	}
	return nil
}

// countCacheMax bounds CountChains' remembered answers (one per question and namespace).
const countCacheMax = 64

type countKey struct {
	netns         netnsID
	family        Family
	table, prefix string
}

type countEntry struct {
	gen uint32
	n   int
}

// CountChains returns how many chains of table start with prefix. For legacy it is one read of
// the table. For nft a prefix needs the chain list (a dump that grows with the number of
// chains), so the answer is kept with the ruleset generation it was counted at and the dump
// runs again only when the generation has changed: a steady node pays one NFT_MSG_GETGEN.
func (i *Inspector) CountChains(ctx context.Context, b Backend, f Family, table, prefix string) (int, error) {
	if err := validate(b, f, table); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if b == Legacy {
		chains, err := i.Chains(ctx, b, f, table)
		return countPrefix(chains, prefix), err
	}
	k := i.k()
	ns, nsErr := k.netns()
	gen, genErr := k.nftGeneration(ctx)
	if genErr != nil {
		// Without a generation nothing can be reused: count from a dump, whose error (if the
		// kernel cannot answer either) is the one to report.
		chains, err := i.Chains(ctx, b, f, table)
		return countPrefix(chains, prefix), err
	}
	key := countKey{ns, f, table, prefix}
	if nsErr == nil {
		i.mu.Lock()
		e, ok := i.counts[key]
		i.mu.Unlock()
		if ok && e.gen == gen {
			return e.n, nil
		}
	}
	// The generation is read before the dump: a change during or after it shows as a newer
	// generation next time, so a count is never kept past a change.
	chains, err := i.Chains(ctx, b, f, table)
	if err != nil {
		return 0, err
	}
	n := countPrefix(chains, prefix)
	if nsErr == nil { // without the namespace's identity nothing can be reused safely
		i.mu.Lock()
		if i.counts == nil || len(i.counts) >= countCacheMax {
			i.counts = map[countKey]countEntry{}
		}
		i.counts[key] = countEntry{gen, n}
		i.mu.Unlock()
	}
	return n, nil
}

func countPrefix(chains []string, prefix string) int {
	n := 0
	for _, c := range chains {
		if strings.HasPrefix(c, prefix) {
			n++
		}
	}
	return n
}
