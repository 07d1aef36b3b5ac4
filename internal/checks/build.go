package checks

import (
	"fmt"
	"net/http"
	"regexp"
	"time"

	"github.com/sandbox-guard/sandbox-guard/internal/config"
	"github.com/sandbox-guard/sandbox-guard/internal/iptables"
)

// Deps are the outside things checks talk to; tests replace them.
type Deps struct {
	Chains     ChainReader  // iptables.New() when nil
	HTTPClient *http.Client // a client without keep-alives when nil
}

// Built is the runnable form of a configuration's checks.
type Built struct {
	Checks []Check
	// WatchDirs are directories whose changes should trigger an immediate refresh (CNI).
	WatchDirs []string
}

// Build turns configured checks into runnable ones.
func Build(specs []config.Check, deps Deps) (Built, error) {
	if deps.Chains == nil {
		deps.Chains = iptables.New()
	}
	if deps.HTTPClient == nil {
		// No keep-alives: a probe every second should not hold connections to node daemons.
		deps.HTTPClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
	}
	detector := &BackendDetector{Reader: deps.Chains, RecheckAfter: 30 * time.Second}
	var out Built
	for _, s := range specs {
		c := Check{Name: s.Name, Hint: s.Hint}
		switch {
		case s.File != nil:
			c.Kind, c.Prober = "file", FileProber{Path: s.File.Path}
		case s.CNI != nil:
			c.Kind, c.Prober = "cni", CNIProber{ConfDir: s.CNI.ConfDir, BinDirs: s.CNI.BinDirs}
			out.WatchDirs = append(out.WatchDirs, s.CNI.ConfDir)
			out.WatchDirs = append(out.WatchDirs, s.CNI.BinDirs...)
		case s.Iptables != nil:
			t := s.Iptables
			p := IptablesProber{Reader: deps.Chains, Detector: detector, Family: iptables.IPv4, Table: t.Table, Chain: t.Chain, Prefix: t.ChainPrefix}
			if t.IPv6 {
				p.Family = iptables.IPv6
			}
			switch t.Backend {
			case "nft":
				p.Backend = iptables.NFT
			case "legacy":
				p.Backend = iptables.Legacy
			}
			c.Kind, c.Prober = "iptables", p
		case s.Nftables != nil:
			t := s.Nftables
			family := iptables.IPv4
			if t.Family == "ip6" {
				family = iptables.IPv6
			}
			c.Kind, c.Prober = "nftables", IptablesProber{Reader: deps.Chains, Backend: iptables.NFT, Family: family, Table: t.Table, Chain: t.Chain, Native: true}
		case s.HTTP != nil:
			p := HTTPProber{URL: s.HTTP.URL, Client: deps.HTTPClient}
			if s.HTTP.BodyPattern != "" {
				p.Body = regexp.MustCompile(s.HTTP.BodyPattern) // validated by config
			}
			c.Kind, c.Prober = "http", p
		case s.Socket != nil:
			var addrs []Address
			for _, a := range s.Socket.Addresses {
				network, addr, err := config.ParseSocketAddress(a)
				if err != nil {
					return Built{}, fmt.Errorf("check %q: %w", s.Name, err)
				}
				addrs = append(addrs, Address{Network: network, Address: addr, Display: a})
			}
			c.Kind, c.Prober = "socket", SocketProber{Addresses: addrs}
		default:
			return Built{}, fmt.Errorf("check %q: no kind set", s.Name)
		}
		out.Checks = append(out.Checks, c)
	}
	return out, nil
}
