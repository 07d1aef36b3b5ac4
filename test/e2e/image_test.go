package e2e

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/sandbox-guard/sandbox-guard/test/e2e/harness"
)

// `make image`'s archive: one OCI image index for linux/amd64 and linux/arm64, built, as the
// Makefile does, from the plugin under test and its arm64 cross-compilation. The index lists both
// platforms, each image's /sandbox-guard is a static ELF for its machine (aarch64 for arm64), and
// every line's containerd imports the archive: for its own platform (ctr's default), whose image
// then runs, and with --all-platforms, which stores the arm64 image too.
func TestMultiPlatformImageImports(t *testing.T) {
	env := harness.Load(t)
	dir := t.TempDir()
	arm64 := filepath.Join(dir, "linux-arm64", "sandbox-guard")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=e2e-arm64", "-o", arm64, "./plugin")
	build.Dir = env.RepoRoot
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=arm64")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("cross-compiling the plugin for arm64: %v\n%s", err, out)
	}
	const ref = "localhost/sandbox-guard:multi-platform"
	archive := filepath.Join(dir, "sandbox-guard-image.tar")
	cmd := exec.Command("go", "run", "./deploy/image", "--binary", env.Plugin, "--binary", arm64, "--out", archive, "--ref", ref)
	cmd.Dir = env.RepoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go run ./deploy/image: %v\n%s", err, out)
	}

	manifests := imageIndex(t, archive, filepath.Join(dir, "layout"))
	for platform, want := range map[string]elf.Machine{"linux/amd64": elf.EM_X86_64, "linux/arm64": elf.EM_AARCH64} {
		m, ok := manifests[platform]
		if !ok {
			t.Fatalf("the index lists %v, not %s", slices.Collect(maps.Keys(manifests)), platform)
		}
		if m.machine != want || !m.static {
			t.Errorf("%s: /sandbox-guard is a %v ELF (static %v), want a static %v", platform, m.machine, m.static, want)
		}
	}
	if len(manifests) != 2 {
		t.Errorf("the index lists %d platforms", len(manifests))
	}

	harness.ForEachContainerd(t, func(t *testing.T, c harness.Containerd) {
		n := harness.StartNode(t, harness.Load(t), c, harness.NodeOptions{})
		if out, err := n.Ctr("images", "import", archive); err != nil {
			t.Fatalf("ctr images import: %v\n%s", err, out)
		}
		// The node's own platform (amd64) runs: what kubelet would start.
		out, err := n.Ctr("run", "--rm", "--runc-binary", env.Runc, ref, "sg-image-"+strings.ReplaceAll(c.Line.String(), ".", "-"), "/sandbox-guard", "version")
		if err != nil || !strings.Contains(out, "sandbox-guard") {
			t.Fatalf("ctr run %s /sandbox-guard version: %v\n%s", ref, err, out)
		}
		if out, err := n.Ctr("images", "rm", "--sync", ref); err != nil {
			t.Fatalf("ctr images rm: %v\n%s", err, out)
		}
		if out, err := n.Ctr("images", "import", "--all-platforms", archive); err != nil {
			t.Fatalf("ctr images import --all-platforms: %v\n%s", err, out)
		}
		for platform, m := range manifests {
			// ctr may print a warning first (cgroup v1 on 2.2+): the blob must be in its output.
			if out, err := n.Ctr("content", "get", m.layer); err != nil || !bytes.Contains([]byte(out), m.layerBlob) {
				t.Errorf("%s: layer %s not stored after import --all-platforms: %v %.200s", platform, m.layer, err, out)
			}
		}
		out, err = n.Ctr("images", "check")
		if err != nil || !strings.Contains(out, ref) || !strings.Contains(out, "complete") {
			t.Errorf("ctr images check: %v\n%s", err, out)
		}
	})
}

type platformImage struct {
	layer     string // digest of the image's one layer
	layerBlob []byte
	machine   elf.Machine // of /sandbox-guard in it
	static    bool
}

// imageIndex unpacks the archive into dir and reads its image index: platform -> its image.
func imageIndex(t *testing.T, archive, dir string) map[string]platformImage {
	t.Helper()
	untarTo(t, archive, dir)
	p, err := layout.FromPath(dir)
	must(t, err)
	top, err := p.ImageIndex()
	must(t, err)
	tm, err := top.IndexManifest()
	must(t, err)
	if len(tm.Manifests) != 1 || tm.Manifests[0].Annotations["io.containerd.image.name"] == "" {
		t.Fatalf("index.json: %+v, want one named image index", tm.Manifests)
	}
	idx, err := top.ImageIndex(tm.Manifests[0].Digest)
	must(t, err)
	im, err := idx.IndexManifest()
	must(t, err)
	out := map[string]platformImage{}
	for _, d := range im.Manifests {
		img, err := idx.Image(d.Digest)
		must(t, err)
		layers, err := img.Layers()
		must(t, err)
		if len(layers) != 1 {
			t.Fatalf("%v: %d layers", d.Platform, len(layers))
		}
		digest, err := layers[0].Digest()
		must(t, err)
		rc, err := layers[0].Compressed()
		must(t, err)
		blob, err := io.ReadAll(rc)
		must(t, err)
		_ = rc.Close()
		pi := platformImage{layer: digest.String(), layerBlob: blob}
		un, err := layers[0].Uncompressed()
		must(t, err)
		tr := tar.NewReader(un)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			must(t, err)
			if h.Name != "sandbox-guard" {
				continue
			}
			b, err := io.ReadAll(tr)
			must(t, err)
			f, err := elf.NewFile(bytes.NewReader(b))
			must(t, err)
			pi.machine = f.Machine
			pi.static = !slices.ContainsFunc(f.Progs, func(p *elf.Prog) bool { return p.Type == elf.PT_INTERP })
		}
		_ = un.Close()
		out[fmt.Sprintf("%s/%s", d.Platform.OS, d.Platform.Architecture)] = pi
	}
	return out
}

func untarTo(t *testing.T, archive, dir string) {
	t.Helper()
	f, err := os.Open(archive)
	must(t, err)
	defer func() { _ = f.Close() }() // read-only
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		must(t, err)
		p := filepath.Join(dir, filepath.Clean("/"+h.Name))
		if h.Typeflag == tar.TypeDir {
			must(t, os.MkdirAll(p, 0o755))
			continue
		}
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		b, err := io.ReadAll(tr)
		must(t, err)
		must(t, os.WriteFile(p, b, 0o644))
	}
}
