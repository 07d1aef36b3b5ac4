// Package deploy_test checks the Kubernetes manifests: every file decodes strictly into its API
// type (an unknown or misspelt field fails), every kustomization builds, and the built
// DaemonSets keep what sandbox-guard needs on a node.
package deploy_test

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/sandbox-guard/sandbox-guard/deploy"
	"github.com/sandbox-guard/sandbox-guard/etc"
	"github.com/sandbox-guard/sandbox-guard/internal/config"
)

// Every YAML file under deploy/ decodes strictly into the type its kind names.
func TestManifestsDecodeStrictly(t *testing.T) {
	files, err := filepath.Glob("*/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	more, _ := filepath.Glob("overlays/*/*.yaml")
	files = append(files, more...)
	if len(files) < 8 {
		t.Fatalf("found only %v", files)
	}
	for _, f := range files {
		if filepath.Base(f) == "config.yaml" {
			continue // sandbox-guard's own configuration, checked below
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := deploy.DecodeStrict(b); err != nil {
			t.Errorf("%s: %v", f, err)
		}
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
	for _, dir := range []string{"base", "overlays/installer", "overlays/external"} {
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

// hostMount is a host path that must be mounted into the container.
type hostMount struct {
	host, container string
	readOnly        bool
	typ             corev1.HostPathType
}

var commonMounts = []hostMount{
	{"/var/run/nri", "/var/run/nri", true, corev1.HostPathDirectoryOrCreate},
	{"/run/containerd", "/run/containerd", true, corev1.HostPathDirectoryOrCreate},
	{"/etc/containerd", "/etc/containerd", true, corev1.HostPathDirectoryOrCreate},
	{"/etc/cni/net.d", "/etc/cni/net.d", true, corev1.HostPathDirectoryOrCreate},
	{"/opt/cni/bin", "/opt/cni/bin", true, corev1.HostPathDirectoryOrCreate},
	{"/run/xtables.lock", "/run/xtables.lock", false, corev1.HostPathFileOrCreate},
	{"/var/lib/sandbox-guard", "/var/lib/sandbox-guard", false, corev1.HostPathDirectoryOrCreate},
}

var installerMounts = []hostMount{
	{"/opt/nri/plugins", "/host/opt/nri/plugins", false, corev1.HostPathDirectoryOrCreate},
	{"/etc/nri/conf.d", "/host/etc/nri/conf.d", false, corev1.HostPathDirectoryOrCreate},
	{"/etc/containerd", "/host/etc/containerd", true, corev1.HostPathDirectoryOrCreate},
	{"/etc/containerd/config.d", "/host/etc/containerd/config.d", false, corev1.HostPathDirectoryOrCreate},
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
	want := slices.Clone(commonMounts)
	if mode == "installer" {
		want = append(want, installerMounts...)
	}
	if mode == "external" {
		want = append(want, hostMount{"/opt/nri/plugins", "/host/opt/nri/plugins", true, corev1.HostPathDirectoryOrCreate})
	}
	for _, m := range want {
		checkMount(t, spec, c, m)
	}
	if !slices.ContainsFunc(c.VolumeMounts, func(vm corev1.VolumeMount) bool { return vm.MountPath == "/etc/sandbox-guard" && vm.ReadOnly }) {
		t.Error("the configuration is not mounted read-only at /etc/sandbox-guard")
	}
	if !slices.ContainsFunc(c.VolumeMounts, func(vm corev1.VolumeMount) bool {
		return vm.MountPath == "/tmp" && slices.ContainsFunc(spec.Volumes, func(v corev1.Volume) bool { return v.Name == vm.Name && v.EmptyDir != nil })
	}) {
		t.Error("no emptyDir at /tmp: the root file system is read-only and the image has no /tmp")
	}

	sc := c.SecurityContext
	if sc == nil || sc.Privileged == nil || *sc.Privileged || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.Capabilities == nil {
		t.Fatalf("securityContext %+v: want privileged false, allowPrivilegeEscalation false, readOnlyRootFilesystem true, capabilities", sc)
	}
	if !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("capabilities drop %v, want [ALL]", sc.Capabilities.Drop)
	}
	wantCaps := []corev1.Capability{"NET_ADMIN", "NET_RAW"}
	if mode == "installer" {
		wantCaps = nil
	}
	if got := sc.Capabilities.Add; !slices.Equal(got, wantCaps) { // nil and empty are equal here
		t.Errorf("capabilities add %v, want %v", got, wantCaps)
	}
	if r := c.Resources; r.Requests.Cpu().IsZero() || r.Requests.Memory().IsZero() || r.Limits.Memory().IsZero() {
		t.Errorf("resources %+v: want cpu and memory requests and a memory limit", r)
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
	if mode == "external" && !slices.Contains(c.Args, "--yield-to-preregistered=/host/opt/nri/plugins/10-sandbox-guard") {
		t.Errorf("args %v: the external plugin must step aside where a pre-registered one is installed", c.Args)
	}
}

func checkMount(t *testing.T, spec *corev1.PodSpec, c corev1.Container, m hostMount) {
	t.Helper()
	for _, vm := range c.VolumeMounts {
		if vm.MountPath != m.container {
			continue
		}
		for _, v := range spec.Volumes {
			if v.Name != vm.Name {
				continue
			}
			if v.HostPath == nil || v.HostPath.Path != m.host {
				t.Errorf("%s is mounted from %+v, want host path %s", m.container, v.VolumeSource, m.host)
				return
			}
			if v.HostPath.Type == nil || *v.HostPath.Type != m.typ {
				t.Errorf("host path %s: type %v, want %s", m.host, v.HostPath.Type, m.typ)
			}
			if vm.ReadOnly != m.readOnly {
				t.Errorf("%s: readOnly %v, want %v", m.container, vm.ReadOnly, m.readOnly)
			}
			return
		}
		t.Errorf("%s mounts volume %s, which does not exist", m.container, vm.Name)
		return
	}
	t.Errorf("host path %s is not mounted at %s", m.host, m.container)
}

// The README documents both modes and every privilege the manifests grant.
func TestReadme(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"overlays/installer", "overlays/external", "warn", "enforce", "NET_ADMIN", "NET_RAW",
		"privileged", "--yield-to-preregistered", "/var/run/nri", "/run/containerd", "/run/xtables.lock"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("deploy/README.md does not mention %q", want)
		}
	}
}
