package containerdconfig

import (
	"fmt"
	"os"
	"strings"
)

// Fix texts returned by BridgeEffective.
const (
	FixSingleConfigDir = `set config_path to a single directory (e.g. "/etc/containerd/certs.d")`
	FixLocalImagePull  = `set use_local_image_pull = true`
)

// BridgeEffective reports whether headers written into
// <config_path>/<host>/hosts.toml reach containerd's own sandbox image pulls.
// They do not when:
//   - containerd 1.7 has no config_path: CRI then uses the legacy registry
//     settings and never reads hosts.toml;
//   - containerd 2.x has no config_path (2.0 and 2.1 have no default; 2.2+
//     drop theirs when the deprecated mirrors table is set);
//   - containerd 2.x pulls through the transfer service (use_local_image_pull
//     false, no fallback trigger) while config_path lists several
//     directories: the transfer path passes config_path as one root
//     directory, so ".../certs.d:/etc/docker/certs.d/<host>" never exists.
//     This is the Linux default since 2.2.
//
// fix is one line for an operator; why explains the cause.
func BridgeEffective(info *Info) (ok bool, why string, fix string) {
	if info == nil {
		return false, "containerd configuration unknown", ""
	}
	if info.CRIDisabled {
		return false, "the CRI plugin is disabled in containerd's disabled_plugins, so no pod sandbox is pulled by containerd", ""
	}
	if info.Major == 1 {
		if info.RegistryConfigPath == "" {
			return false, fmt.Sprintf("containerd 1.7 reads hosts.toml only when [plugins.%q.registry] config_path is set", PluginCRI), FixSingleConfigDir
		}
		return true, "", ""
	}
	if info.RegistryConfigPath == "" {
		// 2.2+ default to certs.d unless mirrors are set; 2.0 and 2.1 have no default.
		why := "the deprecated mirrors table disables the default"
		if !info.RegistryMirrors {
			why = fmt.Sprintf("containerd %s has no default for it", info.Line)
		}
		return false, fmt.Sprintf("containerd 2.x has no [plugins.%q.registry] config_path (%s), so hosts.toml is not read", PluginCRIImages, why), FixSingleConfigDir
	}
	if strings.ContainsRune(info.RegistryConfigPath, os.PathListSeparator) && !info.UseLocalImagePull {
		return false, fmt.Sprintf("containerd 2.x pulls through the transfer service, which ignores hosts.toml when config_path lists several directories (%q)", info.RegistryConfigPath), FixLocalImagePull
	}
	return true, "", ""
}
