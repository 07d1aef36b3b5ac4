package containerdconfig

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// The differential test reads every case of testdata/corpus with this
// package and with real containerd binaries (`containerd --config <file>
// config dump`, which needs no daemon and no root) and requires the same
// answer. The binaries come from the directories named by these variables
// (test/tools/install-deps.sh builds and exports them); an unset variable
// skips that line, unless REQUIRE_E2E=1.
var differentialMatrix = []string{"SG_CONTAINERD17", "SG_CONTAINERD2", "SG_CONTAINERD23", "SG_CONTAINERD24"}

// matrixVersions are the releases install-deps.sh builds for each line.
var matrixVersions = map[string]string{"1.7": "1.7.35", "2.2": "2.2.9", "2.3": "2.3.7", "2.4": "2.4.2"}

// corpusCase is one directory of testdata/corpus: config.toml, the files it
// imports, and case.toml describing it. "@ROOT@" in any file stands for the
// directory the case is copied to.
type corpusCase struct {
	name     string
	dir      string
	manifest struct {
		Description string `toml:"description"`
		// Refused lists the lines ("1.7", "2.2", ...) that refuse to start
		// with the configuration: containerd and the reader must both fail.
		Refused []string `toml:"refused"`
		// Want pins, per line, what the dump must show (and so the reader):
		// the sandbox image and the raw registry config_path.
		Want map[string]struct {
			Sandbox    string  `toml:"sandbox"`
			ConfigPath *string `toml:"config_path"`
		} `toml:"want"`
	}
}

func loadCorpus(t *testing.T) []corpusCase {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join("testdata", "corpus", "*", "case.toml"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no corpus cases (%v)", err)
	}
	var cases []corpusCase
	for _, m := range dirs {
		c := corpusCase{name: filepath.Base(filepath.Dir(m)), dir: filepath.Dir(m)}
		data, err := os.ReadFile(m)
		if err != nil {
			t.Fatal(err)
		}
		if err := toml.NewDecoder(bytes.NewReader(data)).DisallowUnknownFields().Decode(&c.manifest); err != nil {
			t.Fatalf("%s: %v", m, err)
		}
		for _, l := range c.manifest.Refused {
			if _, ok := matrixVersions[l]; !ok {
				t.Fatalf("%s: refused line %q is not in the matrix", m, l)
			}
		}
		for l := range c.manifest.Want {
			if _, ok := matrixVersions[l]; !ok || slices.Contains(c.manifest.Refused, l) {
				t.Fatalf("%s: want for line %q, which is not in the matrix or refuses the case", m, l)
			}
		}
		cases = append(cases, c)
	}
	return cases
}

// markerPlugin prefixes the plugin table appended to every copied *.toml
// file: containerd 2.x keeps unknown plugin tables in its dump, so the
// markers present there are the files it loaded. (1.7's dump drops unknown
// plugins but lists the loaded files as imports.)
const markerPlugin = "io.containerd.sgmarker.v1."

// materialize copies the case into a temporary directory, puts that
// directory in place of @ROOT@ and appends a marker to each *.toml file.
func (c corpusCase) materialize(t *testing.T) (root string) {
	t.Helper()
	root = t.TempDir()
	n := 0
	err := filepath.WalkDir(c.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(c.dir, p)
		if err != nil {
			return err
		}
		dst := filepath.Join(root, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		if rel == "case.toml" {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		data = bytes.ReplaceAll(data, []byte("@ROOT@"), []byte(root))
		if strings.HasSuffix(rel, ".toml") {
			n++
			data = fmt.Appendf(data, "\n[plugins.%q]\n  file = %q\n", fmt.Sprintf("%sf%d", markerPlugin, n), filepath.ToSlash(rel))
		}
		return os.WriteFile(dst, data, 0o644)
	})
	if err != nil {
		t.Fatalf("copying %s: %v", c.dir, err)
	}
	return root
}

// binary is one containerd of the matrix.
type binary struct {
	path     string
	version  string // as `containerd --version` prints it, e.g. "2.3.7+unknown"
	line     Line
	defaults view // its `containerd config default`, for values left empty
}

func newBinary(t *testing.T, dir string) *binary {
	t.Helper()
	b := &binary{path: filepath.Join(dir, "containerd")}
	out, err := run(b.path, "--version")
	if err != nil {
		t.Fatalf("%s --version: %v", b.path, err)
	}
	// "containerd github.com/containerd/containerd/v2 2.3.7+unknown <commit>"
	f := strings.Fields(out)
	if len(f) < 3 {
		t.Fatalf("%s --version printed %q", b.path, out)
	}
	b.version = f[2]
	if b.line, _, err = ParseRuntimeVersion(b.version); err != nil {
		t.Fatal(err)
	}
	out, err = run(b.path, "config", "default")
	if err != nil {
		t.Fatalf("%s config default: %v", b.path, err)
	}
	if b.defaults, err = parseDump(b.line, out); err != nil {
		t.Fatalf("%s config default: %v", b.path, err)
	}
	return b
}

func run(bin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%w: %s", err, lastLines(stderr.String(), 3))
	}
	return stdout.String(), nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// view is what a dump says about the fields compared.
type view struct {
	loaded []string // files loaded, relative to the case root, sorted
	// plugin tables as dumped (nil: absent, i.e. the plugin is disabled)
	cri, images, nri map[string]any
	disabled         []string
}

func parseDump(line Line, out string) (view, error) {
	var doc struct {
		Imports         []string       `toml:"imports"`
		DisabledPlugins []string       `toml:"disabled_plugins"`
		Plugins         map[string]any `toml:"plugins"`
	}
	if err := toml.Unmarshal([]byte(out), &doc); err != nil {
		return view{}, fmt.Errorf("parsing the dump: %w", err)
	}
	v := view{disabled: doc.DisabledPlugins}
	v.cri, _ = doc.Plugins[PluginCRI].(map[string]any)
	v.images, _ = doc.Plugins[PluginCRIImages].(map[string]any)
	v.nri, _ = doc.Plugins[PluginNRI].(map[string]any)
	if line.Major() == 1 {
		// 1.7's LoadConfig replaces imports with the files it loaded.
		v.loaded = append(v.loaded, doc.Imports...)
	} else {
		for k, p := range doc.Plugins {
			if strings.HasPrefix(k, markerPlugin) {
				f, _ := p.(map[string]any)["file"].(string)
				v.loaded = append(v.loaded, f)
			}
		}
	}
	sort.Strings(v.loaded)
	return v, nil
}

func str(m map[string]any, path ...string) string {
	v, _ := lookup(m, path...)
	s, _ := v.(string)
	return s
}

func boolean(m map[string]any, path ...string) bool {
	v, _ := lookup(m, path...)
	b, _ := v.(bool)
	return b
}

// dumped is the containerd side of the comparison, in Info's terms.
type dumped struct {
	sandbox        string
	configPath     string // raw, as dumped
	mirrors        bool
	localPull      bool
	nriEnabled     bool
	nri            NRI // paths and timeouts, when enabled
	loaded         []string
	criDisabled    bool
	imagesDisabled bool
}

// interpret reads a dump the way the running containerd would use it:
// empty NRI paths and an empty 2.x sandbox image fall back to the binary's
// defaults, and 2.1+ applies CheckLocalImagePullConfigs to the images table
// (internal/cri/config/config.go).
func (b *binary) interpret(v view) (dumped, error) {
	d := dumped{loaded: v.loaded}
	if b.line.Major() == 1 {
		d.criDisabled = v.cri == nil
		d.sandbox = str(v.cri, "sandbox_image")
		d.configPath = str(v.cri, "registry", "config_path")
		d.mirrors = len(table(v.cri, "registry", "mirrors")) > 0
		d.localPull = true
	} else {
		d.imagesDisabled = v.images == nil
		d.sandbox = str(v.images, "pinned_images", "sandbox")
		if d.sandbox == "" {
			d.sandbox = str(b.defaults.images, "pinned_images", "sandbox")
		}
		d.configPath = str(v.images, "registry", "config_path")
		d.mirrors = len(table(v.images, "registry", "mirrors")) > 0
		d.localPull = !b.line.transferPulls() || boolean(v.images, "use_local_image_pull") ||
			!boolean(v.images, "disable_snapshot_annotations") || boolean(v.images, "discard_unpacked_layers") ||
			d.mirrors || len(table(v.images, "registry", "configs")) > 0 || len(table(v.images, "registry", "auths")) > 0 ||
			number(v.images, "max_concurrent_downloads") != 3 || boolean(v.images, "image_pull_with_sync_fs")
	}
	d.nriEnabled = v.nri != nil && !boolean(v.nri, "disable") && !slices.Contains(v.disabled, PluginNRI)
	if d.nriEnabled {
		pick := func(k string) string {
			if s := str(v.nri, k); s != "" {
				return s
			}
			return str(b.defaults.nri, k)
		}
		d.nri = NRI{SocketPath: pick("socket_path"), PluginPath: pick("plugin_path"), PluginConfigPath: pick("plugin_config_path")}
		var err error
		if d.nri.RegistrationTimeout, err = time.ParseDuration(pick("plugin_registration_timeout")); err != nil {
			return d, err
		}
		if d.nri.RequestTimeout, err = time.ParseDuration(pick("plugin_request_timeout")); err != nil {
			return d, err
		}
	}
	return d, nil
}

func table(m map[string]any, path ...string) map[string]any {
	v, _ := lookup(m, path...)
	t, _ := v.(map[string]any)
	return t
}

func number(m map[string]any, path ...string) int64 {
	v, _ := lookup(m, path...)
	n, _ := v.(int64)
	return n
}

func TestDifferential(t *testing.T) {
	cases := loadCorpus(t)
	for _, env := range differentialMatrix {
		t.Run(env, func(t *testing.T) {
			dir := os.Getenv(env)
			if dir == "" {
				if os.Getenv("REQUIRE_E2E") == "1" {
					t.Fatalf("%s is not set (eval \"$(test/tools/install-deps.sh)\")", env)
				}
				t.Skipf("%s is not set: skipping this containerd line (eval \"$(test/tools/install-deps.sh)\")", env)
			}
			b := newBinary(t, dir)
			t.Logf("containerd %s (line %s)", b.version, b.line)
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					differential(t, b, c)
				})
			}
		})
	}
}

// TestCorpusReader holds the reader alone to each case's manifest, so the
// corpus is checked where no containerd binary is at hand.
func TestCorpusReader(t *testing.T) {
	for _, c := range loadCorpus(t) {
		for line, version := range matrixVersions {
			t.Run(c.name+"/"+line, func(t *testing.T) {
				root := c.materialize(t)
				info, err := LoadWithOptions(filepath.Join(root, "config.toml"), Options{RuntimeVersion: version})
				if slices.Contains(c.manifest.Refused, line) {
					if err == nil {
						t.Errorf("containerd %s refuses the case; the reader accepts it", version)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				w, ok := c.manifest.Want[line]
				if !ok {
					return
				}
				raw := info.RegistryConfigPath
				if info.RegistryConfigPathDefaulted {
					raw = ""
				}
				if w.Sandbox != "" && info.SandboxImage != w.Sandbox {
					t.Errorf("sandbox image %q, case.toml wants %q", info.SandboxImage, w.Sandbox)
				}
				if w.ConfigPath != nil && raw != *w.ConfigPath {
					t.Errorf("config_path %q, case.toml wants %q", raw, *w.ConfigPath)
				}
			})
		}
	}
}

func differential(t *testing.T, b *binary, c corpusCase) {
	root := c.materialize(t)
	main := filepath.Join(root, "config.toml")
	out, dumpErr := run(b.path, "--config", main, "config", "dump")
	info, readErr := LoadWithOptions(main, Options{RuntimeVersion: b.version})

	if slices.Contains(c.manifest.Refused, b.line.String()) {
		if dumpErr == nil {
			t.Errorf("containerd %s accepts the configuration; case.toml says it refuses it", b.version)
		}
		if readErr == nil {
			t.Errorf("the reader accepts the configuration; containerd %s refuses it", b.version)
		}
		t.Logf("refused: containerd: %v; reader: %v", dumpErr, readErr)
		return
	}
	if dumpErr != nil {
		t.Fatalf("containerd %s refuses the configuration (not listed in case.toml refused): %v", b.version, dumpErr)
	}
	if readErr != nil {
		t.Fatalf("the reader refuses what containerd %s accepts: %v", b.version, readErr)
	}
	v, err := parseDump(b.line, out)
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range v.loaded {
		if b.line.Major() == 1 {
			// 1.7 names the files by path: make them relative like markers.
			if v.loaded[i], err = filepath.Rel(root, f); err != nil {
				t.Fatal(err)
			}
		}
	}
	sort.Strings(v.loaded)
	d, err := b.interpret(v)
	if err != nil {
		t.Fatal(err)
	}

	var files []string
	for _, f := range info.Files {
		rel, err := filepath.Rel(root, f)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, rel)
	}
	sort.Strings(files)

	check := func(what string, reader, containerd any) {
		t.Helper()
		if fmt.Sprint(reader) != fmt.Sprint(containerd) {
			t.Errorf("%s: reader %q, containerd %s %q", what, reader, b.version, containerd)
		}
	}
	check("line", info.Line, b.line)
	check("files loaded", files, d.loaded)
	criOff := d.criDisabled || d.imagesDisabled
	check("CRI disabled", info.CRIDisabled, criOff)
	if !criOff {
		check("sandbox image", info.SandboxImage, d.sandbox)
		raw := info.RegistryConfigPath
		if info.RegistryConfigPathDefaulted {
			raw = "" // the default is set at plugin init, after the dump
		}
		check("registry config_path", raw, d.configPath)
		check("registry mirrors", info.RegistryMirrors, d.mirrors)
		check("use local image pull", info.UseLocalImagePull, d.localPull)
		wantDirs := []string(nil)
		if d.configPath != "" {
			wantDirs = filepath.SplitList(d.configPath)
		} else if !d.mirrors && b.line.defaultRegistryConfigPath() != "" {
			// plugins/cri/images/plugin.go: Linux default when neither is set.
			wantDirs = filepath.SplitList(b.line.defaultRegistryConfigPath())
		}
		check("registry config dirs", info.RegistryConfigDirs, wantDirs)
	}
	check("NRI enabled", !info.NRI.Disabled, d.nriEnabled)
	if d.nriEnabled {
		got := NRI{SocketPath: info.NRI.SocketPath, PluginPath: info.NRI.PluginPath, PluginConfigPath: info.NRI.PluginConfigPath,
			RegistrationTimeout: info.NRI.RegistrationTimeout, RequestTimeout: info.NRI.RequestTimeout}
		check("NRI paths and timeouts", fmt.Sprintf("%+v", got), fmt.Sprintf("%+v", d.nri))
	}
	// Without the runtime version the line is inferred from the files; where
	// the inference lands on this binary's family (always, for a version-4
	// file on 2.3+), the answer must be the same.
	if inferred, err := LoadWithOptions(main, Options{}); err == nil && inferred.Line.family() == b.line.family() {
		check("inferred sandbox image", inferred.SandboxImage, info.SandboxImage)
		check("inferred registry config_path", inferred.RegistryConfigPath, info.RegistryConfigPath)
		check("inferred NRI", fmt.Sprintf("%+v", inferred.NRI), fmt.Sprintf("%+v", info.NRI))
	}
	for line, w := range c.manifest.Want {
		if line != b.line.String() {
			continue
		}
		if w.Sandbox != "" && d.sandbox != w.Sandbox {
			t.Errorf("case.toml wants sandbox image %q on %s; containerd %s dumps %q", w.Sandbox, line, b.version, d.sandbox)
		}
		if w.ConfigPath != nil && d.configPath != *w.ConfigPath {
			t.Errorf("case.toml wants config_path %q on %s; containerd %s dumps %q", *w.ConfigPath, line, b.version, d.configPath)
		}
	}
	t.Logf("sandbox %s, config_path %q, local pull %v, NRI enabled %v, files %q", d.sandbox, d.configPath, d.localPull, d.nriEnabled, d.loaded)
}
