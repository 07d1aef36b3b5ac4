package ecr

import (
	"slices"
	"testing"
)

func TestPauseAccount(t *testing.T) {
	tests := []struct {
		region                   string
		account, region2, domain string
	}{
		// The table in ecr.md, region by region.
		{"us-east-1", "602401143452", "us-east-1", "amazonaws.com"},
		{"us-east-2", "602401143452", "us-east-2", "amazonaws.com"},
		{"us-west-1", "602401143452", "us-west-1", "amazonaws.com"},
		{"us-west-2", "602401143452", "us-west-2", "amazonaws.com"},
		{"ca-central-1", "602401143452", "ca-central-1", "amazonaws.com"},
		{"sa-east-1", "602401143452", "sa-east-1", "amazonaws.com"},
		{"eu-central-1", "602401143452", "eu-central-1", "amazonaws.com"},
		{"eu-north-1", "602401143452", "eu-north-1", "amazonaws.com"},
		{"eu-west-1", "602401143452", "eu-west-1", "amazonaws.com"},
		{"eu-west-2", "602401143452", "eu-west-2", "amazonaws.com"},
		{"eu-west-3", "602401143452", "eu-west-3", "amazonaws.com"},
		{"ap-northeast-1", "602401143452", "ap-northeast-1", "amazonaws.com"},
		{"ap-northeast-2", "602401143452", "ap-northeast-2", "amazonaws.com"},
		{"ap-northeast-3", "602401143452", "ap-northeast-3", "amazonaws.com"},
		{"ap-south-1", "602401143452", "ap-south-1", "amazonaws.com"},
		{"ap-southeast-1", "602401143452", "ap-southeast-1", "amazonaws.com"},
		{"ap-southeast-2", "602401143452", "ap-southeast-2", "amazonaws.com"},
		{"af-south-1", "877085696533", "af-south-1", "amazonaws.com"},
		{"ap-east-1", "800184023465", "ap-east-1", "amazonaws.com"},
		{"ap-east-2", "533267051163", "ap-east-2", "amazonaws.com"},
		{"ap-south-2", "900889452093", "ap-south-2", "amazonaws.com"},
		{"ap-southeast-3", "296578399912", "ap-southeast-3", "amazonaws.com"},
		{"ap-southeast-4", "491585149902", "ap-southeast-4", "amazonaws.com"},
		{"ap-southeast-5", "151610086707", "ap-southeast-5", "amazonaws.com"},
		{"ap-southeast-6", "333609536671", "ap-southeast-6", "amazonaws.com"},
		{"ap-southeast-7", "121268973566", "ap-southeast-7", "amazonaws.com"},
		{"ca-west-1", "761377655185", "ca-west-1", "amazonaws.com"},
		{"eu-central-2", "900612956339", "eu-central-2", "amazonaws.com"},
		{"eu-south-1", "590381155156", "eu-south-1", "amazonaws.com"},
		{"eu-south-2", "455263428931", "eu-south-2", "amazonaws.com"},
		{"il-central-1", "066635153087", "il-central-1", "amazonaws.com"},
		{"me-central-1", "759879836304", "me-central-1", "amazonaws.com"},
		{"me-south-1", "558608220178", "me-south-1", "amazonaws.com"},
		{"mx-central-1", "730335286997", "mx-central-1", "amazonaws.com"},
		{"cn-north-1", "918309763551", "cn-north-1", "amazonaws.com.cn"},
		{"cn-northwest-1", "961992271922", "cn-northwest-1", "amazonaws.com.cn"},
		{"us-gov-west-1", "013241004608", "us-gov-west-1", "amazonaws.com"},
		{"us-gov-east-1", "151742754352", "us-gov-east-1", "amazonaws.com"},
		{"us-iso-east-1", "725322719131", "us-iso-east-1", "c2s.ic.gov"},
		{"us-iso-west-1", "608367168043", "us-iso-west-1", "c2s.ic.gov"},
		{"us-isob-east-1", "187977181151", "us-isob-east-1", "sc2s.sgov.gov"},
		{"us-isob-west-1", "321162350305", "us-isob-west-1", "sc2s.sgov.gov"},
		{"eu-isoe-west-1", "249663109785", "eu-isoe-west-1", "cloud.adc-e.uk"},
		{"us-isof-south-1", "676585237158", "us-isof-south-1", "csp.hci.ic.gov"},
		{"us-isof-east-1", "171035529773", "us-isof-east-1", "csp.hci.ic.gov"},
		{"eusc-de-east-1", "877088126301", "eusc-de-east-1", "amazonaws.eu"},
		// Unknown regions fall back by prefix: account and region together.
		{"us-gov-north-1", "013241004608", "us-gov-west-1", "amazonaws.com"},
		{"cn-south-1", "961992271922", "cn-northwest-1", "amazonaws.com.cn"},
		{"us-iso-south-1", "725322719131", "us-iso-east-1", "c2s.ic.gov"},
		{"us-isob-south-1", "187977181151", "us-isob-east-1", "sc2s.sgov.gov"},
		{"eu-isoe-north-1", "249663109785", "eu-isoe-west-1", "cloud.adc-e.uk"},
		{"eusc-fr-west-1", "877088126301", "eusc-de-east-1", "amazonaws.eu"},
		{"us-isof-west-1", "676585237158", "us-isof-south-1", "csp.hci.ic.gov"},
		// Anything else.
		{"ap-southeast-9", "602401143452", "us-west-2", "amazonaws.com"},
		{"xx-new-1", "602401143452", "us-west-2", "amazonaws.com"},
		{"usgov-west-1", "602401143452", "us-west-2", "amazonaws.com"},
		{"cn", "602401143452", "us-west-2", "amazonaws.com"},
		{"", "602401143452", "us-west-2", "amazonaws.com"},
		// Case and surrounding space do not matter.
		{" EU-WEST-1 ", "602401143452", "eu-west-1", "amazonaws.com"},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		account, region, domain := PauseAccount(tt.region)
		if account != tt.account || region != tt.region2 || domain != tt.domain {
			t.Errorf("PauseAccount(%q) = %s, %s, %s; want %s, %s, %s", tt.region, account, region, domain, tt.account, tt.region2, tt.domain)
		}
		seen[tt.region] = true
	}
	for region := range pauseAccounts {
		if !seen[region] {
			t.Errorf("region %s of the table is not tested", region)
		}
	}
	// Every fallback lands on a region of the table, with that region's own account.
	for _, f := range pauseFallbacks {
		src, ok := pauseAccounts[f.src.region]
		if !ok || src.account != f.src.account || src.domain != f.src.domain {
			t.Errorf("fallback %s -> %+v disagrees with the table (%+v)", f.prefix, f.src, src)
		}
	}
}

func TestPauseImage(t *testing.T) {
	tests := []struct {
		region  string
		fips    bool
		version string
		want    string
	}{
		{"us-west-2", false, "", "602401143452.dkr.ecr.us-west-2.amazonaws.com/eks/pause:3.10"},
		{"eu-west-2", false, "3.5", "602401143452.dkr.ecr.eu-west-2.amazonaws.com/eks/pause:3.5"},
		{"us-east-1", true, "", "602401143452.dkr.ecr-fips.us-east-1.amazonaws.com/eks/pause:3.10"},
		{"us-gov-east-1", true, "3.10", "151742754352.dkr.ecr-fips.us-gov-east-1.amazonaws.com/eks/pause:3.10"},
		{"cn-north-1", false, "3.9", "918309763551.dkr.ecr.cn-north-1.amazonaws.com.cn/eks/pause:3.9"},
		{"cn-southwest-7", false, "", "961992271922.dkr.ecr.cn-northwest-1.amazonaws.com.cn/eks/pause:3.10"},
		{"us-isof-south-1", false, "", "676585237158.dkr.ecr.us-isof-south-1.csp.hci.ic.gov/eks/pause:3.10"},
		{"eusc-de-east-1", false, "", "877088126301.dkr.ecr.eusc-de-east-1.amazonaws.eu/eks/pause:3.10"},
		{"nowhere-1", false, "", "602401143452.dkr.ecr.us-west-2.amazonaws.com/eks/pause:3.10"},
	}
	for _, tt := range tests {
		got := PauseImage(tt.region, tt.fips, tt.version)
		if got != tt.want {
			t.Errorf("PauseImage(%q, %v, %q) = %s, want %s", tt.region, tt.fips, tt.version, got, tt.want)
		}
		// What PauseImage builds, ParseHost reads back.
		host := got[:len(got)-len("/eks/pause:")-len(pauseVersion(tt.version))]
		reg, ok := ParseHost(host)
		account, region, domain := PauseAccount(tt.region)
		if !ok || reg.Account != account || reg.Region != region || reg.Domain != domain || reg.FIPS != tt.fips {
			t.Errorf("ParseHost(%s) = %+v, %v", host, reg, ok)
		}
	}
}

func TestPauseFallbacks(t *testing.T) {
	want := []string{"public.ecr.aws/eks-distro/kubernetes/pause:3.10", "registry.k8s.io/pause:3.10"}
	if got := PauseFallbacks(""); !slices.Equal(got, want) {
		t.Errorf("PauseFallbacks(\"\") = %q, want %q", got, want)
	}
	want = []string{"public.ecr.aws/eks-distro/kubernetes/pause:3.9", "registry.k8s.io/pause:3.9"}
	if got := PauseFallbacks("3.9"); !slices.Equal(got, want) {
		t.Errorf("PauseFallbacks(3.9) = %q, want %q", got, want)
	}
}
