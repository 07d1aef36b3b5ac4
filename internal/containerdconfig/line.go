package containerdconfig

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Line is a containerd release line (major*100 + minor, so lines order by
// release). Lines differ in how config files are merged and migrated and in
// the CRI defaults; the rules are grouped in three families:
//   - 1.7: config versions 1 and 2, a later file replaces whole plugin
//     tables;
//   - 2.0 to 2.2: versions up to 3, deep merge, version-2 CRI tables
//     migrated once on the merged config;
//   - 2.3 and later: versions up to 4, deep merge, every file of a lower
//     version migrated on its own before it is merged.
type Line int

// The lines sandbox-guard knows. NRI exists from containerd 1.7 on.
const (
	LineUnknown Line = 0
	Line17      Line = 107
	Line20      Line = 200
	Line21      Line = 201
	Line22      Line = 202
	Line23      Line = 203
	Line24      Line = 204

	// LineNewest is the newest line whose rules are known; configs and
	// runtimes newer than it are read with its rules (and a note says so).
	LineNewest = Line24
)

// String returns "1.7", "2.3", ... ("unknown" for LineUnknown).
func (l Line) String() string {
	if l == LineUnknown {
		return "unknown"
	}
	return fmt.Sprintf("%d.%d", l.Major(), l.Minor())
}

// Major is the containerd major version of the line (1 or 2).
func (l Line) Major() int { return int(l) / 100 }

// Minor is the line's minor version.
func (l Line) Minor() int { return int(l) % 100 }

// known reports whether the line is one of the constants above.
func (l Line) known() bool {
	return l == Line17 || (l >= Line20 && l <= LineNewest)
}

// ConfigVersion is the highest config file version the line accepts
// (version.ConfigVersion): 2 in 1.7, 3 in 2.0-2.2, 4 from 2.3 on.
func (l Line) ConfigVersion() int {
	switch {
	case l.Major() == 1:
		return 2
	case l < Line23:
		return 3
	default:
		return 4
	}
}

// perFileMigration: from 2.3 on, LoadConfigWithPlugins migrates each file
// of a lower version on its own, with the plugins' migrations, before
// merging it (v2.3.7 cmd/containerd/server/config/config.go).
func (l Line) perFileMigration() bool { return l >= Line23 }

// DefaultSandboxImage is the sandbox image the line's CRI uses when no file
// sets one.
func (l Line) DefaultSandboxImage() string {
	switch {
	case l.Major() == 1:
		return DefaultSandboxImage1
	case l < Line22:
		// v2.0.14 and v2.1.9 internal/cri/config/config.go.
		return "registry.k8s.io/pause:3.10"
	case l == Line22:
		return DefaultSandboxImage2
	default:
		// v2.3.7 and v2.4.2 internal/cri/config/config.go.
		return DefaultSandboxImage23
	}
}

// defaultRegistryConfigPath is the config_path the CRI images plugin sets on
// Linux when neither config_path nor mirrors are set: only from 2.2 on
// (plugins/cri/images/plugin.go; 2.0 and 2.1 have no such default).
func (l Line) defaultRegistryConfigPath() string {
	if l >= Line22 {
		return DefaultRegistryConfigPath2
	}
	return ""
}

// transferPulls: CRI pulls through the transfer service unless
// use_local_image_pull or a fallback trigger says otherwise, from 2.1 on.
// 1.7 and 2.0 always pull with the local client.
func (l Line) transferPulls() bool { return l >= Line21 }

// family names the group of lines sharing the line's config rules.
func (l Line) family() string {
	switch {
	case l.Major() == 1:
		return "containerd 1.7"
	case l < Line23:
		return "containerd 2.0-2.2"
	default:
		return "containerd 2.3+"
	}
}

var runtimeVersionRE = regexp.MustCompile(`^v?(\d+)\.(\d+)(?:$|[.+~-])`)

// ParseRuntimeVersion maps a containerd version, as NRI's Configure reports
// it or `containerd --version` prints it ("v2.3.7", "1.7.27",
// "2.1.5-0ubuntu1", or just "2.3"), to its line. A version newer than
// LineNewest maps to LineNewest and note says so; a version older than 1.7,
// or one that is not a version, is an error.
func ParseRuntimeVersion(v string) (line Line, note string, err error) {
	m := runtimeVersionRE.FindStringSubmatch(strings.TrimSpace(v))
	if m == nil {
		return LineUnknown, "", fmt.Errorf("containerd version %q: want major.minor[.patch]", v)
	}
	major, errMaj := strconv.Atoi(m[1])
	minor, errMin := strconv.Atoi(m[2])
	if errMaj != nil || errMin != nil || major > 99 || minor > 99 {
		return LineUnknown, "", fmt.Errorf("containerd version %q: out of range", v)
	}
	l := Line(major*100 + minor)
	switch {
	case l.known():
		return l, "", nil
	case l > LineNewest:
		return LineNewest, fmt.Sprintf("containerd %s is newer than any line sandbox-guard knows; its configuration is read with containerd %s's rules", strings.TrimSpace(v), LineNewest), nil
	default:
		return LineUnknown, "", fmt.Errorf("containerd version %q: only 1.7 and 2.x are supported (NRI starts with 1.7)", v)
	}
}
