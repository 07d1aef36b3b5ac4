package iptables

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
)

// HintChain is the chain kube-proxy creates in the mangle table of the backend it uses, so that
// other components can tell which one that is.
const HintChain = "KUBE-IPTABLES-HINT"

// Facts is what one backend showed during detection, over both families.
type Facts struct {
	Hint       bool  // HintChain exists in mangle
	KubeChains int   // chains named KUBE-* in nat
	CNIChains  int   // chains named CNI-* or AWS-* in nat (CNI plugins, AWS VPC CNI)
	Err        error // reading this backend failed; the fields above may be incomplete
}

// inUse reports whether the facts show that something programs this backend.
func (f Facts) inUse() bool { return f.Hint || f.KubeChains > 0 || f.CNIChains > 0 }

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

// BothInUse reports whether both backends hold chains that show use, which happens after a
// switch of backend (stale rules are left behind) and deserves a warning.
func (d Detection) BothInUse() bool { return d.NFT.inUse() && d.Legacy.inUse() }

// Detect finds out which backend is in use in the calling thread's network namespace. Order of
// evidence: the HintChain, then KUBE-* chains in nat, then CNI-*/AWS-* chains in nat, then the
// iptables binary, else nft (the default of current distributions). A backend that cannot be
// read only loses its say; the error is non-nil only when neither backend could be read, and
// even then the Detection is filled from the remaining evidence.
func (i *Inspector) Detect(ctx context.Context) (Detection, error) {
	nft := i.facts(ctx, NFT)
	legacy := i.facts(ctx, Legacy)
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

func (i *Inspector) facts(ctx context.Context, b Backend) Facts {
	var f Facts
	var errs []error
	for _, fam := range []Family{IPv4, IPv6} {
		if !f.Hint {
			ok, err := i.ChainExists(ctx, b, fam, "mangle", HintChain)
			errs = append(errs, err)
			f.Hint = ok
		}
		chains, err := i.Chains(ctx, b, fam, "nat")
		errs = append(errs, err)
		for _, c := range chains {
			switch {
			case strings.HasPrefix(c, "KUBE-"):
				f.KubeChains++
			case strings.HasPrefix(c, "CNI-"), strings.HasPrefix(c, "AWS-"):
				f.CNIChains++
			}
		}
	}
	f.Err = errors.Join(errs...)
	return f
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
		{"KUBE-* chains in nat", func(f Facts) bool { return f.KubeChains > 0 }},
		{"CNI-*/AWS-* chains in nat", func(f Facts) bool { return f.CNIChains > 0 }},
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
	d.Backend, d.Reason = NFT, tie+"no chains or iptables binary point to a backend; defaulting to nft"
	return d
}
