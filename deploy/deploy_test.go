// Package deploy_test checks the Kubernetes manifests: every file decodes strictly into its API
// type (an unknown or misspelt field fails), every kustomization builds, and the built
// DaemonSets keep what sandbox-guard needs on a node.
package deploy_test

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

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/sandbox-guard/sandbox-guard/deploy"
	"github.com/sandbox-guard/sandbox-guard/etc"
	"github.com/sandbox-guard/sandbox-guard/internal/config"
	"github.com/sandbox-guard/sandbox-guard/internal/containerdconfig"
	"github.com/sandbox-guard/sandbox-guard/internal/install"
	"github.com/sandbox-guard/sandbox-guard/internal/standby"
)

// Every YAML file under deploy/ decodes strictly into the type its kind names (the Prometheus
// operator's kinds in deploy/verify, which has their types).
func TestManifestsDecodeStrictly(t *testing.T) {
	files, err := filepath.Glob("*/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, pattern := range []string{"overlays/*/*.yaml", "components/*/*.yaml", "testdata/*/*.yaml"} {
		more, _ := filepath.Glob(pattern)
		files = append(files, more...)
	}
	if len(files) < 11 {
		t.Fatalf("found only %v", files)
	}
	var monitoring int
	for _, f := range files {
		if filepath.Base(f) == "config.yaml" {
			continue // sandbox-guard's own configuration, checked below
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte("\napiVersion: "+deploy.MonitoringAPIVersion+"\n")) {
			monitoring++
			continue
		}
		if _, err := deploy.DecodeStrict(b); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	if monitoring != 2 {
		t.Errorf("%d files of %s, want the PodMonitor and the PrometheusRule of components/monitoring", monitoring, deploy.MonitoringAPIVersion)
	}
}

// A misspelt field must fail the strict decode (the test above relies on it).
func TestDecodeStrictRejectsUnknownFields(t *testing.T) {
	b, err := os.ReadFile("base/daemonset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Replace(b, []byte("hostNetwork: true"), []byte("hostNetwrok: true"), 1)
	if _, err := deploy.DecodeStrict(bad); err == nil || !strings.Contains(err.Error(), "hostNetwrok") {
		t.Errorf("DecodeStrict accepted a misspelt field: %v", err)
	}
}

func build(t *testing.T, dir string) (*appsv1.DaemonSet, *corev1.ConfigMap, []string) {
	t.Helper()
	objs, err := deploy.Build(dir)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, o := range objs.All {
		var ns, kind string
		switch o := o.(type) {
		case *appsv1.DaemonSet:
			ns, kind = o.Namespace, "DaemonSet"
		case *corev1.ConfigMap:
			ns, kind = o.Namespace, "ConfigMap"
		case *corev1.ServiceAccount:
			ns, kind = o.Namespace, "ServiceAccount"
		case *corev1.Namespace:
			ns, kind = "sandbox-guard", "Namespace"
			if o.Name != "sandbox-guard" {
				t.Errorf("namespace %q", o.Name)
			}
		}
		if ns != "sandbox-guard" {
			t.Errorf("%s: %T is in namespace %q", dir, o, ns)
		}
		kinds = append(kinds, kind)
	}
	return objs.DaemonSet, objs.ConfigMap, kinds
}

func TestKustomizations(t *testing.T) {
	for _, dir := range buildDirs {
		t.Run(dir, func(t *testing.T) {
			ds, cm, kinds := build(t, dir)
			slices.Sort(kinds)
			if !slices.Equal(kinds, []string{"ConfigMap", "DaemonSet", "Namespace", "ServiceAccount"}) {
				t.Errorf("resources %v", kinds)
			}
			checkConfigMap(t, ds, cm)
			checkPodSpec(t, dir, &ds.Spec.Template.Spec)
		})
	}
}

// The ConfigMap carries the shipped configuration, which parses, and the pod mounts it.
func checkConfigMap(t *testing.T, ds *appsv1.DaemonSet, cm *corev1.ConfigMap) {
	text, ok := cm.Data["config.yaml"]
	if !ok {
		t.Fatalf("ConfigMap %s has no config.yaml: %v", cm.Name, cm.Data)
	}
	if _, err := config.Parse([]byte(text), "ConfigMap "+cm.Name+" config.yaml"); err != nil {
		t.Error(err)
	}
	if !bytes.Equal([]byte(text), etc.PluginConfig) {
		t.Error("deploy/base/config.yaml differs from etc/nri/conf.d/10-sandbox-guard.conf: keep one configuration")
	}
	var found bool
	for _, v := range ds.Spec.Template.Spec.Volumes {
		if v.ConfigMap != nil && v.ConfigMap.Name == cm.Name {
			found = true
		}
	}
	if !found {
		t.Errorf("no volume mounts ConfigMap %s (kustomize renames it with a hash suffix)", cm.Name)
	}
}

func checkPodSpec(t *testing.T, dir string, spec *corev1.PodSpec) {
	if !spec.HostNetwork || spec.HostPID || spec.HostIPC {
		t.Errorf("hostNetwork %v hostPID %v hostIPC %v, want only the host network", spec.HostNetwork, spec.HostPID, spec.HostIPC)
	}
	if spec.PriorityClassName != "system-node-critical" {
		t.Errorf("priorityClassName %q", spec.PriorityClassName)
	}
	if !slices.ContainsFunc(spec.Tolerations, func(tl corev1.Toleration) bool {
		return tl.Operator == corev1.TolerationOpExists && tl.Key == "" && tl.Effect == ""
	}) {
		t.Errorf("tolerations %v: want one that tolerates every taint (operator Exists, no key)", spec.Tolerations)
	}
	if spec.DNSPolicy != corev1.DNSDefault {
		t.Errorf("dnsPolicy %q: the pod must not depend on cluster DNS", spec.DNSPolicy)
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers", len(spec.Containers))
	}
	c := spec.Containers[0]
	mode := filepath.Base(dir)
	if mode == "external-credential-bridge" {
		mode = "external"
	}

	checkProbe := func(what string, p *corev1.Probe, path string) {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Host != "127.0.0.1" || p.HTTPGet.Path != path || p.HTTPGet.Port.IntValue() != 9809 {
			t.Errorf("%s probe %+v: want httpGet 127.0.0.1:9809%s", what, p, path)
		}
	}
	checkProbe("readiness", c.ReadinessProbe, "/readyz")
	switch mode {
	case "installer":
		if c.LivenessProbe != nil {
			t.Error("the installer has a liveness probe: it would restart the installer for the host plugin's sake")
		}
		if !slices.Equal(c.Command, []string{"/sandbox-guard"}) || len(c.Args) == 0 || c.Args[0] != "install" ||
			!slices.Contains(c.Args, "--root=/host") || !slices.Contains(c.Args, "--config=/etc/sandbox-guard/config.yaml") {
			t.Errorf("installer runs %v %v, want /sandbox-guard install --root=/host --config=/etc/sandbox-guard/config.yaml ...", c.Command, c.Args)
		}
	default:
		checkProbe("liveness", c.LivenessProbe, "/healthz")
		if len(c.Command) != 0 {
			t.Errorf("command %v: the external plugin runs the image's entrypoint (sandbox-guard run)", c.Command)
		}
	}
	// The default stateDir's lock: where a pre-registered plugin with the shipped configuration
	// holds it (TestExternalMountsWhatRunUses checks the pod sees it there).
	if lock := "--standby-lock=" + standby.Path(config.Default().StateDir); mode == "external" && !slices.Equal(c.Args, []string{lock}) {
		t.Errorf("args %v: want [%s]: the external plugin must stand by while a pre-registered one runs", c.Args, lock)
	}
}

// buildDirs are the kustomizations the tests build: the base, both overlays, and the external
// overlay with the credential bridge's component, composed as deploy/README.md says.
var buildDirs = []string{"base", "overlays/installer", "overlays/external", "testdata/external-credential-bridge"}

// --- Exact mounts and privileges ----------------------------------------------------------------
//
// What each build grants, in full: every volume, every container's mounts (path, read-only,
// what is mounted), its securityContext and its resources. Any mount or capability added or
// taken away, anywhere, fails TestExactPrivileges; a change here must be a deliberate one, and
// deploy/README.md says why each is there.

// wantPod is everything a built pod spec grants.
type wantPod struct {
	volumes    []string                 // "name: source", see describeVolume
	containers map[string]wantContainer // by name; init containers too
}

type wantContainer struct {
	mounts    []string // "path ro|rw <- source", see describeMount
	security  security
	resources string // see describeResources
}

// security is a container's securityContext as plain values; Other is anything else it sets.
type security struct {
	Privileged, AllowPrivilegeEscalation, ReadOnlyRootFilesystem, RunAsNonRoot, RunAsUser string
	Add, Drop                                                                             []string
	Seccomp                                                                               string
	Other                                                                                 string
}

// notPrivileged is what both modes share: root without privileges, every capability dropped
// (add: what a mode adds back).
func notPrivileged(add ...string) security {
	return security{Privileged: "false", AllowPrivilegeEscalation: "false", ReadOnlyRootFilesystem: "true",
		RunAsNonRoot: "false", RunAsUser: "0", Add: add, Drop: []string{"ALL"}, Seccomp: "RuntimeDefault"}
}

// Both modes: the configuration and a scratch directory, nothing of the host.
var (
	sharedVolumes = []string{"config: configMap sandbox-guard-config", "tmp: emptyDir sizeLimit=16Mi"}
	sharedMounts  = []string{"/etc/sandbox-guard ro <- configMap sandbox-guard-config", "/tmp rw <- emptyDir sizeLimit=16Mi"}
)

var externalVolumes = []string{
	"nri-run: hostPath /var/run/nri DirectoryOrCreate",
	"containerd-run: hostPath /run/containerd DirectoryOrCreate",
	"containerd-config: hostPath /etc/containerd DirectoryOrCreate",
	"cni-conf: hostPath /etc/cni/net.d DirectoryOrCreate",
	"cni-bin: hostPath /opt/cni/bin DirectoryOrCreate",
	"aws-node-run: hostPath /var/run/aws-node DirectoryOrCreate",
	"state: hostPath /var/lib/sandbox-guard DirectoryOrCreate",
}

var externalMounts = []string{
	"/var/run/nri ro <- hostPath /var/run/nri DirectoryOrCreate",
	"/run/containerd ro <- hostPath /run/containerd DirectoryOrCreate",
	"/etc/containerd ro <- hostPath /etc/containerd DirectoryOrCreate",
	"/etc/cni/net.d ro <- hostPath /etc/cni/net.d DirectoryOrCreate",
	"/opt/cni/bin ro <- hostPath /opt/cni/bin DirectoryOrCreate",
	"/var/run/aws-node ro <- hostPath /var/run/aws-node DirectoryOrCreate",
	"/var/lib/sandbox-guard rw <- hostPath /var/lib/sandbox-guard DirectoryOrCreate",
}

const (
	externalResources  = "requests cpu=20m memory=64Mi; limits memory=160Mi"
	installerResources = "requests cpu=20m memory=96Mi; limits memory=192Mi"
)

var wantPods = map[string]wantPod{
	// The base grants nothing of the host; it is not deployable alone (README).
	"base": {
		volumes: sharedVolumes,
		containers: map[string]wantContainer{"sandbox-guard": {
			mounts: sharedMounts, security: notPrivileged(), resources: "requests cpu=20m; limits -"}},
	},
	// install --watch: writes the plugin, its configuration (and .bak-*) and the drop-in, reads
	// containerd's configuration. No socket, no CNI, no state, no capability.
	"overlays/installer": {
		volumes: concat(sharedVolumes,
			"host-nri-plugins: hostPath /opt/nri/plugins DirectoryOrCreate",
			"host-nri-conf: hostPath /etc/nri/conf.d DirectoryOrCreate",
			"host-containerd-config: hostPath /etc/containerd DirectoryOrCreate",
			"host-containerd-config-d: hostPath /etc/containerd/config.d DirectoryOrCreate"),
		containers: map[string]wantContainer{"sandbox-guard": {
			mounts: concat(sharedMounts,
				"/host/opt/nri/plugins rw <- hostPath /opt/nri/plugins DirectoryOrCreate",
				"/host/etc/nri/conf.d rw <- hostPath /etc/nri/conf.d DirectoryOrCreate",
				"/host/etc/containerd ro <- hostPath /etc/containerd DirectoryOrCreate",
				"/host/etc/containerd/config.d rw <- hostPath /etc/containerd/config.d DirectoryOrCreate"),
			security: notPrivileged(), resources: installerResources}},
	},
	// run: containerd's sockets and configuration, the checks' files, iptables, its state; all
	// read-only but the state.
	"overlays/external": {
		volumes: concat(sharedVolumes, externalVolumes...),
		containers: map[string]wantContainer{"sandbox-guard": {
			mounts: concat(sharedMounts, externalMounts...), security: notPrivileged("NET_ADMIN", "NET_RAW"), resources: externalResources}},
	},
	// The same with the credential bridge: containerd's hosts directory writable, nothing else.
	"testdata/external-credential-bridge": {
		volumes: concat(sharedVolumes, concat(externalVolumes, "containerd-certs-d: hostPath /etc/containerd/certs.d DirectoryOrCreate")...),
		containers: map[string]wantContainer{"sandbox-guard": {
			mounts:   concat(sharedMounts, concat(externalMounts, "/etc/containerd/certs.d rw <- hostPath /etc/containerd/certs.d DirectoryOrCreate")...),
			security: notPrivileged("NET_ADMIN", "NET_RAW"), resources: externalResources}},
	},
}

func concat(a []string, more ...string) []string { return append(slices.Clone(a), more...) }

func TestExactPrivileges(t *testing.T) {
	if len(wantPods) != len(buildDirs) {
		t.Fatalf("wantPods covers %d builds, buildDirs names %d", len(wantPods), len(buildDirs))
	}
	for _, dir := range buildDirs {
		t.Run(dir, func(t *testing.T) {
			want, ok := wantPods[dir]
			if !ok {
				t.Fatalf("no expectation for %s", dir)
			}
			objs, err := deploy.Build(dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range privilegeDiffs(&objs.DaemonSet.Spec.Template.Spec, objs.ConfigMap.Name, want) {
				t.Error(d)
			}
		})
	}
}

// The comparison must catch every kind of change it is there for: each mutation of a built
// external pod spec below is reported.
func TestExactPrivilegesCatchChanges(t *testing.T) {
	objs, err := deploy.Build("overlays/external")
	if err != nil {
		t.Fatal(err)
	}
	want := wantPods["overlays/external"]
	if d := privilegeDiffs(&objs.DaemonSet.Spec.Template.Spec, objs.ConfigMap.Name, want); len(d) != 0 {
		t.Fatalf("the unchanged build differs: %v", d)
	}
	hostDir := corev1.HostPathDirectoryOrCreate
	for name, mutate := range map[string]func(*corev1.PodSpec){
		"a mount added": func(s *corev1.PodSpec) {
			s.Volumes = append(s.Volumes, corev1.Volume{Name: "x", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/run/xtables.lock", Type: &hostDir}}})
			s.Containers[0].VolumeMounts = append(s.Containers[0].VolumeMounts, corev1.VolumeMount{Name: "x", MountPath: "/run/xtables.lock"})
		},
		"a mount removed": func(s *corev1.PodSpec) { s.Containers[0].VolumeMounts = s.Containers[0].VolumeMounts[1:] },
		"a mount made writable": func(s *corev1.PodSpec) {
			for i := range s.Containers[0].VolumeMounts {
				s.Containers[0].VolumeMounts[i].ReadOnly = false
			}
		},
		"a mount's host path changed": func(s *corev1.PodSpec) {
			for _, v := range s.Volumes {
				if v.HostPath != nil {
					v.HostPath.Path = "/"
				}
			}
		},
		"a mount propagated": func(s *corev1.PodSpec) {
			p := corev1.MountPropagationBidirectional
			s.Containers[0].VolumeMounts[0].MountPropagation = &p
		},
		"an unmounted volume added": func(s *corev1.PodSpec) {
			s.Volumes = append(s.Volumes, corev1.Volume{Name: "y", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}})
		},
		"a capability added": func(s *corev1.PodSpec) {
			s.Containers[0].SecurityContext.Capabilities.Add = append(s.Containers[0].SecurityContext.Capabilities.Add, "SYS_ADMIN")
		},
		"a capability removed": func(s *corev1.PodSpec) {
			s.Containers[0].SecurityContext.Capabilities.Add = s.Containers[0].SecurityContext.Capabilities.Add[:1]
		},
		"drop ALL removed": func(s *corev1.PodSpec) { s.Containers[0].SecurityContext.Capabilities.Drop = nil },
		"privileged":       func(s *corev1.PodSpec) { s.Containers[0].SecurityContext.Privileged = ptr(true) },
		"privilege escalation": func(s *corev1.PodSpec) {
			s.Containers[0].SecurityContext.AllowPrivilegeEscalation = nil
		},
		"a writable root file system": func(s *corev1.PodSpec) { s.Containers[0].SecurityContext.ReadOnlyRootFilesystem = ptr(false) },
		"another user":                func(s *corev1.PodSpec) { s.Containers[0].SecurityContext.RunAsUser = ptr(int64(1000)) },
		"another setting":             func(s *corev1.PodSpec) { s.Containers[0].SecurityContext.ProcMount = ptr(corev1.UnmaskedProcMount) },
		"no securityContext":          func(s *corev1.PodSpec) { s.Containers[0].SecurityContext = nil },
		"a pod securityContext": func(s *corev1.PodSpec) {
			s.SecurityContext = &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{{Name: "net.x", Value: "1"}}}
		},
		"the memory limit changed": func(s *corev1.PodSpec) {
			s.Containers[0].Resources.Limits[corev1.ResourceMemory] = resource.MustParse("64Mi")
		},
		"an init container": func(s *corev1.PodSpec) {
			s.InitContainers = append(s.InitContainers, corev1.Container{Name: "init"})
		},
	} {
		t.Run(name, func(t *testing.T) {
			objs, err := deploy.Build("overlays/external") // a fresh copy for each mutation
			if err != nil {
				t.Fatal(err)
			}
			spec := &objs.DaemonSet.Spec.Template.Spec
			mutate(spec)
			if d := privilegeDiffs(spec, objs.ConfigMap.Name, want); len(d) == 0 {
				t.Errorf("not reported")
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// privilegeDiffs compares what spec grants with want and says what differs.
func privilegeDiffs(spec *corev1.PodSpec, configMap string, want wantPod) []string {
	var diffs []string
	if sc := spec.SecurityContext; sc != nil && !reflect.DeepEqual(*sc, corev1.PodSecurityContext{}) {
		diffs = append(diffs, fmt.Sprintf("pod securityContext %+v: want none", *sc))
	}
	volumes := map[string]corev1.Volume{}
	var gotVolumes []string
	for _, v := range spec.Volumes {
		volumes[v.Name] = v
		gotVolumes = append(gotVolumes, v.Name+": "+describeVolume(v, configMap))
	}
	diffs = append(diffs, listDiff("volumes", gotVolumes, want.volumes)...)

	mounted := map[string]bool{}
	seen := map[string]bool{}
	for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
		seen[c.Name] = true
		wc, ok := want.containers[c.Name]
		if !ok {
			diffs = append(diffs, fmt.Sprintf("container %s: not expected", c.Name))
			continue
		}
		var mounts []string
		for _, m := range c.VolumeMounts {
			mounted[m.Name] = true
			mounts = append(mounts, describeMount(m, volumes, configMap))
		}
		diffs = append(diffs, listDiff("container "+c.Name+" volumeMounts", mounts, wc.mounts)...)
		if got := describeSecurity(c.SecurityContext); !reflect.DeepEqual(got, wc.security) {
			diffs = append(diffs, fmt.Sprintf("container %s securityContext\n got %+v\nwant %+v", c.Name, got, wc.security))
		}
		if got := describeResources(c.Resources); got != wc.resources {
			diffs = append(diffs, fmt.Sprintf("container %s resources %q, want %q", c.Name, got, wc.resources))
		}
	}
	for name := range want.containers {
		if !seen[name] {
			diffs = append(diffs, fmt.Sprintf("container %s: missing", name))
		}
	}
	for _, v := range spec.Volumes {
		if !mounted[v.Name] {
			diffs = append(diffs, fmt.Sprintf("volume %s is mounted by no container", v.Name))
		}
	}
	return diffs
}

// listDiff reports the entries only one side has (order does not matter, repeats do).
func listDiff(what string, got, want []string) []string {
	got, want = slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))
	if slices.Equal(got, want) {
		return nil
	}
	var extra, missing []string
	for _, g := range got {
		if i := slices.Index(want, g); i >= 0 {
			want = slices.Delete(want, i, i+1)
		} else {
			extra = append(extra, g)
		}
	}
	missing = want
	return []string{fmt.Sprintf("%s differ:\n  not expected: %q\n  missing: %q", what, extra, missing)}
}

func describeVolume(v corev1.Volume, configMap string) string {
	switch {
	case v.HostPath != nil:
		typ := "<no type>"
		if v.HostPath.Type != nil {
			typ = string(*v.HostPath.Type)
		}
		return "hostPath " + v.HostPath.Path + " " + typ
	case v.ConfigMap != nil:
		name := v.ConfigMap.Name
		if name == configMap {
			name = "sandbox-guard-config" // kustomize adds a hash of the content
		}
		return fmt.Sprintf("configMap %s%s", name, describeOther(*v.ConfigMap, corev1.ConfigMapVolumeSource{LocalObjectReference: v.ConfigMap.LocalObjectReference}))
	case v.EmptyDir != nil:
		s := "emptyDir"
		if v.EmptyDir.SizeLimit != nil {
			s += " sizeLimit=" + v.EmptyDir.SizeLimit.String()
		}
		return s + describeOther(*v.EmptyDir, corev1.EmptyDirVolumeSource{SizeLimit: v.EmptyDir.SizeLimit})
	}
	return fmt.Sprintf("%+v", v.VolumeSource)
}

// describeOther shows the fields of got that base does not have (base: got with the described
// fields only), so that a setting the description leaves out cannot slip through.
func describeOther[T any](got, base T) string {
	if reflect.DeepEqual(got, base) {
		return ""
	}
	return fmt.Sprintf(" %+v", got)
}

func describeMount(m corev1.VolumeMount, volumes map[string]corev1.Volume, configMap string) string {
	mode := "rw"
	if m.ReadOnly {
		mode = "ro"
	}
	source := "<no volume " + m.Name + ">"
	if v, ok := volumes[m.Name]; ok {
		source = describeVolume(v, configMap)
	}
	rest := m
	rest.Name, rest.MountPath, rest.ReadOnly = "", "", false
	return m.MountPath + " " + mode + " <- " + source + describeOther(rest, corev1.VolumeMount{})
}

func describeSecurity(sc *corev1.SecurityContext) security {
	if sc == nil {
		return security{Other: "no securityContext"}
	}
	b := func(p *bool) string {
		if p == nil {
			return "unset"
		}
		return fmt.Sprint(*p)
	}
	s := security{Privileged: b(sc.Privileged), AllowPrivilegeEscalation: b(sc.AllowPrivilegeEscalation),
		ReadOnlyRootFilesystem: b(sc.ReadOnlyRootFilesystem), RunAsNonRoot: b(sc.RunAsNonRoot), RunAsUser: "unset"}
	if sc.RunAsUser != nil {
		s.RunAsUser = fmt.Sprint(*sc.RunAsUser)
	}
	rest := sc.DeepCopy()
	rest.Privileged, rest.AllowPrivilegeEscalation, rest.ReadOnlyRootFilesystem, rest.RunAsNonRoot, rest.RunAsUser = nil, nil, nil, nil, nil
	if sc.Capabilities != nil {
		for _, c := range sc.Capabilities.Add {
			s.Add = append(s.Add, string(c))
		}
		for _, c := range sc.Capabilities.Drop {
			s.Drop = append(s.Drop, string(c))
		}
		rest.Capabilities = nil
	}
	if sc.SeccompProfile != nil && sc.SeccompProfile.LocalhostProfile == nil {
		s.Seccomp = string(sc.SeccompProfile.Type)
		rest.SeccompProfile = nil
	}
	if !reflect.DeepEqual(*rest, corev1.SecurityContext{}) {
		s.Other = fmt.Sprintf("%+v", *rest)
	}
	return s
}

// describeResources is "requests k=v ...; limits k=v ..." in key order ("-" for none).
func describeResources(r corev1.ResourceRequirements) string {
	list := func(l corev1.ResourceList) string {
		if len(l) == 0 {
			return "-"
		}
		var out []string
		for _, k := range slices.Sorted(maps.Keys(l)) {
			q := l[k]
			out = append(out, string(k)+"="+q.String())
		}
		return strings.Join(out, " ")
	}
	s := "requests " + list(r.Requests) + "; limits " + list(r.Limits)
	if len(r.Claims) > 0 {
		s += fmt.Sprintf("; claims %v", r.Claims)
	}
	return s
}

// --- The mounts follow the code ------------------------------------------------------------------
//
// The exact lists above are literals; these tests tie them to the paths the code uses, so that
// moving a file in the code without the manifest (or the other way round) fails here.

// hostMount finds the mount through which the container sees host path p (the most specific
// one), and says where and whether it is writable.
func hostMount(spec *corev1.PodSpec, c corev1.Container, container, host string) (found, writable bool, detail string) {
	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = v
	}
	best := ""
	for _, m := range c.VolumeMounts {
		v := volumes[m.Name]
		if v.HostPath == nil || !within(container, m.MountPath) || len(m.MountPath) <= len(best) {
			continue
		}
		rel, _ := filepath.Rel(m.MountPath, container)
		if filepath.Join(v.HostPath.Path, rel) != host {
			continue // mounted, but from somewhere else
		}
		best, found, writable = m.MountPath, true, !m.ReadOnly
		detail = fmt.Sprintf("through %s (host %s, readOnly %v)", m.MountPath, v.HostPath.Path, m.ReadOnly)
	}
	return found, writable, detail
}

func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

// The installer mounts, under /host, the directories internal/install writes, writable, and the
// directory of containerd's main configuration, read-only.
func TestInstallerMountsWhatInstallUses(t *testing.T) {
	objs, err := deploy.Build("overlays/installer")
	if err != nil {
		t.Fatal(err)
	}
	spec := &objs.DaemonSet.Spec.Template.Spec
	c := spec.Containers[0]
	if !slices.Contains(c.Args, "--root=/host") {
		t.Fatalf("args %v: this test assumes --root=/host", c.Args)
	}
	for _, dir := range []string{install.PluginDir, install.ConfigDir, install.DropInDir} {
		if found, writable, detail := hostMount(spec, c, filepath.Join("/host", dir), dir); !found || !writable {
			t.Errorf("install writes %s: want it writable at /host%s; found %v %s", dir, dir, found, detail)
		}
	}
	main := filepath.Dir(install.ContainerdConfig)
	if found, writable, detail := hostMount(spec, c, filepath.Join("/host", main), main); !found || writable {
		t.Errorf("install reads %s and its imports: want it read-only at /host%s; found %v %s", main, main, found, detail)
	}
	// Nothing the external plugin needs: no socket directory (install talks to no daemon).
	for _, dir := range []string{filepath.Dir(install.NRISocket), filepath.Dir(config.Default().Containerd.Address)} {
		for _, m := range c.VolumeMounts {
			if within(m.MountPath, dir) || within(m.MountPath, filepath.Join("/host", dir)) {
				t.Errorf("the installer mounts %s (%s), which it does not use", m.MountPath, dir)
			}
		}
	}
}

// The external plugin can reach every host path the shipped configuration and each preset use,
// at the same path, read-only except its state directory, and the NRI socket.
func TestExternalMountsWhatRunUses(t *testing.T) {
	for _, dir := range []string{"overlays/external", "testdata/external-credential-bridge"} {
		t.Run(dir, func(t *testing.T) {
			objs, err := deploy.Build(dir)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Parse([]byte(objs.ConfigMap.Data["config.yaml"]), "ConfigMap")
			if err != nil {
				t.Fatal(err)
			}
			spec := &objs.DaemonSet.Spec.Template.Spec
			c := spec.Containers[0]
			read := map[string]string{
				filepath.Dir(install.NRISocket):         "the NRI socket",
				filepath.Dir(cfg.Containerd.Address):    "containerd.sock",
				filepath.Dir(cfg.Containerd.ConfigFile): "containerd's configuration",
			}
			for _, preset := range config.Presets() {
				checks, _ := config.PresetChecks(preset)
				for _, ch := range checks {
					switch {
					case ch.CNI != nil:
						read[ch.CNI.ConfDir] = preset + " " + ch.Name
						for _, b := range ch.CNI.BinDirs {
							read[b] = preset + " " + ch.Name
						}
					case ch.Socket != nil:
						for _, a := range ch.Socket.Addresses {
							if p, ok := strings.CutPrefix(a, "unix://"); ok {
								read[filepath.Dir(p)] = preset + " " + ch.Name
							}
						}
					case ch.File != nil:
						read[filepath.Dir(ch.File.Path)] = preset + " " + ch.Name
					}
				}
			}
			for p, why := range read {
				if found, writable, detail := hostMount(spec, c, p, p); !found || writable {
					t.Errorf("%s (%s): want it read-only at the same path; found %v %s", p, why, found, detail)
				}
			}
			// --standby-lock probes the lock the pre-registered plugin (shipped configuration:
			// the same stateDir) holds on the host, at the same path.
			if !slices.Contains(c.Args, "--standby-lock="+standby.Path(cfg.StateDir)) {
				t.Errorf("args %v: no --standby-lock=%s", c.Args, standby.Path(cfg.StateDir))
			}
			if found, _, detail := hostMount(spec, c, standby.Path(cfg.StateDir), standby.Path(cfg.StateDir)); !found {
				t.Errorf("--standby-lock probes %s: want it mounted from the host at that path; found %v %s", standby.Path(cfg.StateDir), found, detail)
			}
			// The plugin binary is not looked at any more (only the lock counts).
			for _, m := range c.VolumeMounts {
				if strings.Contains(m.MountPath, install.PluginDir) {
					t.Errorf("the external plugin mounts %s, which it does not use", m.MountPath)
				}
			}
			if found, writable, detail := hostMount(spec, c, cfg.StateDir, cfg.StateDir); !found || !writable {
				t.Errorf("stateDir %s: want it writable; found %v %s", cfg.StateDir, found, detail)
			}
			// The credential bridge writes into the first directory of containerd's registry
			// config_path (the default's, here): writable exactly with the component.
			hosts := filepath.SplitList(containerdconfig.DefaultRegistryConfigPath2)[0]
			found, writable, detail := hostMount(spec, c, filepath.Join(hosts, "example.com", "hosts.toml"), filepath.Join(hosts, "example.com", "hosts.toml"))
			withBridge := strings.HasSuffix(dir, "credential-bridge")
			if !found || writable != withBridge {
				t.Errorf("%s: want it writable %v; found %v %s", hosts, withBridge, found, detail)
			}
			if withBridge {
				// ... and only that: containerd's configuration stays read-only.
				if _, writable, detail := hostMount(spec, c, cfg.Containerd.ConfigFile, cfg.Containerd.ConfigFile); writable {
					t.Errorf("%s writable %s", cfg.Containerd.ConfigFile, detail)
				}
			}
		})
	}
}

// The component grants the write access and changes nothing else: the same configuration.
func TestCredentialBridgeComponentKeepsTheConfiguration(t *testing.T) {
	plain, err := deploy.Build("overlays/external")
	if err != nil {
		t.Fatal(err)
	}
	bridged, err := deploy.Build("testdata/external-credential-bridge")
	if err != nil {
		t.Fatal(err)
	}
	if plain.ConfigMap.Name != bridged.ConfigMap.Name || !reflect.DeepEqual(plain.ConfigMap.Data, bridged.ConfigMap.Data) {
		t.Errorf("the component changes the ConfigMap: %s -> %s", plain.ConfigMap.Name, bridged.ConfigMap.Name)
	}
	p, b := plain.DaemonSet.Spec.Template.Spec.DeepCopy(), bridged.DaemonSet.Spec.Template.Spec.DeepCopy()
	b.Volumes = slices.DeleteFunc(b.Volumes, func(v corev1.Volume) bool { return v.Name == "containerd-certs-d" })
	b.Containers[0].VolumeMounts = slices.DeleteFunc(b.Containers[0].VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == "containerd-certs-d" })
	if !reflect.DeepEqual(p, b) {
		t.Error("the component changes the pod spec beyond its hosts directory mount")
	}
	if len(b.Volumes) != len(bridged.DaemonSet.Spec.Template.Spec.Volumes)-1 {
		t.Error("the component adds no containerd-certs-d volume")
	}
}

// The README documents both modes and every privilege the manifests grant.
func TestReadme(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"overlays/installer", "overlays/external", "warn", "enforce", "NET_ADMIN", "NET_RAW",
		"privileged", "--standby-lock", "/var/run/nri", "/run/containerd", "/run/xtables.lock",
		"components/credential-bridge", "/etc/containerd/certs.d", "ecr.credentialBridge", "59.2 MiB",
		"/etc/containerd/config.d", "/var/lib/sandbox-guard"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("deploy/README.md does not mention %q", want)
		}
	}
}

// The README's table shows each overlay's memory request and limit as the manifests set them.
func TestReadmeMemory(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	var row []string
	for _, dir := range []string{"overlays/installer", "overlays/external"} {
		objs, err := deploy.Build(dir)
		if err != nil {
			t.Fatal(err)
		}
		r := objs.DaemonSet.Spec.Template.Spec.Containers[0].Resources
		row = append(row, r.Requests.Memory().String()+" / "+r.Limits.Memory().String())
	}
	want := "| memory request / limit | " + strings.Join(row, " | ") + " |"
	if !strings.Contains(string(b), want) {
		t.Errorf("deploy/README.md has no line %q", want)
	}
}
