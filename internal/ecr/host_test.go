package ecr

import "testing"

func TestParseHost(t *testing.T) {
	tests := []struct {
		host string
		want Registry
		ok   bool
	}{
		// Every partition.
		{"123456789012.dkr.ecr.us-west-2.amazonaws.com", Registry{Account: "123456789012", Region: "us-west-2", Domain: "amazonaws.com"}, true},
		{"602401143452.dkr.ecr.eu-central-1.amazonaws.com", Registry{Account: "602401143452", Region: "eu-central-1", Domain: "amazonaws.com"}, true},
		{"013241004608.dkr.ecr.us-gov-west-1.amazonaws.com", Registry{Account: "013241004608", Region: "us-gov-west-1", Domain: "amazonaws.com"}, true},
		{"918309763551.dkr.ecr.cn-north-1.amazonaws.com.cn", Registry{Account: "918309763551", Region: "cn-north-1", Domain: "amazonaws.com.cn"}, true},
		{"725322719131.dkr.ecr.us-iso-east-1.c2s.ic.gov", Registry{Account: "725322719131", Region: "us-iso-east-1", Domain: "c2s.ic.gov"}, true},
		{"187977181151.dkr.ecr.us-isob-east-1.sc2s.sgov.gov", Registry{Account: "187977181151", Region: "us-isob-east-1", Domain: "sc2s.sgov.gov"}, true},
		{"249663109785.dkr.ecr.eu-isoe-west-1.cloud.adc-e.uk", Registry{Account: "249663109785", Region: "eu-isoe-west-1", Domain: "cloud.adc-e.uk"}, true},
		{"676585237158.dkr.ecr.us-isof-south-1.csp.hci.ic.gov", Registry{Account: "676585237158", Region: "us-isof-south-1", Domain: "csp.hci.ic.gov"}, true},
		{"877088126301.dkr.ecr.eusc-de-east-1.amazonaws.eu", Registry{Account: "877088126301", Region: "eusc-de-east-1", Domain: "amazonaws.eu"}, true},
		// FIPS.
		{"123456789012.dkr.ecr-fips.us-east-1.amazonaws.com", Registry{Account: "123456789012", Region: "us-east-1", Domain: "amazonaws.com", FIPS: true}, true},
		{"013241004608.dkr.ecr-fips.us-gov-west-1.amazonaws.com", Registry{Account: "013241004608", Region: "us-gov-west-1", Domain: "amazonaws.com", FIPS: true}, true},
		// Dual-stack.
		{"123456789012.dkr-ecr.us-west-2.on.aws", Registry{Account: "123456789012", Region: "us-west-2", Domain: "on.aws", DualStack: true}, true},
		{"123456789012.dkr-ecr-fips.us-east-1.on.aws", Registry{Account: "123456789012", Region: "us-east-1", Domain: "on.aws", FIPS: true, DualStack: true}, true},
		{"918309763551.dkr-ecr.cn-north-1.on.amazonwebservices.com.cn", Registry{Account: "918309763551", Region: "cn-north-1", Domain: "on.amazonwebservices.com.cn", DualStack: true}, true},
		// With a port, in upper case.
		{"123456789012.dkr.ecr.us-west-2.amazonaws.com:443", Registry{Account: "123456789012", Region: "us-west-2", Domain: "amazonaws.com"}, true},
		{"123456789012.DKR.ECR.US-WEST-2.AMAZONAWS.COM", Registry{Account: "123456789012", Region: "us-west-2", Domain: "amazonaws.com"}, true},
		// Not ECR.
		{"public.ecr.aws", Registry{}, false},
		{"registry.k8s.io", Registry{}, false},
		{"docker.io", Registry{}, false},
		{"127.0.0.1:5000", Registry{}, false},
		{"[::1]:5000", Registry{}, false},
		{"vpce-0123.dkr.ecr.us-west-2.vpce.amazonaws.com", Registry{}, false},
		// Malformed.
		{"", Registry{}, false},
		{":443", Registry{}, false},
		{"12345678901.dkr.ecr.us-west-2.amazonaws.com", Registry{}, false},
		{"1234567890123.dkr.ecr.us-west-2.amazonaws.com", Registry{}, false},
		{"12345678901a.dkr.ecr.us-west-2.amazonaws.com", Registry{}, false},
		{"123456789012.dkr.ecr.us-west-2.amazonaws.com.evil.example", Registry{}, false},
		{"evil.example.123456789012.dkr.ecr.us-west-2.amazonaws.com", Registry{}, false},
		{"123456789012.dkr.ecr..amazonaws.com", Registry{}, false},
		{"123456789012.dkr.ecr.-west-2.amazonaws.com", Registry{}, false},
		{"123456789012.dkrxecr.us-west-2.amazonaws.com", Registry{}, false},
		{"123456789012.dkr.ecr-gov.us-west-2.amazonaws.com", Registry{}, false},
		{"123456789012.dkr.ecr.us-west-2.amazonaws.org", Registry{}, false},
		{"https://123456789012.dkr.ecr.us-west-2.amazonaws.com", Registry{}, false},
		{"123456789012.dkr.ecr.us-west-2.amazonaws.com/eks/pause", Registry{}, false},
		{"123456789012.dkr.ecr.us-west-2.amazonaws.com:", Registry{}, false},
		{"123456789012.dkr.ecr.us-west-2.amazonaws.com:https", Registry{}, false},
		{"123456789012.dkr.ecr.us-west-2.amazonaws.com:443:443", Registry{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			got, ok := ParseHost(tt.host)
			if ok != tt.ok || got != tt.want {
				t.Errorf("ParseHost(%q) = %+v, %v; want %+v, %v", tt.host, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestIsPublic(t *testing.T) {
	for host, want := range map[string]bool{
		"public.ecr.aws":                               true,
		"PUBLIC.ECR.AWS":                               true,
		"public.ecr.aws:443":                           true,
		"public.ecr.aws.evil.example":                  false,
		"123456789012.dkr.ecr.us-east-1.amazonaws.com": false,
		"": false,
	} {
		if got := IsPublic(host); got != want {
			t.Errorf("IsPublic(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestResolver(t *testing.T) {
	r := Resolver{Declared: map[string]string{
		"127.0.0.1:5000":      "us-west-2",
		"mirror.corp.example": "eu-west-1",
		"VPCE-0123.dkr.ecr.us-east-1.vpce.amazonaws.com": "us-east-1",
		// A declared host wins over what the pattern would say.
		"123456789012.dkr.ecr.ap-south-1.amazonaws.com": "ap-south-2",
		"[::1]:5000":    "ca-central-1",
		"empty.example": "",
	}}
	tests := []struct {
		host, region string
		ok           bool
	}{
		{"127.0.0.1:5000", "us-west-2", true},
		{"127.0.0.1:5001", "", false},
		{"127.0.0.1", "", false},
		{"mirror.corp.example", "eu-west-1", true},
		{"mirror.corp.example:8443", "eu-west-1", true},
		{"Mirror.Corp.Example", "eu-west-1", true},
		{"vpce-0123.dkr.ecr.us-east-1.vpce.amazonaws.com", "us-east-1", true},
		{"123456789012.dkr.ecr.ap-south-1.amazonaws.com", "ap-south-2", true},
		{"[::1]:5000", "ca-central-1", true},
		{"[::1]:5001", "", false},
		{"empty.example", "", false},
		{"210987654321.dkr.ecr.eu-central-1.amazonaws.com", "eu-central-1", true},
		{"210987654321.dkr-ecr.eu-central-1.on.aws:443", "eu-central-1", true},
		{"public.ecr.aws", "", false},
		{"docker.io", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		region, ok := r.Resolve(tt.host)
		if region != tt.region || ok != tt.ok {
			t.Errorf("Resolve(%q) = %q, %v; want %q, %v", tt.host, region, ok, tt.region, tt.ok)
		}
	}
	if region, ok := (Resolver{}).Resolve("123456789012.dkr.ecr.us-west-2.amazonaws.com"); !ok || region != "us-west-2" {
		t.Errorf("zero Resolver: got %q, %v", region, ok)
	}
}
