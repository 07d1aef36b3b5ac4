// Package containerdconfig reads the few settings sandbox-guard depends on
// from containerd's own configuration: the sandbox (pause) image, the
// registry hosts directory, whether CRI pulls through the transfer service,
// and the NRI settings.
//
// containerd has no API that reports these (2.x does not even show the
// sandbox image in `crictl info`), so the files are read the way containerd
// reads them: the same import resolution, the same per-file version rules and
// the same merge semantics, which differ between containerd 1.7 (a later file
// replaces a whole plugin table) and 2.x (tables are deep-merged), and the
// same migrations, which 2.0-2.2 run once on the merged config and 2.3+ run
// on each file of a lower version before merging it. The behaviour mirrors
// containerd v1.7.35 services/server/config, v2.2.9, v2.3.7 and v2.4.2
// cmd/containerd/server/config plus the CRI plugins' defaults and
// migrations; see the comments at each rule. Which containerd line the files
// are read for is part of the answer (Info.Line): the caller should pass the
// runtime version when it knows it (NRI's Configure reports it).
package containerdconfig

import (
	"fmt"
	"path/filepath"
	"time"
)

// Paths and defaults taken from containerd and NRI sources.
const (
	// DefaultPath is containerd's default main config file.
	DefaultPath = "/etc/containerd/config.toml"
	// DefaultConfDir is the drop-in directory containerd 2.x writes into
	// `containerd config default` output as imports = ["<dir>/*.toml"].
	DefaultConfDir = "/etc/containerd/conf.d"

	// DefaultSandboxImage1 is containerd 1.7's sandbox_image default
	// (pkg/cri/config/config_unix.go).
	DefaultSandboxImage1 = "registry.k8s.io/pause:3.8"
	// DefaultSandboxImage2 is containerd 2.2's pinned_images.sandbox default
	// (internal/cri/config/config.go DefaultSandboxImage).
	DefaultSandboxImage2 = "registry.k8s.io/pause:3.10.1"
	// DefaultSandboxImage23 is containerd 2.3's and 2.4's (same file).
	DefaultSandboxImage23 = "registry.k8s.io/pause:3.10.2"
	// DefaultRegistryConfigPath2 is what the 2.2+ CRI images plugin uses on
	// Linux when neither config_path nor mirrors are set
	// (plugins/cri/images/plugin.go; 2.0 and 2.1 have no default).
	DefaultRegistryConfigPath2 = "/etc/containerd/certs.d:/etc/docker/certs.d"

	// NRI defaults (github.com/containerd/nri pkg/adaptation and pkg/api).
	DefaultNRISocketPath          = "/var/run/nri/nri.sock"
	DefaultNRIPluginPath          = "/opt/nri/plugins"
	DefaultNRIPluginConfigPath    = "/etc/nri/conf.d"
	DefaultNRIRegistrationTimeout = 5 * time.Second
	DefaultNRIRequestTimeout      = 2 * time.Second
)

// Plugin table names (plugin URIs). Version-1 files use the short IDs "cri"
// and "nri" instead.
const (
	// PluginCRI is the CRI plugin of 1.7 (holds sandbox_image and registry);
	// in 2.x it only holds the gRPC service settings and is the migration
	// source for version-2 files.
	PluginCRI = "io.containerd.grpc.v1.cri"
	// PluginCRIImages is the 2.x CRI image service (pinned_images, registry,
	// use_local_image_pull).
	PluginCRIImages = "io.containerd.cri.v1.images"
	// PluginNRI is the NRI plugin in both 1.7 and 2.x.
	PluginNRI = "io.containerd.nri.v1.nri"
)

// Options adjust Load, LoadFS and DefaultsFor.
type Options struct {
	// RuntimeVersion is the version of the containerd that reads the files
	// ("v2.3.7", "1.7.35"; NRI's Configure reports it). When set it decides
	// the line whose rules apply; a version newer than LineNewest is read
	// with LineNewest's rules and a note says so.
	RuntimeVersion string
	// Major is the containerd major version, 1 (1.7) or 2 (2.x), when the
	// exact version is not known. 0 infers it from the files' versions (see
	// Info.LineAssumed). With RuntimeVersion set it must agree or be 0.
	Major int
	// ConfDir is the drop-in directory to report on in Info.ConfDirImported
	// (DefaultConfDir when empty). containerd itself has no implicit import:
	// a drop-in there is loaded only when some loaded file imports it.
	ConfDir string
	// Overlay holds files, by node path (clean and absolute), that count as
	// present with this content whatever the file system holds (e.g. the
	// files install is about to write); a nil value counts the file as
	// absent (about to be removed). Globs in imports match overlay files.
	Overlay map[string][]byte
}

// Info is what sandbox-guard needs to know from containerd's configuration.
type Info struct {
	// Major is the containerd major version whose rules were applied
	// (Line.Major()).
	Major int
	// Line is the containerd line whose rules and defaults were applied.
	Line Line
	// LineSource says what chose Line: "containerd v2.3.7" (the runtime
	// version), "Options.Major 1", or the file version it was inferred from.
	LineSource string
	// LineAssumed is true when no runtime version was given and Line was
	// inferred (the oldest line that reads the highest file version, 2.2
	// for Options.Major 2). Notes then say which line was assumed and what
	// the other line families would read differently.
	LineAssumed bool
	// Notes say what was inferred rather than known: the line assumed, a
	// config or runtime newer than any line known (read with the newest
	// line's rules), other lines' differing answers. Never errors.
	Notes []string
	// Version is the main file's own version (1 when it has no version line;
	// 0 from Defaults, which reads no file).
	Version int
	// EffectiveVersion is the version containerd ends up with after merging
	// every file: the last non-zero version line wins (from 2.3 on, files of
	// a lower version are stamped with the merged one, so it is 4 unless a
	// file says more). In 2.0-2.2 it decides whether version-2 CRI tables get
	// migrated at all.
	EffectiveVersion int
	// Files are the files loaded, in load order (later ones win).
	Files []string
	// ImportPatterns are the resolved import entries of all loaded files,
	// in order (globs kept as patterns).
	ImportPatterns []string
	// ConfDirImported tells whether a *.toml drop-in placed in
	// Options.ConfDir would be loaded (see WouldLoad).
	ConfDirImported bool

	// SandboxImage is the image CRI uses for the pause container.
	SandboxImage string
	// SandboxImageFile is the file that set it; empty when defaulted.
	SandboxImageFile string
	// SandboxImageDefaulted is true when no file set it (or 2.x got "").
	SandboxImageDefaulted bool

	// RegistryConfigPath is CRI's registry config_path as containerd uses it
	// (including the 2.x Linux default). Empty means hosts.toml is not read.
	RegistryConfigPath string
	// RegistryConfigPathFile is the file that set it; empty when defaulted
	// or unset.
	RegistryConfigPathFile string
	// RegistryConfigPathDefaulted is true when 2.x applied its default.
	RegistryConfigPathDefaulted bool
	// RegistryConfigDirs is RegistryConfigPath split like containerd does
	// (filepath.SplitList). containerd tries them in order.
	RegistryConfigDirs []string
	// RegistryMirrors is true when the deprecated registry.mirrors table is
	// used (it disables the 2.x config_path default).
	RegistryMirrors bool

	// UseLocalImagePull is true when CRI pulls with the local client (which
	// honours every config_path directory) rather than the 2.x transfer
	// service. Always true for 1.7, whose CRI has no transfer service path.
	UseLocalImagePull bool
	// UseLocalImagePullReason says why it is true.
	UseLocalImagePullReason string

	// DisabledPlugins is the merged disabled_plugins list.
	DisabledPlugins []string
	// CRIDisabled is true when disabled_plugins switches CRI off.
	CRIDisabled bool
	// NRI holds the NRI plugin settings.
	NRI NRI

	// Warnings are configuration problems containerd reports at start-up
	// that matter to sandbox-guard (it starts anyway, or only a plugin fails).
	Warnings []string
}

// NRI is the NRI plugin configuration with containerd's defaults applied.
type NRI struct {
	Disabled bool
	// DisabledReason says where Disabled comes from.
	DisabledReason      string
	SocketPath          string
	PluginPath          string
	PluginConfigPath    string
	RegistrationTimeout time.Duration
	RequestTimeout      time.Duration
	DisableConnections  bool
}

// MajorFromVersion guesses the containerd major version from a config file's
// version: 2 is the 1.7 layout, 3 the 2.0-2.2 layout, 4 the 2.3+ layout. A
// file without a version line (or version 1) is valid on both, so it cannot
// decide (ok false); callers then pass Options.Major or, better,
// Options.RuntimeVersion. containerd 2.x also accepts version-2 files (it
// migrates them), so a version-2 file on a 2.x node needs Options.Major = 2.
func MajorFromVersion(version int) (major int, ok bool) {
	switch version {
	case 2:
		return 1, true
	case 3, 4:
		return 2, true
	default:
		return 0, false
	}
}

// Defaults returns what containerd of the given major version uses when it
// runs without any config file: DefaultsFor(Options{Major: major}).
func Defaults(major int) (*Info, error) {
	if major != 1 && major != 2 {
		return nil, fmt.Errorf("containerd major version %d: want 1 or 2", major)
	}
	return DefaultsFor(Options{Major: major})
}

// DefaultsFor returns what containerd uses when it runs without any config
// file (containerd skips loading when the default path does not exist), for
// the line chosen by opts.RuntimeVersion or, assumed, opts.Major (2 is read
// as 2.2).
func DefaultsFor(opts Options) (*Info, error) {
	choice, err := chooseLine(opts, nil)
	if err != nil {
		return nil, err
	}
	info, err := newState(choice.line, choice.lenient).info(confDirOf(opts))
	if err != nil {
		return nil, err
	}
	choice.apply(info)
	return info, nil
}

// WouldLoad reports whether containerd would load a config file at path
// through the imports of the files it loads: an exact import entry, or a
// glob entry (containerd globs only entries containing "*") matching it.
// Because containerd globs at start-up, a file created later matches too,
// from containerd's next start.
func (i *Info) WouldLoad(path string) bool {
	path = filepath.Clean(path)
	for _, f := range i.Files {
		if f == path {
			return true
		}
	}
	for _, p := range i.ImportPatterns {
		if matchImport(p, path) {
			return true
		}
	}
	return false
}
