// Package install puts sandbox-guard on a node as a pre-registered NRI plugin: the binary in
// containerd's NRI plugin_path, its configuration in plugin_config_path, and a containerd
// drop-in that switches NRI on and names those directories. It is what `sandbox-guard install`
// and the installer DaemonSet run.
//
// Rules it keeps:
//   - Idempotent: a file that already holds what would be written is not touched (same bytes,
//     same mtime) and reported "unchanged".
//   - A configuration file (the plugin's, the drop-in) that differs from what would be written
//     is someone's edit: it is kept, and reported, unless Force; then the old one is kept as a
//     backup next to it. The binary is always brought up to date.
//   - Writes are atomic and never leave a stray executable in plugin_path (see writeFile).
//   - It reads containerd's configuration with internal/containerdconfig, as containerd will at
//     its next start, and says whether containerd will start the plugin; it refuses to write a
//     drop-in that would stop containerd from starting.
//   - It never edits containerd's main configuration: a missing imports line is reported.
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
	"time"

	"github.com/containerd/nri/pkg/api"

	"github.com/sandbox-guard/sandbox-guard/etc"
	"github.com/sandbox-guard/sandbox-guard/internal/config"
	"github.com/sandbox-guard/sandbox-guard/internal/containerdconfig"
)

// Options say what to install and where.
type Options struct {
	// Root is where this process finds the node's file system: "/" on the node, "/host" in
	// the installer DaemonSet (the node's directories mounted below it).
	Root string
	// PathsRoot is put in front of every path written into the drop-in, and of the default
	// paths (main config, plugin directories) as containerd sees them. "/" on every real node;
	// tests that run a containerd whose files all live under a temporary directory pass that
	// directory (as Root too).
	PathsRoot string
	// ContainerdConfig is containerd's main configuration as containerd sees it (default
	// PathsRoot/etc/containerd/config.toml). It is read, never written.
	ContainerdConfig string
	// ContainerdMajor is 1 (containerd 1.7) or 2 (2.x); 0 tells from ContainerdVersion, from
	// `containerd --version`, or from ContainerdConfig's version.
	ContainerdMajor int
	// ContainerdVersion is containerd's version ("2.3.7", as `containerd --version` or NRI print
	// it), when known; it decides the line (1.7, 2.2, 2.3, ...) and the rules the configuration
	// is read with.
	ContainerdVersion string
	// ContainerdBinary is a containerd binary (as this process sees it) to ask for its version
	// when neither ContainerdVersion nor ContainerdMajor is given. Empty: on the node itself
	// (Root "/") the containerd in PATH, if any; elsewhere (the installer DaemonSet) none.
	ContainerdBinary string
	// Binary is the plugin executable's content.
	Binary []byte
	// Config is the plugin configuration to install; nil installs the shipped one
	// (etc/nri/conf.d/10-sandbox-guard.conf). ConfigSource names it in messages.
	Config       []byte
	ConfigSource string
	// Force replaces configuration files that differ from what install would write, keeping
	// the old content as <file>.bak-<time>.
	Force bool
	// Now is the clock for backup names (time.Now when nil).
	Now func() time.Time
}

// Action is what install did to one file.
type Action string

const (
	Created   Action = "created"
	Updated   Action = "updated"
	Unchanged Action = "unchanged"
	Kept      Action = "kept (edited)"
)

// File is one file install is responsible for.
type File struct {
	Path   string // where it is, as this process sees it (under Root)
	Action Action
	Backup string // the previous content, when Force replaced an edited file
	Note   string // why it was kept, or what changed
}

// Result is what install did and found.
type Result struct {
	// Major is the containerd major version the drop-in was written for; MajorSource says how
	// install told (a flag, `containerd --version`, the main configuration's version line).
	Major       int
	MajorSource string
	// Line is containerd's release line when install knows it (--containerd-version or
	// `containerd --version`); LineUnknown when it knows only the major version.
	Line containerdconfig.Line
	// DropInVersion is the config version of the drop-in install writes (2, 3 or 4; see
	// dropInVersion).
	DropInVersion int
	Files         []File
	// Active: containerd will start the plugin at its next start (NRI on, the drop-in's
	// directories in effect). When false, Warnings say why.
	Active bool
	// Notes are facts worth knowing; Warnings are problems the operator must fix for the
	// plugin to run (or to keep containerd healthy).
	Notes    []string
	Warnings []string
}

// Changed reports whether any file was created or updated.
func (r *Result) Changed() bool {
	for _, f := range r.Files {
		if f.Action == Created || f.Action == Updated {
			return true
		}
	}
	return false
}

// InputError is a problem with what the caller passed (a bad flag value or configuration);
// nothing was written.
type InputError struct{ Err error }

func (e *InputError) Error() string { return e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

func badInput(format string, args ...any) error {
	return &InputError{Err: fmt.Errorf(format, args...)}
}

// Run installs sandbox-guard as Options say. On error nothing was written, except when writing
// itself failed (the error names the file; files before it are in place).
func Run(opts Options) (*Result, error) {
	if err := opts.complete(); err != nil {
		return nil, err
	}
	var err error
	v := view{root: opts.Root, pathsRoot: opts.PathsRoot}
	node := func(parts ...string) string { return filepath.Join(append([]string{opts.PathsRoot}, parts...)...) }
	pluginNode := node(PluginDir, PluginName)
	configNode := node(ConfigDir, ConfigName)
	dropInNode := node(DropInDir, DropInName)
	tgt, err := resolveTarget(v, opts)
	if err != nil {
		return nil, err
	}
	res := &Result{Major: tgt.major, MajorSource: tgt.source, Line: tgt.line, DropInVersion: tgt.dropInVersion, Notes: tgt.notes}
	dropIn, err := RenderDropInVersion(tgt.dropInVersion, opts.PathsRoot)
	if err != nil {
		return nil, badInput("%w", err)
	}
	// The other variants install ships, as it would write them here: a drop-in holding one of
	// them is install's own (written for another version or line), not someone's edit.
	var variants [][]byte
	for version := 2; version <= 4; version++ {
		if version == tgt.dropInVersion {
			continue
		}
		other, err := RenderDropInVersion(version, opts.PathsRoot)
		if err != nil {
			return nil, badInput("%w", err)
		}
		variants = append(variants, other)
	}

	// Plan every file before writing any.
	plans := []plan{
		{node: pluginNode, data: opts.Binary, mode: 0o755},
		{node: configNode, data: opts.Config, mode: 0o644, edited: true},
		{node: dropInNode, data: dropIn, mode: 0o644, edited: true, variants: variants},
	}
	var writes []plan
	dropInAfter := dropIn // the drop-in as containerd will read it
	for _, p := range plans {
		p.path = v.local(p.node)
		f, err := decide(&p, opts.Force, opts.Now)
		if err != nil {
			return nil, err
		}
		if f.Action == Kept && p.node == dropInNode {
			dropInAfter = p.current.data
		}
		if f.Action == Kept && p.node == configNode {
			if _, err := config.Parse(p.current.data, p.path); err != nil {
				res.Warnings = append(res.Warnings, fmt.Sprintf("the installed configuration does not parse, so the plugin runs with the gate off (every pod admitted): %v", err))
			}
		}
		res.Files = append(res.Files, f)
		if f.Action == Created || f.Action == Updated {
			writes = append(writes, p)
		}
	}

	// What containerd will make of it, before anything is written.
	if err := assess(res, v, opts, tgt, dropInNode, dropInAfter); err != nil {
		return nil, err
	}
	res.Warnings = append(res.Warnings, scanPluginDir(v.local(node(PluginDir)))...)

	if err := writeAll(binaryLast(writes, pluginNode), writeFile); err != nil {
		return nil, err
	}
	for _, p := range writes {
		if p.backup == "" {
			continue
		}
		if err := pruneBackups(p.path, maxBackups); err != nil {
			res.Warnings = append(res.Warnings, err.Error())
		}
	}
	return res, nil
}

// binaryLast orders the writes so that the plugin binary comes last: containerd must never find
// a plugin without its configuration and drop-in (and a failed run leaves none of them behind).
func binaryLast(writes []plan, binary string) []plan {
	out := slices.Clone(writes)
	slices.SortStableFunc(out, func(a, b plan) int {
		switch {
		case a.node == binary && b.node != binary:
			return 1
		case b.node == binary && a.node != binary:
			return -1
		}
		return 0
	})
	return out
}

// complete checks opts and fills in its defaults. Its errors are InputErrors.
func (opts *Options) complete() error {
	var err error
	if opts.Root, err = absDir("root", opts.Root); err != nil {
		return err
	}
	if opts.PathsRoot, err = absDir("paths root", opts.PathsRoot); err != nil {
		return err
	}
	if opts.ContainerdConfig == "" {
		opts.ContainerdConfig = filepath.Join(opts.PathsRoot, ContainerdConfig)
	}
	if !filepath.IsAbs(opts.ContainerdConfig) {
		return badInput("containerd config %q: want an absolute path (as containerd sees it)", opts.ContainerdConfig)
	}
	opts.ContainerdConfig = filepath.Clean(opts.ContainerdConfig)
	if opts.ContainerdMajor != 0 && opts.ContainerdMajor != 1 && opts.ContainerdMajor != 2 {
		return badInput("containerd major version %d: want 1 (containerd 1.7) or 2 (containerd 2.x)", opts.ContainerdMajor)
	}
	if opts.ContainerdBinary != "" && !filepath.IsAbs(opts.ContainerdBinary) {
		return badInput("containerd binary %q: want an absolute path", opts.ContainerdBinary)
	}
	if len(opts.Binary) == 0 {
		return badInput("the plugin binary is empty")
	}
	if opts.Config == nil {
		opts.Config, opts.ConfigSource = etc.PluginConfig, "the shipped configuration"
	}
	if _, err := config.Parse(opts.Config, opts.ConfigSource); err != nil {
		return &InputError{Err: fmt.Errorf("not installing an invalid configuration: %w", err)}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return nil
}

// writeAll writes the planned files in order with write, each one's backup first, each
// atomically. When one fails, what this run wrote is put back as it was (files it created are
// removed), so the node never keeps half an installation; the error says so.
func writeAll(writes []plan, write func(path string, data []byte, mode fs.FileMode) error) error {
	for i, p := range writes {
		var err error
		if p.backup != "" {
			err = write(p.backup, p.current.data, p.current.mode)
		}
		if err == nil {
			err = write(p.path, p.data, p.mode)
		}
		if err != nil {
			if rerr := rollback(writes[:i+1]); rerr != nil {
				return fmt.Errorf("%w; rolling back %s failed: %w", err, writtenPaths(writes[:i]), rerr)
			}
			if i > 0 {
				err = fmt.Errorf("%w (rolled back: %s)", err, writtenPaths(writes[:i]))
			}
			return err
		}
	}
	return nil
}

// rollback restores what done wrote, newest first: the previous content where there was one,
// else no file; backups made on the way go too.
func rollback(done []plan) error {
	var errs []error
	for i := len(done) - 1; i >= 0; i-- {
		p := done[i]
		if p.current.exists {
			errs = append(errs, writeFile(p.path, p.current.data, p.current.mode))
		} else if err := os.Remove(p.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
		if p.backup != "" {
			if err := os.Remove(p.backup); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// plan is one file to bring into shape.
type plan struct {
	node, path string // as containerd sees it, as this process does
	data       []byte
	mode       fs.FileMode
	edited     bool // a configuration file: someone else's edit is kept without Force
	// variants are other contents install writes at this path (the drop-in for other
	// containerd versions): found there, they are replaced like an outdated binary.
	variants [][]byte
	current  current
	backup   string // where the current content goes before it is replaced
}

// decide compares what p.path holds with what install would write.
func decide(p *plan, force bool, now func() time.Time) (File, error) {
	cur, err := readCurrent(p.path)
	if err != nil {
		return File{}, err
	}
	p.current = cur
	f := File{Path: p.path}
	differs := cur.exists && !bytes.Equal(cur.data, p.data)
	switch {
	case !cur.exists:
		f.Action = Created
	case cur.same(p.data, p.mode):
		f.Action = Unchanged
	case differs && slices.ContainsFunc(p.variants, func(v []byte) bool { return bytes.Equal(v, cur.data) }):
		f.Action, f.Note = Updated, "install's variant for another containerd version replaced"
	case differs && p.edited && !force:
		f.Action, f.Note = Kept, "differs from what install would write; left as it is (--force replaces it, keeping a backup)"
	case differs && p.edited:
		f.Action = Updated
		p.backup = backupName(p.path, now())
		f.Backup, f.Note = p.backup, "the previous content is kept as "+p.backup
	case differs:
		f.Action = Updated
	default:
		f.Action, f.Note = Updated, fmt.Sprintf("mode %v -> %v", cur.mode, p.mode)
	}
	return f, nil
}

func writtenPaths(ps []plan) string {
	paths := make([]string, len(ps))
	for i, p := range ps {
		paths[i] = p.path
	}
	return strings.Join(paths, ", ")
}

// assess reads containerd's configuration as it will be after install and fills res.Active,
// Notes and Warnings. It fails when the drop-in would stop containerd from starting.
func assess(res *Result, v view, opts Options, tgt target, dropInNode string, dropInAfter []byte) error {
	main := opts.ContainerdConfig
	after, errAfter := evaluate(v, main, tgt.configOptions(), dropInNode, dropInAfter)
	if _, ok := errors.AsType[*stagedError](errAfter); errAfter != nil && !ok {
		return errAfter
	}
	if errAfter != nil {
		_, errBefore := evaluate(v, main, tgt.configOptions(), dropInNode, nil)
		if _, ok := errors.AsType[*stagedError](errBefore); errBefore != nil && !ok {
			return errBefore
		}
		if errBefore == nil {
			return fmt.Errorf("containerd would not start with %s in place, so nothing was written: %w", dropInNode, errAfter)
		}
		res.Warnings = append(res.Warnings, fmt.Sprintf("containerd's configuration does not load, with or without sandbox-guard's drop-in: %v", errAfter))
		return nil
	}
	info := after.info
	pluginDir := filepath.Join(opts.PathsRoot, PluginDir)
	configDir := filepath.Join(opts.PathsRoot, ConfigDir)
	nri := info.NRI
	res.Active = !nri.Disabled && filepath.Clean(nri.PluginPath) == pluginDir && filepath.Clean(nri.PluginConfigPath) == configDir
	importLine := fmt.Sprintf("imports = [%q]", filepath.Join(opts.PathsRoot, DropInDir, "*.toml"))

	switch {
	case after.mainMissing:
		msg := fmt.Sprintf("%s does not exist: containerd runs on its built-in defaults and loads no drop-in (create it with `version = %d` and %s to load %s)",
			main, res.DropInVersion, importLine, dropInNode)
		if res.Active {
			res.Notes = append(res.Notes, msg+"; containerd's defaults start the plugin anyway")
		} else {
			res.Warnings = append(res.Warnings, msg)
		}
	case !after.dropInLoaded:
		msg := fmt.Sprintf("containerd does not load %s: no imports entry of %s covers it; add this line at its top, before the first [table]: %s (on Amazon Linux 2023 nodeadm rewrites that file at boot: see etc/examples/al2023-nodeconfig.yaml)",
			dropInNode, main, importLine)
		if res.Active {
			res.Notes = append(res.Notes, msg+"; containerd's current settings start the plugin anyway")
		} else {
			res.Warnings = append(res.Warnings, msg)
		}
	}
	if !res.Active {
		if nri.Disabled {
			res.Warnings = append(res.Warnings, "NRI stays disabled: "+nri.DisabledReason)
		}
		if p := filepath.Clean(nri.PluginPath); p != pluginDir {
			res.Warnings = append(res.Warnings, fmt.Sprintf("containerd starts NRI plugins from %s, not from %s where install puts sandbox-guard", p, pluginDir))
		}
		if p := filepath.Clean(nri.PluginConfigPath); p != configDir {
			res.Warnings = append(res.Warnings, fmt.Sprintf("containerd reads NRI plugin configurations from %s, not from %s where install puts sandbox-guard's", p, configDir))
		}
		res.Warnings = append(res.Warnings, "containerd will NOT start sandbox-guard until this is fixed")
	}
	for _, w := range info.Warnings {
		res.Notes = append(res.Notes, "containerd configuration: "+w)
	}
	return nil
}

// scanPluginDir warns about files in plugin_path that break or double the plugin.
func scanPluginDir(dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || e.IsDir() || info.Mode()&0o111 == 0 {
			continue // NRI looks at executable files only
		}
		path := filepath.Join(dir, e.Name())
		idx, name, err := api.ParsePluginName(e.Name())
		switch {
		case err != nil:
			out = append(out, fmt.Sprintf("%s is executable but not named NN-name: containerd's NRI then fails to discover plugins and starts none of them; remove it or clear its executable bit", path))
		case strings.HasPrefix(name, "sandbox-guard") && idx+"-"+name != PluginName:
			// e.g. 10-sandbox-guard.old: NRI starts it as plugin "sandbox-guard.old".
			out = append(out, fmt.Sprintf("%s is another sandbox-guard: containerd would start both and every pod would be gated twice; remove it", path))
		}
	}
	return out
}

func absDir(what, dir string) (string, error) {
	if dir == "" {
		return "/", nil
	}
	if !filepath.IsAbs(dir) {
		return "", badInput("%s %q: want an absolute path", what, dir)
	}
	return filepath.Clean(dir), nil
}
