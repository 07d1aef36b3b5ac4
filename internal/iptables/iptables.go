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
// Every call works in the network namespace of the calling OS thread and keeps no state, so an
// Inspector is safe for concurrent use and works under ns.WithNetNSPath.
package iptables

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
		ok, err := nftChainExists(ctx, f, table, chain)
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
		chains, err := nftChains(ctx, f, table)
		if err != nil {
			return nil, fmt.Errorf("listing nft %s chains of table %s: %w", f, table, err)
		}
		return chains, nil
	default:
		chains, err := legacyChains(f, table)
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
