package containerdconfig

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// rawFile holds the top-level keys of one config file that matter here.
// Unknown keys are ignored, as containerd does after warning about them.
type rawFile struct {
	Version         int            `toml:"version"`
	Imports         []string       `toml:"imports"`
	Plugins         map[string]any `toml:"plugins"`
	DisabledPlugins []string       `toml:"disabled_plugins"`
	RequiredPlugins []string       `toml:"required_plugins"`
}

// parsedFile is one config file as read, before any migration. It is never
// modified, so the same files can be evaluated for several lines.
type parsedFile struct {
	path string
	raw  *rawFile
}

// loadedFile keeps each file's own plugin tables (after renames and, from
// 2.3 on, migrations) so the file that set a value can be named afterwards.
type loadedFile struct {
	path    string
	plugins map[string]any
}

// state is containerd's in-memory Config while files are merged.
type state struct {
	line Line
	// lenient: the line stands in for a newer containerd, so versions above
	// the line's own are accepted rather than refused.
	lenient     bool
	version     int
	versionFile string
	plugins     map[string]any
	disabled    []string
	required    []string
	files       []loadedFile
	patterns    []string
}

func newState(line Line, lenient bool) *state {
	st := &state{line: line, lenient: lenient, plugins: map[string]any{}}
	if line.Major() == 1 {
		// 1.7's default config has version 1 (cmd/containerd/command/config.go:
		// "this version MUST remain set to 1").
		st.version = 1
	} else {
		// 2.x's default config carries version.ConfigVersion
		// (cmd/containerd/command/config.go platformAgnosticDefaultConfig).
		st.version = line.ConfigVersion()
	}
	return st
}

// Load reads the containerd config at path with default Options.
func Load(path string) (*Info, error) {
	return LoadWithOptions(path, Options{})
}

// LoadWithOptions reads the containerd config at path on this machine: it is
// LoadFS over the root file system. A relative path is taken relative to the
// working directory, as containerd's --config is (Info.Files then holds
// absolute paths).
func LoadWithOptions(path string, opts Options) (*Info, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("containerd config %s: %w", path, err)
	}
	return LoadFS(os.DirFS("/"), abs, opts)
}

// LoadFS reads the containerd config at path, and every file it imports,
// from fsys, which holds the node's root file system: path, the imports and
// the keys of Options.Overlay are node paths ("/etc/containerd/config.toml"),
// looked up in fsys without their leading "/". Files are loaded the way
// containerd's LoadConfig does it:
//   - breadth-first: main file, its imports in order, then their imports; a
//     path already loaded is skipped (cycles are fine);
//   - an import is cleaned, made relative to the importing file's directory
//     when not absolute, and globbed only when it contains "*" (a glob with
//     no match adds nothing, a missing plain path is an error);
//   - only files actually loaded have their imports followed; there is no
//     implicit conf.d import (containerd 2.x lists conf.d in its *default*
//     config, whose imports LoadConfig never follows);
//   - each file carries its own version (none = 1).
//
// Then the files are merged with the rules of the containerd line chosen by
// Options (see Options.RuntimeVersion; Info.Line, LineSource and Notes say
// which line was used and why).
//
// A missing main file returns an error wrapping fs.ErrNotExist; containerd
// then runs on defaults (see DefaultsFor).
func LoadFS(fsys fs.FS, path string, opts Options) (*Info, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("containerd config %s: want an absolute node path", path)
	}
	for p := range opts.Overlay {
		if !filepath.IsAbs(p) || filepath.Clean(p) != p {
			return nil, fmt.Errorf("containerd config overlay file %q: want a clean absolute node path", p)
		}
	}
	files, loadErr := collect(source{fsys: fsys, overlay: opts.Overlay}, path)
	if len(files) == 0 {
		return nil, loadErr
	}
	choice, err := chooseLine(opts, files)
	if err != nil {
		if loadErr != nil {
			return nil, loadErr
		}
		return nil, err
	}
	info, err := evaluate(choice.line, choice.lenient, files, loadErr, confDirOf(opts))
	if err != nil {
		return nil, err
	}
	choice.apply(info)
	// Files newer than any known line are not meant for the older lines.
	if choice.assumed && !choice.lenient {
		info.Notes = append(info.Notes, alternatives(choice, opts, files, info)...)
	}
	return info, nil
}

func confDirOf(opts Options) string {
	if opts.ConfDir == "" {
		return DefaultConfDir
	}
	return opts.ConfDir
}

// collect reads the main file and every file it imports in containerd's
// order. It returns the files read up to the first error, and that error:
// containerd merges each file before reading the next, so it would have
// merged those files before failing.
func collect(src source, path string) ([]parsedFile, error) {
	var files []parsedFile
	loaded := map[string]bool{}
	pending := []string{path}
	for len(pending) > 0 {
		p := pending[0]
		pending = pending[1:]
		if loaded[p] {
			continue
		}
		rf, err := readFile(src, p)
		if err != nil {
			return files, err
		}
		files = append(files, parsedFile{path: p, raw: rf})
		imports, err := resolveImports(src, p, rf.Imports)
		if err != nil {
			return files, fmt.Errorf("containerd config %s: imports: %w", p, err)
		}
		loaded[p] = true
		pending = append(pending, imports...)
	}
	return files, nil
}

// evaluate merges files with the rules of line, in containerd's order of
// failures: a merge error (containerd merges as it reads), then loadErr,
// then the checks run after every file is merged.
func evaluate(line Line, lenient bool, files []parsedFile, loadErr error, confDir string) (*Info, error) {
	st := newState(line, lenient)
	for _, f := range files {
		if err := st.merge(f.path, f.raw); err != nil {
			return nil, err
		}
	}
	if loadErr != nil {
		return nil, loadErr
	}
	if err := st.validate(); err != nil {
		return nil, err
	}
	info, err := st.info(confDir)
	if err != nil {
		return nil, err
	}
	info.Version = fileVersion(files[0].raw.Version)
	return info, nil
}

// lineChoice is the containerd line the files are read for, and why.
type lineChoice struct {
	line    Line
	lenient bool
	assumed bool
	source  string
	notes   []string
}

func (c lineChoice) apply(info *Info) {
	info.Line, info.LineSource, info.LineAssumed = c.line, c.source, c.assumed
	info.Notes = append(append([]string(nil), c.notes...), info.Notes...)
}

// chooseLine picks the line: the runtime version when given; else 1.7 for
// Options.Major 1; else the oldest line that reads the highest file version
// (a version-4 file means 2.3 or later, since older lines refuse it),
// assumed and said so in a note.
func chooseLine(opts Options, files []parsedFile) (lineChoice, error) {
	if opts.Major != 0 && opts.Major != 1 && opts.Major != 2 {
		return lineChoice{}, fmt.Errorf("containerd major version %d: want 1 or 2", opts.Major)
	}
	maxV, maxFile := 0, ""
	for _, f := range files {
		if v := fileVersion(f.raw.Version); v > maxV {
			maxV, maxFile = v, f.path
		}
	}
	if opts.RuntimeVersion != "" {
		l, note, err := ParseRuntimeVersion(opts.RuntimeVersion)
		if err != nil {
			return lineChoice{}, err
		}
		if opts.Major != 0 && opts.Major != l.Major() {
			return lineChoice{}, fmt.Errorf("containerd %s is not containerd major version %d (Options.Major)", opts.RuntimeVersion, opts.Major)
		}
		c := lineChoice{line: l, source: "containerd " + strings.TrimSpace(opts.RuntimeVersion)}
		if note != "" {
			c.lenient, c.notes = true, []string{note}
		}
		return c, nil
	}
	from := fmt.Sprintf("version %d in %s", maxV, maxFile)
	switch {
	case opts.Major == 1:
		return lineChoice{line: Line17, source: "Options.Major 1"}, nil
	case maxV > LineNewest.ConfigVersion():
		return lineChoice{line: LineNewest, lenient: true, assumed: true, source: from, notes: []string{
			fmt.Sprintf("%s has config version %d, newer than any containerd line sandbox-guard knows (containerd %s reads up to version %d); read with containerd %s's rules", maxFile, maxV, LineNewest, LineNewest.ConfigVersion(), LineNewest)}}, nil
	case maxV == Line23.ConfigVersion():
		return lineChoice{line: Line23, assumed: true, source: from, notes: []string{
			fmt.Sprintf("no containerd version given: %s has config version %d, which only containerd 2.3 and later read; read as containerd 2.3 (2.4 reads configs alike)", maxFile, maxV)}}, nil
	case maxV == Line22.ConfigVersion() || opts.Major == 2:
		src := from
		if opts.Major == 2 {
			src = "Options.Major 2"
		}
		return lineChoice{line: Line22, assumed: true, source: src, notes: []string{
			fmt.Sprintf("no containerd version given: read as containerd 2.2 (%s)", src)}}, nil
	case maxV == 2:
		return lineChoice{line: Line17, assumed: true, source: from, notes: []string{
			fmt.Sprintf("no containerd version given: read as containerd 1.7 (%s)", from)}}, nil
	case len(files) == 0:
		return lineChoice{}, errors.New("containerd line unknown: set Options.RuntimeVersion or Options.Major")
	default:
		return lineChoice{}, fmt.Errorf("containerd config %s: no loaded file has a version above 1, which containerd 1.7 and 2.x both read; set Options.RuntimeVersion or Options.Major", files[0].path)
	}
}

// alternatives reads the files as the other line families would and notes
// where their answer differs from info on what sandbox-guard acts on. A
// line that refuses the files is no alternative.
func alternatives(choice lineChoice, opts Options, files []parsedFile, info *Info) []string {
	var notes []string
	for _, alt := range []Line{Line17, Line22, Line23} {
		if alt.family() == choice.line.family() || (opts.Major != 0 && alt.Major() != opts.Major) {
			continue
		}
		other, err := evaluate(alt, false, files, nil, confDirOf(opts))
		if err != nil {
			continue
		}
		var diff []string
		if other.SandboxImage != info.SandboxImage {
			diff = append(diff, "sandbox image "+other.SandboxImage)
		}
		if other.RegistryConfigPath != info.RegistryConfigPath {
			diff = append(diff, fmt.Sprintf("registry config_path %q", other.RegistryConfigPath))
		}
		if other.NRI.Disabled != info.NRI.Disabled {
			diff = append(diff, fmt.Sprintf("NRI disabled = %t", other.NRI.Disabled))
		}
		if len(diff) > 0 {
			notes = append(notes, fmt.Sprintf("%s would read: %s", alt.family(), strings.Join(diff, ", ")))
		}
	}
	return notes
}

func fileVersion(v int) int {
	if v == 0 {
		return 1
	}
	return v
}

func readFile(src source, path string) (*rawFile, error) {
	b, err := src.readFile(path)
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
func resolveImports(src source, parent string, imports []string) ([]string, error) {
	var out []string
	for _, p := range imports {
		p = filepath.Clean(p)
		if !filepath.IsAbs(p) {
			p = filepath.Join(filepath.Dir(parent), p)
		}
		if strings.Contains(p, "*") {
			matches, err := src.glob(p)
			if err != nil {
				return nil, err
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

// merge folds one file into the state using the rules of st.line.
func (st *state) merge(path string, rf *rawFile) error {
	plugins := map[string]any{}
	if rf.Plugins != nil {
		plugins = deepCopy(rf.Plugins).(map[string]any)
	}
	disabled := append([]string(nil), rf.DisabledPlugins...)
	required := append([]string(nil), rf.RequiredPlugins...)
	version := rf.Version

	switch {
	case st.line.perFileMigration():
		if version < st.version {
			target := min(st.version, st.line.ConfigVersion())
			if st.version > st.line.ConfigVersion() && !st.lenient {
				// LoadConfigWithPlugins migrates the file up to the merged
				// version; migrations[] ends at 3 -> 4, so going past 4
				// indexes beyond it and containerd panics.
				return fmt.Errorf("containerd config %s: a file of version %d after %s's version %d makes containerd %s crash (migration index out of range)", path, fileVersion(version), st.versionFile, st.version, st.line)
			}
			var err error
			if plugins, err = st.migrateFile(path, plugins, disabled, required, version, target); err != nil {
				return err
			}
			version = st.version
		}
	case st.line.Major() == 2 && (version == 0 || version == 1):
		// 2.0-2.2 LoadConfig: MigrateConfigTo(out.Version) for version 0/1
		// files renames short plugin names (v1Migrate) and stamps the file
		// with the current merged version, so such a file never triggers the
		// later version-2 CRI migration by itself.
		if st.version > st.line.ConfigVersion() {
			// migrations[] has entries for 0..2; walking up to a version
			// above 3 indexes past its end and containerd panics.
			return fmt.Errorf("containerd config %s: a file without version (or version 1) after %s's version %d makes containerd %s crash (migration index out of range)", path, st.versionFile, st.version, st.line)
		}
		plugins = renameV1Plugins(plugins)
		renameV1List(disabled)
		renameV1List(required)
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

	if st.line.Major() == 1 {
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

// migrateFile is what containerd 2.3+ does to one file of a lower version
// before merging it (v2.3.7 and v2.4.2 cmd/containerd/server/config/config.go
// LoadConfigWithPlugins): for each version v from the file's up to the
// target, MigrateConfigTo(v+1) runs migrations[v] (v1Migrate renames short
// plugin names at v = 1; serviceMigrate moves [grpc], [ttrpc], [debug] and
// [metrics] into server plugins at v = 3, which nothing here reads), then
// every plugin's ConfigMigration(v) in dependency order. Of those, the CRI
// images plugin copies the 1.7-style CRI keys into
// io.containerd.cri.v1.images (plugins/cri/images/plugin.go) and then the
// CRI gRPC plugin, which requires it, keeps only its server keys in
// io.containerd.grpc.v1.cri (plugins/cri/cri.go). Both run for every v below
// 4, so a version-3 file's 1.7-style CRI keys are migrated too, and a
// versionless file's [plugins."io.containerd.grpc.v1.cri"] is migrated at
// v = 0, before v1Migrate renames a short [plugins.cri] over it.
func (st *state) migrateFile(path string, plugins map[string]any, disabled, required []string, from, to int) (map[string]any, error) {
	for v := from; v < to; v++ {
		if v == 1 {
			plugins = renameV1Plugins(plugins)
			renameV1List(disabled)
			renameV1List(required)
		}
		if err := migrateCRITables(path, plugins); err != nil {
			return nil, err
		}
	}
	return plugins, nil
}

// criServerKeys are the keys the 2.x CRI gRPC plugin keeps when it migrates
// io.containerd.grpc.v1.cri (plugins/cri/cri.go configMigration).
var criServerKeys = []string{"disable_tcp_service", "stream_server_address", "stream_server_port", "stream_idle_timeout", "enable_tls_streaming", "x509_key_pair_streaming"}

// migrateCRITables runs the CRI images and CRI gRPC plugins' migrations on
// one set of plugin tables.
func migrateCRITables(where string, plugins map[string]any) error {
	v, ok := plugins[PluginCRI]
	if !ok {
		return nil
	}
	src, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("containerd config %s: plugins.%q must be a table, got %T (containerd crashes migrating it)", where, PluginCRI, v)
	}
	dst := map[string]any{}
	if d, ok := plugins[PluginCRIImages]; ok {
		if dst, ok = d.(map[string]any); !ok {
			return fmt.Errorf("containerd config %s: plugins.%q must be a table, got %T", where, PluginCRIImages, d)
		}
	}
	if err := migrateImages(where, dst, src); err != nil {
		return err
	}
	// The images migration stores its table even when it copied nothing.
	plugins[PluginCRIImages] = dst
	server := map[string]any{}
	for _, k := range criServerKeys {
		if v, ok := src[k]; ok {
			server[k] = v
		}
	}
	plugins[PluginCRI] = server
	return nil
}

// validate applies the checks containerd runs after loading every file.
func (st *state) validate() error {
	if st.line.Major() == 1 {
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
	if st.version > st.line.ConfigVersion() && !st.lenient {
		return fmt.Errorf("containerd config %s: version %d is not supported by containerd %s (max %d)", st.versionFile, st.version, st.line, st.line.ConfigVersion())
	}
	for _, p := range st.disabled {
		if !strings.Contains(p, ".") {
			return fmt.Errorf("containerd config: invalid disabled plugin URI %q (containerd %s refuses to start)", p, st.line)
		}
	}
	for _, p := range st.required {
		if !strings.Contains(p, ".") {
			return fmt.Errorf("containerd config: invalid required plugin URI %q (containerd %s refuses to start)", p, st.line)
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

// renameV1List applies v1MigratePluginName to disabled_plugins or
// required_plugins in place, as v1Migrate does.
func renameV1List(list []string) {
	for i, p := range list {
		list[i] = v1MigratePluginName(p)
	}
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
