// Package etc holds the files sandbox-guard puts on a node, so that `sandbox-guard install`
// writes exactly what this directory ships (one copy, read by people and by the installer):
//
//	containerd/config.d/sandbox-guard-nri.toml      NRI drop-in for containerd 2.x (version = 3)
//	containerd/2.3/config.d/sandbox-guard-nri.toml  NRI drop-in for containerd 2.3+ (version = 4)
//	containerd/1.7/config.d/sandbox-guard-nri.toml  NRI drop-in for containerd 1.7 (version = 2)
//	nri/conf.d/10-sandbox-guard.conf                the plugin's configuration
//	examples/al2023-nodeconfig.yaml                 Amazon Linux 2023: NRI through nodeadm
package etc

import _ "embed"

// DropIn2 is the NRI drop-in for containerd 2.x (version = 3).
//
//go:embed containerd/config.d/sandbox-guard-nri.toml
var DropIn2 []byte

// DropIn23 is the NRI drop-in for containerd 2.3 and later with a version-4 main configuration.
//
//go:embed containerd/2.3/config.d/sandbox-guard-nri.toml
var DropIn23 []byte

// DropIn17 is the NRI drop-in for containerd 1.7 (version = 2), also used on containerd 2.x
// whose main configuration is version 2.
//
//go:embed containerd/1.7/config.d/sandbox-guard-nri.toml
var DropIn17 []byte

// PluginConfig is the shipped configuration of the pre-registered plugin.
//
//go:embed nri/conf.d/10-sandbox-guard.conf
var PluginConfig []byte

// AL2023NodeConfig is the nodeadm NodeConfig example for Amazon Linux 2023.
//
//go:embed examples/al2023-nodeconfig.yaml
var AL2023NodeConfig []byte
