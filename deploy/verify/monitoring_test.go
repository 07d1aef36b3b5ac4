package verify_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"

	"github.com/sandbox-guard/sandbox-guard/deploy/verify"
	"github.com/sandbox-guard/sandbox-guard/internal/metrics"
)

const monitoringDir = "../components/monitoring"

func readRule(t *testing.T) *monitoringv1.PrometheusRule {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(monitoringDir, "prometheusrule.yaml"))
	must(t, err)
	obj, err := verify.Decode(b)
	must(t, err)
	return obj.(*monitoringv1.PrometheusRule)
}

// Every file of the component decodes strictly into its type: the operator's for the PodMonitor
// and the PrometheusRule, Kubernetes' for the DaemonSet patch.
func TestMonitoringManifestsDecodeStrictly(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(monitoringDir, "*.yaml"))
	must(t, err)
	kinds := map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		must(t, err)
		obj, err := verify.Decode(b)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		kinds[fmt.Sprintf("%T", obj)] = true
	}
	want := []string{"*types.Kustomization", "*v1.DaemonSet", "*v1.PodMonitor", "*v1.PrometheusRule"}
	if got := slices.Sorted(maps.Keys(kinds)); !slices.Equal(got, want) {
		t.Errorf("kinds %v, want %v", got, want)
	}
	// Strict: a misspelt field of the operator's types fails.
	b, err := os.ReadFile(filepath.Join(monitoringDir, "podmonitor.yaml"))
	must(t, err)
	if _, err := verify.Decode(bytes.Replace(b, []byte("jobLabel:"), []byte("jobLable:"), 1)); err == nil || !strings.Contains(err.Error(), "jobLable") {
		t.Errorf("a misspelt PodMonitor field decoded: %v", err)
	}
}

// Prometheus loads the rules: its own rule-file loader (what promtool check rules runs) parses
// every expression, duration, label and annotation template, strictly.
func TestAlertRulesLoadInPrometheus(t *testing.T) {
	rule := readRule(t)
	if len(rule.Spec.Groups) == 0 || len(rule.Spec.Groups[0].Rules) < 8 {
		t.Fatalf("groups %+v", rule.Spec.Groups)
	}
	b, err := yaml.Marshal(rule.Spec)
	must(t, err)
	if errs := loadRules(b); len(errs) > 0 {
		t.Errorf("Prometheus refuses the rules: %v", errs)
	}
	// The loader does fail: a broken expression and a broken template.
	for _, broken := range [][2]string{
		{"sandbox_guard_nri_connected{job=\"sandbox-guard\"} == 0", "sandbox_guard_nri_connected{job=\"sandbox-guard\" == 0"},
		{"{{ $labels.where }}", "{{ $labels.where }"},
	} {
		if !bytes.Contains(b, []byte(broken[0])) {
			t.Fatalf("the rules no longer contain %q", broken[0])
		}
		if errs := loadRules(bytes.Replace(b, []byte(broken[0]), []byte(broken[1]), 1)); len(errs) == 0 {
			t.Errorf("Prometheus accepted %q", broken[1])
		}
	}
}

func loadRules(b []byte) []error {
	_, errs := rulefmt.Parse(b, false, model.UTF8Validation, parser.NewParser(parser.Options{}), slog.New(slog.DiscardHandler))
	return errs
}

// Labels Prometheus gives every series of a target, besides the plugin's own: job and instance,
// and what the operator and the PodMonitor's relabelling add.
var targetLabels = []string{"job", "instance", "namespace", "pod", "container", "endpoint", "node"}

// Series Prometheus makes itself for every target, not served by the plugin.
var scrapeSeries = []string{"up"}

// Every metric a rule names is on the plugin's /metrics, with every label the rule uses (after
// the exposition's suffix rules: a histogram's _bucket, _sum and _count), and every label value a
// rule compares with is one the plugin writes.
func TestAlertRulesUseMetricsThePluginServes(t *testing.T) {
	families := scrape(t)
	rule := readRule(t)
	p := parser.NewParser(parser.Options{})
	used := map[string]bool{}
	for _, g := range rule.Spec.Groups {
		for _, r := range g.Rules {
			expr, err := p.ParseExpr(r.Expr.String())
			if err != nil {
				t.Errorf("%s: %v", r.Alert, err)
				continue
			}
			ruleLabels := map[string]bool{}
			for _, l := range targetLabels {
				ruleLabels[l] = true
			}
			var grouping []string
			parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
				switch n := n.(type) {
				case *parser.VectorSelector:
					name := n.Name
					for _, m := range n.LabelMatchers {
						if m.Name == model.MetricNameLabel {
							name = m.Value
						}
					}
					used[name] = true
					fam, ok := families[name]
					if !ok && !slices.Contains(scrapeSeries, name) {
						t.Errorf("%s: metric %s is not on /metrics", r.Alert, name)
						return nil
					}
					for _, l := range fam.labels {
						ruleLabels[l] = true
					}
					for _, m := range n.LabelMatchers {
						if m.Name == model.MetricNameLabel || slices.Contains(targetLabels, m.Name) {
							continue
						}
						if !slices.Contains(fam.labels, m.Name) {
							t.Errorf("%s: %s has no label %s (labels: %v)", r.Alert, name, m.Name, fam.labels)
						} else if m.Type == labels.MatchEqual || m.Type == labels.MatchNotEqual {
							checkLabelValue(t, r.Alert, name, m.Name, m.Value)
						}
					}
				case *parser.AggregateExpr:
					grouping = append(grouping, n.Grouping...)
				case *parser.BinaryExpr:
					if n.VectorMatching != nil {
						grouping = append(grouping, n.VectorMatching.MatchingLabels...)
					}
				}
				return nil
			})
			for _, l := range grouping {
				if !ruleLabels[l] {
					t.Errorf("%s: groups or matches by %s, which none of its series has", r.Alert, l)
				}
			}
			for _, text := range slices.Concat(slices.Collect(maps.Values(r.Annotations)), slices.Collect(maps.Values(r.Labels))) {
				for _, m := range labelRef.FindAllStringSubmatch(text, -1) {
					if !ruleLabels[m[1]] {
						t.Errorf("%s: the text uses $labels.%s, which none of its series has", r.Alert, m[1])
					}
				}
			}
		}
	}
	if len(used) < 8 {
		t.Errorf("the rules name only %v", slices.Sorted(maps.Keys(used)))
	}
}

var labelRef = regexp.MustCompile(`\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)`)

// checkLabelValue: a value a rule compares a label with is one the plugin writes. The verdicts
// are internal/metrics' constants; the bridge's outcomes are literals in internal/bridge.
func checkLabelValue(t *testing.T, alert, metric, label, value string) {
	t.Helper()
	switch {
	case label == "verdict":
		if !slices.Contains([]string{metrics.VerdictAdmit, metrics.VerdictReject, metrics.VerdictWouldReject}, value) {
			t.Errorf("%s: %s{verdict=%q}: no such verdict", alert, metric, value)
		}
	case metric == "sandbox_guard_bridge_writes_total" && label == "outcome":
		src, err := os.ReadFile("../../internal/bridge/bridge.go")
		must(t, err)
		if !bytes.Contains(src, []byte(`b.onWrite(host, "`+value+`")`)) {
			t.Errorf("%s: %s{outcome=%q}: internal/bridge never writes that outcome", alert, metric, value)
		}
	case label == "job":
	default:
		t.Errorf("%s: %s{%s=%q}: this test does not know where %s's values come from; add them", alert, metric, label, value, label)
	}
}

// family is one metric name as a query sees it, and its labels.
type family struct{ labels []string }

// scrape serves the plugin's metrics with internal/metrics' own server, fed through its API the
// way the supervisor feeds it (every family has a series), scrapes /metrics over HTTP and returns
// every series name a query can use: a histogram's _bucket, _sum and _count, a summary's
// quantiles, _sum and _count.
func scrape(t *testing.T) map[string]family {
	t.Helper()
	m := metrics.New()
	m.SetBuildInfo("test")
	m.ObservePod(metrics.VerdictReject, []string{"kube-proxy-rules"}, time.Millisecond)
	m.ObservePod(metrics.VerdictWouldReject, []string{"kube-proxy-rules"}, time.Millisecond)
	m.WatchChecks(func() ([]metrics.Check, bool) {
		return []metrics.Check{{Name: "kube-proxy-rules", Kind: "iptables", Took: time.Millisecond}}, false
	})
	m.WatchImages(func() []metrics.Image {
		return []metrics.Image{{Name: "registry.k8s.io/pause:3.10", Role: "sandbox image", Present: true, LastRepair: time.Unix(1e9, 0), Repairs: 1, CopyFailing: true}}
	})
	m.ObserveEnsure("registry.k8s.io/pause:3.10", "ok", "registry.k8s.io/pause:3.10", time.Second)
	m.WatchECR(func() (uint64, uint64) { return 2, 1 })
	m.ObservePanic("checks")
	m.WatchLogDrops(func() uint64 { return 0 })
	m.SetNRIConnected(true)
	m.SetStandingBy(false)
	m.WatchNRIConnects(func() int64 { return 1 })
	m.ObserveBridgeWrite("602401143452.dkr.ecr.eu-west-2.amazonaws.com", "written")
	m.WatchBridge(func() []metrics.BridgeHost {
		return []metrics.BridgeHost{{Host: "602401143452.dkr.ecr.eu-west-2.amazonaws.com", Effective: true}}
	})

	ctx, cancel := context.WithCancel(context.Background())
	srv := metrics.NewServer("127.0.0.1:0", m, nil)
	must(t, srv.Start(ctx))
	t.Cleanup(func() { cancel(); srv.Wait() })
	resp, err := http.Get("http://" + srv.Addr() + "/metrics")
	must(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	must(t, err)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d %s", resp.StatusCode, body)
	}
	tp := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := tp.TextToMetricFamilies(bytes.NewReader(body))
	must(t, err)
	out := map[string]family{}
	for name, mf := range mfs {
		var ls []string
		for _, mt := range mf.Metric {
			for _, lp := range mt.Label {
				if !slices.Contains(ls, lp.GetName()) {
					ls = append(ls, lp.GetName())
				}
			}
		}
		switch mf.GetType() {
		case dto.MetricType_HISTOGRAM:
			out[name+"_bucket"] = family{labels: append(slices.Clone(ls), "le")}
			out[name+"_sum"] = family{labels: ls}
			out[name+"_count"] = family{labels: ls}
		case dto.MetricType_SUMMARY:
			out[name] = family{labels: append(slices.Clone(ls), "quantile")}
			out[name+"_sum"] = family{labels: ls}
			out[name+"_count"] = family{labels: ls}
		default:
			out[name] = family{labels: ls}
		}
	}
	for _, want := range []string{"sandbox_guard_pods_total", "sandbox_guard_hook_duration_seconds_bucket", "process_start_time_seconds", "sandbox_guard_bridge_writes_total", "sandbox_guard_credential_bridge_effective"} {
		if _, ok := out[want]; !ok {
			t.Fatalf("the scrape lacks %s: %v", want, slices.Sorted(maps.Keys(out)))
		}
	}
	if _, ok := out["sandbox_guard_hook_duration_seconds"]; ok {
		t.Error("a histogram's own name is not a series")
	}
	return out
}

// The alerts deploy/README.md promises, each in the rules and named in the README.
func TestAlertsCoverWhatTheReadmeLists(t *testing.T) {
	want := []string{
		"SandboxGuardRefusingPods", "SandboxGuardWouldRefusePods", "SandboxGuardCheckFailing",
		"SandboxGuardImageMissing", "SandboxGuardImageUnpinned", "SandboxGuardLocalCopyFailing", "SandboxGuardCredentialBridgeFailing",
		"SandboxGuardCredentialBridgeNotEffective", "SandboxGuardNotConnected", "SandboxGuardMetricsDown", "SandboxGuardPanics", "SandboxGuardRestarting",
	}
	var got []string
	for _, g := range readRule(t).Spec.Groups {
		for _, r := range g.Rules {
			got = append(got, r.Alert)
			if r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("%s: want a severity, a summary and a description", r.Alert)
			}
		}
	}
	if !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))) {
		t.Errorf("alerts %v, want %v", got, want)
	}
	readme, err := os.ReadFile("../README.md")
	must(t, err)
	for _, a := range want {
		if !bytes.Contains(readme, []byte("`"+a+"`")) {
			t.Errorf("deploy/README.md does not name %s", a)
		}
	}
}
