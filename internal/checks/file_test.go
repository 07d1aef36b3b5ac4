package checks

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestFileProber(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "ready")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	dangling := filepath.Join(dir, "dangling")
	if err := os.Symlink(filepath.Join(dir, "nowhere"), dangling); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(file, link); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "absent")

	tests := []struct {
		name   string
		prober FileProber
		want   Outcome
	}{
		{"file exists", FileProber{Path: file}, Outcome{OK: true, Detail: file + " exists"}},
		{"directory exists", FileProber{Path: dir}, Outcome{OK: true, Detail: dir + " exists"}},
		{"symlink to a file", FileProber{Path: link}, Outcome{OK: true, Detail: link + " exists"}},
		{"missing", FileProber{Path: missing}, Outcome{Detail: missing + " does not exist"}},
		{"missing parent", FileProber{Path: filepath.Join(dir, "no", "such", "dir")}, Outcome{Detail: filepath.Join(dir, "no", "such", "dir") + " does not exist"}},
		{"dangling symlink", FileProber{Path: dangling}, Outcome{Detail: dangling + " does not exist"}},
		{"stat error", FileProber{Path: "/x", Stat: func(string) (fs.FileInfo, error) {
			return nil, &fs.PathError{Op: "stat", Path: "/x", Err: syscall.EACCES}
		}}, Outcome{Detail: "cannot stat /x: stat /x: permission denied", Err: true}},
		{"stat I/O error", FileProber{Path: "/y", Stat: func(string) (fs.FileInfo, error) {
			return nil, errors.New("input/output error")
		}}, Outcome{Detail: "cannot stat /y: input/output error", Err: true}},
		{"injected ENOENT", FileProber{Path: "/z", Stat: func(string) (fs.FileInfo, error) {
			return nil, &fs.PathError{Op: "stat", Path: "/z", Err: syscall.ENOENT}
		}}, Outcome{Detail: "/z does not exist"}},
		{"wrapped not-exist", FileProber{Path: "/w", Stat: func(string) (fs.FileInfo, error) {
			return nil, fmt.Errorf("layer: %w", fs.ErrNotExist)
		}}, Outcome{Detail: "/w does not exist"}},
		{"injected stat succeeds", FileProber{Path: "/v", Stat: func(string) (fs.FileInfo, error) { return nil, nil }},
			Outcome{OK: true, Detail: "/v exists"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.prober.Probe(context.Background()); got != tt.want {
				t.Errorf("Probe() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestFileProberUsesInjectedStat(t *testing.T) {
	var asked []string
	p := FileProber{Path: "/run/marker", Stat: func(name string) (fs.FileInfo, error) {
		asked = append(asked, name)
		return nil, fs.ErrNotExist
	}}
	// The real file system is not consulted: "/" exists, yet the injected Stat says it does not.
	p2 := FileProber{Path: "/", Stat: p.Stat}
	if got := p2.Probe(context.Background()); got.OK {
		t.Errorf("Probe with an injected Stat used the real file system: %+v", got)
	}
	p.Probe(context.Background())
	if strings.Join(asked, ",") != "/,/run/marker" {
		t.Errorf("Stat called with %v", asked)
	}
}

func TestFileProberOddPaths(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"", filepath.Join(file, "below-a-file"), "/\x00nul", strings.Repeat("/a", 5000)} {
		out := FileProber{Path: path}.Probe(context.Background())
		if out.OK {
			t.Errorf("Probe(%q) = %+v, want not OK", path, out)
		}
		if !strings.Contains(out.Detail, path) {
			t.Errorf("Probe(%q) detail %q does not name the path", path, out.Detail)
		}
	}
}
