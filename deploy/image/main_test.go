package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"encoding/json"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// staticBinary cross-compiles a tiny static Go program for linux/arch to put into the image.
func staticBinary(t *testing.T, arch string) string {
	t.Helper()
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module hello\n\ngo 1.22\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nfunc main() {}\n"), 0o644))
	cmd := exec.Command("go", "build", "-o", "hello", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false", "GOOS=linux", "GOARCH="+arch)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return filepath.Join(dir, "hello")
}

// The archive holds one image index naming linux/amd64 and linux/arm64, each an image of its
// own binary (the arm64 one an aarch64 ELF), with the entrypoint and the CA bundle.
func TestBuildMultiPlatformArchive(t *testing.T) {
	amd64, arm64 := staticBinary(t, "amd64"), staticBinary(t, "arm64")
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.crt")
	must(t, os.WriteFile(ca, []byte("-----BEGIN CERTIFICATE-----\n"), 0o644))
	out := filepath.Join(dir, "out", "image.tar")
	must(t, build([]string{arm64, amd64}, out, "localhost/sandbox-guard:v1", ca))

	// ctr names the image from this annotation on the index's entry, an image index.
	files := untar(t, out, filepath.Join(dir, "layout"))
	var index struct {
		Manifests []struct {
			MediaType   string            `json:"mediaType"`
			Annotations map[string]string `json:"annotations"`
		} `json:"manifests"`
	}
	must(t, json.Unmarshal(files["index.json"], &index))
	if len(index.Manifests) != 1 || index.Manifests[0].Annotations["io.containerd.image.name"] != "localhost/sandbox-guard:v1" ||
		index.Manifests[0].MediaType != "application/vnd.oci.image.index.v1+json" {
		t.Fatalf("index.json: %s", files["index.json"])
	}

	platforms := Inspect(t, filepath.Join(dir, "layout"))
	if got := slices.Sorted(maps.Keys(platforms)); !slices.Equal(got, []string{"linux/amd64", "linux/arm64"}) {
		t.Fatalf("platforms %v, want linux/amd64 and linux/arm64", got)
	}
	for platform, want := range map[string]elf.Machine{"linux/amd64": elf.EM_X86_64, "linux/arm64": elf.EM_AARCH64} {
		img := platforms[platform]
		if img.Machine != want || !img.Static {
			t.Errorf("%s: /sandbox-guard is %v (static %v), want a static %v ELF", platform, img.Machine, img.Static, want)
		}
		if img.Files["etc/ssl/certs/ca-certificates.crt"] != 0o644 || img.Files["sandbox-guard"] != 0o755 {
			t.Errorf("%s: layer holds %v", platform, img.Files)
		}
		if !slices.Equal(img.Entrypoint, Entrypoint) {
			t.Errorf("%s: entrypoint %v", platform, img.Entrypoint)
		}
	}

	// Reproducible: the same inputs give the same archive, whatever the order of the flags.
	first, err := os.ReadFile(out)
	must(t, err)
	must(t, build([]string{amd64, arm64}, out, "localhost/sandbox-guard:v1", ca))
	second, err := os.ReadFile(out)
	must(t, err)
	if !bytes.Equal(first, second) {
		t.Error("two builds of the same binaries differ")
	}
}

// One binary gives an index of one platform (the end-to-end tests build it so).
func TestBuildOnePlatform(t *testing.T) {
	dir := t.TempDir()
	must(t, build([]string{staticBinary(t, "arm64")}, filepath.Join(dir, "image.tar"), "localhost/sandbox-guard:v1", ""))
	untar(t, filepath.Join(dir, "image.tar"), filepath.Join(dir, "layout"))
	platforms := Inspect(t, filepath.Join(dir, "layout"))
	if len(platforms) != 1 || platforms["linux/arm64"].Machine != elf.EM_AARCH64 {
		t.Errorf("platforms %+v", platforms)
	}
	if _, ok := platforms["linux/arm64"].Files["etc/ssl/certs/ca-certificates.crt"]; ok {
		t.Error("--ca-bundle \"\" still added a CA bundle")
	}
}

func TestBuildRefuses(t *testing.T) {
	dir := t.TempDir()
	notELF := filepath.Join(dir, "script")
	must(t, os.WriteFile(notELF, []byte("#!/bin/sh\n"), 0o755))
	arm64 := staticBinary(t, "arm64")
	cases := map[string]struct {
		binaries []string
		ref      string
		want     string
	}{
		"no tag":                  {[]string{arm64}, "localhost/sandbox-guard", "name with a tag"},
		"not an ELF file":         {[]string{notELF}, "localhost/sandbox-guard:v1", "not a Linux executable"},
		"no binary":               {nil, "localhost/sandbox-guard:v1", "no --binary"},
		"two of one architecture": {[]string{arm64, arm64}, "localhost/sandbox-guard:v1", "a second binary for linux/arm64"},
	}
	if sh, err := exec.LookPath("sh"); err == nil {
		if target, err := filepath.EvalSymlinks(sh); err == nil {
			cases["dynamically linked"] = struct {
				binaries []string
				ref      string
				want     string
			}{[]string{target}, "localhost/sandbox-guard:v1", "dynamically linked"}
		}
	}
	for name, c := range cases {
		err := build(c.binaries, filepath.Join(dir, "out.tar"), c.ref, "")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error containing %q", name, err, c.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "out.tar")); err == nil {
		t.Error("a refused build wrote an archive")
	}
}

// Platform is what one platform's image of an OCI layout holds.
type Platform struct {
	Entrypoint []string
	Files      map[string]int64 // layer paths and modes
	Machine    elf.Machine      // of /sandbox-guard
	Static     bool
}

// Inspect reads the image index of the OCI layout in dir (the only entry of its index.json) and
// returns each platform's image, "os/arch" -> what it holds; the image's configuration must name
// the index's platform.
func Inspect(t *testing.T, dir string) map[string]Platform {
	t.Helper()
	p, err := layout.FromPath(dir)
	must(t, err)
	top, err := p.ImageIndex()
	must(t, err)
	tm, err := top.IndexManifest()
	must(t, err)
	if len(tm.Manifests) != 1 {
		t.Fatalf("index.json has %d entries", len(tm.Manifests))
	}
	idx, err := top.ImageIndex(tm.Manifests[0].Digest)
	must(t, err)
	im, err := idx.IndexManifest()
	must(t, err)
	out := map[string]Platform{}
	for _, d := range im.Manifests {
		if d.Platform == nil {
			t.Fatalf("manifest %s has no platform", d.Digest)
		}
		key := d.Platform.OS + "/" + d.Platform.Architecture
		img, err := idx.Image(d.Digest)
		must(t, err)
		cf, err := img.ConfigFile()
		must(t, err)
		if cf.OS+"/"+cf.Architecture != key {
			t.Errorf("%s: the image's configuration says %s/%s", key, cf.OS, cf.Architecture)
		}
		layers, err := img.Layers()
		must(t, err)
		if len(layers) != 1 {
			t.Fatalf("%s: %d layers, want 1 on an empty base", key, len(layers))
		}
		rc, err := layers[0].Uncompressed()
		must(t, err)
		pl := Platform{Entrypoint: cf.Config.Entrypoint, Files: map[string]int64{}}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			must(t, err)
			pl.Files[h.Name] = h.Mode
			if h.Name == "sandbox-guard" {
				b, err := io.ReadAll(tr)
				must(t, err)
				f, err := elf.NewFile(bytes.NewReader(b))
				must(t, err)
				pl.Machine, pl.Static = f.Machine, !slices.ContainsFunc(f.Progs, func(p *elf.Prog) bool { return p.Type == elf.PT_INTERP })
			}
		}
		_ = rc.Close()
		out[key] = pl
	}
	return out
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
