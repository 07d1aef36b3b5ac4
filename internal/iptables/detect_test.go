package iptables

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDecide(t *testing.T) {
	hint := Facts{Hint: true, Canary: true}
	canary := Facts{Canary: true}
	nat := Facts{NAT: true}
	none := Facts{}
	broken := Facts{Err: errors.New("permission denied")}
	tests := []struct {
		name        string
		nft, legacy Facts
		binBackend  Backend
		want        Backend
		reason      string // substring
		bothInUse   bool
		binary      string
	}{
		{name: "hint nft", nft: hint, want: NFT, reason: "only nft has KUBE-IPTABLES-HINT"},
		{name: "hint legacy", legacy: hint, binBackend: NFT, want: Legacy, reason: "only legacy has KUBE-IPTABLES-HINT"},
		{name: "hint beats canary", nft: canary, legacy: hint, want: Legacy, reason: "HINT", bothInUse: true},
		{name: "hint beats nat", nft: nat, legacy: hint, want: Legacy, reason: "HINT", bothInUse: true},
		{name: "hint beats binary", nft: hint, binBackend: Legacy, want: NFT, reason: "HINT"},
		{name: "both hint, canary decides", nft: Facts{Hint: true}, legacy: hint, want: Legacy,
			reason: "only legacy has KUBE-KUBELET-CANARY chain in mangle (both have KUBE-IPTABLES-HINT chain in mangle)", bothInUse: true},
		{name: "canary nft", nft: canary, want: NFT, reason: "only nft has KUBE-KUBELET-CANARY"},
		{name: "canary legacy", legacy: canary, binBackend: NFT, want: Legacy, reason: "only legacy has KUBE-KUBELET-CANARY"},
		{name: "canary beats nat", nft: nat, legacy: canary, want: Legacy, reason: "CANARY", bothInUse: true},
		{name: "nat only", legacy: nat, want: Legacy, reason: "only legacy has a nat table in use"},
		{name: "all tied, binary decides", nft: hint, legacy: hint, binBackend: Legacy, binary: "/usr/sbin/xtables-legacy-multi",
			want: Legacy, reason: "both backends have KUBE-IPTABLES-HINT chain in mangle, KUBE-KUBELET-CANARY chain in mangle; iptables binary resolves to /usr/sbin/xtables-legacy-multi", bothInUse: true},
		{name: "all tied, no binary", nft: hint, legacy: hint, want: NFT, reason: "defaulting to nft", bothInUse: true},
		{name: "nothing, binary legacy", binBackend: Legacy, binary: "/usr/sbin/xtables-legacy-multi", want: Legacy, reason: "binary resolves"},
		{name: "nothing, binary nft", binBackend: NFT, binary: "/usr/sbin/xtables-nft-multi", want: NFT, reason: "binary resolves"},
		{name: "nothing at all", want: NFT, reason: "defaulting to nft"},
		{name: "unreadable legacy has no say", nft: none, legacy: broken, binBackend: Legacy, want: Legacy, reason: "binary"},
		{name: "unreadable nft, legacy hint", nft: broken, legacy: hint, want: Legacy, reason: "only legacy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := decide(tt.nft, tt.legacy, tt.binary, tt.binBackend)
			if d.Backend != tt.want {
				t.Errorf("Backend = %q, want %q (reason %q)", d.Backend, tt.want, d.Reason)
			}
			if !strings.Contains(d.Reason, tt.reason) {
				t.Errorf("Reason = %q, want containing %q", d.Reason, tt.reason)
			}
			if d.BothInUse() != tt.bothInUse {
				t.Errorf("BothInUse = %v, want %v", d.BothInUse(), tt.bothInUse)
			}
			if d.NFT != tt.nft || d.Legacy != tt.legacy || d.Binary != tt.binary || d.BinaryBackend != tt.binBackend {
				t.Errorf("facts not carried through: %+v", d)
			}
		})
	}
}

func TestBackendOfBinary(t *testing.T) {
	tests := map[string]Backend{
		"/usr/sbin/xtables-nft-multi":    NFT,
		"/usr/sbin/iptables-nft":         NFT,
		"/usr/sbin/xtables-legacy-multi": Legacy,
		"/sbin/iptables-legacy":          Legacy,
		"/sbin/xtables-multi":            Legacy,
		"/usr/sbin/iptables":             "",
		"/bin/busybox":                   "",
	}
	for path, want := range tests {
		if got := backendOfBinary(path); got != want {
			t.Errorf("backendOfBinary(%q) = %q, want %q", path, got, want)
		}
	}
}

// TestBinary follows a Debian-style alternatives chain: iptables -> /etc/alternatives -> multi.
func TestBinary(t *testing.T) {
	dir := t.TempDir()
	multi := filepath.Join(dir, "xtables-legacy-multi")
	if err := os.WriteFile(multi, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	alt := filepath.Join(dir, "alternatives-iptables")
	link := filepath.Join(dir, "iptables")
	if err := os.Symlink(multi, alt); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(alt, link); err != nil {
		t.Fatal(err)
	}
	i := &Inspector{binaryPaths: []string{filepath.Join(dir, "missing"), link}}
	path, b := i.binary()
	if b != Legacy || filepath.Base(path) != "xtables-legacy-multi" {
		t.Fatalf("binary() = %q, %q; want xtables-legacy-multi, legacy", path, b)
	}
	i = &Inspector{binaryPaths: []string{filepath.Join(dir, "missing")}}
	if path, b := i.binary(); path != "" || b != "" {
		t.Fatalf("binary() with nothing = %q, %q", path, b)
	}
}
