package install

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sandbox-guard/sandbox-guard/etc"
)

// node is a node's file system under a temporary directory.
type node struct {
	t    *testing.T
	root string // Options.Root
	// paths is Options.PathsRoot: "/" sees the files like the DaemonSet does (the node's
	// paths under root); root itself is how the end-to-end tests lay them out.
	paths string
}

func newNode(t *testing.T, daemonSetView bool) *node {
	n := &node{t: t, root: t.TempDir()}
	n.paths = n.root
	if daemonSetView {
		n.paths = "/"
	}
	return n
}

// p is a node path as containerd sees it; f is where the test finds it.
func (n *node) p(path string) string { return filepath.Join(n.paths, path) }
func (n *node) f(path string) string { return filepath.Join(n.root, path) }

func (n *node) write(path, data string) {
	n.t.Helper()
	if err := os.MkdirAll(filepath.Dir(n.f(path)), 0o755); err != nil {
		n.t.Fatal(err)
	}
	if err := os.WriteFile(n.f(path), []byte(data), 0o644); err != nil {
		n.t.Fatal(err)
	}
}

func (n *node) read(path string) string {
	n.t.Helper()
	b, err := os.ReadFile(n.f(path))
	if err != nil {
		n.t.Fatal(err)
	}
	return string(b)
}

// mainConfig writes containerd's main configuration: a version line, optionally the imports
// line for config.d, and extra text.
func (n *node) mainConfig(version int, imports bool, extra string) {
	s := fmt.Sprintf("version = %d\n", version)
	if imports {
		s += fmt.Sprintf("imports = [%q]\n", n.p("/etc/containerd/config.d/*.toml"))
	}
	n.write(ContainerdConfig, s+extra)
}

func (n *node) opts() Options {
	return Options{Root: n.root, PathsRoot: n.paths, Binary: []byte("#!/bin/true\nbinary v1\n"),
		Now: func() time.Time { return time.Date(2026, 11, 22, 7, 0, 0, 0, time.UTC) }}
}

func (n *node) run(o Options) *Result {
	n.t.Helper()
	res, err := Run(o)
	if err != nil {
		n.t.Fatalf("install: %v", err)
	}
	return res
}

func actions(res *Result) []Action {
	var out []Action
	for _, f := range res.Files {
		out = append(out, f.Action)
	}
	return out
}

func wantActions(t *testing.T, res *Result, want ...Action) {
	t.Helper()
	if got := actions(res); !slices.Equal(got, want) {
		t.Errorf("actions %v, want %v (files %+v)", got, want, res.Files)
	}
}

func wantWarning(t *testing.T, res *Result, parts ...string) {
	t.Helper()
	for _, w := range res.Warnings {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(w, p)
		}
		if ok {
			return
		}
	}
	t.Errorf("no warning containing %q in %q", parts, res.Warnings)
}

// snapshot records every file's content and mtime under root.
func snapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out[p] = fmt.Sprintf("%v %v %x", info.Mode(), info.ModTime().UnixNano(), b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestInstallFreshNodeAndIdempotent(t *testing.T) {
	for _, tc := range []struct {
		name      string
		daemonSet bool
		version   int // the main configuration's
		major     int
		dropIn    int // the drop-in's version
		shipped   []byte
	}{
		// Each line's main configuration in its own default format (`containerd config
		// default`): the drop-in has the same version.
		{"containerd-2.x", false, 3, 2, 3, etc.DropIn2},
		{"containerd-1.7", false, 2, 1, 2, etc.DropIn17},
		{"containerd-2.x/daemonset-view", true, 3, 2, 3, etc.DropIn2},
		{"containerd-1.7/daemonset-view", true, 2, 1, 2, etc.DropIn17},
		// containerd 2.3+ writes version 4, which only 2.3+ read: a version-4 drop-in, read as is
		// (a version-3 one would work too, migrated with a warning at every start).
		{"containerd-2.3", false, 4, 2, 4, etc.DropIn23},
		{"containerd-2.3/daemonset-view", true, 4, 2, 4, etc.DropIn23},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newNode(t, tc.daemonSet)
			cri := `[plugins."io.containerd.grpc.v1.cri"]` + "\n  sandbox_image = \"example.com/pause:1\"\n"
			n.mainConfig(tc.version, true, cri)
			res := n.run(n.opts())
			wantActions(t, res, Created, Created, Created)
			if res.Major != tc.major || res.DropInVersion != tc.dropIn || !res.Active || len(res.Warnings) != 0 {
				t.Fatalf("major %d drop-in version %d active %v warnings %q", res.Major, res.DropInVersion, res.Active, res.Warnings)
			}
			if !strings.Contains(res.MajorSource, fmt.Sprintf("version = %d in %s", tc.version, n.p(ContainerdConfig))) {
				t.Errorf("major source %q", res.MajorSource)
			}
			wantPaths := []string{n.f(PluginDir + "/" + PluginName), n.f(ConfigDir + "/" + ConfigName), n.f(DropInDir + "/" + DropInName)}
			for i, f := range res.Files {
				if f.Path != wantPaths[i] {
					t.Errorf("file %d at %s, want %s", i, f.Path, wantPaths[i])
				}
			}
			st, err := os.Stat(n.f(PluginDir + "/" + PluginName))
			if err != nil || st.Mode().Perm() != 0o755 {
				t.Fatalf("binary: %v %v", st, err)
			}
			if got := n.read(ConfigDir + "/" + ConfigName); got != string(etc.PluginConfig) {
				t.Errorf("config is not the shipped one")
			}
			dropIn, _ := RenderDropInVersion(tc.dropIn, n.paths)
			if got := n.read(DropInDir + "/" + DropInName); got != string(dropIn) {
				t.Errorf("drop-in:\n%s\nwant\n%s", got, dropIn)
			}
			if tc.daemonSet && !bytes.Equal(dropIn, tc.shipped) {
				t.Errorf("the DaemonSet view must write the shipped drop-in")
			}
			if entries, _ := os.ReadDir(n.f(PluginDir)); len(entries) != 1 {
				t.Errorf("plugin dir holds %v, want only the plugin (no temporary leftovers)", entries)
			}

			before := snapshot(t, n.root)
			res = n.run(n.opts())
			wantActions(t, res, Unchanged, Unchanged, Unchanged)
			if res.Changed() || !res.Active {
				t.Errorf("second run: changed %v active %v", res.Changed(), res.Active)
			}
			if after := snapshot(t, n.root); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Errorf("second run touched files:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}

func TestInstallKeepsEditsUnlessForced(t *testing.T) {
	n := newNode(t, false)
	n.mainConfig(3, true, "")
	n.run(n.opts())
	edited := strings.Replace(string(etc.PluginConfig), "mode: warn", "mode: enforce", 1)
	n.write(ConfigDir+"/"+ConfigName, edited)
	editedDropIn := strings.Replace(n.read(DropInDir+"/"+DropInName), `plugin_request_timeout = "2s"`, `plugin_request_timeout = "1s"`, 1)
	n.write(DropInDir+"/"+DropInName, editedDropIn)

	o := n.opts()
	o.Binary = []byte("binary v2")
	res := n.run(o)
	wantActions(t, res, Updated, Kept, Kept)
	if !res.Active || len(res.Warnings) != 0 {
		t.Errorf("active %v warnings %q", res.Active, res.Warnings)
	}
	if !strings.Contains(res.Files[1].Note, "--force") {
		t.Errorf("kept file note %q does not say how to replace it", res.Files[1].Note)
	}
	if n.read(ConfigDir+"/"+ConfigName) != edited || n.read(DropInDir+"/"+DropInName) != editedDropIn {
		t.Fatal("an edited file was overwritten without --force")
	}
	if n.read(PluginDir+"/"+PluginName) != "binary v2" {
		t.Fatal("the binary was not updated")
	}

	o.Force = true
	res = n.run(o)
	wantActions(t, res, Unchanged, Updated, Updated)
	for i, old := range map[int]string{1: edited, 2: editedDropIn} {
		f := res.Files[i]
		if f.Backup == "" || !strings.HasSuffix(f.Backup, ".bak-20261122T070000Z") {
			t.Fatalf("file %s: backup %q", f.Path, f.Backup)
		}
		b, err := os.ReadFile(f.Backup)
		if err != nil || string(b) != old {
			t.Errorf("backup %s does not hold the edited content: %v", f.Backup, err)
		}
	}
	// containerd's *.toml glob must not load the backup of the drop-in.
	if m, _ := filepath.Glob(n.f(DropInDir + "/*.toml")); len(m) != 1 {
		t.Errorf("config.d/*.toml matches %v, want only the drop-in", m)
	}
	if n.read(ConfigDir+"/"+ConfigName) != string(etc.PluginConfig) {
		t.Error("--force did not install the configuration")
	}
	// A second forced edit keeps the first backup.
	n.write(ConfigDir+"/"+ConfigName, edited)
	res = n.run(o)
	if b := res.Files[1].Backup; !strings.HasSuffix(b, ".bak-20261122T070000Z-2") {
		t.Errorf("second backup named %q", b)
	}
}

func TestInstallWarnings(t *testing.T) {
	for _, tc := range []struct {
		name      string
		daemonSet bool
		setup     func(n *node)
		opts      func(o *Options)
		active    bool
		warn      [][]string
		note      string
	}{
		{
			name:  "1.7 without imports",
			setup: func(n *node) { n.mainConfig(2, false, "") },
			warn: [][]string{{"containerd does not load", "sandbox-guard-nri.toml", "imports = ["}, {"NRI stays disabled", "containerd 1.7 default"},
				{"will NOT start"}},
		},
		{
			// AL2023 without the nodeadm snippet; 2.x has NRI on with the default paths.
			name: "2.x without imports, node paths", daemonSet: true,
			setup:  func(n *node) { n.mainConfig(3, false, "") },
			active: true, note: "start the plugin anyway",
		},
		{
			name:  "2.x without imports, test paths",
			setup: func(n *node) { n.mainConfig(3, false, "") },
			warn:  [][]string{{"containerd does not load"}, {"starts NRI plugins from /opt/nri/plugins"}},
		},
		{
			name: "a later drop-in disables NRI",
			setup: func(n *node) {
				n.mainConfig(3, true, "")
				n.write(DropInDir+"/zz-other.toml", "version = 3\n[plugins.'io.containerd.nri.v1.nri']\n  disable = true\n")
			},
			warn: [][]string{{"NRI stays disabled", "disable = true in", "zz-other.toml"}},
		},
		{
			name: "a later drop-in moves plugin_path (2.x merges)",
			setup: func(n *node) {
				n.mainConfig(3, true, "")
				n.write(DropInDir+"/zz-other.toml", "version = 3\n[plugins.'io.containerd.nri.v1.nri']\n  plugin_path = \"/elsewhere\"\n")
			},
			warn: [][]string{{"starts NRI plugins from /elsewhere"}},
		},
		{
			name: "the main config's own NRI table is replaced on 1.7",
			setup: func(n *node) {
				n.mainConfig(2, true, "[plugins.\"io.containerd.nri.v1.nri\"]\n  disable = true\n  plugin_path = \"/elsewhere\"\n")
			},
			active: true,
		},
		{
			name: "edited drop-in turns NRI off",
			setup: func(n *node) {
				n.mainConfig(3, true, "")
				d, _ := RenderDropIn(2, n.paths)
				n.write(DropInDir+"/"+DropInName, strings.Replace(string(d), "disable = false", "disable = true", 1))
			},
			warn: [][]string{{"NRI stays disabled", "disable = true in ", DropInName}},
		},
		{
			name:  "main config missing, 2.x defaults",
			setup: func(n *node) {}, daemonSet: true,
			opts:   func(o *Options) { o.ContainerdMajor = 2 },
			active: true, note: "does not exist: containerd runs on its built-in defaults",
		},
		{
			name:  "main config missing, 1.7 defaults",
			setup: func(n *node) {}, daemonSet: true,
			opts: func(o *Options) { o.ContainerdMajor = 1 },
			warn: [][]string{{"does not exist", "version = 2"}, {"NRI stays disabled"}},
		},
		{
			name: "stray executables in plugin_path",
			setup: func(n *node) {
				n.mainConfig(3, true, "")
				for _, name := range []string{"10-sandbox-guard.old", "sandbox-guard", "05-sandbox-guard"} {
					n.write(PluginDir+"/"+name, "x")
					if err := os.Chmod(n.f(PluginDir+"/"+name), 0o755); err != nil {
						t.Fatal(err)
					}
				}
				n.write(PluginDir+"/README", "not executable: NRI ignores it")
			},
			active: true,
			warn: [][]string{{"05-sandbox-guard is another sandbox-guard"}, {"/sandbox-guard is executable but not named NN-name"},
				{"10-sandbox-guard.old is another sandbox-guard"}},
		},
		{
			name: "installed config does not parse",
			setup: func(n *node) {
				n.mainConfig(3, true, "")
				n.write(ConfigDir+"/"+ConfigName, "mode: sometimes\n")
			},
			active: true,
			warn:   [][]string{{"does not parse", "gate off", "mode"}},
		},
		{
			name: "containerd config broken anyway",
			setup: func(n *node) {
				n.write(ContainerdConfig, fmt.Sprintf("version = 3\nimports = [%q, %q]\n", "/does/not/exist.toml", n.p(DropInDir+"/*.toml")))
			},
			warn: [][]string{{"does not load, with or without"}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newNode(t, tc.daemonSet)
			tc.setup(n)
			o := n.opts()
			if tc.opts != nil {
				tc.opts(&o)
			}
			res := n.run(o)
			if res.Active != tc.active {
				t.Errorf("active %v, want %v (warnings %q, notes %q)", res.Active, tc.active, res.Warnings, res.Notes)
			}
			for _, w := range tc.warn {
				wantWarning(t, res, w...)
			}
			if len(tc.warn) == 0 && len(res.Warnings) > 0 {
				t.Errorf("unexpected warnings %q", res.Warnings)
			}
			if !res.Active && tc.name != "containerd config broken anyway" {
				wantWarning(t, res, "containerd will NOT start sandbox-guard")
			}
			if tc.note != "" && !slices.ContainsFunc(res.Notes, func(s string) bool { return strings.Contains(s, tc.note) }) {
				t.Errorf("notes %q lack %q", res.Notes, tc.note)
			}
			if _, err := os.Stat(n.f(PluginDir + "/" + PluginName)); err != nil {
				t.Errorf("warnings must not stop the install: %v", err)
			}
		})
	}
}

func TestInstallRefuses(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(n *node)
		opts  func(o *Options)
		input bool // an InputError (exit 2)
		want  string
	}{
		{name: "main config without version", setup: func(n *node) { n.write(ContainerdConfig, "") },
			want: "cannot tell containerd 1.7 from 2.x"},
		{name: "main config missing", setup: func(n *node) {}, want: "does not exist; pass --containerd-version (e.g. 2.3.7), or --containerd-major"},
		{name: "bad containerd version", setup: func(n *node) { n.mainConfig(3, true, "") },
			opts: func(o *Options) { o.ContainerdVersion = "1.6.30" }, input: true, want: "only 1.7 and 2.x are supported"},
		{name: "containerd version and major disagree", setup: func(n *node) { n.mainConfig(3, true, "") },
			opts: func(o *Options) { o.ContainerdVersion, o.ContainerdMajor = "2.3.7", 1 }, input: true, want: "disagree"},
		{name: "relative containerd binary", setup: func(n *node) { n.mainConfig(3, true, "") },
			opts: func(o *Options) { o.ContainerdBinary = "bin/containerd" }, input: true, want: "absolute"},
		{name: "containerd binary that fails", setup: func(n *node) { n.mainConfig(3, true, "") },
			opts: func(o *Options) { o.ContainerdBinary = fakeContainerd(t, "echo broken >&2; exit 3") }, want: "asking containerd for its version"},
		{name: "not containerd", setup: func(n *node) { n.mainConfig(3, true, "") },
			opts: func(o *Options) { o.ContainerdBinary = fakeContainerd(t, "echo runc version 1.3.6") }, want: "not containerd's version line"},
		{
			// A version-2 drop-in merged with a version-1 main using short plugin names: 1.7 refuses to start.
			name: "drop-in would break containerd 1.7",
			setup: func(n *node) {
				n.write(ContainerdConfig, fmt.Sprintf("imports = [%q]\n[plugins.cri]\n  sandbox_image = \"x/pause:1\"\n", n.p(DropInDir+"/*.toml")))
			},
			opts: func(o *Options) { o.ContainerdMajor = 1 },
			want: "containerd would not start with",
		},
		{name: "invalid configuration", setup: func(n *node) { n.mainConfig(3, true, "") },
			opts: func(o *Options) { o.Config, o.ConfigSource = []byte("mode: sometimes\n"), "cm.yaml" }, input: true, want: "config cm.yaml: key mode"},
		{name: "bad major", setup: func(n *node) {}, opts: func(o *Options) { o.ContainerdMajor = 3 }, input: true, want: "want 1"},
		{name: "relative root", setup: func(n *node) {}, opts: func(o *Options) { o.Root = "host" }, input: true, want: "absolute"},
		{name: "empty binary", setup: func(n *node) {}, opts: func(o *Options) { o.Binary = nil }, input: true, want: "binary is empty"},
		{name: "symlink in place of the config", setup: func(n *node) {
			n.mainConfig(3, true, "")
			if err := os.MkdirAll(n.f(ConfigDir), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("/etc/passwd", n.f(ConfigDir+"/"+ConfigName)); err != nil {
				t.Fatal(err)
			}
		}, want: "not a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newNode(t, false)
			tc.setup(n)
			o := n.opts()
			if tc.opts != nil {
				tc.opts(&o)
			}
			before := snapshot(t, n.root)
			res, err := Run(o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run = %+v, %v; want an error containing %q", res, err, tc.want)
			}
			var ie *InputError
			if errors.As(err, &ie) != tc.input {
				t.Errorf("InputError %v, want %v: %v", errors.As(err, &ie), tc.input, err)
			}
			if after := snapshot(t, n.root); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Errorf("a refused install wrote files: %v", after)
			}
		})
	}
}

func TestInstallFixesBinaryMode(t *testing.T) {
	n := newNode(t, false)
	n.mainConfig(3, true, "")
	n.run(n.opts())
	if err := os.Chmod(n.f(PluginDir+"/"+PluginName), 0o644); err != nil {
		t.Fatal(err)
	}
	res := n.run(n.opts())
	wantActions(t, res, Updated, Unchanged, Unchanged)
	if !strings.Contains(res.Files[0].Note, "-rw-r--r-- -> -rwxr-xr-x") {
		t.Errorf("note %q", res.Files[0].Note)
	}
	if st, _ := os.Stat(n.f(PluginDir + "/" + PluginName)); st.Mode().Perm() != 0o755 {
		t.Errorf("mode %v", st.Mode())
	}
}

func TestView(t *testing.T) {
	for _, tc := range []struct{ root, paths, node, want string }{
		{"/", "/", "/etc/containerd/config.toml", "/etc/containerd/config.toml"},
		{"/host", "/", "/etc/containerd/config.toml", "/host/etc/containerd/config.toml"},
		{"/tmp/n", "/tmp/n", "/tmp/n/etc/x.toml", "/tmp/n/etc/x.toml"},
		{"/tmp/n", "/tmp/n", "/etc/x.toml", "/etc/x.toml"},
		{"/host", "/tmp/n", "/tmp/n/etc/x.toml", "/host/etc/x.toml"},
		{"/host", "/tmp/n", "/tmp/nope/x.toml", "/host/tmp/nope/x.toml"},
	} {
		if got := (view{root: tc.root, pathsRoot: tc.paths}).local(tc.node); got != tc.want {
			t.Errorf("view{%s, %s}.local(%s) = %s, want %s", tc.root, tc.paths, tc.node, got, tc.want)
		}
	}
}

func TestWriteFileLeavesNothingBehind(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "10-x")
	for _, data := range []string{"one", "two"} {
		if err := writeFile(p, []byte(data), 0o755); err != nil {
			t.Fatal(err)
		}
		entries, _ := os.ReadDir(dir)
		if len(entries) != 1 || entries[0].Name() != "10-x" {
			t.Fatalf("directory holds %v", entries)
		}
		if b, _ := os.ReadFile(p); string(b) != data {
			t.Fatalf("content %q", b)
		}
	}
}

// The container image has no /tmp: install stages containerd's configuration in the drop-in
// directory then, and leaves nothing there.
func TestInstallWithoutTempDir(t *testing.T) {
	n, broken := newNode(t, true), newNode(t, true) // t.TempDir needs TMPDIR
	t.Setenv("TMPDIR", "/nonexistent-tmp")
	n.mainConfig(3, true, "")
	res := n.run(n.opts())
	wantActions(t, res, Created, Created, Created)
	if !res.Active || len(res.Warnings) != 0 {
		t.Errorf("active %v warnings %q", res.Active, res.Warnings)
	}
	if entries, _ := os.ReadDir(n.f(DropInDir)); len(entries) != 1 {
		t.Errorf("config.d holds %v, want only the drop-in", entries)
	}

	// When the drop-in directory cannot be used either, install fails rather than guessing
	// (and writes nothing).
	n = broken
	n.mainConfig(3, true, "")
	n.write(DropInDir, "a file where the drop-in directory should be")
	if _, err := Run(n.opts()); err == nil || !strings.Contains(err.Error(), DropInDir) {
		t.Errorf("Run = %v, want an error naming %s", err, DropInDir)
	}
	if _, err := os.Stat(n.f(PluginDir)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("files were written although install failed: %v", err)
	}
}
