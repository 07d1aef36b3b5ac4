package harness

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// CRI drives a node through the real crictl (env CRICTL), the way kubelet would.
type CRI struct {
	t      testing.TB
	bin    string
	config string
	dir    string
	node   *Node
	pods   int
}

func newCRI(t testing.TB, env *Env, n *Node) *CRI {
	cfg := filepath.Join(n.Dir, "crictl.yaml")
	must(t, os.WriteFile(cfg, []byte(fmt.Sprintf("runtime-endpoint: unix://%[1]s\nimage-endpoint: unix://%[1]s\ntimeout: 20\n", n.Socket)), 0o644))
	dir := filepath.Join(n.Dir, "pods")
	must(t, os.MkdirAll(dir, 0o755))
	return &CRI{t: t, bin: env.Crictl, config: cfg, dir: dir, node: n}
}

// Run runs one crictl command; the error carries crictl's stderr, where it prints the runtime's
// error text.
func (c *CRI) Run(args ...string) (string, error) {
	cmd := exec.Command(c.bin, append([]string{"--config", c.config}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("crictl %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// Pod describes a pod sandbox to start.
type Pod struct {
	Namespace, Name string
	HostNetwork     bool
	Labels          map[string]string
}

// RunP starts a pod sandbox and returns its ID; the error holds the runtime's answer.
func (c *CRI) RunP(p Pod) (string, error) {
	c.pods++
	if p.Namespace == "" {
		p.Namespace = "default"
	}
	network := 0 // POD
	if p.HostNetwork {
		network = 2 // NODE
	}
	cfg := map[string]any{
		"metadata":      map[string]any{"name": p.Name, "namespace": p.Namespace, "uid": fmt.Sprintf("uid-%s-%d", p.Name, c.pods), "attempt": 0},
		"labels":        p.Labels,
		"log_directory": filepath.Join(c.dir, fmt.Sprintf("%s-%d", p.Name, c.pods)),
		"linux": map[string]any{
			"cgroup_parent":    c.node.PodCgroupParent(),
			"security_context": map[string]any{"namespace_options": map[string]any{"network": network}},
		},
	}
	b, _ := json.Marshal(cfg)
	f := filepath.Join(c.dir, fmt.Sprintf("pod-%d.json", c.pods))
	must(c.t, os.WriteFile(f, b, 0o644))
	out, err := c.Run("runp", f)
	return strings.TrimSpace(out), err
}

// MustRunP starts a pod sandbox or fails the test.
func (c *CRI) MustRunP(p Pod) string {
	c.t.Helper()
	id, err := c.RunP(p)
	if err != nil {
		c.t.Fatalf("runp %s/%s: %v", p.Namespace, p.Name, err)
	}
	return id
}

// Remove stops and removes a pod sandbox.
func (c *CRI) Remove(id string) {
	c.t.Helper()
	if _, err := c.Run("stopp", id); err != nil {
		c.t.Fatalf("stopp: %v", err)
	}
	if _, err := c.Run("rmp", id); err != nil {
		c.t.Fatalf("rmp: %v", err)
	}
}

// MustPull pulls an image through CRI with credentials user:password.
func (c *CRI) MustPull(image, creds string) {
	c.t.Helper()
	args := []string{"pull"}
	if creds != "" {
		args = append(args, "--creds", creds)
	}
	if _, err := c.Run(append(args, image)...); err != nil {
		c.t.Fatalf("pull %s: %v", image, err)
	}
}

// ImageStatus is what CRI reports about one image.
type ImageStatus struct {
	Present  bool
	Pinned   bool
	ID       string
	RepoTags []string
}

// Image asks CRI about an image.
func (c *CRI) Image(image string) (ImageStatus, error) {
	out, err := c.Run("inspecti", "-o", "json", image)
	if err != nil {
		if strings.Contains(err.Error(), "no such image") || strings.Contains(err.Error(), "not found") {
			return ImageStatus{}, nil
		}
		return ImageStatus{}, err
	}
	var v struct {
		Status struct {
			ID       string   `json:"id"`
			RepoTags []string `json:"repoTags"`
			Pinned   bool     `json:"pinned"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		return ImageStatus{}, fmt.Errorf("inspecti output %q: %w", out, err)
	}
	return ImageStatus{Present: v.Status.ID != "", Pinned: v.Status.Pinned, ID: v.Status.ID, RepoTags: v.Status.RepoTags}, nil
}

// WaitPinned polls CRI until image is present and pinned.
func (n *Node) WaitPinned(image string, within time.Duration, what string) {
	n.t.Helper()
	Eventually(n.t, within, what, func() error {
		st, err := n.CRI.Image(image)
		if err != nil {
			return err
		}
		if !st.Present || !st.Pinned {
			return fmt.Errorf("CRI image status of %s: present %v, pinned %v", image, st.Present, st.Pinned)
		}
		return nil
	})
}
