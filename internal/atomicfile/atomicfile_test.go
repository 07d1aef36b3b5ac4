package atomicfile

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestWriteFrom(t *testing.T) {
	type existing struct {
		data string
		perm fs.FileMode
	}
	writes := func(s string) func(io.Writer) error {
		return func(w io.Writer) error {
			_, err := io.WriteString(w, s)
			return err
		}
	}
	long := strings.Repeat("x", 255) // NAME_MAX: the temporary directory's name must still fit
	for _, tc := range []struct {
		name                   string
		rel                    string // target, relative to the test's directory
		existing               *existing
		unwritableDir, nonRoot bool
		perm                   fs.FileMode
		write                  func(io.Writer) error
		wantErr                string // substring; "" for success
		want                   *existing
	}{
		{name: "new file", rel: "f", perm: 0o644, write: writes("new"), want: &existing{"new", 0o644}},
		{name: "replace, perm narrowed", rel: "f", existing: &existing{"old", 0o644}, perm: 0o600, write: writes("new"), want: &existing{"new", 0o600}},
		{name: "replace, perm widened past the umask", rel: "f", existing: &existing{"old", 0o600}, perm: 0o777, write: writes("new"), want: &existing{"new", 0o777}},
		{name: "empty", rel: "f", existing: &existing{"old", 0o600}, perm: 0o600, write: writes(""), want: &existing{"", 0o600}},
		{name: "long name", rel: long, perm: 0o600, write: writes("new"), want: &existing{"new", 0o600}},
		{name: "failing writer keeps the old file", rel: "f", existing: &existing{"old", 0o644}, perm: 0o600,
			write: func(w io.Writer) error {
				_, _ = io.WriteString(w, "half")
				return errors.New("export broke")
			},
			wantErr: "export broke", want: &existing{"old", 0o644}},
		{name: "failing writer, no old file", rel: "f", perm: 0o600,
			write:   func(io.Writer) error { return errors.New("export broke") },
			wantErr: "export broke"},
		{name: "missing directory", rel: "nodir/f", perm: 0o600, write: writes("new"), wantErr: "creating the temporary directory"},
		{name: "directory not writable", rel: "f", existing: &existing{"old", 0o644}, unwritableDir: true, nonRoot: true, perm: 0o600, write: writes("new"),
			wantErr: "permission denied", want: &existing{"old", 0o644}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.nonRoot && os.Geteuid() == 0 {
				t.Skip("root writes into any directory")
			}
			dir := t.TempDir()
			path := filepath.Join(dir, tc.rel)
			if tc.existing != nil {
				if err := os.WriteFile(path, []byte(tc.existing.data), 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(path, tc.existing.perm); err != nil {
					t.Fatal(err)
				}
			}
			before := names(t, dir)
			if tc.unwritableDir {
				if err := os.Chmod(dir, 0o500); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = os.Chmod(dir, 0o700) })
			}

			err := WriteFrom(path, tc.perm, func(w io.Writer) error {
				checkTemp(t, dir, filepath.Base(path), tc.perm)
				return tc.write(w)
			})

			if tc.wantErr == "" && err != nil {
				t.Fatalf("WriteFrom: %v", err)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), path) {
					t.Fatalf("WriteFrom error %v, want one naming %s and saying %q", err, path, tc.wantErr)
				}
			}
			if tc.want != nil {
				checkFile(t, path, tc.want.data, tc.want.perm)
			} else if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s exists (%v), want nothing", path, err)
			}
			after := names(t, dir)
			if tc.wantErr == "" && !slices.Contains(before, tc.rel) {
				before = append(before, tc.rel)
				slices.Sort(before)
			}
			if !slices.Equal(after, before) {
				t.Errorf("directory holds %v, want %v", after, before)
			}
		})
	}
}

func TestWrite(t *testing.T) {
	path := filepath.Join(t.TempDir(), "hosts.toml")
	for _, data := range []string{"one", "two"} {
		if err := Write(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		checkFile(t, path, data, 0o600)
	}
}

// Two files replaced in a chosen order, each visible only at its Commit (the keeper writes an
// archive and then its record).
func TestFileCommitAndDiscard(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	fa, err := Create(a, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer fa.Discard()
	fb, err := Create(b, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer fb.Discard()
	if _, err := io.WriteString(fa, "A"); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(fb, "B"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(a); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("%s visible before Commit", a)
	}
	if err := fa.Commit(); err != nil {
		t.Fatal(err)
	}
	checkFile(t, a, "A", 0o600)
	if err := fa.Commit(); err == nil {
		t.Error("second Commit succeeded")
	}
	fa.Discard() // no effect after Commit
	checkFile(t, a, "A", 0o600)
	fb.Discard()
	if err := fb.Commit(); err == nil {
		t.Error("Commit after Discard succeeded")
	}
	if got := names(t, dir); !slices.Equal(got, []string{"a"}) {
		t.Errorf("directory holds %v, want [a]", got)
	}
}

// checkTemp asserts that the one temporary file for base is private and never wider than perm.
func checkTemp(t *testing.T, dir, base string, perm fs.FileMode) {
	t.Helper()
	tmpDirs, err := filepath.Glob(filepath.Join(dir, "."+base[:min(len(base), 200)]+".tmp-*"))
	if err != nil || len(tmpDirs) != 1 {
		t.Fatalf("temporary directories %v (%v), want one", tmpDirs, err)
	}
	st, err := os.Stat(tmpDirs[0])
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("temporary directory %v (%v), want mode 0700", st, err)
	}
	st, err = os.Stat(filepath.Join(tmpDirs[0], base))
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Mode().Perm(); got != perm {
		t.Errorf("temporary file mode %v, want %v", got, perm)
	}
}

func checkFile(t *testing.T, path, data string, perm fs.FileMode) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != data {
		t.Errorf("%s holds %q, want %q", path, b, data)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != perm {
		t.Errorf("%s mode %v, want %v", path, st.Mode().Perm(), perm)
	}
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// A crash between creating the temporary directory and the rename leaves it behind; it can hold
// a secret, so it is removed on request, and nothing else is.
func TestRemoveLeftovers(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "hosts.toml")
	leftover := filepath.Join(dir, ".hosts.toml.tmp-123")
	if err := os.MkdirAll(leftover, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(leftover, "hosts.toml"), []byte("Authorization = [\"Basic secret\"]"), 0o600); err != nil {
		t.Fatal(err)
	}
	keep := []string{"hosts.toml", ".other.toml.tmp-1", "notes"}
	for _, k := range keep {
		if err := os.WriteFile(filepath.Join(dir, k), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := RemoveLeftovers(path); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) != len(keep) || slices.Contains(names, ".hosts.toml.tmp-123") {
		t.Errorf("left %v, want exactly %v", names, keep)
	}
	if err := RemoveLeftovers(filepath.Join(dir, "absent", "hosts.toml")); err != nil {
		t.Errorf("a missing directory: %v", err)
	}
}
