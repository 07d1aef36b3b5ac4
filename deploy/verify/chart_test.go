package verify_test

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/sandbox-guard/sandbox-guard/deploy"
	"github.com/sandbox-guard/sandbox-guard/deploy/verify"
	"github.com/sandbox-guard/sandbox-guard/etc"
	"github.com/sandbox-guard/sandbox-guard/internal/config"
)

const (
	chartDir  = "../chart/sandbox-guard"
	release   = "sandbox-guard"
	namespace = "sandbox-guard"
)

// --- The chart renders what kustomize builds ----------------------------------------------------

// setting is one way to install: the chart's values and the kustomize build that must give the
// same objects.
type setting struct {
	name   string
	values string // YAML, merged over values.yaml
	// kustomize: a directory under deploy/, or a composition built in a temporary directory
	kustomize   string
	composition *composition
}

// composition is a kustomization of the test's own: an overlay, components, and the shipped
// configuration with some lines replaced (kustomize replaces config.yaml whole).
type composition struct {
	resource   string
	components []string
	replace    map[string]string // old line -> new line in config.yaml
}

var settings = []setting{
	{name: "installer", values: ``, kustomize: "overlays/installer"},
	{name: "external", values: `mode: external`, kustomize: "overlays/external"},
	// The bridge's mount without the key: deploy/README.md's composition, as testdata builds it.
	{name: "external, bridge mounted", values: "mode: external\ncredentialBridge: {mount: true}", kustomize: "testdata/external-credential-bridge"},
	// The key alone: the chart mounts the hosts directory with it (credentialBridge.mount: auto).
	{name: "external, bridge on", values: "mode: external\nconfig: {ecr: {credentialBridge: true}}", composition: &composition{
		resource: "overlays/external", components: []string{"components/credential-bridge"},
		replace: map[string]string{"  credentialBridge: false": "  credentialBridge: true"}}},
	{name: "installer, monitoring", values: `
monitoring: {podMonitor: {enabled: true}, prometheusRule: {enabled: true}}
config: {metrics: {address: "0.0.0.0:9809"}}`, composition: &composition{
		resource: "overlays/installer", components: []string{"components/monitoring"},
		replace: map[string]string{"  address: 127.0.0.1:9809": "  address: 0.0.0.0:9809"}}},
	{name: "external, bridge on, monitoring", values: `
mode: external
monitoring: {podMonitor: {enabled: true}, prometheusRule: {enabled: true}}
config: {metrics: {address: "0.0.0.0:9809"}, ecr: {credentialBridge: true}}`, composition: &composition{
		resource: "overlays/external", components: []string{"components/credential-bridge", "components/monitoring"},
		replace: map[string]string{"  address: 127.0.0.1:9809": "  address: 0.0.0.0:9809", "  credentialBridge: false": "  credentialBridge: true"}}},
}

// Helm's own labels, which the chart adds to every object's metadata (not to the pods or the
// selector, which are kustomize's): the release, the manager, the versions.
var helmLabels = []string{"app.kubernetes.io/instance", "app.kubernetes.io/managed-by", "app.kubernetes.io/version", "helm.sh/chart"}

// The chart and kustomize give the same objects for the same settings. The differences, each
// normalised below and nothing else:
//  1. kustomize creates the Namespace (with the Pod Security labels); the chart installs into the
//     release's namespace, which Helm creates (--create-namespace) or finds (deploy/README.md says
//     how to label it), as a chart cannot own the namespace its release record lives in.
//  2. The chart's objects carry Helm's labels (helmLabels) besides kustomize's two.
//  3. The ConfigMap: kustomize names it with a hash of its content, the chart names it
//     <name>-config and rolls the pods with a checksum/config annotation on the pod template
//     (checked in TestChartConfigChangeRollsThePods). Its config.yaml is the shipped file with
//     comments in kustomize, values.config rendered by toYaml in the chart: both must parse to the
//     same configuration, and hold the same keys and values (TestChartConfig... and below).
//  4. The order of the pod's volumes and mounts: kustomize's strategic merge puts a component's
//     mount first and its volume after the overlay's; the chart lists them in one order. The order
//     has no effect (volumes are looked up by name; containerd's CRI sorts mounts by path before
//     mounting), so both are compared sorted.
func TestChartRendersTheKustomizeObjects(t *testing.T) {
	for _, s := range settings {
		t.Run(s.name, func(t *testing.T) {
			chart := render(t, s.values)
			kustomized := kustomize(t, s)
			if _, ok := kustomized["Namespace/"+namespace]; !ok {
				t.Errorf("kustomize built no Namespace %s: %v", namespace, slices.Collect(maps.Keys(kustomized)))
			}
			delete(kustomized, "Namespace/"+namespace) // difference 1

			kcm, hcm := configMap(t, kustomized), configMap(t, chart)
			sameConfig(t, kcm.Data["config.yaml"], hcm.Data["config.yaml"])
			// difference 3: the ConfigMap's name and text
			for _, objs := range []map[string]any{kustomized, chart} {
				cm := configMap(t, objs)
				delete(objs, "ConfigMap/"+cm.Name)
				ds := objs["DaemonSet/sandbox-guard"].(*appsv1.DaemonSet)
				for i, v := range ds.Spec.Template.Spec.Volumes {
					if v.ConfigMap != nil && v.ConfigMap.Name == cm.Name {
						ds.Spec.Template.Spec.Volumes[i].ConfigMap.Name = "<the ConfigMap>"
					}
				}
				cm.Name, cm.Data = "<the ConfigMap>", nil
				objs["ConfigMap/<the ConfigMap>"] = cm
			}
			hds := chart["DaemonSet/sandbox-guard"].(*appsv1.DaemonSet)
			if hds.Spec.Template.Annotations["checksum/config"] == "" {
				t.Errorf("the chart's pod template has no checksum/config annotation: %v", hds.Spec.Template.Annotations)
			}
			delete(hds.Spec.Template.Annotations, "checksum/config")
			if len(hds.Spec.Template.Annotations) == 0 {
				hds.Spec.Template.Annotations = nil
			}
			for _, objs := range []map[string]any{kustomized, chart} { // difference 4
				spec := &objs["DaemonSet/sandbox-guard"].(*appsv1.DaemonSet).Spec.Template.Spec
				slices.SortFunc(spec.Volumes, func(a, b corev1.Volume) int { return strings.Compare(a.Name, b.Name) })
				for i := range spec.Containers {
					slices.SortFunc(spec.Containers[i].VolumeMounts, func(a, b corev1.VolumeMount) int { return strings.Compare(a.MountPath, b.MountPath) })
				}
			}
			for key, obj := range chart { // difference 2
				m := meta(obj)
				for _, l := range helmLabels {
					if _, ok := m.Labels[l]; !ok {
						t.Errorf("%s lacks Helm's label %s", key, l)
					}
					delete(m.Labels, l)
				}
			}

			if !slices.Equal(slices.Sorted(maps.Keys(chart)), slices.Sorted(maps.Keys(kustomized))) {
				t.Fatalf("objects differ:\n chart     %v\n kustomize %v", slices.Sorted(maps.Keys(chart)), slices.Sorted(maps.Keys(kustomized)))
			}
			for key, want := range kustomized {
				if diff := cmp.Diff(want, chart[key]); diff != "" {
					t.Errorf("%s differs (-kustomize +chart):\n%s", key, diff)
				}
			}
		})
	}
}

// The comparison above fails when the chart drifts: a DaemonSet setting changed in the rendered
// chart is reported.
func TestChartComparisonSeesADifference(t *testing.T) {
	chart := render(t, "")
	kustomized := kustomize(t, settings[0])
	hds := chart["DaemonSet/sandbox-guard"].(*appsv1.DaemonSet)
	kds := kustomized["DaemonSet/sandbox-guard"].(*appsv1.DaemonSet)
	hds.Spec.Template.Spec.Containers[0].VolumeMounts[2].ReadOnly = false // /host/etc/containerd
	if cmp.Equal(kds.Spec.Template.Spec.Containers, hds.Spec.Template.Spec.Containers) {
		t.Error("a writable /host/etc/containerd went unnoticed")
	}
}

// render runs `helm template` with the values (YAML) and decodes every object strictly.
func render(t *testing.T, values string) map[string]any {
	t.Helper()
	manifest, err := verify.Template(chartDir, release, namespace, parseValues(t, values))
	if err != nil {
		t.Fatal(err)
	}
	objs, err := verify.DecodeAll(manifest)
	if err != nil {
		t.Fatalf("%v\n%s", err, manifest)
	}
	return byKey(t, "chart", namespace, objs)
}

func parseValues(t *testing.T, values string) map[string]any {
	t.Helper()
	v := map[string]any{}
	if err := yaml.Unmarshal([]byte(values), &v); err != nil {
		t.Fatalf("values %q: %v", values, err)
	}
	return v
}

// kustomize builds the setting's kustomization with deploy.BuildWith.
func kustomize(t *testing.T, s setting) map[string]any {
	t.Helper()
	dir := filepath.Join("..", s.kustomize)
	if c := s.composition; c != nil {
		dir = t.TempDir()
		abs := func(p string) string { // kustomize wants paths relative to the kustomization
			a, err := filepath.Abs(filepath.Join("..", p))
			must(t, err)
			rel, err := filepath.Rel(dir, a)
			must(t, err)
			return rel
		}
		text := string(etc.PluginConfig)
		for old, repl := range c.replace {
			if strings.Count(text, "\n"+old+"\n") != 1 {
				t.Fatalf("the shipped configuration has no single line %q", old)
			}
			text = strings.Replace(text, "\n"+old+"\n", "\n"+repl+"\n", 1)
		}
		var components []string
		for _, comp := range c.components {
			components = append(components, abs(comp))
		}
		k := map[string]any{
			"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
			"resources": []string{abs(c.resource)}, "components": components,
			"configMapGenerator": []any{map[string]any{"name": "sandbox-guard-config", "namespace": namespace,
				"behavior": "replace", "files": []string{"config.yaml"}}},
		}
		b, err := yaml.Marshal(k)
		if err != nil {
			t.Fatal(err)
		}
		must(t, os.WriteFile(filepath.Join(dir, "kustomization.yaml"), b, 0o644))
		must(t, os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(text), 0o644))
	}
	objs, err := deploy.BuildWith(dir, verify.Decode)
	if err != nil {
		t.Fatal(err)
	}
	return byKey(t, "kustomize", namespace, objs.All)
}

// byKey indexes objects by "Kind/name"; each must be in namespace ns (but the Namespace).
func byKey(t *testing.T, what, ns string, objs []any) map[string]any {
	t.Helper()
	out := map[string]any{}
	for _, o := range objs {
		m := meta(o)
		kind := reflect.TypeOf(o).Elem().Name()
		if kind != "Namespace" && m.Namespace != ns {
			t.Errorf("%s: %s %s in namespace %q", what, kind, m.Name, m.Namespace)
		}
		key := kind + "/" + m.Name
		if _, dup := out[key]; dup {
			t.Fatalf("%s: two %s", what, key)
		}
		out[key] = o
	}
	return out
}

func meta(o any) *metav1.ObjectMeta {
	switch o := o.(type) {
	case *appsv1.DaemonSet:
		return &o.ObjectMeta
	case *corev1.ConfigMap:
		return &o.ObjectMeta
	case *corev1.ServiceAccount:
		return &o.ObjectMeta
	case *corev1.Namespace:
		return &o.ObjectMeta
	case *monitoringv1.PodMonitor:
		return &o.ObjectMeta
	case *monitoringv1.PrometheusRule:
		return &o.ObjectMeta
	}
	panic(fmt.Sprintf("no metadata for %T", o))
}

func configMap(t *testing.T, objs map[string]any) *corev1.ConfigMap {
	t.Helper()
	var found *corev1.ConfigMap
	for _, o := range objs {
		if cm, ok := o.(*corev1.ConfigMap); ok {
			if found != nil {
				t.Fatal("two ConfigMaps")
			}
			found = cm
		}
	}
	if found == nil {
		t.Fatal("no ConfigMap")
	}
	return found
}

// sameConfig: the two configuration texts hold the same keys and values, and the plugin's parser
// reads both the same way.
func sameConfig(t *testing.T, kustomized, chart string) {
	t.Helper()
	var k, h map[string]any
	must(t, yaml.Unmarshal([]byte(kustomized), &k))
	must(t, yaml.Unmarshal([]byte(chart), &h))
	if diff := cmp.Diff(k, h); diff != "" {
		t.Errorf("config.yaml differs (-kustomize +chart):\n%s", diff)
	}
	kc, err := config.Parse([]byte(kustomized), "kustomize config.yaml")
	must(t, err)
	hc, err := config.Parse([]byte(chart), "chart config.yaml")
	must(t, err)
	if !reflect.DeepEqual(kc, hc) {
		t.Errorf("the plugin reads the two configurations differently:\n%+v\n%+v", kc, hc)
	}
}

// --- Values ------------------------------------------------------------------------------------

// values.yaml's config is the shipped configuration, comments included: the same defaults.
func TestChartConfigDefaultsAreTheShippedConfiguration(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	must(t, err)
	_, block, ok := strings.Cut(string(b), "\nconfig:\n")
	if !ok {
		t.Fatal("values.yaml has no top-level config:")
	}
	shipped := string(etc.PluginConfig)
	i := strings.Index(shipped, "\n\n# What the gate does")
	if i < 0 {
		t.Fatal("the shipped configuration's first section moved; update this test")
	}
	var want strings.Builder
	for line := range strings.Lines(shipped[i+2:]) {
		if strings.TrimSpace(line) != "" {
			line = "  " + line
		}
		want.WriteString(line)
	}
	if block != want.String() {
		t.Errorf("values.yaml's config block is not etc/nri/conf.d/10-sandbox-guard.conf (from its first key on, indented by two):\n%s",
			cmp.Diff(want.String(), block))
	}
	// And rendered, the plugin reads it as the shipped file.
	cm := configMap(t, render(t, ""))
	sameConfig(t, shipped, cm.Data["config.yaml"])
}

// A value set under config is merged over the defaults key by key; the rest stays.
func TestChartConfigValuesMerge(t *testing.T) {
	cm := configMap(t, render(t, "config: {mode: enforce, refresh: {interval: 2s}, checks: [{name: marker, file: {path: /run/ready}}]}"))
	got, err := config.Parse([]byte(cm.Data["config.yaml"]), "chart")
	must(t, err)
	want, err := config.Parse(etc.PluginConfig, "shipped")
	must(t, err)
	want.Mode = config.ModeEnforce
	want.Refresh.Interval.Duration = 2e9
	want.Checks = []config.Check{{Name: "marker", File: &config.FileCheck{Path: "/run/ready"}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("merged configuration:\n got %+v\nwant %+v", got, want)
	}
}

// The same strictness as the plugin: values.config is rendered as it is, so a key the plugin
// does not know reaches it, and the plugin refuses it, naming the key (the installer's install
// and the external plugin's run both parse it before doing anything).
func TestChartConfigIsReadStrictlyByThePlugin(t *testing.T) {
	for values, key := range map[string]string{
		"config: {mdoe: enforce}":                        "mdoe",
		"config: {refresh: {intreval: 1s}}":              "refresh.intreval",
		"config: {checks: [{name: a, file: {pth: /x}}]}": "checks[0].file.pth",
	} {
		cm := configMap(t, render(t, values))
		_, err := config.Parse([]byte(cm.Data["config.yaml"]), "chart")
		if err == nil || !strings.Contains(err.Error(), "key "+key+": unknown key") {
			t.Errorf("%s: the plugin's parser says %v, want an unknown key %s", values, err, key)
		}
	}
}

// What the chart refuses to render, each with a message naming the value.
func TestChartRefuses(t *testing.T) {
	for values, want := range map[string]string{
		`mode: externl`:                             "mode",
		`mdoe: external`:                            "mdoe",
		`image: {repository: ""}`:                   "repository",
		`monitoring: {podMonitor: {enabled: true}}`: "config.metrics.address 127.0.0.1:9809 is the node's loopback",
		`config: {metrics: {address: ""}}`:          "config.metrics.address is empty",
		`config: {metrics: {address: "9809"}}`:      `config.metrics.address "9809": want host:port`,
		`credentialBridge: {mount: true}`:           "credentialBridge.mount: true applies to mode external only",
		"mode: external\ncredentialBridge: {mount: false}\nconfig: {ecr: {credentialBridge: true}}": "config.ecr.credentialBridge is true but credentialBridge.mount is false",
		`credentialBridge: {mount: maybe}`: "mount",
	} {
		_, err := verify.Template(chartDir, release, namespace, parseValues(t, values))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error containing %q", values, err, want)
		}
	}
}

// A configuration change changes the pod template, so the DaemonSet rolls its pods.
func TestChartConfigChangeRollsThePods(t *testing.T) {
	sum := func(values string) string {
		ds := render(t, values)["DaemonSet/sandbox-guard"].(*appsv1.DaemonSet)
		return ds.Spec.Template.Annotations["checksum/config"]
	}
	a, b := sum(""), sum("config: {mode: enforce}")
	if a == "" || a == b {
		t.Errorf("checksum/config %q, then %q after a configuration change", a, b)
	}
}

// helm lint passes without a warning, for each setting.
func TestChartLint(t *testing.T) {
	for _, s := range settings {
		msgs, err := verify.Lint(chartDir, parseValues(t, s.values))
		if err != nil {
			t.Errorf("%s: %v\n%s", s.name, err, strings.Join(msgs, "\n"))
		}
		for _, m := range msgs {
			t.Logf("%s: %s", s.name, m)
		}
	}
}

// The release's name sets the objects' names, as Helm charts do.
func TestChartNames(t *testing.T) {
	manifest, err := verify.Template(chartDir, "guard", "kube-system", nil)
	must(t, err)
	objs, err := verify.DecodeAll(manifest)
	must(t, err)
	var names []string
	for _, o := range objs {
		m := meta(o)
		names = append(names, reflect.TypeOf(o).Elem().Name()+"/"+m.Namespace+"/"+m.Name)
	}
	slices.Sort(names)
	want := []string{"ConfigMap/kube-system/guard-sandbox-guard-config", "DaemonSet/kube-system/guard-sandbox-guard", "ServiceAccount/kube-system/guard-sandbox-guard"}
	if !slices.Equal(names, want) {
		t.Errorf("objects %v, want %v", names, want)
	}
	if !bytes.Contains([]byte(manifest), []byte("serviceAccountName: guard-sandbox-guard")) {
		t.Error("the DaemonSet does not use the release's ServiceAccount")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
