package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// staticBinary builds a tiny static Go program to put into the image.
func staticBinary(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module hello\n\ngo 1.22\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nfunc main() {}\n"), 0o644))
	cmd := exec.Command("go", "build", "-o", "hello", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return filepath.Join(dir, "hello")
}

func TestBuildArchive(t *testing.T) {
	bin := staticBinary(t)
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.crt")
	must(t, os.WriteFile(ca, []byte("-----BEGIN CERTIFICATE-----\n"), 0o644))
	out := filepath.Join(dir, "out", "image.tar")
	must(t, build(bin, out, "localhost/sandbox-guard:v1", ca))

	// ctr names the image from this annotation on the index's manifest.
	files := untar(t, out, filepath.Join(dir, "layout"))
	var index struct {
		Manifests []struct {
			MediaType   string            `json:"mediaType"`
			Annotations map[string]string `json:"annotations"`
		} `json:"manifests"`
	}
	must(t, json.Unmarshal(files["index.json"], &index))
	if len(index.Manifests) != 1 || index.Manifests[0].Annotations["io.containerd.image.name"] != "localhost/sandbox-guard:v1" ||
		index.Manifests[0].MediaType != "application/vnd.oci.image.manifest.v1+json" {
		t.Fatalf("index.json: %s", files["index.json"])
	}

	p, err := layout.FromPath(filepath.Join(dir, "layout"))
	must(t, err)
	idx, err := p.ImageIndex()
	must(t, err)
	im, err := idx.IndexManifest()
	must(t, err)
	img, err := idx.Image(im.Manifests[0].Digest)
	must(t, err)
	cf, err := img.ConfigFile()
	must(t, err)
	if !slices.Equal(cf.Config.Entrypoint, []string{"/sandbox-guard", "run", "--config", "/etc/sandbox-guard/config.yaml"}) ||
		cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
		t.Errorf("config: entrypoint %v, platform %s/%s", cf.Config.Entrypoint, cf.OS, cf.Architecture)
	}
	layers, err := img.Layers()
	must(t, err)
	if len(layers) != 1 {
		t.Fatalf("%d layers, want 1 on an empty base", len(layers))
	}
	rc, err := layers[0].Uncompressed()
	must(t, err)
	defer rc.Close()
	got := map[string]int64{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		must(t, err)
		got[h.Name] = h.Mode
	}
	if got["sandbox-guard"] != 0o755 || got["etc/ssl/certs/ca-certificates.crt"] != 0o644 {
		t.Errorf("layer holds %v", got)
	}

	// Reproducible: the same inputs give the same archive.
	first, err := os.ReadFile(out)
	must(t, err)
	must(t, build(bin, out, "localhost/sandbox-guard:v1", ca))
	second, err := os.ReadFile(out)
	must(t, err)
	if !bytes.Equal(first, second) {
		t.Error("two builds of the same binary differ")
	}
}

func TestBuildRefuses(t *testing.T) {
	dir := t.TempDir()
	notELF := filepath.Join(dir, "script")
	must(t, os.WriteFile(notELF, []byte("#!/bin/sh\n"), 0o755))
	cases := map[string][]string{
		"no tag":          {staticBinary(t), "localhost/sandbox-guard", "name with a tag"},
		"not an ELF file": {notELF, "localhost/sandbox-guard:v1", "not a Linux executable"},
	}
	if sh, err := exec.LookPath("sh"); err == nil {
		if target, err := filepath.EvalSymlinks(sh); err == nil {
			cases["dynamically linked"] = []string{target, "localhost/sandbox-guard:v1", "dynamically linked"}
		}
	}
	for name, c := range cases {
		err := build(c[0], filepath.Join(dir, "out.tar"), c[1], "")
		if err == nil || !strings.Contains(err.Error(), c[2]) {
			t.Errorf("%s: %v, want an error containing %q", name, err, c[2])
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "out.tar")); err == nil {
		t.Error("a refused build wrote an archive")
	}
}

func untar(t *testing.T, archive, dir string) map[string][]byte {
	t.Helper()
	f, err := os.Open(archive)
	must(t, err)
	defer func() { _ = f.Close() }() // read-only
	out := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		must(t, err)
		p := filepath.Join(dir, h.Name)
		if h.Typeflag == tar.TypeDir {
			must(t, os.MkdirAll(p, 0o755))
			continue
		}
		b, err := io.ReadAll(tr)
		must(t, err)
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		must(t, os.WriteFile(p, b, 0o644))
		out[h.Name] = b
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
