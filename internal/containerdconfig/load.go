package containerdconfig

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// maxVersion2 is version.ConfigVersion of containerd 2.2: the migration
// table there has entries for versions 0..2 only.
const maxVersion2 = 3

// rawFile holds the top-level keys of one config file that matter here.
// Unknown keys are ignored, as containerd does after warning about them.
type rawFile struct {
	Version         int            `toml:"version"`
	Imports         []string       `toml:"imports"`
	Plugins         map[string]any `toml:"plugins"`
	DisabledPlugins []string       `toml:"disabled_plugins"`
	RequiredPlugins []string       `toml:"required_plugins"`
}

// loadedFile keeps each file's own plugin tables (after 2.x renamed the
// short v1 names) so the file that set a value can be named afterwards.
type loadedFile struct {
	path    string
	plugins map[string]any
}

// state is containerd's in-memory Config while files are merged.
type state struct {
	major       int
	version     int
	versionFile string
	plugins     map[string]any
	disabled    []string
	required    []string
	files       []loadedFile
	patterns    []string
}

func newState(major int) *state {
	st := &state{major: major, plugins: map[string]any{}}
	if major == 1 {
		// 1.7's default config has version 1 (cmd/containerd/command/config.go:
		// "this version MUST remain set to 1").
		st.version = 1
	} else {
		st.version = maxVersion2
	}
	return st
}

// Load reads the containerd config at path with default Options.
func Load(path string) (*Info, error) {
	return LoadWithOptions(path, Options{})
}

// LoadWithOptions reads the containerd config at path and every file it
// imports, the way containerd's LoadConfig does:
//   - files are processed breadth-first: main file, its imports in order,
//     then their imports; a path already loaded is skipped (cycles are fine);
//   - an import is cleaned, made relative to the importing file's directory
//     when not absolute, and globbed only when it contains "*" (a glob with
//     no match adds nothing, a missing plain path is an error);
//   - only files actually loaded have their imports followed; there is no
//     implicit conf.d import (containerd 2.x lists conf.d in its *default*
//     config, whose imports LoadConfig never follows);
//   - each file carries its own version (none = 1).
//
// A missing main file returns an error wrapping fs.ErrNotExist; containerd
// then runs on defaults (see Defaults).
func LoadWithOptions(path string, opts Options) (*Info, error) {
	confDir := opts.ConfDir
	if confDir == "" {
		confDir = DefaultConfDir
	}
	major := opts.Major
	var first *rawFile
	if major == 0 {
		rf, err := readFile(path)
		if err != nil {
			return nil, err
		}
		m, ok := MajorFromVersion(fileVersion(rf.Version))
		if !ok {
			return nil, fmt.Errorf("containerd config %s: version %d does not tell containerd 1.7 from 2.x; set Options.Major", path, fileVersion(rf.Version))
		}
		major, first = m, rf
	}
	if major != 1 && major != 2 {
		return nil, fmt.Errorf("containerd major version %d: want 1 or 2", major)
	}

	st := newState(major)
	mainVersion := 0
	loaded := map[string]bool{}
	pending := []string{path}
	for len(pending) > 0 {
		p := pending[0]
		pending = pending[1:]
		if loaded[p] {
			continue
		}
		rf := first
		first = nil
		if rf == nil {
			var err error
			if rf, err = readFile(p); err != nil {
				return nil, err
			}
		}
		if len(st.files) == 0 {
			mainVersion = fileVersion(rf.Version)
		}
		if err := st.merge(p, rf); err != nil {
			return nil, err
		}
		imports, err := resolveImports(p, rf.Imports)
		if err != nil {
			return nil, fmt.Errorf("containerd config %s: imports: %w", p, err)
		}
		loaded[p] = true
		pending = append(pending, imports...)
	}
	if err := st.validate(); err != nil {
		return nil, err
	}
	info, err := st.info(confDir)
	if err != nil {
		return nil, err
	}
	info.Version = mainVersion
	return info, nil
}

func fileVersion(v int) int {
	if v == 0 {
		return 1
	}
	return v
}

func readFile(path string) (*rawFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read containerd config %s: %w", path, err)
	}
	var rf rawFile
	if err := toml.Unmarshal(b, &rf); err != nil {
		var derr *toml.DecodeError
		if errors.As(err, &derr) {
			row, col := derr.Position()
			return nil, fmt.Errorf("parse containerd config %s: line %d column %d: %w", path, row, col, err)
		}
		return nil, fmt.Errorf("parse containerd config %s: %w", path, err)
	}
	return &rf, nil
}

// resolveImports copies containerd's resolveImports (identical in 1.7 and
// 2.x): Clean, join relative paths to the parent's directory, glob only
// entries containing "*".
func resolveImports(parent string, imports []string) ([]string, error) {
	var out []string
	for _, p := range imports {
		p = filepath.Clean(p)
		if !filepath.IsAbs(p) {
			p = filepath.Join(filepath.Dir(parent), p)
		}
		if strings.Contains(p, "*") {
			matches, err := filepath.Glob(p)
			if err != nil {
				return nil, fmt.Errorf("glob %q: %w", p, err)
			}
			out = append(out, matches...)
		} else {
			out = append(out, p)
		}
	}
	return out, nil
}

// importPatterns returns the resolved, unglobbed import entries.
func importPatterns(parent string, imports []string) []string {
	out := make([]string, 0, len(imports))
	for _, p := range imports {
		p = filepath.Clean(p)
		if !filepath.IsAbs(p) {
			p = filepath.Join(filepath.Dir(parent), p)
		}
		out = append(out, p)
	}
	return out
}

func matchImport(pattern, path string) bool {
	if !strings.Contains(pattern, "*") {
		return pattern == path
	}
	ok, err := filepath.Match(pattern, path)
	return err == nil && ok
}

// merge folds one file into the state using the rules of st.major.
func (st *state) merge(path string, rf *rawFile) error {
	plugins := rf.Plugins
	if plugins == nil {
		plugins = map[string]any{}
	}
	disabled := append([]string(nil), rf.DisabledPlugins...)
	required := append([]string(nil), rf.RequiredPlugins...)
	version := rf.Version

	if st.major == 2 && (version == 0 || version == 1) {
		// 2.x LoadConfig: MigrateConfigTo(out.Version) for version 0/1 files
		// renames short plugin names (v1Migrate) and stamps the file with the
		// current merged version, so such a file never triggers the later
		// version-2 CRI migration by itself.
		if st.version > maxVersion2 {
			// migrations[] has entries for 0..2; walking up to a version
			// above 3 indexes past its end and containerd panics.
			return fmt.Errorf("containerd config %s: a file without version (or version 1) after %s's version %d makes containerd 2.x crash (migration index out of range)", path, st.versionFile, st.version)
		}
		plugins = renameV1Plugins(plugins)
		for i, p := range disabled {
			disabled[i] = v1MigratePluginName(p)
		}
		for i, p := range required {
			required[i] = v1MigratePluginName(p)
		}
		version = st.version
	}

	// Both: mergo.WithOverride copies a non-zero version over the merged one,
	// so the last file with a version line decides the effective version.
	if version != 0 {
		st.version = version
	}
	if rf.Version != 0 && version == rf.Version {
		st.versionFile = path
	}

	if st.major == 1 {
		// 1.7 mergeConfig: mergo then "Replace entire sections instead of
		// merging map's values": every plugin key present in the file
		// replaces the whole table. WithAppendSlice keeps duplicates.
		for k, v := range plugins {
			st.plugins[k] = deepCopy(v)
		}
		st.disabled = append(st.disabled, disabled...)
		st.required = append(st.required, required...)
	} else {
		// 2.x mergeConfig: mergo.WithOverride on map[string]interface{}:
		// maps merge recursively, anything else (scalars, arrays, even empty
		// or false values) from the later file replaces; a type clash
		// (table vs value) is won by the later file. Slices at the top level
		// use containerd's sliceTransformer: append entries not yet present.
		deepMerge(st.plugins, plugins)
		st.disabled = appendUnique(st.disabled, disabled)
		st.required = appendUnique(st.required, required)
	}
	st.files = append(st.files, loadedFile{path: path, plugins: plugins})
	st.patterns = append(st.patterns, importPatterns(path, rf.Imports)...)
	return nil
}

// validate applies the checks containerd runs after loading every file.
func (st *state) validate() error {
	if st.major == 1 {
		// 1.7 ValidateV2.
		if st.version < 2 {
			return nil // version 1: deprecated, only a warning
		}
		if st.version > 2 {
			return fmt.Errorf("containerd config %s: version %d is not supported by containerd 1.7 (max 2)", st.versionFile, st.version)
		}
		for _, p := range st.disabled {
			if !isV2PluginURI(p) {
				return fmt.Errorf("containerd config: invalid disabled plugin URI %q (containerd 1.7 refuses to start)", p)
			}
		}
		for _, p := range st.required {
			if !isV2PluginURI(p) {
				return fmt.Errorf("containerd config: invalid required plugin URI %q (containerd 1.7 refuses to start)", p)
			}
		}
		for _, k := range sortedKeys(st.plugins) {
			if !isV2PluginURI(k) {
				return fmt.Errorf("containerd config %s: invalid plugin key %q in a version-2 config (containerd 1.7 refuses to start)", st.originOfKey(k), k)
			}
		}
		return nil
	}
	// 2.x ValidateVersion.
	if st.version > maxVersion2 {
		return fmt.Errorf("containerd config %s: version %d is not supported by containerd 2.2 (max %d)", st.versionFile, st.version, maxVersion2)
	}
	for _, p := range st.disabled {
		if !strings.Contains(p, ".") {
			return fmt.Errorf("containerd config: invalid disabled plugin URI %q (containerd 2.x refuses to start)", p)
		}
	}
	for _, p := range st.required {
		if !strings.Contains(p, ".") {
			return fmt.Errorf("containerd config: invalid required plugin URI %q (containerd 2.x refuses to start)", p)
		}
	}
	return nil
}

func isV2PluginURI(p string) bool {
	return strings.HasPrefix(p, "io.containerd.") && len(strings.SplitN(p, ".", 4)) >= 4
}

// originOfKey names the last file that has plugin table key.
func (st *state) originOfKey(key string) string {
	for i := len(st.files) - 1; i >= 0; i-- {
		if _, ok := st.files[i].plugins[key]; ok {
			return st.files[i].path
		}
	}
	return ""
}

// origin names the last file whose own content has the value at
// plugins[key][path...]. With 2.x deep merge that file is the one whose value
// survived; with 1.7 table replacement the last file naming the table wins
// and, if the merged table has the value, that file has it too.
func (st *state) origin(key string, path ...string) string {
	for i := len(st.files) - 1; i >= 0; i-- {
		if _, ok := lookup(st.files[i].plugins, append([]string{key}, path...)...); ok {
			return st.files[i].path
		}
	}
	return ""
}

func deepMerge(dst, src map[string]any) {
	for k, sv := range src {
		if sm, ok := sv.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				deepMerge(dm, sm)
				continue
			}
		}
		dst[k] = deepCopy(sv)
	}
}

// deepCopy keeps per-file tables (used for provenance) independent from the
// merged tables, which later files modify in place.
func deepCopy(v any) any {
	switch t := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(t))
		for k, e := range t {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		s := make([]any, len(t))
		for i, e := range t {
			s[i] = deepCopy(e)
		}
		return s
	default:
		return v
	}
}

func appendUnique(dst, src []string) []string {
	for _, s := range src {
		found := false
		for _, d := range dst {
			if d == s {
				found = true
				break
			}
		}
		if !found {
			dst = append(dst, s)
		}
	}
	return dst
}

func lookup(m map[string]any, path ...string) (any, bool) {
	var cur any = m
	for _, k := range path {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = mm[k]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// renameV1Plugins applies containerd 2.x v1Migrate to one file's tables.
// Keys are visited in sorted order so that a file naming the same plugin
// twice ("cri" and its URI) gives a stable result; containerd's own map
// iteration makes that case random.
func renameV1Plugins(plugins map[string]any) map[string]any {
	out := make(map[string]any, len(plugins))
	for _, k := range sortedKeys(plugins) {
		out[v1MigratePluginName(k)] = plugins[k]
	}
	return out
}

// v1MigratePluginName copies containerd 2.x's mapping of version-1 short
// plugin names. Note that "nri" is not in the list: a versionless
// [plugins.nri] table becomes "io.containerd.grpc.v1.nri" and is ignored.
func v1MigratePluginName(p string) string {
	corePlugins := map[string]string{
		"cri":       "io.containerd.grpc.v1.cri",
		"cgroups":   "io.containerd.monitor.v1.cgroups",
		"linux":     "io.containerd.runtime.v1.linux",
		"scheduler": "io.containerd.gc.v1.scheduler",
		"bolt":      "io.containerd.metadata.v1.bolt",
		"task":      "io.containerd.runtime.v2.task",
		"opt":       "io.containerd.internal.v1.opt",
		"restart":   "io.containerd.internal.v1.restart",
		"tracing":   "io.containerd.internal.v1.tracing",
		"otlp":      "io.containerd.tracing.processor.v1.otlp",
		"aufs":      "io.containerd.snapshotter.v1.aufs",
		"btrfs":     "io.containerd.snapshotter.v1.btrfs",
		"devmapper": "io.containerd.snapshotter.v1.devmapper",
		"native":    "io.containerd.snapshotter.v1.native",
		"overlayfs": "io.containerd.snapshotter.v1.overlayfs",
		"zfs":       "io.containerd.snapshotter.v1.zfs",
	}
	if strings.Contains(p, ".") {
		return p
	}
	if full, ok := corePlugins[p]; ok {
		return full
	}
	if strings.HasSuffix(p, "-service") {
		return "io.containerd.service.v1." + p
	}
	if p == "windows" || p == "windows-lcow" {
		return "io.containerd.snapshotter.v1." + p
	}
	return "io.containerd.grpc.v1." + p
}
