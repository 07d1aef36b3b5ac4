package config

import (
	"reflect"
	"testing"
)

func names(cs []Check) []string {
	out := []string{}
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func TestPresetsAreValid(t *testing.T) {
	wantNames := map[string][]string{
		PresetEKS:         {"cni-config", "vpc-cni-ipamd", "kube-proxy-rules"},
		PresetEKSNftables: {"cni-config", "vpc-cni-ipamd", "kube-proxy-rules"},
		PresetCilium:      {"cni-config", "cilium-health"},
		PresetCalico:      {"cni-config", "calico-felix", "kube-proxy-rules"},
		PresetNone:        {},
	}
	if got := Presets(); !reflect.DeepEqual(got, []string{"eks", "eks-nftables", "cilium", "calico", "none"}) {
		t.Errorf("Presets() = %v", got)
	}
	for _, p := range Presets() {
		list, ok := PresetChecks(p)
		if !ok {
			t.Errorf("PresetChecks(%q) unknown", p)
			continue
		}
		if got := names(list); !reflect.DeepEqual(got, wantNames[p]) {
			t.Errorf("preset %s checks = %v, want %v", p, got, wantNames[p])
		}
		for i, c := range list {
			if err := c.validate("preset"); err != nil {
				t.Errorf("preset %s check %d does not validate: %v", p, i, err)
			}
			if c.Hint == "" {
				t.Errorf("preset %s check %s has no hint", p, c.Name)
			}
		}
	}
	if _, ok := PresetChecks("gke"); ok {
		t.Error("PresetChecks(gke) should be unknown")
	}
	eksNft, _ := PresetChecks(PresetEKSNftables)
	if eksNft[2].Nftables == nil || eksNft[2].Iptables != nil {
		t.Errorf("eks-nftables kube-proxy check should use nftables: %+v", eksNft[2])
	}
}

func TestEffectiveChecks(t *testing.T) {
	eks, _ := PresetChecks(PresetEKS)
	tests := []struct {
		name  string
		yaml  string
		names []string
		check func(t *testing.T, got []Check)
	}{
		{
			name:  "preset only",
			yaml:  "",
			names: []string{"cni-config", "vpc-cni-ipamd", "kube-proxy-rules"},
			check: func(t *testing.T, got []Check) {
				if !reflect.DeepEqual(got, eks) {
					t.Errorf("got %+v, want the eks preset %+v", got, eks)
				}
			},
		},
		{
			name:  "preset none without checks",
			yaml:  "preset: none",
			names: []string{},
		},
		{
			name:  "disable",
			yaml:  "disableChecks: [vpc-cni-ipamd]",
			names: []string{"cni-config", "kube-proxy-rules"},
		},
		{
			name:  "disable all",
			yaml:  "disableChecks: [kube-proxy-rules, cni-config, vpc-cni-ipamd]",
			names: []string{},
		},
		{
			name:  "replace by same name keeps the position",
			yaml:  "checks: [{name: vpc-cni-ipamd, hint: mine, file: {path: /run/ipamd-ready}}]",
			names: []string{"cni-config", "vpc-cni-ipamd", "kube-proxy-rules"},
			check: func(t *testing.T, got []Check) {
				want := Check{Name: "vpc-cni-ipamd", Hint: "mine", File: &FileCheck{Path: "/run/ipamd-ready"}}
				if !reflect.DeepEqual(got[1], want) {
					t.Errorf("replaced check = %+v, want %+v", got[1], want)
				}
				if !reflect.DeepEqual(got[0], eks[0]) || !reflect.DeepEqual(got[2], eks[2]) {
					t.Errorf("other checks changed: %+v", got)
				}
			},
		},
		{
			name:  "add appends in configuration order",
			yaml:  "checks: [{name: zz, file: {path: /z}}, {name: aa, file: {path: /a}}]",
			names: []string{"cni-config", "vpc-cni-ipamd", "kube-proxy-rules", "zz", "aa"},
			check: func(t *testing.T, got []Check) {
				if got[3].File.Path != "/z" || got[4].File.Path != "/a" {
					t.Errorf("added checks = %+v, %+v", got[3], got[4])
				}
			},
		},
		{
			name:  "replace and add mixed",
			yaml:  "checks: [{name: extra, file: {path: /e}}, {name: cni-config, file: {path: /c}}]",
			names: []string{"cni-config", "vpc-cni-ipamd", "kube-proxy-rules", "extra"},
			check: func(t *testing.T, got []Check) {
				if got[0].File == nil || got[0].File.Path != "/c" || got[0].CNI != nil {
					t.Errorf("cni-config not replaced: %+v", got[0])
				}
			},
		},
		{
			name:  "disable and add",
			yaml:  "disableChecks: [vpc-cni-ipamd]\nchecks: [{name: marker, file: {path: /m}}]",
			names: []string{"cni-config", "kube-proxy-rules", "marker"},
		},
		{
			name: "disable and redefine the same name",
			yaml: "disableChecks: [kube-proxy-rules]\nchecks: [{name: kube-proxy-rules, file: {path: /k}}]",
			check: func(t *testing.T, got []Check) {
				n := 0
				for _, c := range got {
					if c.Name == "kube-proxy-rules" {
						n++
						if c.File == nil || c.Iptables != nil {
							t.Errorf("the preset's definition survived: %+v", c)
						}
					}
				}
				if n != 1 || len(got) != 3 {
					t.Errorf("got %v, want the configured kube-proxy-rules exactly once among 3 checks", names(got))
				}
			},
		},
		{
			name:  "preset none with checks",
			yaml:  "preset: none\nchecks: [{name: b, file: {path: /b}}, {name: a, file: {path: /a}}]",
			names: []string{"b", "a"},
		},
		{
			name:  "cilium disable and add",
			yaml:  "preset: cilium\ndisableChecks: [cilium-health]\nchecks: [{name: x, file: {path: /x}}]",
			names: []string{"cni-config", "x"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tt.yaml), testSource)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			got := cfg.EffectiveChecks()
			if tt.names != nil && !reflect.DeepEqual(names(got), tt.names) {
				t.Errorf("EffectiveChecks names = %v, want %v", names(got), tt.names)
			}
			if tt.check != nil {
				tt.check(t, got)
			}
			// Calling it again gives the same answer and does not change the configuration.
			if again := cfg.EffectiveChecks(); !reflect.DeepEqual(again, got) {
				t.Errorf("second call = %v, first %v", names(again), names(got))
			}
		})
	}
}
