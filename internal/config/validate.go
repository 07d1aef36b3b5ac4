package config

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/sirupsen/logrus"
)

// Lengths are checked apart: a counted repetition such as {0,61} compiles into that many
// copies, and these patterns live for the whole process (60 KB of heap at start).
var checkNamePattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)

// validCheckName: a DNS label, at most 63 characters.
func validCheckName(s string) bool { return len(s) <= 63 && checkNamePattern.MatchString(s) }

// validPauseVersion: an image tag, at most 128 characters.
func validPauseVersion(s string) bool { return len(s) <= 128 && pauseVersionPattern.MatchString(s) }

func (c *Config) validate(source string) error {
	if err := c.validateKeys(); err != nil {
		err.Source = source
		return err
	}
	return nil
}

func (c *Config) validateKeys() *Error {
	switch c.Mode {
	case ModeEnforce, ModeWarn, ModeOff:
	default:
		return bad("mode", "%q is not one of enforce, warn, off", c.Mode)
	}
	if c.Log.File != "" && !filepath.IsAbs(c.Log.File) {
		return bad("log.file", "%q is not an absolute path", c.Log.File)
	}
	if _, err := logrus.ParseLevel(c.Log.Level); err != nil {
		return bad("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		return bad("log.format", "%q is not one of text, json", c.Log.Format)
	}
	if c.Log.MaxSizeMB < 1 {
		return bad("log.maxSizeMB", "must be at least 1, got %d", c.Log.MaxSizeMB)
	}
	if c.Log.MaxBackups < 0 {
		return bad("log.maxBackups", "must not be negative, got %d", c.Log.MaxBackups)
	}
	for i, ns := range c.Exempt.Namespaces {
		if strings.TrimSpace(ns) == "" {
			return bad(fmt.Sprintf("exempt.namespaces[%d]", i), "must not be empty")
		}
	}
	if c.Exempt.PodSelector != nil {
		if _, err := c.Exempt.PodSelector.Selector(); err != nil {
			return bad("exempt.podSelector", "%v", err)
		}
	}
	preset, ok := PresetChecks(c.Preset)
	if !ok {
		return bad("preset", "%q is not one of %s", c.Preset, strings.Join(Presets(), ", "))
	}
	for i, n := range c.DisableChecks {
		if !hasCheck(preset, n) {
			return bad(fmt.Sprintf("disableChecks[%d]", i), "preset %q has no check named %q (it has: %s)", c.Preset, n, checkNames(preset))
		}
	}
	seen := map[string]bool{}
	for i, ch := range c.Checks {
		key := fmt.Sprintf("checks[%d]", i)
		if seen[ch.Name] {
			return bad(key+".name", "%q is used by an earlier check", ch.Name)
		}
		seen[ch.Name] = true
		if err := ch.validate(key); err != nil {
			return err
		}
	}
	if d := c.Refresh.Interval.Duration; d < 100*time.Millisecond {
		return bad("refresh.interval", "must be at least 100ms, got %v", d)
	}
	if c.Refresh.MaxBackoff.Duration < c.Refresh.Interval.Duration {
		return bad("refresh.maxBackoff", "must be at least refresh.interval (%v), got %v", c.Refresh.Interval.Duration, c.Refresh.MaxBackoff.Duration)
	}
	if d := c.Refresh.Timeout.Duration; d < time.Millisecond || d > time.Minute {
		return bad("refresh.timeout", "must be between 1ms and 1m, got %v", d)
	}
	if c.SettleTime.Duration < 0 {
		return bad("settleTime", "must not be negative, got %v", c.SettleTime.Duration)
	}
	if c.KubeletRetry != KubeletRetryBackoff && c.KubeletRetry != KubeletRetryFast {
		return bad("kubeletRetry", "must be %s or %s, got %q", KubeletRetryBackoff, KubeletRetryFast, c.KubeletRetry)
	}
	// The first error wins, in this order.
	for _, section := range []func() *Error{c.validateImages, c.validateContainerd, c.validateAWS, c.validateMetrics, c.validateCredentialFiles} {
		if err := section(); err != nil {
			return err
		}
	}
	return nil
}

// bad is the error for one configuration key.
func bad(key, format string, args ...any) *Error {
	return &Error{Key: key, Msg: fmt.Sprintf(format, args...)}
}

// validateImages checks the images to keep and the keeper that keeps them.
func (c *Config) validateImages() *Error {
	switch c.SandboxImage {
	case "", "auto", "eks":
	default:
		if err := ValidImageRef(c.SandboxImage); err != nil {
			return bad("sandboxImage", "%v (or use auto, eks, or \"\" for none)", err)
		}
	}
	for i, f := range c.SandboxImageFallbacks {
		if err := validFallback(f); err != nil {
			return bad(fmt.Sprintf("sandboxImageFallbacks[%d]", i), "%v", err)
		}
	}
	for i, p := range c.PinImages {
		if err := ValidImageRef(p.Image); err != nil {
			return bad(fmt.Sprintf("pinImages[%d].image", i), "%v", err)
		}
		for j, f := range p.Fallbacks {
			if err := validFallback(f); err != nil {
				return bad(fmt.Sprintf("pinImages[%d].fallbacks[%d]", i, j), "%v", err)
			}
		}
	}
	if !filepath.IsAbs(c.StateDir) {
		return bad("stateDir", "%q is not an absolute path", c.StateDir)
	}
	if d := c.Keeper.ReconcileInterval.Duration; d < time.Second {
		return bad("keeper.reconcileInterval", "must be at least 1s, got %v", d)
	}
	if d := c.Keeper.PullTimeout.Duration; d < time.Second {
		return bad("keeper.pullTimeout", "must be at least 1s, got %v", d)
	}
	return nil
}

func (c *Config) validateContainerd() *Error {
	if !filepath.IsAbs(c.Containerd.Address) {
		return bad("containerd.address", "%q is not an absolute socket path", c.Containerd.Address)
	}
	if c.Containerd.Namespace == "" {
		return bad("containerd.namespace", "must not be empty")
	}
	if c.Containerd.Snapshotter == "" {
		return bad("containerd.snapshotter", "must not be empty")
	}
	if c.Containerd.ConfigFile != "" && !filepath.IsAbs(c.Containerd.ConfigFile) {
		return bad("containerd.configFile", "%q is not an absolute path", c.Containerd.ConfigFile)
	}
	for _, d := range filepath.SplitList(c.Containerd.RegistryConfigPath) {
		if !filepath.IsAbs(d) {
			return bad("containerd.registryConfigPath", "%q is not an absolute path", d)
		}
	}
	return nil
}

// validateAWS checks the EKS and ECR regions, the pause image tag and the ECR endpoints.
func (c *Config) validateAWS() *Error {
	if c.EKS.Region != "" && !regionPattern.MatchString(c.EKS.Region) {
		return bad("eks.region", "%q does not look like an AWS region (e.g. us-west-2)", c.EKS.Region)
	}
	if !validPauseVersion(c.EKS.PauseVersion) {
		return bad("eks.pauseVersion", "%q is not a tag such as 3.10", c.EKS.PauseVersion)
	}
	for host, region := range c.ECR.Registries {
		if host == "" || strings.ContainsAny(host, "/ ") {
			return bad("ecr.registries", "%q is not a registry host[:port]", host)
		}
		if !regionPattern.MatchString(region) {
			return bad("ecr.registries."+host, "%q does not look like an AWS region", region)
		}
	}
	if c.ECR.Endpoint != "" {
		if err := endpointURL(c.ECR.Endpoint); err != nil {
			return bad("ecr.endpoint", "%v", err)
		}
	}
	for region, ep := range c.ECR.Endpoints {
		if err := endpointURL(ep); err != nil {
			return bad("ecr.endpoints."+region, "%v", err)
		}
	}
	return nil
}

func (c *Config) validateMetrics() *Error {
	if a := c.Metrics.Address; a != "" {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			return bad("metrics.address", "%q is not host:port (or \"\" to turn metrics off)", a)
		}
	}
	return nil
}

// validateCredentialFiles checks the AWS shared config and credentials files ECR tokens use.
func (c *Config) validateCredentialFiles() *Error {
	for i, f := range c.ECR.SharedConfigFiles {
		if !filepath.IsAbs(f) {
			return bad(fmt.Sprintf("ecr.sharedConfigFiles[%d]", i), "%q is not an absolute path", f)
		}
	}
	for i, f := range c.ECR.SharedCredentialsFiles {
		if !filepath.IsAbs(f) {
			return bad(fmt.Sprintf("ecr.sharedCredentialsFiles[%d]", i), "%q is not an absolute path", f)
		}
	}
	return nil
}

var (
	regionPattern       = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-\d+$`)
	pauseVersionPattern = regexp.MustCompile(`^[\w][\w.-]*$`)
)

// ValidImageRef checks that ref names an image the way containerd's CRI accepts it.
func ValidImageRef(ref string) error {
	if _, err := reference.ParseDockerRef(ref); err != nil {
		return fmt.Errorf("%q is not an image reference: %v", ref, err)
	}
	return nil
}

// endpointURL is an ECR API endpoint: https, since the answer is a registry token; plain http
// only on loopback (a stand-in for the API in tests).
func endpointURL(s string) error {
	if err := validURL(s); err != nil {
		return err
	}
	u, _ := url.Parse(s)
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		return fmt.Errorf("%q is plain http: the ECR API answers with a registry token, so only https (or a loopback address) is accepted", s)
	}
	return nil
}

// isLoopback reports whether host is localhost or a loopback address.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Warnings are settings that are valid but deserve a line in the log at start.
func (c *Config) Warnings() []string {
	var out []string
	if a := c.Metrics.Address; a != "" {
		if host, _, err := net.SplitHostPort(a); err == nil && !isLoopback(host) {
			out = append(out, fmt.Sprintf("metrics.address %s listens beyond loopback: /metrics and /readyz have no authentication", a))
		}
	}
	return out
}

func validURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http:// or https:// URL", s)
	}
	return nil
}

func (ch *Check) validate(key string) *Error {
	bad := func(sub, format string, args ...any) *Error {
		return &Error{Key: key + sub, Msg: fmt.Sprintf(format, args...)}
	}
	if !validCheckName(ch.Name) {
		return bad(".name", "%q must be lower-case letters, digits and '-' (at most 63)", ch.Name)
	}
	kinds := 0
	for _, set := range []bool{ch.File != nil, ch.Iptables != nil, ch.Nftables != nil, ch.CNI != nil, ch.HTTP != nil, ch.Socket != nil} {
		if set {
			kinds++
		}
	}
	if kinds != 1 {
		return bad("", "check %q must set exactly one of file, iptables, nftables, cni, http, socket (it sets %d)", ch.Name, kinds)
	}
	switch {
	case ch.File != nil:
		if !filepath.IsAbs(ch.File.Path) {
			return bad(".file.path", "%q is not an absolute path", ch.File.Path)
		}
	case ch.Iptables != nil:
		t := ch.Iptables
		switch t.Table {
		case "filter", "nat", "mangle", "raw", "security":
		default:
			return bad(".iptables.table", "%q is not one of filter, nat, mangle, raw, security", t.Table)
		}
		if t.Chain == "" && t.ChainPrefix == "" {
			return bad(".iptables.chain", "set chain, chainPrefix or both")
		}
		switch t.Backend {
		case "", "auto", "nft", "legacy":
		default:
			return bad(".iptables.backend", "%q is not one of auto, nft, legacy", t.Backend)
		}
	case ch.Nftables != nil:
		t := ch.Nftables
		switch t.Family {
		case "ip", "ip6":
		default:
			return bad(".nftables.family", "%q is not one of ip, ip6", t.Family)
		}
		if t.Table == "" {
			return bad(".nftables.table", "must not be empty")
		}
		if t.Chain == "" {
			return bad(".nftables.chain", "must not be empty")
		}
	case ch.CNI != nil:
		if !filepath.IsAbs(ch.CNI.ConfDir) {
			return bad(".cni.confDir", "%q is not an absolute path", ch.CNI.ConfDir)
		}
		if len(ch.CNI.BinDirs) == 0 {
			return bad(".cni.binDirs", "list at least one directory")
		}
		for i, d := range ch.CNI.BinDirs {
			if !filepath.IsAbs(d) {
				return bad(fmt.Sprintf(".cni.binDirs[%d]", i), "%q is not an absolute path", d)
			}
		}
	case ch.HTTP != nil:
		u, err := url.Parse(ch.HTTP.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return bad(".http.url", "%q is not an http:// or https:// URL", ch.HTTP.URL)
		}
		if _, err := regexp.Compile(ch.HTTP.BodyPattern); err != nil {
			return bad(".http.bodyPattern", "not a valid regular expression: %v", err)
		}
	case ch.Socket != nil:
		if len(ch.Socket.Addresses) == 0 {
			return bad(".socket.addresses", "list at least one address")
		}
		for i, a := range ch.Socket.Addresses {
			if _, _, err := ParseSocketAddress(a); err != nil {
				return bad(fmt.Sprintf(".socket.addresses[%d]", i), "%v", err)
			}
		}
	}
	return nil
}

// ParseSocketAddress splits unix:///path or tcp://host:port into a network and address for net.Dial.
func ParseSocketAddress(a string) (network, address string, err error) {
	switch {
	case strings.HasPrefix(a, "unix://"):
		p := strings.TrimPrefix(a, "unix://")
		if !filepath.IsAbs(p) {
			return "", "", fmt.Errorf("%q: want unix:///absolute/path", a)
		}
		return "unix", p, nil
	case strings.HasPrefix(a, "tcp://"):
		hp := strings.TrimPrefix(a, "tcp://")
		if _, port, err := net.SplitHostPort(hp); err != nil || port == "" {
			return "", "", fmt.Errorf("%q: want tcp://host:port", a)
		}
		return "tcp", hp, nil
	}
	return "", "", fmt.Errorf("%q: want unix:///path or tcp://host:port", a)
}

func hasCheck(list []Check, name string) bool {
	for _, c := range list {
		if c.Name == name {
			return true
		}
	}
	return false
}

func checkNames(list []Check) string {
	if len(list) == 0 {
		return "none"
	}
	names := make([]string, len(list))
	for i, c := range list {
		names[i] = c.Name
	}
	return strings.Join(names, ", ")
}
