package install

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/pelletier/go-toml/v2"

	"github.com/sandbox-guard/sandbox-guard/internal/containerdconfig"
)

// view maps a path as containerd on the node sees it (a "node path") to the path this process
// opens. On a node both are the same. The DaemonSet's installer sees the node's files under
// /host (root "/host", paths root "/"). End-to-end tests run a containerd whose files all live
// under a temporary directory and name it in their paths (root = paths root = that directory).
type view struct {
	root      string // where this process finds the node's files
	pathsRoot string // the directory the node paths are relative to
}

// prefixes returns the node and local prefixes that p is translated between.
func (v view) prefixes(p string) (nodePrefix, localPrefix string) {
	if v.root == v.pathsRoot {
		return "/", "/"
	}
	if within(p, v.pathsRoot) {
		return v.pathsRoot, v.root
	}
	return "/", v.root
}

func (v view) local(p string) string {
	np, lp := v.prefixes(p)
	return rebase(p, np, lp)
}

func within(p, dir string) bool {
	return dir == "/" || p == dir || strings.HasPrefix(p, dir+"/")
}

// rebase moves p (inside from) to the same place inside to.
func rebase(p, from, to string) string {
	rel, err := filepath.Rel(from, p)
	if err != nil {
		return p
	}
	return filepath.Join(to, rel)
}

// evaluation is containerd's configuration as containerd will read it at its next start.
type evaluation struct {
	info *containerdconfig.Info
	// mainMissing: the main file does not exist, containerd runs on its built-in defaults
	// (info then holds containerdconfig.Defaults).
	mainMissing bool
	// dropInLoaded: the drop-in is among the files containerd loads.
	dropInLoaded bool
}

// errUnknownMajor: the main configuration cannot tell containerd 1.7 from 2.x.
type errUnknownMajor struct{ why string }

func (e *errUnknownMajor) Error() string {
	return "cannot tell containerd 1.7 from 2.x: " + e.why + "; pass --containerd-version (e.g. 2.3.7), or --containerd-major 1 (containerd 1.7) or 2 (containerd 2.x)"
}

// stagedError is an error of containerdconfig about the staged copy, its text showing node paths.
type stagedError struct {
	msg string
	err error
}

func (e *stagedError) Error() string { return e.msg }
func (e *stagedError) Unwrap() error { return e.err }

// evaluate loads containerd's configuration with internal/containerdconfig (containerd's own
// import, version and merge rules) as the containerd that opts name (its version, else its
// major version) will see it at its next start, with the drop-in at dropIn (a node path)
// holding dropInData (nil: as it is on disk, if at all).
//
// containerdconfig reads files at the paths their imports name, which are node paths; this
// process may see the node's files elsewhere (/host), and the drop-in is not written yet. So the
// files are copied into a staging directory first, each at its node path, with their imports
// resolved here (relative to the importing file, globs expanded the way containerd does: only
// entries containing "*") and rewritten to the staged copies. The staged copies keep the load
// order containerd would follow, so containerdconfig's merge gives containerd's answer.
//
// Errors about the configuration are *stagedError; any other error is install's own (staging).
func evaluate(v view, mainNode string, opts containerdconfig.Options, dropIn string, dropInData []byte) (*evaluation, error) {
	if _, err := os.Stat(v.local(mainNode)); errors.Is(err, fs.ErrNotExist) {
		// containerd skips a missing default config file and runs on defaults, which
		// import nothing.
		info, err := containerdconfig.DefaultsFor(opts)
		if err != nil {
			return nil, err
		}
		return &evaluation{info: info, mainMissing: true}, nil
	}
	stage, err := stagingDir(v.local(filepath.Dir(dropIn)))
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(stage)
	staged := func(node string) string { return filepath.Join(stage, node) }
	unstage := func(s string) string { return strings.ReplaceAll(s, stage, "") }
	virtual := ""
	if dropInData != nil {
		virtual = dropIn
	}
	read := func(node string) ([]byte, error) {
		if node == virtual {
			return dropInData, nil
		}
		return os.ReadFile(v.local(node))
	}
	seen := map[string]bool{}
	pending := []string{mainNode}
	for len(pending) > 0 {
		node := pending[0]
		pending = pending[1:]
		if seen[node] {
			continue
		}
		seen[node] = true
		data, err := read(node)
		if err != nil {
			continue // not staged: containerdconfig reports the missing import, as containerd would fail
		}
		imports, rewritten, err := stageImports(v, node, data, virtual, staged)
		if err != nil {
			return nil, err
		}
		if rewritten != nil {
			data = rewritten
		}
		if err := os.MkdirAll(filepath.Dir(staged(node)), 0o700); err != nil {
			return nil, fmt.Errorf("staging containerd's configuration: %w", err)
		}
		if err := os.WriteFile(staged(node), data, 0o600); err != nil {
			return nil, fmt.Errorf("staging containerd's configuration: %w", err)
		}
		pending = append(pending, imports...)
	}
	info, err := containerdconfig.LoadWithOptions(staged(mainNode), opts)
	if err != nil {
		return nil, &stagedError{msg: unstage(err.Error()), err: err}
	}
	ev := &evaluation{info: info, dropInLoaded: slices.Contains(info.Files, staged(dropIn))}
	for i := range info.Files {
		info.Files[i] = unstage(info.Files[i])
	}
	for i := range info.ImportPatterns {
		info.ImportPatterns[i] = unstage(info.ImportPatterns[i])
	}
	for i := range info.Warnings {
		info.Warnings[i] = unstage(info.Warnings[i])
	}
	info.NRI.DisabledReason = unstage(info.NRI.DisabledReason)
	info.SandboxImageFile = unstage(info.SandboxImageFile)
	info.RegistryConfigPathFile = unstage(info.RegistryConfigPathFile)
	return ev, nil
}

// stagingDir makes a private directory for the staged copies: in the temporary directory, or,
// where there is none (the container image has an empty, read-only root file system; the
// DaemonSet mounts an emptyDir at /tmp, but a pod spec without it must still work), in a hidden
// directory inside the drop-in directory, which install writes anyway and containerd's *.toml
// glob does not match.
func stagingDir(dropInDir string) (string, error) {
	dir, err := os.MkdirTemp("", "sandbox-guard-install-")
	if err == nil {
		return dir, nil
	}
	if mkErr := os.MkdirAll(dropInDir, 0o755); mkErr != nil {
		return "", fmt.Errorf("staging containerd's configuration: %w", errors.Join(err, mkErr))
	}
	dir, err2 := os.MkdirTemp(dropInDir, ".sandbox-guard-stage-")
	if err2 != nil {
		return "", fmt.Errorf("staging containerd's configuration: %w", errors.Join(err, err2))
	}
	return dir, nil
}

// stageImports resolves one file's imports (node paths, in containerd's order; virtual is a file
// that counts as present although it is not on disk yet) and returns the
// file rewritten to import their staged copies, or nil when it imports nothing or cannot be
// parsed (containerdconfig then reports the parse error with its position, as containerd would).
func stageImports(v view, node string, data []byte, virtual string, staged func(string) string) ([]string, []byte, error) {
	var doc map[string]any
	if err := toml.Unmarshal(data, &doc); err != nil {
		return nil, nil, nil
	}
	entries, ok := doc["imports"].([]any)
	if !ok || len(entries) == 0 {
		return nil, nil, nil
	}
	var imports []string
	for _, e := range entries {
		p, ok := e.(string)
		if !ok {
			return nil, nil, nil // containerdconfig reports the type error
		}
		// containerd's resolveImports: Clean, relative to the importing file, glob only "*".
		p = filepath.Clean(p)
		if !filepath.IsAbs(p) {
			p = filepath.Join(filepath.Dir(node), p)
		}
		if !strings.Contains(p, "*") {
			imports = append(imports, p)
			continue
		}
		matches, err := glob(v, p, virtual)
		if err != nil {
			return nil, nil, fmt.Errorf("containerd config %s: imports: %w", node, err)
		}
		imports = append(imports, matches...)
	}
	stagedImports := make([]any, len(imports))
	for i, p := range imports {
		stagedImports[i] = staged(p)
	}
	doc["imports"] = stagedImports
	out, err := toml.Marshal(doc)
	if err != nil {
		return nil, nil, fmt.Errorf("staging containerd config %s: %w", node, err)
	}
	return imports, out, nil
}

// glob expands an import pattern (a node path) like containerd's filepath.Glob would on the
// node, counting virtual (if not "") as present.
func glob(v view, pattern, virtual string) ([]string, error) {
	np, lp := v.prefixes(pattern)
	matches, err := filepath.Glob(rebase(pattern, np, lp))
	if err != nil {
		return nil, fmt.Errorf("glob %q: %w", pattern, err)
	}
	for i, m := range matches {
		matches[i] = rebase(m, lp, np)
	}
	if ok, _ := filepath.Match(pattern, virtual); virtual != "" && ok && !slices.Contains(matches, virtual) {
		matches = append(matches, virtual)
		slices.Sort(matches) // filepath.Glob's order, which containerd loads in
	}
	return matches, nil
}
