package install

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/sandbox-guard/sandbox-guard/etc"
)

// Paths on the node, as containerd sees them when the paths root is "/".
const (
	PluginDir        = "/opt/nri/plugins"
	PluginName       = "10-sandbox-guard"
	ConfigDir        = "/etc/nri/conf.d"
	ConfigName       = "10-sandbox-guard.conf"
	DropInDir        = "/etc/containerd/config.d"
	DropInName       = "sandbox-guard-nri.toml"
	ContainerdConfig = "/etc/containerd/config.toml"
	NRISocket        = "/var/run/nri/nri.sock"
	// ImportLine is what containerd's main configuration needs to load the drop-in.
	ImportLine = `imports = ["/etc/containerd/config.d/*.toml"]`
)

// pathKey matches the drop-in lines that name a path; RenderDropIn prefixes their values.
var pathKey = regexp.MustCompile(`(?m)^(\s*(?:socket_path|plugin_path|plugin_config_path)\s*=\s*)"(/[^"]*)"`)

// RenderDropIn returns the NRI drop-in install writes by default for containerd major version 1
// (1.7: version = 2) or 2 (2.x: version = 3), with pathsRoot put in front of every path it names
// (see RenderDropInVersion).
func RenderDropIn(major int, pathsRoot string) ([]byte, error) {
	switch major {
	case 1:
		return RenderDropInVersion(2, pathsRoot)
	case 2:
		return RenderDropInVersion(3, pathsRoot)
	default:
		return nil, fmt.Errorf("containerd major version %d: want 1 (1.7) or 2 (2.x)", major)
	}
}

// RenderDropInVersion returns the NRI drop-in shipped in etc/ in containerd config version 2
// (containerd 1.7's format), 3 (2.0-2.2's) or 4 (2.3 and later's), with pathsRoot put in front
// of every path it names. pathsRoot is "/" on a real node, which returns the shipped file byte
// for byte; tests that run a containerd under a temporary directory pass that directory.
func RenderDropInVersion(version int, pathsRoot string) ([]byte, error) {
	var src []byte
	switch version {
	case 2:
		src = etc.DropIn17
	case 3:
		src = etc.DropIn2
	case 4:
		src = etc.DropIn23
	default:
		return nil, fmt.Errorf("containerd config version %d: the drop-in is shipped in versions 2, 3 and 4", version)
	}
	if pathsRoot == "" || pathsRoot == "/" {
		return src, nil
	}
	if !filepath.IsAbs(pathsRoot) {
		return nil, fmt.Errorf("paths root %q is not an absolute path", pathsRoot)
	}
	// Written into a TOML basic string as is: refuse what would need escaping there.
	if strings.ContainsFunc(pathsRoot, func(r rune) bool { return r == '"' || r == '\\' || r < ' ' || r == 0x7f }) {
		return nil, fmt.Errorf("paths root %q holds a quote, backslash or control character", pathsRoot)
	}
	return pathKey.ReplaceAllFunc(src, func(line []byte) []byte {
		m := pathKey.FindSubmatch(line)
		return fmt.Appendf(nil, "%s\"%s\"", m[1], filepath.Join(pathsRoot, string(m[2])))
	}), nil
}
