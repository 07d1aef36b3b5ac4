package checks

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sandbox-guard/sandbox-guard/internal/iptables"
)

// ChainReader is what the iptables checks need from the kernel: chain existence, chain names and
// prefix counts, never rules (kube-proxy's nat table can hold 100k+ rules).
type ChainReader interface {
	ChainExists(ctx context.Context, b iptables.Backend, f iptables.Family, table, chain string) (bool, error)
	Chains(ctx context.Context, b iptables.Backend, f iptables.Family, table string) ([]string, error)
	// CountChains counts the chains with a prefix; on nft it dumps the chains only when the
	// ruleset changed since it last counted.
	CountChains(ctx context.Context, b iptables.Backend, f iptables.Family, table, prefix string) (int, error)
	Detect(ctx context.Context) (iptables.Detection, error)
}

// BackendDetector remembers which iptables backend is in use, shared by every iptables check.
// Detection asks the mangle tables for kube-proxy's hint chain and never reads a nat table, but
// it is still a handful of kernel questions, so it runs at most every RecheckAfter, and at once
// when a check misses its chain (the node may have switched backends).
type BackendDetector struct {
	Reader       ChainReader
	RecheckAfter time.Duration
	Now          func() time.Time

	mu      sync.Mutex
	backend iptables.Backend
	reason  string
	at      time.Time
}

// Backend returns the backend in use; fresh forces a new detection.
func (d *BackendDetector) Backend(ctx context.Context, fresh bool) (iptables.Backend, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now
	if d.Now != nil {
		now = d.Now
	}
	if d.backend != "" && !fresh && now().Sub(d.at) < d.RecheckAfter {
		return d.backend, nil
	}
	det, err := d.Reader.Detect(ctx)
	if det.Backend == "" {
		return "", fmt.Errorf("detecting the iptables backend: %w", err)
	}
	d.backend, d.reason, d.at = det.Backend, det.Reason, now()
	return d.backend, nil
}

// IptablesProber passes when Chain exists in Table (and, with Prefix, at least one chain starts
// with Prefix). Backend is "nft", "legacy", or "" to detect.
type IptablesProber struct {
	Reader   ChainReader
	Detector *BackendDetector
	Backend  iptables.Backend
	Family   iptables.Family
	Table    string
	Chain    string
	Prefix   string
	// Native marks a native nftables table (kube-proxy's nftables mode) for the wording.
	Native bool
}

// Probe asks the kernel.
func (p IptablesProber) Probe(ctx context.Context) Outcome {
	b := p.Backend
	if b == "" {
		var err error
		if b, err = p.Detector.Backend(ctx, false); err != nil {
			return Outcome{Detail: err.Error(), Err: true}
		}
	}
	out := p.probe(ctx, b)
	if !out.OK && !out.Err && p.Backend == "" && p.Detector != nil {
		// The answer may be in the other backend after a switch. Asking the same backend again
		// would read its (legacy: whole) table a second time for the same answer.
		again, err := p.Detector.Backend(ctx, true)
		if err != nil {
			return Outcome{Detail: err.Error(), Err: true}
		}
		if again != b {
			out = p.probe(ctx, again)
		}
	}
	return out
}

func (p IptablesProber) probe(ctx context.Context, b iptables.Backend) Outcome {
	where := fmt.Sprintf("iptables %s/", p.Table)
	if p.Family == iptables.IPv6 {
		where = fmt.Sprintf("ip6tables %s/", p.Table)
	}
	if p.Native {
		where = fmt.Sprintf("nftables %s %s/", map[iptables.Family]string{iptables.IPv4: "ip", iptables.IPv6: "ip6"}[p.Family], p.Table)
	}
	suffix := fmt.Sprintf(" (%s backend)", b)
	if p.Native {
		suffix = ""
	}
	// One read answers both questions on legacy, where every question costs a full table read.
	// On nft a chain is one netlink request, and a prefix count dumps the chain list only when
	// the ruleset changed since the last count.
	var names []string
	if b == iptables.Legacy {
		var err error
		if names, err = p.Reader.Chains(ctx, b, p.Family, p.Table); err != nil {
			return Outcome{Detail: err.Error(), Err: true}
		}
	}
	if p.Chain != "" {
		var exists bool
		if b == iptables.Legacy {
			exists = slices.Contains(names, p.Chain)
		} else {
			var err error
			if exists, err = p.Reader.ChainExists(ctx, b, p.Family, p.Table, p.Chain); err != nil {
				return Outcome{Detail: err.Error(), Err: true}
			}
		}
		if !exists {
			return Outcome{Detail: where + p.Chain + " missing" + suffix}
		}
	}
	if p.Prefix == "" {
		return Outcome{OK: true, Detail: where + p.Chain + " present" + suffix}
	}
	n := 0
	if b == iptables.Legacy {
		for _, c := range names {
			if strings.HasPrefix(c, p.Prefix) {
				n++
			}
		}
	} else {
		var err error
		if n, err = p.Reader.CountChains(ctx, b, p.Family, p.Table, p.Prefix); err != nil {
			return Outcome{Detail: err.Error(), Err: true}
		}
	}
	if n == 0 {
		return Outcome{Detail: fmt.Sprintf("no %s%s* chain%s", where, p.Prefix, suffix)}
	}
	detail := fmt.Sprintf("%d %s%s* chains%s", n, where, p.Prefix, suffix)
	if p.Chain != "" {
		detail = where + p.Chain + " present, " + detail
	}
	return Outcome{OK: true, Detail: detail}
}
