package keeper_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/sandbox-guard/sandbox-guard/internal/keeper"
	"github.com/sandbox-guard/sandbox-guard/internal/keeper/keepertest"
	"github.com/sandbox-guard/sandbox-guard/internal/testutil"
)

// copyFiles returns the archive and record LocalCopies keeps for the only image saved in dir,
// and fails if anything else (a temporary file) is there.
func copyFiles(t *testing.T, dir string) (archive, record string) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "images"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		p := filepath.Join(dir, "images", e.Name())
		switch {
		case strings.HasSuffix(e.Name(), ".tar") && archive == "":
			archive = p
		case strings.HasSuffix(e.Name(), ".json") && record == "":
			record = p
		default:
			t.Errorf("unexpected file %s", p)
		}
	}
	if archive == "" || record == "" {
		t.Fatalf("archive %q, record %q in %v", archive, record, entries)
	}
	return archive, record
}

// presentImage stores name -> seed's image, complete and unpacked, with labels.
func presentImage(f *keepertest.Fake, name, seed string, labels map[string]string) {
	desc, cfg := keepertest.Image(seed)
	f.SetRecord(name, desc, labels)
	f.SetContent(desc.Digest, keepertest.Content{Complete: true, Unpacked: true, Config: cfg})
}

func TestLocalCopySaveOncePerDigest(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	lc := &keeper.LocalCopies{Dir: dir, Now: newClock().Now}
	f := keepertest.NewFake()
	presentImage(f, testName, "v1", pinned())
	v1, _ := keepertest.Image("v1")

	steps := []struct {
		name      string
		seed      string // the image under testName when saving
		wantSaved bool
		exports   int // total Export calls after the step
	}{
		{name: "first save", seed: "v1", wantSaved: true, exports: 1},
		{name: "same digest again", seed: "v1", wantSaved: false, exports: 1},
		{name: "new digest", seed: "v2", wantSaved: true, exports: 2},
		{name: "new digest again", seed: "v2", wantSaved: false, exports: 2},
		{name: "back to the first digest", seed: "v1", wantSaved: true, exports: 3},
	}
	for _, s := range steps {
		presentImage(f, testName, s.seed, pinned())
		desc, _ := keepertest.Image(s.seed)
		saved, err := lc.Save(ctx, f, testName, desc, "")
		if err != nil {
			t.Fatalf("%s: Save: %v", s.name, err)
		}
		if saved != s.wantSaved {
			t.Errorf("%s: saved = %v, want %v", s.name, saved, s.wantSaved)
		}
		if n := f.Count("Export", testName); n != s.exports {
			t.Errorf("%s: %d exports, want %d", s.name, n, s.exports)
		}
		copyFiles(t, dir) // exactly one archive and one record, no temporary files
	}

	// A missing archive is written again even though the record still names the digest.
	archive, _ := copyFiles(t, dir)
	if err := os.Remove(archive); err != nil {
		t.Fatal(err)
	}
	if saved, err := lc.Save(ctx, f, testName, v1, ""); err != nil || !saved {
		t.Errorf("Save after the archive vanished: %v %v", saved, err)
	}
}

// The keeper saves a copy on every ensure of a present image; a copy whose archive no longer
// matches its record is useless for Restore and has to be written again.
func TestLocalCopySaveReplacesDamagedArchive(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	lc := &keeper.LocalCopies{Dir: dir}
	f := keepertest.NewFake()
	presentImage(f, testName, "v1", pinned())
	v1, _ := keepertest.Image("v1")
	if saved, err := lc.Save(ctx, f, testName, v1, ""); err != nil || !saved {
		t.Fatalf("Save: %v %v", saved, err)
	}
	archive, _ := copyFiles(t, dir)
	b, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/3] ^= 0x20
	if err := os.WriteFile(archive, b, 0o600); err != nil {
		t.Fatal(err)
	}
	saved, err := lc.Save(ctx, f, testName, v1, "")
	if err != nil {
		t.Fatalf("Save: %v", err)
	}
	if !saved {
		_, rerr := lc.Restore(ctx, f, testName, pinned())
		t.Fatalf("regression: localcopy.go:63-68 (Save) skips the export when the record names the same digest and the "+
			"archive exists, without checking the archive against the recorded sha256; a damaged copy is never "+
			"replaced while the image stays present, and Restore fails when it is needed: %v", rerr)
	}
	f.Remove(testName, true)
	if _, err := lc.Restore(ctx, f, testName, pinned()); err != nil {
		t.Errorf("Restore after the copy was saved again: %v", err)
	}
}

func TestLocalCopyRestore(t *testing.T) {
	ctx := context.Background()
	v1, v1cfg := keepertest.Image("v1")
	tests := []struct {
		name       string
		source     string
		prepare    func(t *testing.T, dir string, f *keepertest.Fake) // after Save, before Restore
		wantErr    string                                             // substring; "" = success
		wantNoCopy bool
		wantImport bool
	}{
		{name: "round trip", wantImport: true},
		{name: "round trip of a fallback image keeps its source", source: testFallback, wantImport: true},
		{
			name: "flipped byte",
			prepare: func(t *testing.T, dir string, _ *keepertest.Fake) {
				archive, _ := copyFiles(t, dir)
				b, err := os.ReadFile(archive)
				if err != nil {
					t.Fatal(err)
				}
				b[len(b)/2] ^= 0x01
				if err := os.WriteFile(archive, b, 0o600); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: "is corrupted",
		},
		{
			name: "truncated archive",
			prepare: func(t *testing.T, dir string, _ *keepertest.Fake) {
				archive, _ := copyFiles(t, dir)
				if err := os.Truncate(archive, 10); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: "is corrupted",
		},
		{
			name: "archive missing",
			prepare: func(t *testing.T, dir string, _ *keepertest.Fake) {
				archive, _ := copyFiles(t, dir)
				if err := os.Remove(archive); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: "reading local copy",
		},
		{
			name: "record missing",
			prepare: func(t *testing.T, dir string, _ *keepertest.Fake) {
				_, record := copyFiles(t, dir)
				if err := os.Remove(record); err != nil {
					t.Fatal(err)
				}
			},
			wantNoCopy: true,
		},
		{
			name: "record garbled",
			prepare: func(t *testing.T, dir string, _ *keepertest.Fake) {
				_, record := copyFiles(t, dir)
				if err := os.WriteFile(record, []byte("{not json"), 0o600); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: "local copy record",
		},
		{
			name: "record of another image",
			prepare: func(t *testing.T, dir string, _ *keepertest.Fake) {
				_, record := copyFiles(t, dir)
				b, err := os.ReadFile(record)
				if err != nil {
					t.Fatal(err)
				}
				b = []byte(strings.Replace(string(b), testName, "example.test/other:1", 1))
				if err := os.WriteFile(record, b, 0o600); err != nil {
					t.Fatal(err)
				}
			},
			wantErr: "is for example.test/other:1",
		},
		{
			name: "import fails",
			prepare: func(_ *testing.T, _ string, f *keepertest.Fake) {
				f.Fail("Import", errors.New("content store full"))
			},
			wantErr: "content store full", wantImport: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			lc := &keeper.LocalCopies{Dir: dir}
			f := keepertest.NewFake()
			presentImage(f, testName, "v1", pinned())
			if saved, err := lc.Save(ctx, f, testName, v1, tt.source); err != nil || !saved {
				t.Fatalf("Save: %v %v", saved, err)
			}
			// containerd lost the image and its content.
			f.Remove(testName, true)
			if tt.prepare != nil {
				tt.prepare(t, dir, f)
			}
			f.ResetCalls()

			labels := with(pinned(), "team", "infra")
			img, err := lc.Restore(ctx, f, testName, labels)
			if got := f.Count("Import", ""); got != map[bool]int{true: 1}[tt.wantImport] {
				t.Errorf("%d imports, want import %v", got, tt.wantImport)
			}
			switch {
			case tt.wantNoCopy:
				if !errors.Is(err, keeper.ErrNoCopy) {
					t.Fatalf("Restore: %v, want ErrNoCopy", err)
				}
				return
			case tt.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Restore: %v, want an error containing %q", err, tt.wantErr)
				}
				if errors.Is(err, keeper.ErrNoCopy) {
					t.Errorf("a broken copy reported as no copy: %v", err)
				}
				if !tt.wantImport {
					if _, ok := f.Record(testName); ok {
						t.Errorf("a refused copy left a record")
					}
				}
				return
			case err != nil:
				t.Fatalf("Restore: %v", err)
			}
			if img.Target.Digest != v1.Digest {
				t.Errorf("restored %s, want %s", img.Target.Digest, v1.Digest)
			}
			wantLabels := labels
			if tt.source != "" {
				wantLabels = with(labels, keeper.LabelSource, tt.source)
			}
			if imp := f.CallsOf("Import")[0]; imp.Name != testName || !reflect.DeepEqual(imp.Labels, wantLabels) {
				t.Errorf("Import(%s, %v), want (%s, %v)", imp.Name, imp.Labels, testName, wantLabels)
			}
			if n := f.Count("Unpack", testName); n != 1 {
				t.Errorf("%d unpacks after import, want 1", n)
			}
			complete, unpacked, cfg, err := f.Usable(ctx, testName)
			if err != nil || !complete || !unpacked || cfg != v1cfg {
				t.Errorf("restored image usable: %v %v %q %v", complete, unpacked, cfg, err)
			}
		})
	}
}

func TestLocalCopyRestoreNothingSaved(t *testing.T) {
	lc := &keeper.LocalCopies{Dir: t.TempDir()}
	f := keepertest.NewFake()
	_, err := lc.Restore(context.Background(), f, testName, pinned())
	if !errors.Is(err, keeper.ErrNoCopy) {
		t.Fatalf("Restore: %v, want ErrNoCopy", err)
	}
	if n := f.Count("Import", ""); n != 0 {
		t.Errorf("%d imports", n)
	}
}

// mismatchedCopy saves the image under testName (seed "v2") and then makes the copy's record
// name v1 while the archive, intact and matching its checksum, holds v2. In practice Save writes
// such a pair when the image under the name changes between the keeper's Get and the Export
// (Save records the caller's descriptor, and exports whatever the name points to then).
func mismatchedCopy(t *testing.T, f *keepertest.Fake, lc *keeper.LocalCopies) (v1 ocispec.Descriptor) {
	t.Helper()
	v1, _ = keepertest.Image("v1")
	v2, _ := keepertest.Image("v2")
	presentImage(f, testName, "v2", pinned())
	if saved, err := lc.Save(context.Background(), f, testName, v2, ""); err != nil || !saved {
		t.Fatalf("Save: %v %v", saved, err)
	}
	_, record := copyFiles(t, lc.Dir)
	b, err := os.ReadFile(record)
	if err != nil {
		t.Fatal(err)
	}
	var rec map[string]any
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	if rec["target"] != v2.Digest.String() {
		t.Fatalf("record %s does not name the target under \"target\": %s", record, b)
	}
	rec["target"] = v1.Digest.String()
	if b, err = json.Marshal(rec); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(record, b, 0o600); err != nil {
		t.Fatal(err)
	}
	f.Remove(testName, true)
	return v1
}

func TestLocalCopyRestoreTargetMismatch(t *testing.T) {
	ctx := context.Background()
	lc := &keeper.LocalCopies{Dir: t.TempDir()}
	f := keepertest.NewFake()
	v1 := mismatchedCopy(t, f, lc)
	_, err := lc.Restore(ctx, f, testName, pinned())
	if err == nil || !strings.Contains(err.Error(), v1.Digest.String()) {
		t.Fatalf("Restore: %v, want a target mismatch error naming the recorded %s", err, v1.Digest)
	}
	if n := f.Count("Unpack", ""); n != 0 {
		t.Errorf("%d unpacks of a refused copy", n)
	}
}

func TestKeeperDoesNotUseRefusedCopy(t *testing.T) {
	// Every source fails and the copy is refused; neither that ensure nor the next may leave
	// the refused image as the present one.
	ctx := context.Background()
	f := keepertest.NewFake()
	lc := &keeper.LocalCopies{Dir: t.TempDir()}
	mismatchedCopy(t, f, lc)
	f.Serve(testName, "v3")
	f.FailPull(testName, errors.New("403 Forbidden"))
	k, _ := newKeeper(f, keeper.Options{Targets: []keeper.Target{sandboxTarget()}, LocalCopies: lc})
	if err := k.Ensure(ctx, 0); err == nil || !strings.Contains(err.Error(), "local copy") {
		t.Fatalf("first Ensure: %v, want the refused copy in the error", err)
	}
	rec, left := f.Record(testName)
	err := k.Ensure(ctx, 0)
	if st := k.Status()[0]; left && err == nil && st.Present {
		t.Fatalf("regression: localcopy.go:140-146 (Restore) imports the archive under the image's name before comparing "+
			"its target with the record; the copy reported as \"not used\" stays as the record %s -> %s with the pinned "+
			"labels, and the next ensure (keeper.go:183-206) unpacks it and reports it present (source %q)",
			testName, rec.Target.Digest, st.Source)
	}
	if left {
		t.Errorf("refused copy left the record %s -> %s", testName, rec.Target.Digest)
	}
	if err == nil {
		t.Errorf("second Ensure succeeded with every source failing and the copy refused")
	}
}

func TestLocalCopySaveExportFails(t *testing.T) {
	dir := t.TempDir()
	lc := &keeper.LocalCopies{Dir: dir}
	f := keepertest.NewFake()
	presentImage(f, testName, "v1", pinned())
	f.Fail("Export", errors.New("exporting: content missing"))
	v1, _ := keepertest.Image("v1")
	saved, err := lc.Save(context.Background(), f, testName, v1, "")
	if err == nil || saved || !strings.Contains(err.Error(), "local copy of "+testName) {
		t.Fatalf("Save: %v %v", saved, err)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "images"))
	if len(entries) != 0 {
		t.Errorf("files left behind: %v", entries)
	}
	if _, err := lc.Restore(context.Background(), f, testName, pinned()); !errors.Is(err, keeper.ErrNoCopy) {
		t.Errorf("Restore after a failed Save: %v", err)
	}
}

func TestKeeperUsesLocalCopyOnlyWhenEverySourceFails(t *testing.T) {
	tests := []struct {
		name        string
		sourcesFail bool
		wantImport  bool
		wantSource  string
	}{
		{name: "sources work", sourcesFail: false, wantImport: false, wantSource: testName},
		{name: "every source fails", sourcesFail: true, wantImport: true, wantSource: "local copy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := keepertest.NewFake()
			desc, cfg := f.Serve(testName, "v1")
			f.Serve(testFallback, "fallback")
			log, hook := testutil.CaptureLogger()
			k, _ := newKeeper(f, keeper.Options{
				Targets:     []keeper.Target{sandboxTarget(testName, testFallback)},
				LocalCopies: &keeper.LocalCopies{Dir: t.TempDir()},
			})
			ctx := testutil.Context(log)
			if err := k.Ensure(ctx, 0); err != nil {
				t.Fatalf("first Ensure: %v", err)
			}
			if n := f.Count("Export", testName); n != 1 {
				t.Fatalf("%d exports after the first pull, want 1", n)
			}
			// An ensure of the present image does not save it again.
			if err := k.Ensure(ctx, 0); err != nil {
				t.Fatal(err)
			}
			if n := f.Count("Export", testName); n != 1 {
				t.Errorf("%d exports after a second ensure, want 1", n)
			}

			// The image and its references go, content and all.
			for _, n := range f.RecordNames() {
				f.Remove(n, true)
			}
			if tt.sourcesFail {
				f.FailPull(testName, errors.New("dial tcp: i/o timeout"))
				f.FailPull(testFallback, errors.New("dial tcp: i/o timeout"))
			}
			f.ResetCalls()
			if err := k.Ensure(ctx, 0); err != nil {
				t.Fatalf("Ensure: %v", err)
			}
			if n := f.Count("Pull", ""); tt.sourcesFail && n != 2 || !tt.sourcesFail && n != 1 {
				t.Errorf("%d pulls", n)
			}
			if got := f.Count("Import", testName); got != map[bool]int{true: 1}[tt.wantImport] {
				t.Errorf("%d imports", got)
			}
			rec, ok := f.Record(testName)
			if !ok || rec.Target.Digest != desc.Digest || rec.Labels[keeper.LabelPinned] != "pinned" || rec.Labels[keeper.LabelManaged] != "managed" {
				t.Fatalf("record %+v %v", rec, ok)
			}
			for _, n := range []string{cfg, testRepo + "@" + desc.Digest.String()} {
				if r, ok := f.Record(n); !ok || r.Labels[keeper.LabelPinned] != "pinned" {
					t.Errorf("reference %s not restored: %+v", n, r)
				}
			}
			complete, unpacked, _, _ := f.Usable(ctx, testName)
			if !complete || !unpacked {
				t.Errorf("complete %v unpacked %v", complete, unpacked)
			}
			st := k.Status()[0]
			if !st.Present || !st.Pinned || st.Source != tt.wantSource || st.Repairs != 2 || st.LastError != "" {
				t.Errorf("status %+v", st)
			}
			if tt.sourcesFail {
				found := false
				for _, l := range logLines(hook) {
					if strings.Contains(l, "restored from the local copy") && strings.Contains(l, "i/o timeout") {
						found = true
					}
				}
				if !found {
					t.Errorf("no warning about the restore in %v", logLines(hook))
				}
			}
		})
	}
}

func TestKeeperRestoresFallbackCopyWithoutDigestReference(t *testing.T) {
	ctx := context.Background()
	f := keepertest.NewFake()
	f.Serve(testName, "v1")
	f.FailPull(testName, errors.New("403 Forbidden"))
	fdesc, _ := f.Serve(testFallback, "fallback")
	k, _ := newKeeper(f, keeper.Options{
		Targets:     []keeper.Target{sandboxTarget(testName, testFallback)},
		LocalCopies: &keeper.LocalCopies{Dir: t.TempDir()},
	})
	if err := k.Ensure(ctx, 0); err != nil {
		t.Fatal(err)
	}
	for _, n := range f.RecordNames() {
		f.Remove(n, true)
	}
	f.FailPull(testFallback, errors.New("429 Too Many Requests"))
	if err := k.Ensure(ctx, 0); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	rec, _ := f.Record(testName)
	if rec.Target.Digest != fdesc.Digest || rec.Labels[keeper.LabelSource] != testFallback {
		t.Errorf("restored record %+v", rec)
	}
	for _, n := range f.RecordNames() {
		if strings.HasPrefix(n, testRepo+"@") {
			t.Errorf("record %s created for a fallback image", n)
		}
	}
}

func TestKeeperLocalCopyCorruptedReportsEverything(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	f := keepertest.NewFake()
	f.Serve(testName, "v1")
	k, _ := newKeeper(f, keeper.Options{Targets: []keeper.Target{sandboxTarget()}, LocalCopies: &keeper.LocalCopies{Dir: dir}})
	if err := k.Ensure(ctx, 0); err != nil {
		t.Fatal(err)
	}
	archive, _ := copyFiles(t, dir)
	b, _ := os.ReadFile(archive)
	b[0] ^= 0xff
	if err := os.WriteFile(archive, b, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, n := range f.RecordNames() {
		f.Remove(n, true)
	}
	f.FailPull(testName, errors.New("403 Forbidden"))
	err := k.Ensure(ctx, 0)
	if err == nil {
		t.Fatal("Ensure succeeded from a corrupted copy")
	}
	if msg := err.Error(); !strings.Contains(msg, testName+": 403 Forbidden; local copy: local copy ") || !strings.Contains(msg, "is corrupted") || strings.Contains(msg, "\n") {
		t.Errorf("error %q", msg)
	}
	if n := f.Count("Import", ""); n != 0 {
		t.Errorf("%d imports of a corrupted copy", n)
	}
}
