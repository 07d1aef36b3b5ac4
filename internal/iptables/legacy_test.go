package iptables

import (
	"encoding/binary"
	"slices"
	"strings"
	"testing"
)

// TestLayoutFor pins the entry layouts to gcc's offsetof/sizeof on amd64 (and the i386 ABI).
func TestLayoutFor(t *testing.T) {
	tests := []struct {
		f     Family
		align int
		want  entryLayout
	}{
		{IPv4, 8, entryLayout{size: 112, targetOffset: 88, nextOffset: 90}},
		{IPv6, 8, entryLayout{size: 168, targetOffset: 140, nextOffset: 142}},
		{IPv4, 4, entryLayout{size: 112, targetOffset: 88, nextOffset: 90}},
		{IPv6, 4, entryLayout{size: 164, targetOffset: 140, nextOffset: 142}},
	}
	for _, tt := range tests {
		if got := layoutFor(tt.f, tt.align); got != tt.want {
			t.Errorf("layoutFor(%v, %d) = %+v, want %+v", tt.f, tt.align, got, tt.want)
		}
	}
	if got := alignUp(getEntriesUnaligned, 8); got != 40 {
		t.Errorf("ipt_get_entries header = %d, want 40", got)
	}
}

// testEntry builds one entry the way the kernel hands it out: header, matchLen bytes of
// matches, then an xt_entry_target named target followed by data, padded to 8 bytes.
func testEntry(l entryLayout, matchLen int, target string, data []byte) []byte {
	toff := l.size + matchLen
	tlen := alignUp(xtTargetHeaderLen+len(data), 8)
	e := make([]byte, toff+tlen)
	for i := range l.size {
		e[i] = 0xAA // garbage in the ip part must not matter
	}
	binary.NativeEndian.PutUint16(e[l.targetOffset:], uint16(toff))
	binary.NativeEndian.PutUint16(e[l.nextOffset:], uint16(len(e)))
	binary.NativeEndian.PutUint16(e[toff:], uint16(tlen))
	copy(e[toff+xtTargetNameOff:], target)
	copy(e[toff+xtTargetHeaderLen:], data)
	return e
}

func errorData(name string) []byte {
	b := make([]byte, xtFuncMaxNameLen)
	copy(b, name)
	return b
}

func verdict() []byte { return []byte{0xfe, 0xff, 0xff, 0xff} } // -NF_ACCEPT-1

func chainHead(l entryLayout, name string) []byte { return testEntry(l, 0, "ERROR", errorData(name)) }
func endMarker(l entryLayout) []byte              { return chainHead(l, "ERROR") }
func policy(l entryLayout) []byte                 { return testEntry(l, 0, "", verdict()) }
func rule(l entryLayout) []byte                   { return testEntry(l, 48, "DNAT", make([]byte, 40)) }

func TestParseEntries(t *testing.T) {
	for _, f := range []Family{IPv4, IPv6} {
		l := layoutFor(f, 8)
		cat := slices.Concat[[]byte]
		long := strings.Repeat("X", legacyMaxChainLen)
		tests := []struct {
			name    string
			buf     []byte
			want    []string
			wantErr string
		}{
			{name: "only end marker", buf: endMarker(l)},
			{name: "builtins only", buf: cat(policy(l), policy(l), policy(l), policy(l), endMarker(l))},
			{
				name: "kube-proxy shaped",
				buf: cat(rule(l), policy(l), policy(l), rule(l), policy(l),
					chainHead(l, "KUBE-SEP-AAA"), rule(l), rule(l), testEntry(l, 0, "", verdict()),
					chainHead(l, "KUBE-SERVICES"), rule(l), policy(l),
					chainHead(l, "KUBE-SVC-AAA"), rule(l), policy(l),
					endMarker(l)),
				want: []string{"KUBE-SEP-AAA", "KUBE-SERVICES", "KUBE-SVC-AAA"},
			},
			{name: "longest name", buf: cat(chainHead(l, long), policy(l), endMarker(l)), want: []string{long}},
			{name: "chain named ERROR is a chain unless last", buf: cat(chainHead(l, "ERROR"), policy(l), endMarker(l)), want: []string{"ERROR"}},
			{name: "empty", buf: nil, wantErr: "no end marker"},
			{name: "no end marker", buf: cat(chainHead(l, "A"), policy(l)), wantErr: "no end marker"},
			{name: "truncated header", buf: endMarker(l)[:l.size-1], wantErr: "truncated"},
			{name: "truncated target", buf: cat(policy(l), endMarker(l)[:l.size+8]), wantErr: "corrupt"},
			{name: "zero next_offset", buf: func() []byte {
				b := cat(policy(l), endMarker(l))
				binary.NativeEndian.PutUint16(b[l.nextOffset:], 0)
				return b
			}(), wantErr: "corrupt"},
			{name: "target_offset inside header", buf: func() []byte {
				b := endMarker(l)
				binary.NativeEndian.PutUint16(b[l.targetOffset:], uint16(l.size-4))
				return b
			}(), wantErr: "corrupt"},
			{name: "nameless chain head", buf: cat(chainHead(l, ""), endMarker(l)), wantErr: "no name"},
		}
		for _, tt := range tests {
			t.Run(f.String()+"/"+tt.name, func(t *testing.T) {
				got, err := parseEntries(tt.buf, l)
				if tt.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
						t.Fatalf("err = %v, want containing %q (chains %q)", err, tt.wantErr, got)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(got, tt.want) {
					t.Fatalf("chains = %q, want %q", got, tt.want)
				}
			})
		}
	}
}

// The IPv4 layout must not parse an IPv6 table (and vice versa) without noticing.
func TestParseEntriesWrongLayout(t *testing.T) {
	v4, v6 := layoutFor(IPv4, 8), layoutFor(IPv6, 8)
	buf := slices.Concat(policy(v6), chainHead(v6, "KUBE-SERVICES"), policy(v6), endMarker(v6))
	if got, err := parseEntries(buf, v4); err == nil {
		t.Fatalf("IPv6 table parsed with IPv4 layout: %q", got)
	}
}

func TestBuiltinChains(t *testing.T) {
	tests := []struct {
		hooks uint32
		want  []string
	}{
		{0, nil},
		{0b01110, []string{"INPUT", "FORWARD", "OUTPUT"}},                   // filter
		{0b11011, []string{"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"}}, // nat
		{0b11111, []string{"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}},
		{0b01001, []string{"PREROUTING", "OUTPUT"}}, // raw
	}
	for _, tt := range tests {
		if got := builtinChains(tt.hooks); !slices.Equal(got, tt.want) {
			t.Errorf("builtinChains(%05b) = %q, want %q", tt.hooks, got, tt.want)
		}
	}
}
