// Command iptables-probe asks the kernel one question through package iptables and prints the
// answer with its duration: a bench and debugging aid, e.g.
//
//	ip netns exec NS iptables-probe -backend nft -table nat -chain KUBE-SERVICES
//	iptables-probe -detect
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/sandbox-guard/sandbox-guard/internal/iptables"
)

func main() {
	backend := flag.String("backend", "nft", "nft or legacy")
	family := flag.Int("family", 4, "4 or 6")
	table := flag.String("table", "nat", "table name")
	chain := flag.String("chain", "", "chain name; empty lists all chains of the table")
	prefix := flag.String("prefix", "", "with an empty -chain, count only chains starting with this")
	detect := flag.Bool("detect", false, "detect the backend in use instead")
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	i := iptables.New()
	start := time.Now()
	var out string
	switch {
	case *detect:
		d, err := i.Detect(ctx)
		if err != nil {
			fail(err)
		}
		out = fmt.Sprintf("%s: %s\nnft: %+v\nlegacy: %+v\nbinary: %q (%s), both in use: %v",
			d.Backend, d.Reason, d.NFT, d.Legacy, d.Binary, d.BinaryBackend, d.BothInUse())
	case *chain != "":
		ok, err := i.ChainExists(ctx, iptables.Backend(*backend), iptables.Family(*family), *table, *chain)
		if err != nil {
			fail(err)
		}
		out = fmt.Sprint(ok)
	default:
		chains, err := i.Chains(ctx, iptables.Backend(*backend), iptables.Family(*family), *table)
		if err != nil {
			fail(err)
		}
		n := 0
		for _, c := range chains {
			if strings.HasPrefix(c, *prefix) {
				n++
			}
		}
		out = fmt.Sprintf("%d chains (%d matching %q)", len(chains), n, *prefix)
	}
	fmt.Printf("%s\n(%v)\n", out, time.Since(start).Round(time.Microsecond))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "iptables-probe:", err)
	os.Exit(1)
}
