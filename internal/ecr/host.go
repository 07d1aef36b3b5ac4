// Package ecr knows Amazon ECR: which registry hosts are ECR and in which region, which account
// serves the EKS pause image in each region, and how to get (and cache) a registry token with
// ecr:GetAuthorizationToken. The region always comes from the image host, never from where the
// node runs: a node in eu-central-1 pulling from us-west-2 needs a us-west-2 token.
package ecr

import (
	"net"
	"regexp"
	"strings"
)

// PublicHost is the host of ECR Public. Anonymous pulls work there; it needs no token from this
// package (authenticated pulls would use the ecr-public API in us-east-1).
const PublicHost = "public.ecr.aws"

// hostPattern matches private ECR registry hosts in every partition, including FIPS
// (dkr.ecr-fips) and dual-stack (dkr-ecr ... .on.aws) forms. It is the pattern used by
// kubernetes/cloud-provider-aws's ecr-credential-provider, with named parts. Never modified.
var hostPattern = regexp.MustCompile(`^(?P<account>\d{12})\.dkr[\.\-]ecr(?P<fips>\-fips)?\.(?P<region>[a-zA-Z0-9][a-zA-Z0-9-_]*)\.(?P<domain>amazonaws\.(?:com(?:\.cn)?|eu)|on\.(?:aws|amazonwebservices\.com\.cn)|sc2s\.sgov\.gov|c2s\.ic\.gov|cloud\.adc-e\.uk|csp\.hci\.ic\.gov)$`)

// Registry is what a private ECR host says about itself.
type Registry struct {
	Account string // 12 digits
	Region  string // e.g. us-west-2
	Domain  string // e.g. amazonaws.com, amazonaws.com.cn, on.aws
	// FIPS is set for dkr.ecr-fips hosts.
	FIPS bool
	// DualStack is set for the IPv4+IPv6 hosts (dkr-ecr.<region>.on.aws and the China form).
	DualStack bool
}

// ParseHost reports whether host (optionally with a :port) is a private ECR registry host and
// what it names. Matching is case-insensitive; the parts are returned in lower case.
func ParseHost(host string) (Registry, bool) {
	h, _, ok := splitPort(host)
	if !ok {
		return Registry{}, false
	}
	h = strings.ToLower(h)
	m := hostPattern.FindStringSubmatch(h)
	if m == nil {
		return Registry{}, false
	}
	r := Registry{
		Account: m[hostPattern.SubexpIndex("account")],
		Region:  m[hostPattern.SubexpIndex("region")],
		Domain:  m[hostPattern.SubexpIndex("domain")],
		FIPS:    m[hostPattern.SubexpIndex("fips")] != "",
	}
	// The account is always exactly 12 characters, so ".dkr-ecr" starts right after it.
	r.DualStack = strings.HasPrefix(h[12:], ".dkr-ecr") || strings.HasPrefix(r.Domain, "on.")
	return r, true
}

// IsPublic reports whether host (optionally with a :port) is ECR Public.
func IsPublic(host string) bool {
	h, _, ok := splitPort(host)
	return ok && strings.EqualFold(h, PublicHost)
}

// splitPort splits a trailing :port (digits only) off host and removes the brackets of an IPv6
// literal. It reports false for a host it cannot make sense of (empty, a bad port).
func splitPort(host string) (h, port string, ok bool) {
	switch {
	case host == "":
		return "", "", false
	case strings.Count(host, ":") > 1 && !strings.HasPrefix(host, "["):
		return host, "", true // a bare IPv6 literal: no port to strip
	case !strings.Contains(host, ":") && !strings.HasPrefix(host, "["):
		return host, "", true
	case strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") && len(host) > 2:
		return host[1 : len(host)-1], "", true // [::1]
	}
	h, port, err := net.SplitHostPort(host)
	if err != nil || h == "" || port == "" || strings.Trim(port, "0123456789") != "" {
		return "", "", false
	}
	return h, port, true
}

// Resolver says which region's token a registry host needs.
type Resolver struct {
	// Declared maps hosts the operator declares as ECR to their region: VPC endpoint hosts,
	// private aliases, a test registry such as 127.0.0.1:5000. A key with a port matches only
	// that port; a key without one matches the host on any port. Keys are compared without
	// regard to case. Never modified by the Resolver.
	Declared map[string]string
}

// Resolve returns the region whose token host needs: a declared host's region first, else the
// region named by an ECR host. ok is false for anything else (including ECR Public).
func (r Resolver) Resolve(host string) (region string, ok bool) {
	if region, ok := r.declared(host); ok {
		return region, true
	}
	reg, ok := ParseHost(host)
	if !ok {
		return "", false
	}
	return reg.Region, true
}

func (r Resolver) declared(host string) (string, bool) {
	if len(r.Declared) == 0 || host == "" {
		return "", false
	}
	if region, ok := r.Declared[host]; ok && region != "" {
		return region, true
	}
	bare, _, ok := splitPort(host)
	if !ok {
		return "", false
	}
	for k, region := range r.Declared {
		if region == "" {
			continue
		}
		if strings.EqualFold(k, host) {
			return region, true
		}
		if kb, kport, ok := splitPort(k); ok && kport == "" && strings.EqualFold(kb, bare) {
			return region, true
		}
	}
	return "", false
}
