// Package config is sandbox-guard's configuration: the YAML schema, its defaults, strict parsing
// and validation. Every error names the key (and the file) at fault, so an operator can fix it
// without reading code.
package config

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"
)

// DefaultFile is where containerd reads the pre-registered plugin's configuration from.
const DefaultFile = "/etc/nri/conf.d/10-sandbox-guard.conf"

// Mode says what the gate does with a pod while a check fails.
type Mode string

const (
	ModeEnforce Mode = "enforce" // reject the sandbox; kubelet retries
	ModeWarn    Mode = "warn"    // admit, and log what would have been rejected
	ModeOff     Mode = "off"     // admit without looking
)

// Values of Config.KubeletRetry.
const (
	KubeletRetryBackoff = "backoff"
	KubeletRetryFast    = "fast"
)

// Config is the whole configuration file.
type Config struct {
	// Mode is enforce, warn or off.
	Mode Mode `json:"mode"`
	// Log configures logging. The file is used when containerd starts the plugin (its stdout and
	// stderr are discarded then); `run` logs to stderr.
	Log Log `json:"log"`
	// Exempt lists pods the gate never blocks, besides host-network pods, which always pass.
	Exempt Exempt `json:"exempt"`
	// Preset names a shipped list of checks to start from (see presets.go).
	Preset string `json:"preset"`
	// Checks are added to the preset's; a check with a preset check's name replaces it.
	Checks []Check `json:"checks"`
	// DisableChecks removes checks (by name) from the preset.
	DisableChecks []string `json:"disableChecks"`
	// Refresh says how often checks run in the background.
	Refresh Refresh `json:"refresh"`
	// SettleTime is how long every check must have passed before pods are admitted.
	SettleTime Duration `json:"settleTime"`
	// KubeletRetry says how soon kubelet retries a refused sandbox: "backoff" (its pod worker's
	// back-off, 10-15 s) or "fast" (about 1 s: the rejection then contains kubelet's
	// "network is not ready"). Every attempt on containerd sets up the pod's network and starts
	// its pause container before NRI's hook refuses it, so "fast" costs that about once a second
	// per waiting pod (and, with the VPC CNI, an IP address that goes into its cool-down).
	KubeletRetry string `json:"kubeletRetry"`

	// SandboxImage is the pod sandbox image to keep present and pinned: "auto" (read it from
	// containerd's configuration), "eks" (the EKS pause image of the node's region), an image
	// reference, or "" to keep no sandbox image.
	SandboxImage string `json:"sandboxImage"`
	// SandboxImageFallbacks are pulled, in order, when the sandbox image itself cannot be; the
	// result is tagged under the sandbox image's name. Default for "eks": the correct-region
	// account image, then public.ecr.aws/eks-distro, then registry.k8s.io.
	SandboxImageFallbacks []string `json:"sandboxImageFallbacks"`
	// PinImages are more images to keep present and pinned (e.g. the CNI's).
	PinImages []PinImage `json:"pinImages"`
	// StateDir holds the local copies of the kept images.
	StateDir string `json:"stateDir"`
	// Keeper tunes the image keeper.
	Keeper Keeper `json:"keeper"`
	// Containerd says how to reach containerd and where its configuration is.
	Containerd Containerd `json:"containerd"`
	// EKS configures sandboxImage: eks.
	EKS EKS `json:"eks"`
	// ECR configures ECR credentials.
	ECR ECR `json:"ecr"`
	// Metrics configures the Prometheus metrics and health endpoints.
	Metrics Metrics `json:"metrics"`
}

// Metrics configures the HTTP server for /metrics, /healthz and /readyz.
type Metrics struct {
	// Address to listen on; "" turns the server off. Loopback by default: the node's network is
	// not the place to publish it without thought.
	Address string `json:"address"`
}

// PinImage is one more image to keep present and pinned.
type PinImage struct {
	Image     string   `json:"image"`
	Fallbacks []string `json:"fallbacks,omitempty"`
}

// Keeper tunes the image keeper.
type Keeper struct {
	// ReconcileInterval is how often every image is checked besides containerd's events.
	ReconcileInterval Duration `json:"reconcileInterval"`
	// LocalCopy keeps an OCI archive of each image in stateDir to restore from when every source fails.
	LocalCopy bool `json:"localCopy"`
	// PullTimeout bounds each pull from one source (a hanging registry).
	PullTimeout Duration `json:"pullTimeout"`
}

// Containerd says how to reach containerd.
type Containerd struct {
	Address     string `json:"address"`
	Namespace   string `json:"namespace"`
	Snapshotter string `json:"snapshotter"`
	// ConfigFile is containerd's main configuration (for sandboxImage: auto and the registry
	// hosts directory); its imports are followed.
	ConfigFile string `json:"configFile"`
	// RegistryConfigPath overrides the hosts.toml directory read from ConfigFile.
	RegistryConfigPath string `json:"registryConfigPath"`
}

// EKS configures the EKS pause image.
type EKS struct {
	// Region is the node's region; empty asks the instance metadata service.
	Region       string `json:"region"`
	FIPS         bool   `json:"fips"`
	PauseVersion string `json:"pauseVersion"`
}

// ECR configures where ECR tokens come from.
type ECR struct {
	// Registries declares more hosts as ECR registries of a region (VPC endpoints, private
	// aliases, test registries): host[:port] -> region.
	Registries map[string]string `json:"registries"`
	// Endpoint overrides the ECR API endpoint in every region; Endpoints per region.
	Endpoint  string            `json:"endpoint"`
	Endpoints map[string]string `json:"endpoints"`
	// SharedConfigFiles and SharedCredentialsFiles name AWS config files: containerd starts the
	// plugin without any environment, so ~/.aws is not found (EKS Hybrid Nodes, on-premises).
	SharedConfigFiles      []string `json:"sharedConfigFiles"`
	SharedCredentialsFiles []string `json:"sharedCredentialsFiles"`
	Profile                string   `json:"profile"`
	// CredentialBridge keeps the current ECR token in containerd's hosts.toml for the hosts of
	// the kept images, so that containerd's own pulls authenticate too.
	CredentialBridge bool `json:"credentialBridge"`
}

// Log configures logging.
type Log struct {
	File       string `json:"file"`
	Level      string `json:"level"`
	Format     string `json:"format"`
	MaxSizeMB  int    `json:"maxSizeMB"`
	MaxBackups int    `json:"maxBackups"`
}

// Exempt lists pods that are never gated.
type Exempt struct {
	Namespaces  []string       `json:"namespaces"`
	PodSelector *LabelSelector `json:"podSelector"`
}

// Refresh configures the background check runner.
type Refresh struct {
	Interval   Duration `json:"interval"`
	MaxBackoff Duration `json:"maxBackoff"`
	Timeout    Duration `json:"timeout"`
}

// Check is one readiness condition. Exactly one kind (file, ...) is set.
type Check struct {
	Name string `json:"name"`
	// Hint names the component that makes the condition true; it ends up in the rejection.
	Hint     string         `json:"hint,omitempty"`
	File     *FileCheck     `json:"file,omitempty"`
	Iptables *IptablesCheck `json:"iptables,omitempty"`
	Nftables *NftablesCheck `json:"nftables,omitempty"`
	CNI      *CNICheck      `json:"cni,omitempty"`
	HTTP     *HTTPCheck     `json:"http,omitempty"`
	Socket   *SocketCheck   `json:"socket,omitempty"`
}

// FileCheck passes when Path exists.
type FileCheck struct {
	Path string `json:"path"`
}

// IptablesCheck passes when Chain (or, with ChainPrefix, any chain starting with it) exists in
// Table, in the iptables backend in use.
type IptablesCheck struct {
	Table       string `json:"table"`
	Chain       string `json:"chain,omitempty"`
	ChainPrefix string `json:"chainPrefix,omitempty"`
	// Backend is auto (detect), nft or legacy.
	Backend string `json:"backend,omitempty"`
	// IPv6 asks ip6tables instead of iptables.
	IPv6 bool `json:"ipv6,omitempty"`
}

// NftablesCheck passes when a native nftables chain exists (kube-proxy's nftables mode).
type NftablesCheck struct {
	Family string `json:"family"`
	Table  string `json:"table"`
	Chain  string `json:"chain"`
}

// CNICheck passes when ConfDir holds a loadable network configuration whose plugins all exist
// in BinDirs.
type CNICheck struct {
	ConfDir string   `json:"confDir"`
	BinDirs []string `json:"binDirs"`
}

// HTTPCheck passes when URL answers 2xx (and, with BodyPattern, the body matches it).
type HTTPCheck struct {
	URL         string `json:"url"`
	BodyPattern string `json:"bodyPattern,omitempty"`
}

// SocketCheck passes when any of Addresses accepts a connection (unix:///path or tcp://host:port).
type SocketCheck struct {
	Addresses []string `json:"addresses"`
}

// Duration is a time.Duration written as "1s", "500ms" or "2m".
type Duration struct{ time.Duration }

// UnmarshalJSON accepts a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration such as \"1s\", got %s", string(b))
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want a duration such as \"1s\", got %q", s)
	}
	d.Duration = v
	return nil
}

// MarshalJSON writes the Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// Default returns the configuration used for every key the file leaves out: suited to an EKS
// node with the VPC CNI and kube-proxy in iptables mode.
func Default() *Config {
	return &Config{
		Mode:         ModeEnforce,
		Log:          Log{File: "/var/log/sandbox-guard.log", Level: "info", Format: "text", MaxSizeMB: 10, MaxBackups: 3},
		Preset:       PresetEKS,
		Refresh:      Refresh{Interval: Duration{time.Second}, MaxBackoff: Duration{30 * time.Second}, Timeout: Duration{time.Second}},
		KubeletRetry: KubeletRetryBackoff,

		SandboxImage: "auto",
		StateDir:     "/var/lib/sandbox-guard",
		Keeper:       Keeper{ReconcileInterval: Duration{time.Minute}, LocalCopy: true, PullTimeout: Duration{2 * time.Minute}},
		Containerd: Containerd{Address: "/run/containerd/containerd.sock", Namespace: "k8s.io",
			Snapshotter: "overlayfs", ConfigFile: "/etc/containerd/config.toml"},
		EKS:     EKS{PauseVersion: "3.10"},
		Metrics: Metrics{Address: "127.0.0.1:9809"},
	}
}

// Error is a configuration problem at one key.
type Error struct {
	Source string // file name, or a description of where the text came from
	Key    string // dotted path such as checks[1].file.path; empty for a syntax error
	Msg    string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("config")
	if e.Source != "" {
		b.WriteString(" " + e.Source)
	}
	if e.Key != "" {
		b.WriteString(": key " + e.Key)
	}
	b.WriteString(": " + e.Msg)
	return b.String()
}

// LoadFile reads and parses the configuration file at path.
func LoadFile(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{Source: path, Msg: fmt.Sprintf("cannot read: %v", err)}
	}
	return Parse(data, path)
}
