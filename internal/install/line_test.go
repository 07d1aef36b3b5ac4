package install

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sandbox-guard/sandbox-guard/internal/containerdconfig"
)

// fakeContainerd writes a shell script standing in for a containerd binary and returns its path.
func fakeContainerd(t *testing.T, script string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "containerd")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDropInVersion(t *testing.T) {
	unknown := containerdconfig.LineUnknown
	for _, tc := range []struct {
		major int
		line  containerdconfig.Line
		main  int // 0: no main configuration
		want  int
	}{
		{1, containerdconfig.Line17, 2, 2},
		{1, unknown, 2, 2},
		{1, unknown, 1, 2},
		{1, unknown, 0, 2},
		// 2.0-2.2: 2 or 3, never 4.
		{2, containerdconfig.Line22, 3, 3},
		{2, containerdconfig.Line22, 2, 2},
		{2, containerdconfig.Line20, 2, 2},
		{2, containerdconfig.Line22, 4, 3},
		{2, containerdconfig.Line22, 1, 3},
		{2, containerdconfig.Line22, 0, 3},
		// 2.3+: the main configuration's version.
		{2, containerdconfig.Line23, 4, 4},
		{2, containerdconfig.Line24, 4, 4},
		{2, containerdconfig.Line23, 3, 3},
		{2, containerdconfig.Line24, 2, 2},
		{2, containerdconfig.Line23, 1, 3},
		{2, containerdconfig.Line24, 0, 3},
		// Only the major version known (--containerd-major 2): a version-4 main means 2.3+.
		{2, unknown, 4, 4},
		{2, unknown, 3, 3},
		{2, unknown, 2, 2},
		{2, unknown, 0, 3},
	} {
		if got := dropInVersion(tc.major, tc.line, tc.main); got != tc.want {
			t.Errorf("dropInVersion(%d, %v, main version %d) = %d, want %d", tc.major, tc.line, tc.main, got, tc.want)
		}
	}
}

// mainWithSandbox writes a main configuration of that version that imports config.d and sets
// the sandbox image the way that version spells it.
func (n *node) mainWithSandbox(version int, image string) {
	cri := fmt.Sprintf("[plugins.\"io.containerd.cri.v1.images\".pinned_images]\n  sandbox = %q\n", image)
	if version == 2 {
		cri = fmt.Sprintf("[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = %q\n", image)
	}
	n.mainConfig(version, true, cri)
}

// For each containerd line and each main configuration version it reads, install picks a
// drop-in that containerd (as containerdconfig reads it for that exact version) loads with NRI on
// at the plugin's paths, and that leaves the main configuration's own settings alone.
func TestInstallPicksTheDropInForTheLine(t *testing.T) {
	const image = "example.com/pause:custom"
	for _, tc := range []struct {
		version string
		main    int
		want    int
	}{
		{"1.7.35", 2, 2},
		{"2.2.9", 3, 3},
		{"2.2.9", 2, 2},
		{"2.3.7", 4, 4},
		{"2.3.7", 3, 3},
		{"2.3.7", 2, 2},
		{"2.4.2", 4, 4},
		{"2.4.2", 3, 3},
	} {
		t.Run(fmt.Sprintf("%s/main-v%d", tc.version, tc.main), func(t *testing.T) {
			n := newNode(t, false)
			n.mainWithSandbox(tc.main, image)
			o := n.opts()
			o.ContainerdVersion = tc.version
			res := n.run(o)
			line, _, _ := containerdconfig.ParseRuntimeVersion(tc.version)
			if res.Line != line || res.DropInVersion != tc.want || !res.Active || len(res.Warnings) != 0 {
				t.Fatalf("line %v drop-in version %d active %v warnings %q; want line %v, drop-in version %d", res.Line, res.DropInVersion, res.Active, res.Warnings, line, tc.want)
			}
			if res.MajorSource != "--containerd-version "+tc.version {
				t.Errorf("source %q", res.MajorSource)
			}
			if !strings.Contains(n.read(DropInDir+"/"+DropInName), fmt.Sprintf("\nversion = %d\n", tc.want)) {
				t.Errorf("the drop-in written is not version %d", tc.want)
			}
			info, err := containerdconfig.LoadWithOptions(n.f(ContainerdConfig), containerdconfig.Options{RuntimeVersion: tc.version})
			if err != nil {
				t.Fatalf("containerd %s would not start: %v", tc.version, err)
			}
			if !slices.Contains(info.Files, n.f(DropInDir+"/"+DropInName)) || info.NRI.Disabled || info.NRI.PluginPath != n.p(PluginDir) {
				t.Errorf("containerd %s: files %v, NRI %+v", tc.version, info.Files, info.NRI)
			}
			if info.SandboxImage != image {
				t.Errorf("containerd %s: sandbox image %s with the drop-in, want the main configuration's %s", tc.version, info.SandboxImage, image)
			}
		})
	}

	// Why a version-2 main configuration gets a version-2 drop-in on 2.0-2.2: the version-3
	// drop-in stops containerd from migrating the main file's CRI tables (seen with 2.2.9's
	// `containerd config dump`), which costs the node its sandbox image.
	n := newNode(t, false)
	n.mainWithSandbox(2, image)
	v3, err := RenderDropInVersion(3, n.paths)
	if err != nil {
		t.Fatal(err)
	}
	n.write(DropInDir+"/"+DropInName, string(v3))
	info, err := containerdconfig.LoadWithOptions(n.f(ContainerdConfig), containerdconfig.Options{RuntimeVersion: "2.2.9"})
	if err != nil || info.SandboxImage == image {
		t.Errorf("containerd 2.2.9 with a version-2 main and a version-3 drop-in: sandbox image %v (%v); the rule protects nothing", info, err)
	}
}

// Without flags, install asks the containerd binary for its version.
func TestInstallAsksContainerdForItsVersion(t *testing.T) {
	n := newNode(t, false)
	n.mainConfig(3, true, "")
	o := n.opts()
	o.ContainerdBinary = fakeContainerd(t, "echo 'containerd github.com/containerd/containerd/v2 2.3.7+unknown 0123abc'")
	res := n.run(o)
	if res.Line != containerdconfig.Line23 || res.DropInVersion != 3 || !res.Active {
		t.Fatalf("line %v drop-in version %d active %v", res.Line, res.DropInVersion, res.Active)
	}
	if want := fmt.Sprintf("`%s --version`: 2.3.7+unknown", o.ContainerdBinary); res.MajorSource != want {
		t.Errorf("source %q, want %q", res.MajorSource, want)
	}
	// A flag wins over the binary.
	o.ContainerdMajor = 2
	if res := n.run(o); res.Line != containerdconfig.LineUnknown || res.MajorSource != "--containerd-major" {
		t.Errorf("with --containerd-major: line %v, source %q", res.Line, res.MajorSource)
	}
}

// On the node itself (root "/") install finds containerd in PATH; a containerd that does not
// answer is a note, and install goes by the main configuration's version.
func TestAskContainerdInPath(t *testing.T) {
	v := view{root: "/", pathsRoot: "/"}
	for _, tc := range []struct {
		name   string
		script string // "" : no containerd in PATH
		found  bool
		line   containerdconfig.Line
		note   string
	}{
		{"answers", "echo 'containerd github.com/containerd/containerd 1.7.35 abc'", true, containerdconfig.Line17, ""},
		{"fails", "exit 1", false, containerdconfig.LineUnknown, "could not tell containerd's version"},
		{"absent", "", false, containerdconfig.LineUnknown, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.script != "" {
				dir = filepath.Dir(fakeContainerd(t, tc.script))
			}
			t.Setenv("PATH", dir)
			var tgt target
			found, err := tgt.askContainerd(v, Options{})
			if err != nil || found != tc.found || tgt.line != tc.line {
				t.Fatalf("found %v line %v err %v; want found %v line %v", found, tgt.line, err, tc.found, tc.line)
			}
			if got := strings.Join(tgt.notes, "\n"); (tc.note == "") != (got == "") || !strings.Contains(got, tc.note) {
				t.Errorf("notes %q, want %q", got, tc.note)
			}
		})
	}
	// Elsewhere (the installer DaemonSet, root /host) no host binary is run.
	t.Setenv("PATH", filepath.Dir(fakeContainerd(t, "echo 'containerd x 2.3.7 y'")))
	var tgt target
	if found, err := tgt.askContainerd(view{root: "/host", pathsRoot: "/"}, Options{}); found || err != nil {
		t.Errorf("root /host: found %v, err %v; want no binary asked", found, err)
	}
}

// A drop-in holding what install writes for another containerd version (an older install before
// the node moved to a version-4 configuration) is install's own: replaced, without a backup. An
// edit is still kept.
func TestInstallReplacesItsOtherVariants(t *testing.T) {
	n := newNode(t, false)
	n.mainConfig(4, true, "")
	v3, err := RenderDropInVersion(3, n.paths)
	if err != nil {
		t.Fatal(err)
	}
	n.write(DropInDir+"/"+DropInName, string(v3))
	res := n.run(n.opts())
	wantActions(t, res, Created, Created, Updated)
	if f := res.Files[2]; f.Backup != "" || !strings.Contains(f.Note, "another containerd version") {
		t.Errorf("drop-in: backup %q note %q", f.Backup, f.Note)
	}
	v4, _ := RenderDropInVersion(4, n.paths)
	if n.read(DropInDir+"/"+DropInName) != string(v4) {
		t.Error("the drop-in is not the version-4 variant")
	}

	edited := strings.Replace(string(v3), `plugin_request_timeout = "2s"`, `plugin_request_timeout = "1s"`, 1)
	n.write(DropInDir+"/"+DropInName, edited)
	res = n.run(n.opts())
	wantActions(t, res, Unchanged, Unchanged, Kept)
	if n.read(DropInDir+"/"+DropInName) != edited {
		t.Error("an edited drop-in was replaced without --force")
	}
}
