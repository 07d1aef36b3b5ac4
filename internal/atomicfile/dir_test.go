package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// A directory on the way that is a symbolic link is refused, whether it points inside the base
// (certs.d/<host> -> _default would hand a token to every registry) or outside it; nothing is
// written where it points.
func TestOpenDirRefusesSymlinks(t *testing.T) {
	for _, tc := range []struct {
		name    string
		rel     string
		setup   func(t *testing.T, base, outside string)
		mkdir   fs.FileMode
		wantErr string // "" for success
	}{
		{name: "real directory", rel: "host", setup: func(t *testing.T, base, _ string) { mkdir(t, filepath.Join(base, "host")) }},
		{name: "created", rel: "state/images", mkdir: 0o700},
		{name: "missing, not created", rel: "host", wantErr: "no such file"},
		{name: "link inside the base", rel: "host", setup: func(t *testing.T, base, _ string) {
			mkdir(t, filepath.Join(base, "_default"))
			symlink(t, "_default", filepath.Join(base, "host"))
		}, wantErr: "symbolic link"},
		{name: "link outside the base", rel: "host", setup: func(t *testing.T, base, outside string) {
			symlink(t, outside, filepath.Join(base, "host"))
		}, wantErr: "symbolic link"},
		{name: "link not created over", rel: "host", mkdir: 0o755, setup: func(t *testing.T, base, outside string) {
			symlink(t, outside, filepath.Join(base, "host"))
		}, wantErr: "symbolic link"},
		{name: "dangling link not created over", rel: "host", mkdir: 0o755, setup: func(t *testing.T, base, outside string) {
			symlink(t, filepath.Join(outside, "nowhere"), filepath.Join(base, "host"))
		}, wantErr: "symbolic link"},
		{name: "link further up, created below", rel: "state/images", mkdir: 0o700, setup: func(t *testing.T, base, outside string) {
			symlink(t, outside, filepath.Join(base, "state"))
		}, wantErr: "symbolic link"},
		{name: "a file, not a directory", rel: "host", setup: func(t *testing.T, base, _ string) {
			writeFile(t, filepath.Join(base, "host"), "x")
		}, wantErr: "not a directory"},
		{name: "dot-dot", rel: "../x", wantErr: ".."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base, outside := t.TempDir(), t.TempDir()
			if tc.setup != nil {
				tc.setup(t, base, outside)
			}
			d, err := OpenDir(base, tc.rel, tc.mkdir)
			if tc.wantErr != "" {
				if err == nil {
					_ = d.Close()
					t.Fatalf("OpenDir(%s) succeeded, want an error saying %q", tc.rel, tc.wantErr)
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("OpenDir error %q, want %q", err, tc.wantErr)
				}
				if tc.wantErr == "symbolic link" && (!errors.Is(err, ErrSymlink) || !strings.Contains(err.Error(), base)) {
					t.Fatalf("OpenDir error %q: want ErrSymlink naming the path", err)
				}
				if entries, _ := os.ReadDir(outside); len(entries) != 0 {
					t.Fatalf("something was made where the link points: %v", entries)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = d.Close() }()
			if err := d.Write("f", []byte("data"), 0o600); err != nil {
				t.Fatal(err)
			}
			checkFile(t, filepath.Join(base, tc.rel, "f"), "data", 0o600)
			if d.Path() != filepath.Join(base, tc.rel) {
				t.Errorf("Path = %s", d.Path())
			}
		})
	}
}

// A directory swapped for a link after it was opened is not followed: writes go to the
// directory that was opened.
func TestDirDoesNotFollowASwapAfterOpening(t *testing.T) {
	base, outside := t.TempDir(), t.TempDir()
	mkdir(t, filepath.Join(base, "host"))
	d, err := OpenDir(base, "host", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = d.Close() }()
	if err := os.Rename(filepath.Join(base, "host"), filepath.Join(base, "moved")); err != nil {
		t.Fatal(err)
	}
	symlink(t, outside, filepath.Join(base, "host"))
	if err := d.Write("hosts.toml", []byte("token"), 0o600); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Fatalf("written through the link: %v", entries)
	}
	checkFile(t, filepath.Join(base, "moved", "hosts.toml"), "token", 0o600)
}

// Files are read only when they are regular files reached without a link; a FIFO is refused at
// once rather than blocking the reader.
func TestDirOpen(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(dir, "plain"), "content")
	writeFile(t, filepath.Join(outside, "secret"), "elsewhere")
	symlink(t, filepath.Join(outside, "secret"), filepath.Join(dir, "link"))
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := OpenDir(dir, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = d.Close() }()
	for name, want := range map[string]string{"plain": "content", "link": "symbolic link", "fifo": "not a regular file", "absent": "no such file"} {
		b, err := d.ReadFile(name)
		got := string(b)
		if err != nil {
			got = err.Error()
		}
		if !strings.Contains(got, want) {
			t.Errorf("ReadFile(%s) = %q, want %q", name, got, want)
		}
		if err != nil && !strings.Contains(err.Error(), filepath.Join(dir, name)) {
			t.Errorf("ReadFile(%s) error %q does not name the file", name, err)
		}
	}
	if err := d.Remove("link"); err != nil {
		t.Fatal(err)
	}
	checkFile(t, filepath.Join(outside, "secret"), "elsewhere", 0o600)
}

func mkdir(t *testing.T, p string) {
	t.Helper()
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, p, data string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}
