package install

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWatchOnce(t *testing.T) {
	n := newNode(t, false)
	n.mainConfig(3, true, "")
	bin := filepath.Join(t.TempDir(), "sandbox-guard")
	if err := os.WriteFile(bin, []byte("binary v1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	o := n.opts()
	if err := Watch(context.Background(), o, Sources{Binary: bin}, 0, &stdout, &stderr); err != nil {
		t.Fatalf("Watch: %v (stderr %s)", err, stderr.String())
	}
	if got := n.read(filepath.Join(PluginDir, PluginName)); got != "binary v1\n" {
		t.Errorf("installed binary %q, want the file named by Sources.Binary", got)
	}
	if !strings.Contains(stdout.String(), PluginName) || !strings.Contains(stderr.String(), "starts sandbox-guard at its next start") {
		t.Errorf("stdout %q stderr %q: want a line per file and the restart hint", stdout.String(), stderr.String())
	}

	// Inputs that cannot be read: the configuration is the caller's fault, the binary is not.
	err := Watch(context.Background(), o, Sources{Binary: bin, Config: filepath.Join(t.TempDir(), "absent.conf")}, 0, &stdout, &stderr)
	if _, ok := errors.AsType[*InputError](err); !ok {
		t.Errorf("missing configuration file: %v, want an InputError", err)
	}
	err = Watch(context.Background(), o, Sources{Binary: filepath.Join(t.TempDir(), "absent")}, 0, &stdout, &stderr)
	if _, ok := errors.AsType[*InputError](err); ok || err == nil {
		t.Errorf("missing binary: %v, want an error that is not an InputError", err)
	}
}

// A run that fails part way takes back what it wrote: the previous content where there was one,
// no file where there was none, no backup.
func TestWriteAllRollsBack(t *testing.T) {
	dir := t.TempDir()
	conf, dropIn, bin := filepath.Join(dir, "conf"), filepath.Join(dir, "drop-in"), filepath.Join(dir, "bin")
	if err := os.WriteFile(conf, []byte("mode: warn\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	writes := []plan{
		{path: conf, data: []byte("mode: enforce\n"), mode: 0o644, backup: conf + ".bak-1",
			current: current{exists: true, data: []byte("mode: warn\n"), mode: 0o644}},
		{path: dropIn, data: []byte("version = 3\n"), mode: 0o644},
		{path: bin, data: []byte("binary\n"), mode: 0o755},
	}
	var order []string
	err := writeAll(writes, func(path string, data []byte, mode fs.FileMode) error {
		order = append(order, filepath.Base(path))
		if path == bin {
			return errors.New("disk full")
		}
		return writeFile(path, data, mode)
	})
	if err == nil || !strings.Contains(err.Error(), "disk full") || !strings.Contains(err.Error(), "rolled back: "+conf+", "+dropIn) {
		t.Fatalf("writeAll = %v, want the failure and what was rolled back", err)
	}
	if strings.Join(order, ",") != "conf.bak-1,conf,drop-in,bin" {
		t.Errorf("write order %v", order)
	}
	if b, _ := os.ReadFile(conf); string(b) != "mode: warn\n" {
		t.Errorf("configuration after the rollback = %q, want the previous one", b)
	}
	for _, gone := range []string{dropIn, bin, conf + ".bak-1"} {
		if _, err := os.Stat(gone); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s left behind (%v)", gone, err)
		}
	}
}

// The binary goes last: containerd never finds a plugin without its configuration and drop-in.
func TestBinaryLast(t *testing.T) {
	tests := []struct{ in, want string }{
		{"bin,conf,dropin", "conf,dropin,bin"},
		{"conf,bin", "conf,bin"},
		{"bin", "bin"},
		{"dropin,conf", "dropin,conf"},
	}
	for _, tt := range tests {
		var writes []plan
		for _, n := range strings.Split(tt.in, ",") {
			writes = append(writes, plan{node: n})
		}
		var got []string
		for _, p := range binaryLast(writes, "bin") {
			got = append(got, p.node)
		}
		if strings.Join(got, ",") != tt.want {
			t.Errorf("binaryLast(%s) = %v, want %s", tt.in, got, tt.want)
		}
	}
}

// install --watch --force undoes every edit with a backup: only the newest few are kept.
func TestForceKeepsABoundedNumberOfBackups(t *testing.T) {
	n := newNode(t, false)
	n.mainConfig(3, true, "")
	conf := filepath.Join(ConfigDir, ConfigName)
	for i := range 7 {
		n.write(fmt.Sprintf("%s.bak-20260101T00000%dZ", conf, i), fmt.Sprintf("old %d\n", i))
	}
	n.write(conf, "mode: warn\n")
	o := n.opts()
	o.Force = true
	if _, err := Run(o); err != nil {
		t.Fatal(err)
	}
	backups, err := filepath.Glob(n.f(conf) + ".bak-*")
	if err != nil {
		t.Fatal(err)
	}
	if len(backups) != maxBackups {
		t.Fatalf("%d backups left, want %d: %v", len(backups), maxBackups, backups)
	}
	newest := backups[len(backups)-1]
	if got := n.read(strings.TrimPrefix(newest, n.root)); got != "mode: warn\n" {
		t.Errorf("newest backup %s holds %q, want the edit just replaced", newest, got)
	}
	if _, err := os.Stat(n.f(conf + ".bak-20260101T000000Z")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the oldest backup is still there (%v)", err)
	}
}
