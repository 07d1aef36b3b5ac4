package ecr

import (
	"strings"
	"testing"
)

// FuzzParseHost: any input is either rejected or gives a registry whose parts reassemble into
// the host (lower-cased, without a port), with a 12-digit account and a region in it.
func FuzzParseHost(f *testing.F) {
	f.Fuzz(func(t *testing.T, host string) {
		r, ok := ParseHost(host)
		if !ok {
			return
		}
		if len(r.Account) != 12 || strings.Trim(r.Account, "0123456789") != "" {
			t.Fatalf("ParseHost(%q) account %q", host, r.Account)
		}
		if r.Region == "" || r.Domain == "" {
			t.Fatalf("ParseHost(%q) = %+v: empty region or domain", host, r)
		}
		h := strings.ToLower(host)
		if !strings.Contains(h, r.Account) || !strings.Contains(h, r.Region) || !strings.Contains(h, r.Domain) {
			t.Fatalf("ParseHost(%q) = %+v: parts not taken from the host", host, r)
		}
		if r.FIPS != strings.Contains(h, "-fips") {
			t.Fatalf("ParseHost(%q) FIPS %v", host, r.FIPS)
		}
		// A resolver must agree with the pattern for every host it did not declare.
		if region, ok := (Resolver{}).Resolve(host); !ok || region != r.Region {
			t.Fatalf("Resolve(%q) = %q, %v; ParseHost region %q", host, region, ok, r.Region)
		}
	})
}
