package keeper_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/sandbox-guard/sandbox-guard/internal/keeper"
	"github.com/sandbox-guard/sandbox-guard/internal/keeper/keepertest"
	"github.com/sandbox-guard/sandbox-guard/internal/testutil"
)

// What is imported is what was verified. Here the archive's path yields the saved archive to
// the first two readers and another image's archive to every later one, as a swap between
// opens would: a FIFO the test serves, one reader at a time. Restore reads one open file, so
// the other image never reaches the import (the FIFO itself is refused: not a regular file).
func TestLocalCopyRestoreImportsWhatItVerified(t *testing.T) {
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
	genuine, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	v2, cfg2 := keepertest.Image("v2")
	var other bytes.Buffer
	if err := keepertest.WriteArchive(&other, testName, v2, cfg2); err != nil {
		t.Fatal(err)
	}
	// Each reader gets a FIFO of its own: the next one is put in place before the current
	// one's writer closes, so a reader still draining never sees the next reader's bytes.
	install := func() error {
		next := archive + ".next"
		if err := syscall.Mkfifo(next, 0o600); err != nil {
			return err
		}
		return os.Rename(next, archive)
	}
	if err := install(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	stop := false
	served := make(chan struct{})
	go func() {
		defer close(served)
		for i := 0; ; i++ {
			w, err := os.OpenFile(archive, os.O_WRONLY, 0) // waits for the next reader
			if err != nil {
				t.Errorf("serving the archive: %v", err)
				return
			}
			mu.Lock()
			done := stop
			mu.Unlock()
			if !done {
				content := genuine
				if i >= 2 {
					content = other.Bytes()
				}
				_, _ = w.Write(content) // a reader that stops early is the keeper's business
				if err := install(); err != nil {
					t.Errorf("serving the archive: %v", err)
					done = true
				}
			}
			_ = w.Close()
			if done {
				return
			}
		}
	}()
	t.Cleanup(func() {
		mu.Lock()
		stop = true
		mu.Unlock()
		// Let the server's pending open through, then wait for it to end.
		if r, err := os.OpenFile(archive, os.O_RDONLY|syscall.O_NONBLOCK, 0); err == nil {
			<-served
			_ = r.Close()
		}
	})

	f.Remove(testName, true)
	_, restoreErr := lc.Restore(ctx, f, testName, pinned())
	if rec, ok := f.Record(testName); ok && rec.Target.Digest == v2.Digest {
		t.Fatalf("imported an image it had not verified (%s, Restore: %v)", v2.Digest, restoreErr)
	}
	if restoreErr == nil || !strings.Contains(restoreErr.Error(), "not a regular file") {
		t.Errorf("Restore = %v, want the FIFO refused", restoreErr)
	}
}

// The state directory, or its images directory, being a symbolic link is refused for saving
// and restoring: nothing is written where the link points, and the error names the link.
func TestLocalCopyRefusesSymbolicLinks(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, state, outside string)
	}{
		{name: "state directory", setup: func(t *testing.T, state, outside string) {
			if err := os.Symlink(outside, state); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "images directory", setup: func(t *testing.T, state, outside string) {
			if err := os.MkdirAll(state, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(outside, filepath.Join(state, "images")); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			state, outside := filepath.Join(t.TempDir(), "state"), t.TempDir()
			tc.setup(t, state, outside)
			lc := &keeper.LocalCopies{Dir: state}
			f := keepertest.NewFake()
			presentImage(f, testName, "v1", pinned())
			v1, _ := keepertest.Image("v1")
			saved, err := lc.Save(ctx, f, testName, v1, "")
			if err == nil || saved || !strings.Contains(err.Error(), "symbolic link") || !strings.Contains(err.Error(), state) {
				t.Fatalf("Save = %v, %v; want a refusal naming the link", saved, err)
			}
			if entries, _ := os.ReadDir(outside); len(entries) != 0 {
				t.Fatalf("written where the link points: %v", entries)
			}
			// A copy planted where the link points is not restored either.
			real := &keeper.LocalCopies{Dir: filepath.Join(t.TempDir(), "real")}
			if _, err := real.Save(ctx, f, testName, v1, ""); err != nil {
				t.Fatal(err)
			}
			planted := outside // where <state>/images leads
			if tc.name == "state directory" {
				planted = filepath.Join(outside, "images")
			}
			_ = os.Remove(planted) // empty; os.Rename does not replace a directory
			if err := os.Rename(filepath.Join(real.Dir, "images"), planted); err != nil {
				t.Fatal(err)
			}
			f.Remove(testName, true)
			if _, err := lc.Restore(ctx, f, testName, pinned()); err == nil || errors.Is(err, keeper.ErrNoCopy) || !strings.Contains(err.Error(), "symbolic link") {
				t.Errorf("Restore = %v, want a refusal naming the link", err)
			}
			if f.Count("Import", testName) != 0 {
				t.Error("imported through the link")
			}
		})
	}
}

// A local copy that cannot be kept (here: the state directory is a link; a full or read-only
// one fails the same way) does not fail the ensure: the image is present, the status says why
// there is no fresh copy, and the log says it once, not at every ensure, and says when it clears.
func TestKeeperReportsALocalCopyItCannotKeep(t *testing.T) {
	base, outside := t.TempDir(), t.TempDir()
	state := filepath.Join(base, "state")
	if err := os.Symlink(outside, state); err != nil {
		t.Fatal(err)
	}
	f := keepertest.NewFake()
	f.Serve(testName, "v1")
	log, hook := testutil.CaptureLogger()
	ctx := testutil.Context(log)
	k, _ := newKeeper(f, keeper.Options{Targets: []keeper.Target{sandboxTarget()}, LocalCopies: &keeper.LocalCopies{Dir: state}})
	for range 3 {
		if err := k.Ensure(ctx, 0); err != nil {
			t.Fatal(err)
		}
	}
	st := k.Status()[0]
	if !st.Present || !strings.Contains(st.CopyError, "symbolic link") || !strings.Contains(st.CopyError, state) {
		t.Fatalf("status %+v: want present, with why the copy is not kept", st)
	}
	count := func(msg string) (n int) {
		for _, e := range hook.AllEntries() {
			if strings.HasPrefix(e.Message, msg) {
				n++
			}
		}
		return n
	}
	if n := count("cannot keep a local copy"); n != 1 {
		t.Errorf("logged %d times for 3 ensures, want once", n)
	}

	if err := os.Remove(state); err != nil {
		t.Fatal(err)
	}
	if err := k.Ensure(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if st := k.Status()[0]; st.CopyError != "" || count("local copy saved") != 1 {
		t.Errorf("status %+v after the state directory is fixed: want the copy saved and no error", st)
	}
}

// check's look at the local copy (without writing): none saved, the present image's, an older
// image's, a damaged one.
func TestLocalCopyCheck(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	lc := &keeper.LocalCopies{Dir: dir}
	f := keepertest.NewFake()
	presentImage(f, testName, "v1", pinned())
	v1, _ := keepertest.Image("v1")
	v2, _ := keepertest.Image("v2")
	if err := lc.Check(testName, v1); !errors.Is(err, keeper.ErrNoCopy) {
		t.Errorf("Check before any save = %v, want ErrNoCopy", err)
	}
	if _, err := lc.Save(ctx, f, testName, v1, ""); err != nil {
		t.Fatal(err)
	}
	if err := lc.Check(testName, v1); err != nil {
		t.Errorf("Check of the saved image = %v", err)
	}
	if err := lc.Check(testName, v2); err == nil || !strings.Contains(err.Error(), "not the present") {
		t.Errorf("Check of another image = %v", err)
	}
	archive, _ := copyFiles(t, dir)
	if err := os.WriteFile(archive, []byte("damaged"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := lc.Check(testName, v1); err == nil || !strings.Contains(err.Error(), "corrupted") {
		t.Errorf("Check of a damaged copy = %v", err)
	}
}
