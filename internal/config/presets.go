package config

// Shipped presets: lists of checks for common node networking set-ups. The gate must never block
// the pods that make these checks pass; on EKS they all run with hostNetwork (aws-node,
// kube-proxy, calico-node, cilium-agent), which the gate always admits.
const (
	PresetEKS          = "eks"          // VPC CNI + kube-proxy in iptables mode (the default)
	PresetEKSNftables  = "eks-nftables" // VPC CNI + kube-proxy in nftables mode
	PresetCilium       = "cilium"       // Cilium with its kube-proxy replacement
	PresetCalico       = "calico"       // Calico + kube-proxy in iptables mode
	PresetNone         = "none"         // only the checks listed in `checks`
	defaultCNIConfDir  = "/etc/cni/net.d"
	defaultCNIBinDir   = "/opt/cni/bin"
	kubeProxyHint      = "kube-proxy has not synced its rules yet"
	kubeProxyChainName = "KUBE-SERVICES"
)

// Presets lists the preset names, in documentation order.
func Presets() []string {
	return []string{PresetEKS, PresetEKSNftables, PresetCilium, PresetCalico, PresetNone}
}

// PresetChecks returns the checks of a preset, or false for an unknown name.
func PresetChecks(name string) ([]Check, bool) {
	cni := func(hint string) Check {
		return Check{Name: "cni-config", Hint: hint, CNI: &CNICheck{ConfDir: defaultCNIConfDir, BinDirs: []string{defaultCNIBinDir}}}
	}
	kubeProxy := Check{Name: "kube-proxy-rules", Hint: kubeProxyHint, Iptables: &IptablesCheck{Table: "nat", Chain: kubeProxyChainName}}
	ipamd := Check{Name: "vpc-cni-ipamd", Hint: "the VPC CNI's ipamd (aws-node) is not serving yet",
		Socket: &SocketCheck{Addresses: []string{"unix:///var/run/aws-node/ipamd.sock", "tcp://127.0.0.1:50051"}}}
	switch name {
	case PresetEKS:
		return []Check{cni("the VPC CNI (aws-node) has not written its CNI config yet"), ipamd, kubeProxy}, true
	case PresetEKSNftables:
		return []Check{cni("the VPC CNI (aws-node) has not written its CNI config yet"), ipamd,
			{Name: "kube-proxy-rules", Hint: kubeProxyHint, Nftables: &NftablesCheck{Family: "ip", Table: "kube-proxy", Chain: "services"}}}, true
	case PresetCilium:
		return []Check{cni("cilium-agent has not written its CNI config yet"),
			{Name: "cilium-health", Hint: "cilium-agent is not ready yet", HTTP: &HTTPCheck{URL: "http://127.0.0.1:9879/healthz"}}}, true
	case PresetCalico:
		return []Check{cni("calico-node has not written its CNI config yet"),
			{Name: "calico-felix", Hint: "calico-node (felix) is not ready yet", HTTP: &HTTPCheck{URL: "http://127.0.0.1:9099/readiness"}},
			kubeProxy}, true
	case PresetNone:
		return nil, true
	}
	return nil, false
}

// EffectiveChecks is the preset's checks minus disableChecks, with configured checks replacing
// preset checks of the same name and the rest appended.
func (c *Config) EffectiveChecks() []Check {
	base, _ := PresetChecks(c.Preset)
	disabled := map[string]bool{}
	for _, n := range c.DisableChecks {
		disabled[n] = true
	}
	own := map[string]Check{}
	for _, ch := range c.Checks {
		own[ch.Name] = ch
	}
	var out []Check
	for _, ch := range base {
		if disabled[ch.Name] {
			continue
		}
		if o, ok := own[ch.Name]; ok {
			ch = o
			delete(own, ch.Name)
		}
		out = append(out, ch)
	}
	for _, ch := range c.Checks {
		if _, ok := own[ch.Name]; ok {
			out = append(out, ch)
		}
	}
	return out
}
