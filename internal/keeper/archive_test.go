package keeper_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/sandbox-guard/sandbox-guard/internal/keeper"
	"github.com/sandbox-guard/sandbox-guard/internal/keeper/keepertest"
	"github.com/sandbox-guard/sandbox-guard/internal/testutil"
)

// archiveFile is how a test's archive is laid out: by default what `ctr images export` writes
// for one image (oci-layout, one index.json naming it, its blobs), exported under the name
// AL2023 nodes give their pause image.
type archiveFile struct {
	noLayout  bool // leave out oci-layout
	indexes   int  // index.json written this many times (0: once)
	twoImages bool // index.json names the image twice
	garbage   bool // not a tar at all
}

// writeArchiveFile writes the archive of Image("archived") to dir and returns its path.
func writeArchiveFile(t *testing.T, dir string, a archiveFile) string {
	t.Helper()
	path := filepath.Join(dir, "pause.tar")
	if a.garbage {
		if err := os.WriteFile(path, []byte("this is not a tar archive, it is text long enough to fill a header block"), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	desc, cfg := keepertest.Image("archived")
	var plain bytes.Buffer
	if err := keepertest.WriteArchive(&plain, "localhost/kubernetes/pause:latest", desc, cfg); err != nil {
		t.Fatal(err)
	}
	// Rewrite the plain archive as the case wants it.
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	write := func(name string, data []byte) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o444, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	tr := tar.NewReader(&plain)
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		var b bytes.Buffer
		if _, err := b.ReadFrom(tr); err != nil {
			t.Fatal(err)
		}
		switch h.Name {
		case "oci-layout":
			if a.noLayout {
				continue
			}
		case "index.json":
			if a.twoImages {
				var idx ocispec.Index
				if err := json.Unmarshal(b.Bytes(), &idx); err != nil {
					t.Fatal(err)
				}
				idx.Manifests = append(idx.Manifests, idx.Manifests[0])
				nb, err := json.Marshal(idx)
				if err != nil {
					t.Fatal(err)
				}
				b.Reset()
				b.Write(nb)
			}
			for range max(a.indexes, 1) - 1 {
				write(h.Name, b.Bytes())
			}
		}
		write(h.Name, b.Bytes())
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// An archive fallback (oci-archive:/etc/eks/pause.tar) is imported under the configured name
// like a pulled fallback is tagged: its index must name exactly one image, that image must be
// the pinned digest (archive@digest, or a name@digest target) when one is set, the record gets
// io.cri-containerd.source=<archive path>, CRI's image ID reference and the pin, and no record
// of the name the archive carries appears.
func TestEnsureFromArchive(t *testing.T) {
	archived, archivedCfg := keepertest.Image("archived")
	other := digest.FromString("another image")
	for _, tc := range []struct {
		name    string
		file    archiveFile
		missing bool   // no file at all
		suffix  string // appended to oci-archive:<path>
		target  string // the name to keep; "" = testName
		then    bool   // a reference fallback after the archive
		// What should happen: the archive's image kept (ok), or the error's text for the
		// archive source; imported says whether containerd was asked to import.
		ok       bool
		wantErr  string
		imported bool
	}{
		{name: "the name fails: the archive's image kept under it", ok: true, imported: true},
		{name: "the digest pinned in the configuration", suffix: "@" + archived.Digest.String(), ok: true, imported: true},
		{name: "another digest pinned in the configuration", suffix: "@" + other.String(), wantErr: "holds " + archived.Digest.String() + ", configured " + other.String() + "; not imported"},
		{name: "the name to keep names another digest", target: testRepo + "@" + other.String(), wantErr: "names " + other.String() + "; not imported"},
		{name: "the name to keep names the archive's digest", target: testRepo + "@" + archived.Digest.String(), ok: true, imported: true},
		{name: "index naming two images", file: archiveFile{twoImages: true}, wantErr: "index.json lists 2 images, want 1"},
		{name: "not an OCI layout", file: archiveFile{noLayout: true}, wantErr: "not an OCI image layout (no oci-layout file)"},
		{name: "two index.json files", file: archiveFile{indexes: 2}, wantErr: "the archive holds 2 index.json files, want 1"},
		{name: "not a tar", file: archiveFile{garbage: true}, wantErr: "not a tar archive"},
		{name: "no such file", missing: true, wantErr: "opening the archive: open "},
		{name: "a refused archive, then the next source", file: archiveFile{twoImages: true}, then: true, ok: true, wantErr: "index.json lists 2 images, want 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "pause.tar")
			if !tc.missing {
				path = writeArchiveFile(t, dir, tc.file)
			}
			src := "oci-archive:" + path + tc.suffix
			name := tc.target
			if name == "" {
				name = testName
			}
			f := keepertest.NewFake()
			f.Serve(name, "primary")
			f.FailPull(name, errors.New("403 Forbidden"))
			sources := []string{name, src}
			if tc.then {
				f.Serve(testFallback, "fallback")
				sources = append(sources, testFallback)
			}
			k, _ := newKeeper(f, keeper.Options{Targets: []keeper.Target{{Name: name, Role: "sandbox image", Sources: sources}}})
			log, hook := testutil.CaptureLogger()
			err := k.Ensure(testutil.Context(log), 0)
			st := k.Status()[0]

			if got := f.Count("Import", ""); got != map[bool]int{true: 1}[tc.imported] {
				t.Errorf("%d imports, want imported %v", got, tc.imported)
			}
			if !tc.ok {
				if err == nil {
					t.Fatalf("Ensure succeeded; record %v", f.RecordNames())
				}
				if !strings.Contains(err.Error(), src+": ") || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("error %q, want it to name %q with %q", err, src, tc.wantErr)
				}
				if _, ok := f.Record(name); ok {
					t.Errorf("a refused archive left a record under %s", name)
				}
				return
			}
			if err != nil {
				t.Fatalf("Ensure: %v", err)
			}
			if tc.then {
				if st.Source != testFallback {
					t.Errorf("kept from %q, want the next source %s", st.Source, testFallback)
				}
				if !slices.ContainsFunc(logLines(hook), func(l string) bool {
					return strings.HasPrefix(l, "warning import failed") && strings.Contains(l, tc.wantErr) && strings.Contains(l, "source="+src)
				}) {
					t.Errorf("no warning says why the archive was refused: %q", logLines(hook))
				}
				return
			}
			want := with(pinned(), keeper.LabelSource, path)
			if imp := f.CallsOf("Import")[0]; imp.Name != name || !maps.Equal(imp.Labels, want) {
				t.Errorf("Import(%s, %v), want (%s, %v)", imp.Name, imp.Labels, name, want)
			}
			rec, ok := f.Record(name)
			if !ok || rec.Target.Digest != archived.Digest || !maps.Equal(rec.Labels, want) {
				t.Errorf("record %s = %+v (%v), want %s with %v", name, rec, ok, archived.Digest, want)
			}
			if n := f.Count("Unpack", name); n != 1 {
				t.Errorf("%d unpacks of %s, want 1", n, name)
			}
			if complete, unpacked, cfg, err := f.Usable(context.Background(), name); err != nil || !complete || !unpacked || cfg != archivedCfg {
				t.Errorf("Usable(%s) = %v %v %q %v", name, complete, unpacked, cfg, err)
			}
			if r, ok := f.Record(archivedCfg); !ok || r.Target.Digest != archived.Digest || r.Labels[keeper.LabelPinned] != "pinned" {
				t.Errorf("image ID record %s = %+v (%v)", archivedCfg, r, ok)
			}
			names := f.RecordNames()
			if slices.Contains(names, "localhost/kubernetes/pause:latest") {
				t.Errorf("a record under the archive's own name appeared: %v", names)
			}
			for _, n := range names {
				if n != name && strings.Contains(n, "@") {
					t.Errorf("record %s claims the archive's image exists in a repository", n)
				}
			}
			if !st.Present || !st.Pinned || st.Source != path || st.Repairs != 1 {
				t.Errorf("status %+v, want present and pinned from %s", st, path)
			}

			// The next ensure finds it present, from the archive, and changes nothing.
			f.ResetCalls()
			if err := k.Ensure(context.Background(), 0); err != nil {
				t.Fatalf("second Ensure: %v", err)
			}
			if m := mutations(f); len(m) != 0 {
				t.Errorf("second Ensure changed something: %+v", m)
			}
			if st := k.Status()[0]; st.Source != path {
				t.Errorf("status source after the second Ensure %q, want %s", st.Source, path)
			}
		})
	}
}

// The fake's Import keeps the name it is given whatever the archive calls the image, as the
// containerd adapter does (the conformance suite holds both to it); an index naming two images
// stores nothing.
func TestFakeImportNamesAndRefuses(t *testing.T) {
	desc, cfg := keepertest.Image("archived")
	var one bytes.Buffer
	if err := keepertest.WriteArchive(&one, "localhost/kubernetes/pause:latest", desc, cfg); err != nil {
		t.Fatal(err)
	}
	f := keepertest.NewFake()
	img, err := f.Import(context.Background(), bytes.NewReader(one.Bytes()), testName, pinned())
	if err != nil || img.Name != testName || img.Target.Digest != desc.Digest {
		t.Fatalf("Import = %+v, %v", img, err)
	}
	if names := f.RecordNames(); !slices.Equal(names, []string{testName}) {
		t.Errorf("records %v, want only %s", names, testName)
	}

	index, err := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, Manifests: []ocispec.Descriptor{desc, desc}})
	if err != nil {
		t.Fatal(err)
	}
	var two bytes.Buffer
	tw := tar.NewWriter(&two)
	if err := tw.WriteHeader(&tar.Header{Name: "index.json", Mode: 0o444, Size: int64(len(index)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(index); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	g := keepertest.NewFake()
	if img, err := g.Import(context.Background(), &two, testName, pinned()); err == nil {
		t.Errorf("Import of an index naming two images = %+v, want an error", img)
	}
	if names := g.RecordNames(); len(names) != 0 {
		t.Errorf("records %v after a refused import", names)
	}
}
