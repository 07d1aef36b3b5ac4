package iptables

import (
	"strings"
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

func chainPayload(t *testing.T, attrs func(*netlink.AttributeEncoder)) []byte {
	t.Helper()
	ae := netlink.NewAttributeEncoder()
	attrs(ae)
	b, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return append(nfgenmsg(IPv4), b...)
}

func TestNFTChainNames(t *testing.T) {
	full := chainPayload(t, func(ae *netlink.AttributeEncoder) {
		ae.String(unix.NFTA_CHAIN_TABLE, "nat")
		ae.Uint64(unix.NFTA_CHAIN_HANDLE, 7)
		ae.String(unix.NFTA_CHAIN_NAME, "KUBE-SERVICES")
		ae.Nested(unix.NFTA_CHAIN_HOOK, func(nae *netlink.AttributeEncoder) error {
			nae.Uint32(unix.NFTA_HOOK_HOOKNUM, 0)
			return nil
		})
		ae.String(unix.NFTA_CHAIN_TYPE, "nat")
	})
	tests := []struct {
		name        string
		data        []byte
		table, nm   string
		wantErrPart string
	}{
		{name: "full", data: full, table: "nat", nm: "KUBE-SERVICES"},
		{name: "odd name padded", data: chainPayload(t, func(ae *netlink.AttributeEncoder) {
			ae.String(unix.NFTA_CHAIN_NAME, "A")
			ae.String(unix.NFTA_CHAIN_TABLE, "mangle")
		}), table: "mangle", nm: "A"},
		{name: "no attributes", data: nfgenmsg(IPv6)},
		{name: "no nfgenmsg", data: []byte{2, 0}, wantErrPart: "short chain"},
		{name: "cut attribute header", data: full[:len(full)-2], wantErrPart: "bad netlink attribute length"},
		{name: "dangling bytes", data: append(nfgenmsg(IPv4), 1, 2), wantErrPart: "short netlink attribute"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			table, name, err := nftChainNames(tt.data)
			if tt.wantErrPart != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErrPart) {
					t.Fatalf("err = %v, want containing %q", err, tt.wantErrPart)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(table) != tt.table || string(name) != tt.nm {
				t.Fatalf("got %q/%q, want %q/%q", table, name, tt.table, tt.nm)
			}
		})
	}
}
