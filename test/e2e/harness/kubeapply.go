package harness

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/sandbox-guard/sandbox-guard/deploy"
)

// DeployOptions adapt one of deploy/'s overlays to a test node. The node is not the machine's
// root: its containerd keeps its files below a directory of its own (RootNode), so the
// DaemonSet's host paths must name that directory's copies, or the pods would read and write
// the machine's /etc/containerd and /opt/nri. Everything else stays as the overlay builds it.
type DeployOptions struct {
	// Overlay is the kustomization directory to deploy, e.g. <repo>/deploy/overlays/installer.
	Overlay string
	// Image is the image reference the DaemonSet runs instead of the overlay's (name:tag), e.g.
	// the `make image` archive imported into the node.
	Image string
	// Config replaces the ConfigMap's config.yaml (its checks and paths are the node's).
	Config string
	// HostPath maps a hostPath volume's path to the directory that stands for it on this node.
	// It must map every path elsewhere: a test never mounts the machine's own directories.
	HostPath func(path string) string
	// Args are appended to the container's arguments (test plumbing only).
	Args []string
}

// Kustomization writes a kustomization of the test's own into a new directory and returns the
// directory, for `kubectl apply -k` and `kubectl delete -k`: the overlay is its one resource, the image is set as `kustomize edit set image` sets it, the ConfigMap's
// config.yaml replaced (configMapGenerator behavior: replace), and each hostPath volume's path
// replaced by JSON patch ops that first test the volume's name, so a reordered manifest fails
// here instead of mounting the wrong directory. It also returns the overlay as built, for
// comparisons with what kubelet runs.
func (k *Kube) Kustomization(name string, o DeployOptions) (string, *deploy.Objects) {
	k.t.Helper()
	objs, err := deploy.Build(o.Overlay)
	must(k.t, err)
	dir := filepath.Join(k.Dir, "kustomize-"+name)
	must(k.t, os.MkdirAll(dir, 0o755))

	image, tag, ok := strings.Cut(o.Image, ":")
	if !ok || strings.Contains(tag, "/") {
		k.t.Fatalf("Kustomization: image %q: want name:tag", o.Image)
	}
	current := objs.DaemonSet.Spec.Template.Spec.Containers[0].Image
	currentName, _, _ := strings.Cut(current, ":")

	type op struct {
		Op    string `json:"op"`
		Path  string `json:"path"`
		Value any    `json:"value"`
	}
	var ops []op
	for i, v := range objs.DaemonSet.Spec.Template.Spec.Volumes {
		if v.HostPath == nil {
			continue
		}
		to := o.HostPath(v.HostPath.Path)
		if to == "" || filepath.Clean(to) == filepath.Clean(v.HostPath.Path) || !filepath.IsAbs(to) {
			k.t.Fatalf("Kustomization: hostPath %s (volume %s) maps to %q: every host path must map to a directory of the test node", v.HostPath.Path, v.Name, to)
		}
		p := fmt.Sprintf("/spec/template/spec/volumes/%d", i)
		ops = append(ops, op{"test", p + "/name", v.Name}, op{"replace", p + "/hostPath/path", to})
	}
	for _, a := range o.Args {
		ops = append(ops, op{"add", "/spec/template/spec/containers/0/args/-", a})
	}
	patch, err := yaml.Marshal(ops)
	must(k.t, err)

	// kustomize refuses an absolute path to another kustomization ("new root cannot be
	// absolute"); a relative one may lead anywhere.
	overlay, err := filepath.Rel(dir, o.Overlay)
	must(k.t, err)
	kust := map[string]any{
		"apiVersion": "kustomize.config.k8s.io/v1beta1",
		"kind":       "Kustomization",
		"resources":  []string{overlay},
		"images":     []map[string]string{{"name": currentName, "newName": image, "newTag": tag}},
		"configMapGenerator": []map[string]any{{
			"name":      objs.ConfigMap.Name[:strings.LastIndex(objs.ConfigMap.Name, "-")], // without the content hash
			"namespace": objs.ConfigMap.Namespace, "behavior": "replace", "files": []string{"config.yaml"},
		}},
		"patches": []map[string]any{{
			"target": map[string]string{"kind": "DaemonSet", "name": objs.DaemonSet.Name},
			"patch":  string(patch),
		}},
	}
	b, err := yaml.Marshal(kust)
	must(k.t, err)
	must(k.t, os.WriteFile(filepath.Join(dir, "kustomization.yaml"), b, 0o644))
	must(k.t, os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(o.Config), 0o644))
	// What kubectl will apply, as a check that the kustomization builds and does what it says.
	built, err := deploy.Build(dir)
	if err != nil {
		k.t.Fatalf("the test's kustomization of %s: %v\n%s", o.Overlay, err, b)
	}
	if got := built.DaemonSet.Spec.Template.Spec.Containers[0].Image; got != o.Image {
		k.t.Fatalf("the test's kustomization runs image %s, want %s", got, o.Image)
	}
	return dir, objs
}

// DeleteKustomize runs `kubectl delete -k dir` and waits until every object it names is gone
// (the namespace, whose pods kubelet must stop first, included).
func (k *Kube) DeleteKustomize(dir string) string {
	k.t.Helper()
	out, err := k.Kubectl("delete", "-k", dir, "--wait", "--timeout", "3m")
	if err != nil {
		k.t.Fatalf("%v\n%s", err, out)
	}
	return out
}

// PodEvents lists the events about one pod, oldest first.
func (k *Kube) PodEvents(ns, pod string) ([]corev1.Event, error) {
	var list corev1.EventList
	if err := k.GetJSON(&list, "get", "events", "-n", ns, "--field-selector", "involvedObject.kind=Pod,involvedObject.name="+pod,
		"--sort-by", ".lastTimestamp"); err != nil {
		return nil, err
	}
	return list.Items, nil
}

// WaitPodEvent waits until the pod has an event with this reason whose message contains every
// one of want, and returns it.
func (k *Kube) WaitPodEvent(ns, pod, reason string, timeout time.Duration, want ...string) corev1.Event {
	k.t.Helper()
	var found corev1.Event
	k.WaitFor(timeout, fmt.Sprintf("a %s event of pod %s/%s saying %q", reason, ns, pod, want), func() error {
		events, err := k.PodEvents(ns, pod)
		if err != nil {
			return err
		}
		var seen []string
		for _, e := range events {
			seen = append(seen, e.Reason+": "+e.Message)
			if e.Reason != reason {
				continue
			}
			all := true
			for _, w := range want {
				all = all && strings.Contains(e.Message, w)
			}
			if all {
				found = e
				return nil
			}
		}
		return fmt.Errorf("events so far:\n  %s", strings.Join(seen, "\n  "))
	})
	return found
}

// ContainerID returns the runtime's ID of a pod's running container, from the pod's status.
func (k *Kube) ContainerID(ns, pod, container string) (string, error) {
	var p corev1.Pod
	if err := k.GetJSON(&p, "get", "pod", "-n", ns, pod); err != nil {
		return "", err
	}
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == container && cs.State.Running != nil {
			_, id, ok := strings.Cut(cs.ContainerID, "://")
			if !ok {
				return "", fmt.Errorf("pod %s/%s: container %s has ID %q", ns, pod, container, cs.ContainerID)
			}
			return id, nil
		}
	}
	return "", fmt.Errorf("pod %s/%s: container %s is not running", ns, pod, container)
}

// ProcMount is one mount of a process, from /proc/<pid>/mountinfo.
type ProcMount struct {
	Root     string // the path within the mounted file system (a bind mount's source directory)
	FSType   string
	ReadOnly bool
}

// Process is what the kernel says about a container's main process: the credentials and
// mounts the runtime gave it, whatever the pod spec asked for.
type Process struct {
	Pid                    int
	UID                    int // effective
	CapEff, CapPrm, CapBnd uint64
	NoNewPrivs             bool
	Seccomp                int                  // 0 none, 1 strict, 2 filter
	Mounts                 map[string]ProcMount // by mount point, as the process sees it
}

// ContainerProcess inspects a running container's main process (its pid from crictl inspect).
func (n *Node) ContainerProcess(id string) (*Process, error) {
	out, err := n.CRI.Run("inspect", "-o", "json", id)
	if err != nil {
		return nil, err
	}
	var v struct {
		Info struct {
			Pid int `json:"pid"`
		} `json:"info"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Info.Pid == 0 {
		return nil, fmt.Errorf("crictl inspect %s: no pid (%v)", id, err)
	}
	p := &Process{Pid: v.Info.Pid, Mounts: map[string]ProcMount{}}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Pid))
	if err != nil {
		return nil, err
	}
	for line := range strings.Lines(string(status)) {
		key, val, _ := strings.Cut(strings.TrimSpace(line), ":")
		val = strings.TrimSpace(val)
		switch key {
		case "Uid":
			if f := strings.Fields(val); len(f) > 1 {
				p.UID, _ = strconv.Atoi(f[1])
			}
		case "CapEff":
			p.CapEff, _ = strconv.ParseUint(val, 16, 64)
		case "CapPrm":
			p.CapPrm, _ = strconv.ParseUint(val, 16, 64)
		case "CapBnd":
			p.CapBnd, _ = strconv.ParseUint(val, 16, 64)
		case "NoNewPrivs":
			p.NoNewPrivs = val == "1"
		case "Seccomp":
			p.Seccomp, _ = strconv.Atoi(val)
		}
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/mountinfo", p.Pid))
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }() // read only
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fields, after := strings.Fields(pre), strings.Fields(post)
		if !ok || len(fields) < 6 || len(after) < 1 {
			continue
		}
		ro := false
		for _, o := range strings.Split(fields[5], ",") {
			ro = ro || o == "ro"
		}
		// A later mount on the same point hides the earlier one: the last line wins.
		p.Mounts[unescapeMountinfo(fields[4])] = ProcMount{Root: unescapeMountinfo(fields[3]), FSType: after[0], ReadOnly: ro}
	}
	return p, sc.Err()
}

// unescapeMountinfo undoes mountinfo's octal escapes (\040 for a space, ...).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Pids lists the processes in the namespace.
func (n *NetNS) Pids() []int { return n.pids() }
