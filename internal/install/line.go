package install

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/sandbox-guard/sandbox-guard/internal/containerdconfig"
)

// target is the containerd the drop-in is written for, as far as install can tell, and the
// drop-in's config version.
type target struct {
	major int // 1 or 2
	// line is containerd's release line when install knows it (--containerd-version, or
	// `containerd --version`); LineUnknown when it only knows the major version.
	line containerdconfig.Line
	// runtimeVersion is the containerd version when known; it decides the rules containerdconfig
	// reads the configuration with.
	runtimeVersion string
	source         string // how install told, for messages
	// mainVersion is the main configuration's version (1 without a version line); 0 when the
	// file is missing or does not parse.
	mainVersion   int
	dropInVersion int
	notes         []string
}

// configOptions are the containerdconfig options that read the configuration as this containerd
// will: its exact version when known, else its major version (containerdconfig then tells 2.3+
// from 2.0-2.2 by the files' versions).
func (t target) configOptions() containerdconfig.Options {
	if t.runtimeVersion != "" {
		return containerdconfig.Options{RuntimeVersion: t.runtimeVersion}
	}
	return containerdconfig.Options{Major: t.major}
}

// resolveTarget finds out which containerd the drop-in is for, in this order: --containerd-version;
// --containerd-major; `containerd --version` (the binary --containerd-bin names, or on the node
// itself, root "/", the one in PATH); the main configuration's version line. Then it picks the
// drop-in's version (see dropInVersion).
func resolveTarget(v view, opts Options) (target, error) {
	var t target
	mainVersion, mainErr := readMainVersion(v, opts.ContainerdConfig)
	t.mainVersion = mainVersion
	switch {
	case opts.ContainerdVersion != "":
		if err := t.setVersion(opts.ContainerdVersion, "--containerd-version "+opts.ContainerdVersion); err != nil {
			return t, badInput("%w", err)
		}
		if opts.ContainerdMajor != 0 && opts.ContainerdMajor != t.major {
			return t, badInput("--containerd-version %s and --containerd-major %d disagree", opts.ContainerdVersion, opts.ContainerdMajor)
		}
	case opts.ContainerdMajor != 0:
		t.major, t.source = opts.ContainerdMajor, "--containerd-major"
	default:
		found, err := t.askContainerd(v, opts)
		if err != nil {
			return t, err
		}
		if found {
			break
		}
		if mainErr != nil {
			return t, mainErr
		}
		if t.major, t.source, err = majorOf(mainVersion, opts.ContainerdConfig); err != nil {
			return t, err
		}
	}
	t.dropInVersion = dropInVersion(t.major, t.line, t.mainVersion)
	return t, nil
}

func (t *target) setVersion(version, source string) error {
	line, note, err := containerdconfig.ParseRuntimeVersion(version)
	if err != nil {
		return err
	}
	t.line, t.major, t.runtimeVersion, t.source = line, line.Major(), version, source
	if note != "" {
		t.notes = append(t.notes, note)
	}
	return nil
}

// askContainerd asks the containerd binary for its version: the one opts.ContainerdBinary names
// (its failure is an error), or on the node itself (root "/") the one in PATH (its absence or
// failure is only a note: the main configuration's version decides then). The installer
// DaemonSet runs no host binary.
func (t *target) askContainerd(v view, opts Options) (bool, error) {
	bin := opts.ContainerdBinary
	if bin == "" {
		if v.root != "/" {
			return false, nil
		}
		p, err := exec.LookPath("containerd")
		if err != nil {
			return false, nil
		}
		bin = p
	}
	version, err := containerdVersion(bin)
	if err == nil {
		err = t.setVersion(version, fmt.Sprintf("`%s --version`: %s", bin, version))
	}
	if err != nil && opts.ContainerdBinary != "" {
		return false, fmt.Errorf("asking containerd for its version: %w", err)
	}
	if err != nil {
		t.notes = append(t.notes, fmt.Sprintf("could not tell containerd's version (%v); going by its main configuration's version", err))
		return false, nil
	}
	return true, nil
}

// containerdVersion runs `bin --version` and returns the version it prints:
// "containerd github.com/containerd/containerd/v2 2.3.7 <commit>" -> "2.3.7".
func containerdVersion(bin string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w", bin, err)
	}
	fields := strings.Fields(string(out))
	if len(fields) < 3 || fields[0] != "containerd" {
		return "", fmt.Errorf("%s --version answered %q, not containerd's version line", bin, strings.TrimSpace(string(out)))
	}
	return fields[2], nil
}

// dropInVersion is the config version of the drop-in for a containerd of that major version and
// line (LineUnknown: only the major version is known) whose main configuration has mainVersion
// (0: none). What each line accepts together with its main configuration (checked with
// `containerd config dump` of 1.7.35, 2.2.9, 2.3.7 and 2.4.2):
//   - 1.7 reads versions 1 and 2 only: always 2.
//   - 2.0-2.2 refuse a version-4 file. They migrate 1.7-style (version-2) CRI tables only when
//     the merged version, that of the last file with a version line, is 2: a version-3 drop-in
//     after a version-2 main configuration makes containerd drop the main file's CRI settings
//     (2.2.9 fell back to its default sandbox image). So a version-2 main gets a version-2
//     drop-in, otherwise 3.
//   - 2.3 and later migrate each file of a lower version on its own and accept 2, 3 and 4 in any
//     mix; they log a migration warning for every file below 4 at each start. The drop-in takes
//     the main configuration's version: 4 where containerd writes 4 itself, and the lower one
//     where the node kept an older main configuration (which then still works if containerd is
//     downgraded to 2.2).
//
// A version-4 main configuration is read by 2.3 and later only, so it gets a version-4 drop-in
// also when the line is not known.
func dropInVersion(major int, line containerdconfig.Line, mainVersion int) int {
	if major == 1 {
		return 2
	}
	highest := 3
	if line >= containerdconfig.Line23 || (line == containerdconfig.LineUnknown && mainVersion == 4) {
		highest = 4
	}
	if mainVersion >= 2 && mainVersion <= highest {
		return mainVersion
	}
	return 3
}

// readMainVersion returns the main configuration's version (1 without a version line). Its
// errors wrap fs.ErrNotExist for a missing file.
func readMainVersion(v view, mainNode string) (int, error) {
	data, err := os.ReadFile(v.local(mainNode))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("%w: %w", &errUnknownMajor{why: mainNode + " does not exist"}, err)
	}
	if err != nil {
		return 0, fmt.Errorf("reading containerd config %s: %w", mainNode, err)
	}
	var doc struct {
		Version int `toml:"version"`
	}
	if err := toml.Unmarshal(data, &doc); err != nil {
		return 0, fmt.Errorf("parsing containerd config %s: %w", mainNode, err)
	}
	return max(doc.Version, 1), nil // no version line is version 1
}

// majorOf says which containerd a main configuration of that version is written for. It
// returns errUnknownMajor when that cannot be told.
func majorOf(version int, mainNode string) (int, string, error) {
	major, ok := containerdconfig.MajorFromVersion(version)
	if !ok {
		why := fmt.Sprintf("%s has version %d", mainNode, version)
		if version == 1 {
			why = mainNode + " has no version line, or version 1 (read by both)"
		}
		return 0, "", &errUnknownMajor{why: why}
	}
	source := fmt.Sprintf("version = %d in %s", version, mainNode)
	switch version {
	case 2:
		source += ": the 1.7 layout, which 2.x reads too"
	case 4:
		source += ": the layout of containerd 2.3 and later"
	}
	return major, source, nil
}
