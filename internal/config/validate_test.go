package config

import (
	"strings"
	"testing"
)

// TestParseValidationErrors covers every branch of validate.go, each through Parse so that the
// source is checked too.
func TestParseValidationErrors(t *testing.T) {
	check := func(body string) string { return "preset: none\nchecks:\n- name: c\n  " + body }
	tests := []errCase{
		// mode
		{"mode unknown", "mode: sometimes", "mode", `"sometimes" is not one of enforce, warn, off`},
		{"mode capitalised", "mode: Enforce", "mode", `"Enforce" is not one of enforce, warn, off`},
		{"mode empty", `mode: ""`, "mode", `"" is not one of`},
		{"mode false (YAML 1.1 off)", "mode: false", "mode", "want a string, got boolean false"},
		// log
		{"log file relative", "log: {file: var/log/x.log}", "log.file", `"var/log/x.log" is not an absolute path`},
		{"log file dot", "log: {file: ./x.log}", "log.file", "is not an absolute path"},
		{"log level unknown", "log: {level: verbose}", "log.level", `"verbose" is not one of debug, info, warn, error`},
		{"log level empty", `log: {level: ""}`, "log.level", `"" is not one of`},
		{"log format unknown", "log: {format: xml}", "log.format", `"xml" is not one of text, json`},
		{"log format empty", `log: {format: ""}`, "log.format", `"" is not one of text, json`},
		{"log maxSizeMB zero", "log: {maxSizeMB: 0}", "log.maxSizeMB", "must be at least 1, got 0"},
		{"log maxSizeMB negative", "log: {maxSizeMB: -5}", "log.maxSizeMB", "must be at least 1, got -5"},
		{"log maxBackups negative", "log: {maxBackups: -1}", "log.maxBackups", "must not be negative, got -1"},
		// exempt
		{"empty namespace", `exempt: {namespaces: [kube-system, ""]}`, "exempt.namespaces[1]", "must not be empty"},
		{"blank namespace", `exempt: {namespaces: ["  "]}`, "exempt.namespaces[0]", "must not be empty"},
		{"selector bad operator", "exempt: {podSelector: {matchExpressions: [{key: a, operator: Like, values: [b]}]}}", "exempt.podSelector", `"Like" is not a valid label selector operator`},
		{"selector In without values", "exempt: {podSelector: {matchExpressions: [{key: a, operator: In}]}}", "exempt.podSelector", "values"},
		{"selector Exists with values", "exempt: {podSelector: {matchExpressions: [{key: a, operator: Exists, values: [b]}]}}", "exempt.podSelector", "values"},
		{"selector bad label key", `exempt: {podSelector: {matchLabels: {"bad key!": x}}}`, "exempt.podSelector", "bad key!"},
		{"selector bad label value", `exempt: {podSelector: {matchLabels: {app: "not valid!"}}}`, "exempt.podSelector", "not valid!"},
		// preset and disableChecks
		{"preset unknown", "preset: gke", "preset", `"gke" is not one of eks, eks-nftables, cilium, calico, none`},
		{"preset empty", `preset: ""`, "preset", `"" is not one of`},
		{"disable unknown check", "disableChecks: [cni-config, nope]", "disableChecks[1]", `preset "eks" has no check named "nope" (it has: cni-config, vpc-cni-ipamd, kube-proxy-rules)`},
		{"disable a check of another preset", "preset: cilium\ndisableChecks: [vpc-cni-ipamd]", "disableChecks[0]", `preset "cilium" has no check named "vpc-cni-ipamd" (it has: cni-config, cilium-health)`},
		{"disable with preset none", "preset: none\ndisableChecks: [cni-config]", "disableChecks[0]", `(it has: none)`},
		{"disable own check", "preset: none\nchecks: [{name: a, file: {path: /a}}]\ndisableChecks: [a]", "disableChecks[0]", `has no check named "a"`},
		// check names
		{"duplicate check name", "checks:\n- {name: a, file: {path: /a}}\n- {name: b, file: {path: /b}}\n- {name: a, file: {path: /c}}", "checks[2].name", `"a" is used by an earlier check`},
		{"empty check name", "checks: [{file: {path: /a}}]", "checks[0].name", `"" must be lower-case letters, digits and '-' (at most 63)`},
		{"upper-case name", "checks: [{name: Marker, file: {path: /a}}]", "checks[0].name", `"Marker" must be lower-case`},
		{"leading dash", "checks: [{name: -a, file: {path: /a}}]", "checks[0].name", "must be lower-case"},
		{"trailing dash", "checks: [{name: a-, file: {path: /a}}]", "checks[0].name", "must be lower-case"},
		{"underscore", "checks: [{name: a_b, file: {path: /a}}]", "checks[0].name", "must be lower-case"},
		{"dot", "checks: [{name: a.b, file: {path: /a}}]", "checks[0].name", "must be lower-case"},
		{"64 characters", "checks: [{name: " + strings.Repeat("a", 64) + ", file: {path: /a}}]", "checks[0].name", "at most 63"},
		// eks.pauseVersion: an image tag, at most 128 characters
		{"pause version with a slash", `eks: {pauseVersion: "3.10/x"}`, "eks.pauseVersion", "is not a tag"},
		{"pause version leading dot", `eks: {pauseVersion: ".3"}`, "eks.pauseVersion", "is not a tag"},
		{"pause version 129 characters", "eks: {pauseVersion: " + strings.Repeat("a", 129) + "}", "eks.pauseVersion", "is not a tag"},
		{"bad name in second check", "checks: [{name: a, file: {path: /a}}, {name: B, file: {path: /b}}]", "checks[1].name", `"B"`},
		// kinds
		{"no kind", "checks: [{name: a, hint: h}]", "checks[0]", `check "a" must set exactly one of file, iptables, nftables, cni, http, socket (it sets 0)`},
		{"two kinds", "checks: [{name: a, file: {path: /a}, http: {url: http://x/}}]", "checks[0]", "(it sets 2)"},
		{"all kinds", "checks: [{name: a, file: {path: /a}, http: {url: http://x/}, socket: {addresses: [tcp://a:1]}, cni: {confDir: /a, binDirs: [/b]}, iptables: {table: nat, chain: X}, nftables: {family: ip, table: t, chain: c}}]", "checks[0]", "(it sets 6)"},
		{"kind set to null", "checks: [{name: a, file: null}]", "checks[0]", "(it sets 0)"},
		// file
		{"file relative", check("file: {path: run/x}"), "checks[0].file.path", `"run/x" is not an absolute path`},
		{"file empty", check("file: {}"), "checks[0].file.path", `"" is not an absolute path`},
		// iptables
		{"iptables table unknown", check("iptables: {table: nat2, chain: X}"), "checks[0].iptables.table", `"nat2" is not one of filter, nat, mangle, raw, security`},
		{"iptables table missing", check("iptables: {chain: X}"), "checks[0].iptables.table", `"" is not one of`},
		{"iptables no chain", check("iptables: {table: nat}"), "checks[0].iptables.chain", "set chain, chainPrefix or both"},
		{"iptables backend unknown", check("iptables: {table: nat, chain: X, backend: xtables}"), "checks[0].iptables.backend", `"xtables" is not one of auto, nft, legacy`},
		// nftables
		{"nftables family unknown", check("nftables: {family: ipv4, table: t, chain: c}"), "checks[0].nftables.family", `"ipv4" is not one of ip`},
		{"nftables no table", check("nftables: {family: ip, chain: c}"), "checks[0].nftables.table", "must not be empty"},
		{"nftables no chain", check("nftables: {family: ip, table: t}"), "checks[0].nftables.chain", "must not be empty"},
		// cni
		{"cni confDir relative", check("cni: {confDir: etc/cni, binDirs: [/opt/cni/bin]}"), "checks[0].cni.confDir", `"etc/cni" is not an absolute path`},
		{"cni no binDirs", check("cni: {confDir: /etc/cni/net.d}"), "checks[0].cni.binDirs", "list at least one directory"},
		{"cni empty binDirs", check("cni: {confDir: /etc/cni/net.d, binDirs: []}"), "checks[0].cni.binDirs", "list at least one directory"},
		{"cni relative binDir", check("cni: {confDir: /etc/cni/net.d, binDirs: [/opt/cni/bin, bin]}"), "checks[0].cni.binDirs[1]", `"bin" is not an absolute path`},
		// http
		{"http ftp", check("http: {url: ftp://x/}"), "checks[0].http.url", `"ftp://x/" is not an http:// or https:// URL`},
		{"http no host", check("http: {url: http:///path}"), "checks[0].http.url", "is not an http:// or https:// URL"},
		{"http no scheme", check("http: {url: 127.0.0.1:80/healthz}"), "checks[0].http.url", "is not an http:// or https:// URL"},
		{"http unparsable", check(`http: {url: "http://[::1"}`), "checks[0].http.url", "is not an http:// or https:// URL"},
		{"http empty", check("http: {}"), "checks[0].http.url", `"" is not an http://`},
		{"http bad pattern", check(`http: {url: "http://x/", bodyPattern: "ok("}`), "checks[0].http.bodyPattern", "not a valid regular expression"},
		// socket
		{"socket no addresses", check("socket: {}"), "checks[0].socket.addresses", "list at least one address"},
		{"socket empty addresses", check("socket: {addresses: []}"), "checks[0].socket.addresses", "list at least one address"},
		{"socket relative unix", check("socket: {addresses: [unix://run/x.sock]}"), "checks[0].socket.addresses[0]", `"unix://run/x.sock": want unix:///absolute/path`},
		{"socket tcp no port", check("socket: {addresses: [unix:///a, tcp://127.0.0.1]}"), "checks[0].socket.addresses[1]", `"tcp://127.0.0.1": want tcp://host:port`},
		{"socket tcp empty port", check("socket: {addresses: [tcp://127.0.0.1:]}"), "checks[0].socket.addresses[0]", "want tcp://host:port"},
		{"socket udp", check("socket: {addresses: [udp://127.0.0.1:53]}"), "checks[0].socket.addresses[0]", `"udp://127.0.0.1:53": want unix:///path or tcp://host:port`},
		{"socket bare path", check("socket: {addresses: [/run/x.sock]}"), "checks[0].socket.addresses[0]", "want unix:///path or tcp://host:port"},
		// refresh
		{"interval too short", "refresh: {interval: 99ms}", "refresh.interval", "must be at least 100ms, got 99ms"},
		{"interval zero", "refresh: {interval: 0s}", "refresh.interval", "must be at least 100ms, got 0s"},
		{"interval negative", "refresh: {interval: -1s}", "refresh.interval", "must be at least 100ms"},
		{"maxBackoff below interval", "refresh: {interval: 2s, maxBackoff: 1s}", "refresh.maxBackoff", "must be at least refresh.interval (2s), got 1s"},
		{"interval above default maxBackoff", "refresh: {interval: 1m}", "refresh.maxBackoff", "must be at least refresh.interval (1m0s), got 30s"},
		{"timeout zero", "refresh: {timeout: 0s}", "refresh.timeout", "must be between 1ms and 1m, got 0s"},
		{"timeout negative", "refresh: {timeout: -1s}", "refresh.timeout", "must be between 1ms and 1m"},
		{"timeout too long", "refresh: {timeout: 61s}", "refresh.timeout", "must be between 1ms and 1m, got 1m1s"},
		// settle
		{"settle negative", "settleTime: -1s", "settleTime", "must not be negative, got -1s"},
		{"kubeletRetry unknown", "kubeletRetry: sometimes", "kubeletRetry", `must be backoff or fast, got "sometimes"`},
		{"kubeletRetry empty", `kubeletRetry: ""`, "kubeletRetry", `must be backoff or fast, got ""`},
		// ECR API endpoints answer with registry tokens: https, or plain http on loopback only
		{"ecr endpoint plain http", "ecr: {endpoint: \"http://ecr.example.net\"}", "ecr.endpoint", "is plain http"},
		{"ecr regional endpoint plain http", "ecr: {endpoints: {us-west-2: \"http://10.0.0.5:8080\"}}", "ecr.endpoints.us-west-2", "is plain http"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), testSource)
			assertConfigError(t, err, testSource, tc)
		})
	}
}

// The first problem in document order is reported, so fixing errors one by one converges.
func TestValidationReportsFirstProblem(t *testing.T) {
	_, err := Parse([]byte("mode: x\nlog: {level: verbose}\nsettleTime: -1s"), testSource)
	assertConfigError(t, err, testSource, errCase{key: "mode", msg: `"x"`})
}

func TestParseSocketAddress(t *testing.T) {
	tests := []struct {
		in           string
		network, adr string
		wantErr      bool
	}{
		{"unix:///run/x.sock", "unix", "/run/x.sock", false},
		{"unix:///", "unix", "/", false},
		{"tcp://127.0.0.1:50051", "tcp", "127.0.0.1:50051", false},
		{"tcp://[::1]:9", "tcp", "[::1]:9", false},
		{"tcp://localhost:http", "tcp", "localhost:http", false},
		{"tcp://:80", "tcp", ":80", false},
		{"unix://run/x.sock", "", "", true},
		{"unix://", "", "", true},
		{"tcp://127.0.0.1", "", "", true},
		{"tcp://127.0.0.1:", "", "", true},
		{"tcp://::1:9", "", "", true},
		{"tcp://", "", "", true},
		{"TCP://127.0.0.1:1", "", "", true},
		{"udp://127.0.0.1:53", "", "", true},
		{"/run/x.sock", "", "", true},
		{"", "", "", true},
	}
	for _, tt := range tests {
		network, adr, err := ParseSocketAddress(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseSocketAddress(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if err != nil {
			if !strings.Contains(err.Error(), "want ") || !strings.Contains(err.Error(), tt.in) {
				t.Errorf("ParseSocketAddress(%q) error %q should quote the input and say what is wanted", tt.in, err)
			}
			continue
		}
		if network != tt.network || adr != tt.adr {
			t.Errorf("ParseSocketAddress(%q) = %q, %q; want %q, %q", tt.in, network, adr, tt.network, tt.adr)
		}
	}
}

func TestECREndpointOnLoopbackOrHTTPS(t *testing.T) {
	for _, ep := range []string{"https://ecr.example.net", "http://127.0.0.1:8080", "http://[::1]:8080", "http://localhost:9"} {
		if _, err := Parse([]byte("ecr: {endpoint: \""+ep+"\"}"), testSource); err != nil {
			t.Errorf("ecr.endpoint %s: %v", ep, err)
		}
	}
}

func TestWarnings(t *testing.T) {
	tests := []struct {
		address string
		warn    bool
	}{{"127.0.0.1:9809", false}, {"[::1]:9809", false}, {"localhost:9809", false}, {"", false}, {"0.0.0.0:9809", true}, {":9809", true}, {"10.0.0.5:9809", true}}
	for _, tt := range tests {
		cfg, err := Parse([]byte("metrics: {address: \""+tt.address+"\"}"), testSource)
		if err != nil {
			t.Fatal(err)
		}
		if got := len(cfg.Warnings()) == 1 && strings.Contains(cfg.Warnings()[0], "beyond loopback"); got != tt.warn {
			t.Errorf("metrics.address %q: warnings %q, want a warning: %v", tt.address, cfg.Warnings(), tt.warn)
		}
	}
}

// The longest check name and pause tag pass (the length limits are checked apart from the
// patterns).
func TestValidationLengthLimits(t *testing.T) {
	for _, y := range []string{
		"preset: none\nchecks: [{name: " + strings.Repeat("a", 63) + ", file: {path: /a}}]",
		"eks: {pauseVersion: " + strings.Repeat("a", 128) + "}",
	} {
		if _, err := Parse([]byte(y), testSource); err != nil {
			t.Errorf("%.40s...: %v", y, err)
		}
	}
}
