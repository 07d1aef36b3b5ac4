package iptables

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
)

// HintChain is the chain kube-proxy (and kubelet) creates in the mangle table of the backend it
// uses, so that other components can tell which one that is.
const HintChain = "KUBE-IPTABLES-HINT"

// CanaryChain is the chain kubelet creates in the mangle table of the backend it uses to notice
// a flush; kubelets too old to create HintChain create it.
const CanaryChain = "KUBE-KUBELET-CANARY"

// Facts is what one backend showed during detection, over both families.
type Facts struct {
	Hint   bool // HintChain exists in mangle
	Canary bool // CanaryChain exists in mangle
	// NAT is whether the nat table is in use (nft: it exists; iptables-nft creates it with its
	// first nat rule. legacy: it holds a rule or user chain, from its entry count alone). Asked
	// only when the hint and canary chains leave the choice open.
	NAT bool
	Err error // a question to this backend failed; the fields above may be incomplete
}

// inUse reports whether the facts show that something programs this backend.
func (f Facts) inUse() bool { return f.Hint || f.Canary || f.NAT }

// Detection is which backend the node's network programming uses, and why.
type Detection struct {
	Backend Backend // the backend to inspect
	Reason  string  // one sentence, for logs and status
	NFT     Facts
	Legacy  Facts
	// Binary is what the system iptables binary resolves to ("" if none was found), and
	// BinaryBackend the backend that implies ("" if unknown).
	Binary        string
	BinaryBackend Backend
}

// BothInUse reports whether both backends showed use, which happens after a switch of
// backend (stale chains are left behind) and deserves a warning.
func (d Detection) BothInUse() bool { return d.NFT.inUse() && d.Legacy.inUse() }

// Detect finds out which backend is in use in the calling thread's network namespace, the way
// kubelet and kube-proxy mean it to be found (and kubernetes-sigs/iptables-wrappers finds it):
// HintChain in mangle, then CanaryChain in mangle, both asked of tiny tables (nft: one
// GETCHAIN each; legacy: the mangle table). Only when neither tells, whether each backend's nat
// table is in use, without reading it (nft: one GETTABLE; legacy: the entry count), then the
// iptables binary, else nft (the default of current distributions). So detection never reads
// a nat table: its cost does not grow with kube-proxy's rules. A backend that cannot be read
// only loses its say; the error is non-nil only when neither backend could be read, and even
// then the Detection is filled from the remaining evidence.
func (i *Inspector) Detect(ctx context.Context) (Detection, error) {
	var nft, legacy Facts
	mangle := map[Family][]string{} // legacy: one read of mangle per family answers both chains
	inMangle := func(b Backend, f *Facts, chain string) bool {
		for _, fam := range []Family{IPv4, IPv6} {
			var ok bool
			var err error
			if b == NFT {
				ok, err = i.ChainExists(ctx, b, fam, "mangle", chain)
			} else {
				chains, seen := mangle[fam]
				if !seen {
					chains, err = i.Chains(ctx, b, fam, "mangle")
					mangle[fam] = chains
				}
				ok = slices.Contains(chains, chain)
			}
			f.Err = errors.Join(f.Err, err)
			if ok {
				return true
			}
		}
		return false
	}
	natInUse := func(b Backend, f *Facts) bool {
		for _, fam := range []Family{IPv4, IPv6} {
			var ok bool
			var err error
			if b == NFT {
				ok, err = i.k().nftTableExists(ctx, fam, "nat")
			} else if ok, err = i.k().legacyInUse(fam, "nat"); err != nil {
				err = fmt.Errorf("reading legacy iptables %s table nat's size: %w", fam, err)
			}
			f.Err = errors.Join(f.Err, err)
			if ok {
				return true
			}
		}
		return false
	}
	// Both chains of both backends: cheap, and they also show a stale backend after a switch.
	nft.Hint, legacy.Hint = inMangle(NFT, &nft, HintChain), inMangle(Legacy, &legacy, HintChain)
	nft.Canary, legacy.Canary = inMangle(NFT, &nft, CanaryChain), inMangle(Legacy, &legacy, CanaryChain)
	if nft.Hint == legacy.Hint && nft.Canary == legacy.Canary {
		nft.NAT, legacy.NAT = natInUse(NFT, &nft), natInUse(Legacy, &legacy)
	}
	if err := ctx.Err(); err != nil {
		return Detection{}, err
	}
	binary, binBackend := i.binary()
	d := decide(nft, legacy, binary, binBackend)
	if nft.Err != nil && legacy.Err != nil {
		return d, fmt.Errorf("detecting iptables backend: %w", errors.Join(nft.Err, legacy.Err))
	}
	return d, nil
}

// binary resolves the iptables binary's symlinks (alternatives, xtables-*-multi) to the backend
// it selects.
func (i *Inspector) binary() (string, Backend) {
	paths := i.binaryPaths
	if paths == nil {
		paths = []string{"/usr/sbin/iptables", "/sbin/iptables"}
	}
	for _, p := range paths {
		target, err := filepath.EvalSymlinks(p)
		if err != nil {
			continue
		}
		return target, backendOfBinary(target)
	}
	return "", ""
}

func backendOfBinary(path string) Backend {
	switch filepath.Base(path) {
	case "xtables-nft-multi", "iptables-nft":
		return NFT
	case "xtables-legacy-multi", "iptables-legacy", "xtables-multi": // xtables-multi: iptables < 1.8
		return Legacy
	}
	return ""
}

// decide is the pure decision over the collected facts. Each rule picks a backend when exactly
// one backend satisfies it; a rule that both satisfy is noted and the next rule breaks the tie.
func decide(nft, legacy Facts, binary string, binBackend Backend) Detection {
	d := Detection{NFT: nft, Legacy: legacy, Binary: binary, BinaryBackend: binBackend}
	rules := []struct {
		what string
		has  func(Facts) bool
	}{
		{HintChain + " chain in mangle", func(f Facts) bool { return f.Hint }},
		{CanaryChain + " chain in mangle", func(f Facts) bool { return f.Canary }},
		{"a nat table in use", func(f Facts) bool { return f.NAT }},
	}
	var ties []string
	for _, r := range rules {
		n, l := r.has(nft), r.has(legacy)
		switch {
		case n && !l:
			d.Backend, d.Reason = NFT, "only nft has "+r.what
		case l && !n:
			d.Backend, d.Reason = Legacy, "only legacy has "+r.what
		case n && l:
			ties = append(ties, r.what)
			continue
		default:
			continue
		}
		if len(ties) > 0 {
			d.Reason += " (both have " + strings.Join(ties, ", ") + ")"
		}
		return d
	}
	tie := ""
	if len(ties) > 0 {
		tie = "both backends have " + strings.Join(ties, ", ") + "; "
	}
	if binBackend != "" {
		d.Backend, d.Reason = binBackend, tie+"iptables binary resolves to "+binary
		return d
	}
	d.Backend, d.Reason = NFT, tie+"no chains, nat table or iptables binary point to a backend; defaulting to nft"
	return d
}
