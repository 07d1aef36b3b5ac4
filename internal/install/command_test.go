package install

import (
	"bytes"
	"context"
	"errors"
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
