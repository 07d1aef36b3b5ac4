package supervisor

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sandbox-guard/sandbox-guard/internal/bridge"
	"github.com/sandbox-guard/sandbox-guard/internal/containerdconfig"
	"github.com/sandbox-guard/sandbox-guard/internal/keeper"
	"github.com/sandbox-guard/sandbox-guard/internal/metrics"
	"github.com/sandbox-guard/sandbox-guard/internal/snapshot"
)

func TestStatusRows(t *testing.T) {
	now := time.Date(2026, 12, 6, 6, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	present := filepath.Join(t.TempDir(), "hosts.toml")
	if err := os.WriteFile(present, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	plan := &Plan{}
	checks := &snapshot.Snapshot{Results: []snapshot.Result{{Name: "marker", Kind: "file", OK: true}}}
	effective := BridgePlan{Dir: "/etc/containerd/certs.d", Hosts: []string{"1.dkr.ecr.us-west-2.amazonaws.com"}, Effective: true}
	tests := []struct {
		name   string
		st     Status
		names  []string // rows in order
		ok     []bool
		detail string // a substring of the last row's detail
	}{
		{"checks only", Status{Checks: checks}, []string{"marker"}, []bool{true}, ""},
		{"images starting", Status{Checks: checks, ImagesConfigured: true}, []string{"marker", "images"}, []bool{true, false}, "image keeper starting"},
		{"images cannot start", Status{Checks: checks, ImagesConfigured: true, ImagesErr: errors.New("reading\ncontainerd's configuration: bad")},
			[]string{"marker", "images"}, []bool{true, false}, "image keeper cannot start: reading containerd's configuration: bad"},
		{"no image configured", Status{ImagesConfigured: true, Plan: plan}, []string{"images"}, []bool{true}, "no images configured"},
		{"images present, one from a fallback", Status{ImagesConfigured: true, Plan: plan, Images: []keeper.Status{
			{Name: "a", Present: true, Pinned: true, Source: "a", Checked: now},
			{Name: "b", Present: true, Pinned: true, Source: "mirror/b", Checked: now},
		}}, []string{"images"}, []bool{true}, "a present and pinned; b present and pinned (from mirror/b)"},
		{"image missing and not checked", Status{ImagesConfigured: true, Plan: plan, Images: []keeper.Status{
			{Name: "a", LastError: "sandbox image a is missing", Checked: now}, {Name: "b"},
		}}, []string{"images"}, []bool{false}, "sandbox image a is missing; b not checked yet"},
		{"bridge waiting for the plan", Status{ImagesConfigured: true, Bridge: &BridgeStatus{}}, []string{"images", "credential-bridge"}, []bool{false, false},
			"credential bridge starting"},
		{"bridge with nothing to write", Status{ImagesConfigured: true, Plan: plan, Bridge: &BridgeStatus{Planned: true, Plan: BridgePlan{Dir: "/d"}}},
			[]string{"images", "credential-bridge"}, []bool{true, false}, "nothing to write"},
		{"bridge written", Status{ImagesConfigured: true, Plan: plan, Bridge: &BridgeStatus{Planned: true, Plan: effective, Running: true,
			Hosts: []bridge.HostState{{Host: "h", File: "/d/h/hosts.toml", Written: now, ExpiresAt: now.Add(6 * time.Hour)}}}},
			[]string{"images", "credential-bridge"}, []bool{true, true}, "h: /d/h/hosts.toml, token expires in 360 min; effective"},
		{"bridge token expired", Status{ImagesConfigured: true, Plan: plan, Bridge: &BridgeStatus{Planned: true, Plan: effective, Running: true,
			Hosts: []bridge.HostState{{Host: "h", File: "/d/h/hosts.toml", Written: now.Add(-13 * time.Hour), ExpiresAt: now.Add(-time.Hour)}}}},
			[]string{"images", "credential-bridge"}, []bool{true, false}, "h: /d/h/hosts.toml, token expired 60 min ago; effective"},
		{"bridge not written yet", Status{ImagesConfigured: true, Plan: plan, Bridge: &BridgeStatus{Planned: true, Plan: effective, Running: true,
			Hosts: []bridge.HostState{{Host: "h", File: present}}}},
			[]string{"images", "credential-bridge"}, []bool{true, false}, "not written yet"},
		{"check reads the running plugin's file", Status{ImagesConfigured: true, Plan: plan, Bridge: &BridgeStatus{Planned: true, Plan: effective,
			Hosts: []bridge.HostState{{Host: "h", File: present}}}},
			[]string{"images", "credential-bridge"}, []bool{true, true}, "h: " + present + " present; effective"},
		{"bridge error and not effective", Status{ImagesConfigured: true, Plan: plan, Bridge: &BridgeStatus{Planned: true, Running: true,
			Plan:  BridgePlan{Dir: "/d", Hosts: []string{"h"}, Why: "transfer service", Fix: "set use_local_image_pull = true"},
			Hosts: []bridge.HostState{{Host: "h", Err: "permission denied"}}}},
			[]string{"images", "credential-bridge"}, []bool{true, false}, "h: permission denied; NOT effective: transfer service; fix: set use_local_image_pull = true"},
		{"image present, local copy not kept", Status{ImagesConfigured: true, Plan: plan, Images: []keeper.Status{
			{Name: "a", Present: true, Pinned: true, Source: "a", Checked: now, CopyError: "local copy of a: no space left on device"},
		}}, []string{"images"}, []bool{true}, "a present and pinned; local copy not kept: local copy of a: no space left on device"},
		{"bridge written, not recorded", Status{ImagesConfigured: true, Plan: plan, Bridge: &BridgeStatus{Planned: true, Plan: effective, Running: true,
			Hosts: []bridge.HostState{{Host: "h", File: "/d/h/hosts.toml", Written: now, ExpiresAt: now.Add(6 * time.Hour), Unrecorded: "no space left on device"}}}},
			[]string{"images", "credential-bridge"}, []bool{true, true}, "token expires in 360 min (not recorded, so it would stay behind if the host left the configuration: no space left on device)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.st.Now = clock
			var rows []Row
			for _, r := range tt.st.Rows() {
				if r.Name != "containerd" { // TestContainerdRow
					rows = append(rows, r)
				}
			}
			var names []string
			var oks []bool
			for _, r := range rows {
				names = append(names, r.Name)
				oks = append(oks, r.OK)
				if r.Name != "marker" && !r.Informational {
					t.Errorf("row %s is not informational", r.Name)
				}
			}
			if strings.Join(names, ",") != strings.Join(tt.names, ",") || len(oks) != len(tt.ok) {
				t.Fatalf("rows %v, want %v", names, tt.names)
			}
			for i := range oks {
				if oks[i] != tt.ok[i] {
					t.Errorf("row %s OK = %v, want %v (%s)", names[i], oks[i], tt.ok[i], rows[i].Detail)
				}
			}
			if last := rows[len(rows)-1].Detail; !strings.Contains(last, tt.detail) {
				t.Errorf("last row detail %q, want it to contain %q", last, tt.detail)
			}
		})
	}
}

// The gauge is 1 only when containerd reads the hosts directory and the entry holds a token
// that has not expired, written at the last refresh.
func TestMetricBridge(t *testing.T) {
	now := time.Date(2026, 12, 6, 6, 0, 0, 0, time.UTC)
	const a, b = "1.dkr.ecr.us-west-2.amazonaws.com", "2.dkr.ecr.eu-west-1.amazonaws.com"
	effective := BridgePlan{Dir: "/d", Hosts: []string{a}, Effective: true}
	written := bridge.HostState{Host: a, File: "/d/" + a + "/hosts.toml", Written: now.Add(-time.Hour), ExpiresAt: now.Add(6 * time.Hour)}
	with := func(f func(*bridge.HostState)) []bridge.HostState {
		st := written
		f(&st)
		return []bridge.HostState{st}
	}
	tests := []struct {
		name string
		b    *BridgeStatus
		want []metrics.BridgeHost
	}{
		{"bridge off", nil, nil},
		{"plan not resolved yet", &BridgeStatus{}, nil},
		{"no ECR host to write for", &BridgeStatus{Planned: true, Plan: BridgePlan{Dir: "/d", Effective: true}}, nil},
		{"effective", &BridgeStatus{Planned: true, Running: true, Plan: effective, Hosts: []bridge.HostState{written}},
			[]metrics.BridgeHost{{Host: a, Effective: true}}},
		{"written but not read by containerd", &BridgeStatus{Planned: true, Running: true,
			Plan:  BridgePlan{Dir: "/d", Hosts: []string{a}, Why: "transfer service", Fix: "use_local_image_pull"},
			Hosts: []bridge.HostState{written}},
			[]metrics.BridgeHost{{Host: a}}},
		{"no hosts directory", &BridgeStatus{Planned: true, Plan: BridgePlan{Hosts: []string{a, b}, Why: "no registry config_path"}},
			[]metrics.BridgeHost{{Host: a}, {Host: b}}},
		{"not written yet", &BridgeStatus{Planned: true, Running: true, Plan: effective, Hosts: []bridge.HostState{{Host: a, File: written.File}}},
			[]metrics.BridgeHost{{Host: a}}},
		{"last refresh failed", &BridgeStatus{Planned: true, Running: true, Plan: effective,
			Hosts: with(func(st *bridge.HostState) {
				st.Written, st.ExpiresAt, st.Err = time.Time{}, time.Time{}, "token for h: denied"
			})},
			[]metrics.BridgeHost{{Host: a}}},
		{"token expired", &BridgeStatus{Planned: true, Running: true, Plan: effective,
			Hosts: with(func(st *bridge.HostState) { st.ExpiresAt = now })},
			[]metrics.BridgeHost{{Host: a}}},
		{"written, not recorded in the ledger", &BridgeStatus{Planned: true, Running: true, Plan: effective,
			Hosts: with(func(st *bridge.HostState) { st.Unrecorded = "no space left on device" })},
			[]metrics.BridgeHost{{Host: a, Effective: true}}},
		{"one host of two failing", &BridgeStatus{Planned: true, Running: true, Plan: BridgePlan{Dir: "/d", Hosts: []string{a, b}, Effective: true},
			Hosts: []bridge.HostState{written, {Host: b, Err: "read-only file system"}}},
			[]metrics.BridgeHost{{Host: a, Effective: true}, {Host: b}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := metricBridge(tt.b, now); !slices.Equal(got, tt.want) {
				t.Errorf("metricBridge = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestReadyIgnoresInformationalRows(t *testing.T) {
	st := Status{Checks: &snapshot.Snapshot{}, ImagesConfigured: true, ImagesErr: errors.New("x")}
	if !st.Ready() {
		t.Error("a failing images row made the node not ready")
	}
	if (Status{}).Ready() {
		t.Error("no snapshot yet is ready")
	}
}

func TestContainerdRow(t *testing.T) {
	info := func(assumed bool) *containerdconfig.Info {
		i := &containerdconfig.Info{Line: containerdconfig.Line23, LineSource: "containerd v2.3.7", Files: []string{"/etc/containerd/config.toml", "/etc/containerd/config.d/nri.toml"}}
		if assumed {
			i.LineAssumed, i.LineSource = true, "the highest file version, 4"
		}
		return i
	}
	rt := Runtime{Name: "containerd", Version: "v2.3.7"}
	tests := []struct {
		name   string
		st     Status
		ok     bool
		detail string
	}{
		{"images off: no row", Status{}, false, ""},
		{"not read yet", Status{ImagesConfigured: true, Runtime: rt}, false, "containerd v2.3.7; configuration not read yet"},
		{"read for the running containerd", Status{ImagesConfigured: true, Runtime: rt, Plan: &Plan{Containerd: info(false)}}, true,
			"containerd v2.3.7; configuration read as 2.3 (containerd v2.3.7): /etc/containerd/config.toml, /etc/containerd/config.d/nri.toml"},
		{"containerd unknown, line assumed", Status{ImagesConfigured: true, Plan: &Plan{Containerd: info(true)}}, false,
			"version unknown; configuration read as 2.3, assumed from the highest file version, 4: /etc/containerd/config.toml, /etc/containerd/config.d/nri.toml"},
		{"no file", Status{ImagesConfigured: true, Runtime: rt, Plan: &Plan{}}, true, "containerd v2.3.7; no configuration file (containerd's defaults)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var row *Row
			for _, r := range tt.st.Rows() {
				if r.Name == "containerd" {
					row = &r
				}
			}
			switch {
			case tt.detail == "" && row != nil:
				t.Fatalf("unexpected containerd row %+v", row)
			case tt.detail == "":
				return
			case row == nil:
				t.Fatal("no containerd row")
			}
			if row.OK != tt.ok || row.Detail != tt.detail || !row.Informational || row.Kind != "runtime" {
				t.Errorf("row = %+v\nwant OK %v, detail %q", row, tt.ok, tt.detail)
			}
		})
	}
}
