package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
)

const testSource = "test-source.yaml"

// fullDocument sets every key of the schema to a non-default value.
const fullDocument = `
mode: warn
log:
  file: /var/log/custom/guard.log
  level: debug
  format: json
  maxSizeMB: 5
  maxBackups: 0
exempt:
  namespaces: [kube-system, monitoring]
  podSelector:
    matchLabels:
      app: net-agent
    matchExpressions:
      - key: tier
        operator: In
        values: [infra, system]
preset: eks
disableChecks: [vpc-cni-ipamd]
checks:
  - name: marker
    hint: the agent writes it when ready
    file:
      path: /run/agent/ready
  - name: ipt
    iptables:
      table: filter
      chain: KUBE-FORWARD
      chainPrefix: KUBE-
      backend: legacy
      ipv6: true
  - name: nft
    nftables:
      family: ip6
      table: kube-proxy
      chain: services
  - name: cni
    cni:
      confDir: /etc/cni/net.d
      binDirs: [/opt/cni/bin, /usr/libexec/cni]
  - name: web
    http:
      url: https://127.0.0.1:8443/healthz
      bodyPattern: "^ok$"
  - name: sock
    socket:
      addresses: ["unix:///run/x.sock", "tcp://127.0.0.1:50051", "tcp://[::1]:9"]
refresh:
  interval: 2s
  maxBackoff: 1m
  timeout: 500ms
settleTime: 10s
`

func TestParseEveryKey(t *testing.T) {
	cfg, err := Parse([]byte(fullDocument), testSource)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	// Keys outside the network gate keep their defaults.
	want := Default()
	gateKeys := Config{
		Mode: ModeWarn,
		Log:  Log{File: "/var/log/custom/guard.log", Level: "debug", Format: "json", MaxSizeMB: 5, MaxBackups: 0},
		Exempt: Exempt{
			Namespaces: []string{"kube-system", "monitoring"},
			PodSelector: &LabelSelector{
				MatchLabels: map[string]string{"app": "net-agent"},
				MatchExpressions: []LabelSelectorRequirement{
					{Key: "tier", Operator: LabelSelectorOpIn, Values: []string{"infra", "system"}},
				},
			},
		},
		Preset:        PresetEKS,
		DisableChecks: []string{"vpc-cni-ipamd"},
		Checks: []Check{
			{Name: "marker", Hint: "the agent writes it when ready", File: &FileCheck{Path: "/run/agent/ready"}},
			{Name: "ipt", Iptables: &IptablesCheck{Table: "filter", Chain: "KUBE-FORWARD", ChainPrefix: "KUBE-", Backend: "legacy", IPv6: true}},
			{Name: "nft", Nftables: &NftablesCheck{Family: "ip6", Table: "kube-proxy", Chain: "services"}},
			{Name: "cni", CNI: &CNICheck{ConfDir: "/etc/cni/net.d", BinDirs: []string{"/opt/cni/bin", "/usr/libexec/cni"}}},
			{Name: "web", HTTP: &HTTPCheck{URL: "https://127.0.0.1:8443/healthz", BodyPattern: "^ok$"}},
			{Name: "sock", Socket: &SocketCheck{Addresses: []string{"unix:///run/x.sock", "tcp://127.0.0.1:50051", "tcp://[::1]:9"}}},
		},
		Refresh:    Refresh{Interval: Duration{2 * time.Second}, MaxBackoff: Duration{time.Minute}, Timeout: Duration{500 * time.Millisecond}},
		SettleTime: Duration{10 * time.Second},
	}
	want.Mode, want.Log, want.Exempt, want.Preset = gateKeys.Mode, gateKeys.Log, gateKeys.Exempt, gateKeys.Preset
	want.DisableChecks, want.Checks, want.Refresh, want.SettleTime = gateKeys.DisableChecks, gateKeys.Checks, gateKeys.Refresh, gateKeys.SettleTime
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("Parse mismatch\n got: %+v\nwant: %+v", cfg, want)
	}
}

// Every value accepted by a validation branch parses, and lands in the right field.
func TestParseValidValues(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		check func(t *testing.T, c *Config)
	}{
		{"mode enforce", `mode: enforce`, func(t *testing.T, c *Config) { eq(t, c.Mode, ModeEnforce) }},
		{"mode warn", `mode: warn`, func(t *testing.T, c *Config) { eq(t, c.Mode, ModeWarn) }},
		{"mode off quoted", `mode: "off"`, func(t *testing.T, c *Config) { eq(t, c.Mode, ModeOff) }},
		{"mode null keeps default", `mode:`, func(t *testing.T, c *Config) { eq(t, c.Mode, ModeEnforce) }},
		{"log file empty", `log: {file: ""}`, func(t *testing.T, c *Config) { eq(t, c.Log.File, "") }},
		{"log level warn", `log: {level: warn}`, func(t *testing.T, c *Config) { eq(t, c.Log.Level, "warn") }},
		{"log level error", `log: {level: error}`, func(t *testing.T, c *Config) { eq(t, c.Log.Level, "error") }},
		{"log format text", `log: {format: text}`, func(t *testing.T, c *Config) { eq(t, c.Log.Format, "text") }},
		{"log maxSizeMB 1", `log: {maxSizeMB: 1}`, func(t *testing.T, c *Config) { eq(t, c.Log.MaxSizeMB, 1) }},
		{"log maxBackups 7", `log: {maxBackups: 7}`, func(t *testing.T, c *Config) { eq(t, c.Log.MaxBackups, 7) }},
		{"partial log keeps other defaults", `log: {level: debug}`, func(t *testing.T, c *Config) {
			eq(t, c.Log, Log{File: "/var/log/sandbox-guard.log", Level: "debug", Format: "text", MaxSizeMB: 10, MaxBackups: 3})
		}},
		{"podSelector Exists", `exempt: {podSelector: {matchExpressions: [{key: a, operator: Exists}]}}`, func(t *testing.T, c *Config) {
			eq(t, c.Exempt.PodSelector.MatchExpressions[0].Operator, LabelSelectorOpExists)
		}},
		{"podSelector NotIn", `exempt: {podSelector: {matchExpressions: [{key: a, operator: NotIn, values: [x]}]}}`, func(t *testing.T, c *Config) {
			eq(t, c.Exempt.PodSelector.MatchExpressions[0].Values, []string{"x"})
		}},
		{"podSelector empty", `exempt: {podSelector: {}}`, func(t *testing.T, c *Config) {
			if c.Exempt.PodSelector == nil {
				t.Error("podSelector: {} should give a non-nil selector")
			}
		}},
		{"preset eks-nftables", `preset: eks-nftables`, func(t *testing.T, c *Config) { eq(t, c.Preset, PresetEKSNftables) }},
		{"preset cilium", `preset: cilium`, func(t *testing.T, c *Config) { eq(t, c.Preset, PresetCilium) }},
		{"preset calico", `preset: calico`, func(t *testing.T, c *Config) { eq(t, c.Preset, PresetCalico) }},
		{"preset none", `preset: none`, func(t *testing.T, c *Config) { eq(t, c.Preset, PresetNone) }},
		{"disable calico check", "preset: calico\ndisableChecks: [calico-felix, kube-proxy-rules]", func(t *testing.T, c *Config) {
			eq(t, c.DisableChecks, []string{"calico-felix", "kube-proxy-rules"})
		}},
		{"name one char", `checks: [{name: a, file: {path: /a}}]`, func(t *testing.T, c *Config) { eq(t, c.Checks[0].Name, "a") }},
		{"name 63 chars", `checks: [{name: ` + strings.Repeat("a", 63) + `, file: {path: /a}}]`, func(t *testing.T, c *Config) {
			eq(t, len(c.Checks[0].Name), 63)
		}},
		{"name with digits and dashes", `checks: [{name: 0-a-9, file: {path: /a}}]`, func(t *testing.T, c *Config) { eq(t, c.Checks[0].Name, "0-a-9") }},
		{"iptables chain only", `checks: [{name: a, iptables: {table: nat, chain: X}}]`, func(t *testing.T, c *Config) {
			eq(t, *c.Checks[0].Iptables, IptablesCheck{Table: "nat", Chain: "X"})
		}},
		{"iptables prefix only, every table and backend", `checks:
- {name: a, iptables: {table: filter, chainPrefix: X, backend: auto}}
- {name: b, iptables: {table: mangle, chain: X, backend: nft}}
- {name: c, iptables: {table: raw, chain: X, backend: legacy}}
- {name: d, iptables: {table: security, chain: X}}`, func(t *testing.T, c *Config) {
			eq(t, len(c.Checks), 4)
			eq(t, c.Checks[0].Iptables.ChainPrefix, "X")
			eq(t, c.Checks[2].Iptables.Backend, "legacy")
		}},
		{"nftables ip and ip6", `checks:
- {name: a, nftables: {family: ip, table: t, chain: c}}
- {name: b, nftables: {family: ip6, table: t, chain: c}}`, func(t *testing.T, c *Config) {
			eq(t, *c.Checks[0].Nftables, NftablesCheck{Family: "ip", Table: "t", Chain: "c"})
			eq(t, c.Checks[1].Nftables.Family, "ip6")
		}},
		{"http without pattern", `checks: [{name: a, http: {url: "http://localhost/x"}}]`, func(t *testing.T, c *Config) {
			eq(t, c.Checks[0].HTTP.BodyPattern, "")
		}},
		{"socket tcp empty host", `checks: [{name: a, socket: {addresses: ["tcp://:80"]}}]`, func(t *testing.T, c *Config) {
			eq(t, c.Checks[0].Socket.Addresses, []string{"tcp://:80"})
		}},
		{"refresh minimum interval", `refresh: {interval: 100ms, maxBackoff: 100ms}`, func(t *testing.T, c *Config) {
			eq(t, c.Refresh.Interval.Duration, 100*time.Millisecond)
			eq(t, c.Refresh.MaxBackoff.Duration, 100*time.Millisecond)
		}},
		{"refresh maximum timeout", `refresh: {timeout: 1m}`, func(t *testing.T, c *Config) { eq(t, c.Refresh.Timeout.Duration, time.Minute) }},
		{"settle zero", `settleTime: 0s`, func(t *testing.T, c *Config) { eq(t, c.SettleTime.Duration, time.Duration(0)) }},
		{"kubeletRetry default", `mode: warn`, func(t *testing.T, c *Config) { eq(t, c.KubeletRetry, KubeletRetryBackoff) }},
		{"kubeletRetry fast", `kubeletRetry: fast`, func(t *testing.T, c *Config) { eq(t, c.KubeletRetry, KubeletRetryFast) }},
		{"settle minutes", `settleTime: 2m30s`, func(t *testing.T, c *Config) { eq(t, c.SettleTime.Duration, 150*time.Second) }},
		{"JSON is YAML", `{"mode": "warn", "settleTime": "3s"}`, func(t *testing.T, c *Config) {
			eq(t, c.Mode, ModeWarn)
			eq(t, c.SettleTime.Duration, 3*time.Second)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tt.yaml), testSource)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.yaml, err)
			}
			tt.check(t, cfg)
		})
	}
}

// The documented mode "off", written the way every other mode is written, would be YAML 1.1's
// boolean false; the configuration is read as YAML 1.2.
func TestParseModeOffUnquoted(t *testing.T) {
	cfg, err := Parse([]byte("mode: off\n"), testSource)
	if err != nil {
		t.Fatalf("Parse(mode: off): %v", err)
	}
	eq(t, cfg.Mode, ModeOff)
}

func TestParseDefaults(t *testing.T) {
	for _, doc := range []string{"", "   \n\t\n", "null", "~", "# only a comment\n", "---\n", "{}"} {
		t.Run(doc, func(t *testing.T) {
			cfg, err := Parse([]byte(doc), testSource)
			if err != nil {
				t.Fatalf("Parse(%q): %v", doc, err)
			}
			if !reflect.DeepEqual(cfg, Default()) {
				t.Errorf("Parse(%q) = %+v, want the defaults %+v", doc, cfg, Default())
			}
		})
	}
}

func TestDefaultValues(t *testing.T) {
	d := Default()
	eq(t, d.Mode, ModeEnforce)
	eq(t, d.Log, Log{File: "/var/log/sandbox-guard.log", Level: "info", Format: "text", MaxSizeMB: 10, MaxBackups: 3})
	eq(t, d.Preset, PresetEKS)
	eq(t, d.Refresh, Refresh{Interval: Duration{time.Second}, MaxBackoff: Duration{30 * time.Second}, Timeout: Duration{time.Second}})
	eq(t, d.SettleTime.Duration, time.Duration(0))
	if d.Checks != nil || d.DisableChecks != nil || d.Exempt.Namespaces != nil || d.Exempt.PodSelector != nil {
		t.Errorf("defaults should have no checks, disabled checks or exemptions: %+v", d)
	}
	if err := d.validate("defaults"); err != nil {
		t.Errorf("the defaults do not validate: %v", err)
	}
	// Default returns a fresh value each time.
	d.Mode = ModeOff
	eq(t, Default().Mode, ModeEnforce)
}

type errCase struct {
	name string
	yaml string
	key  string // the exact Error.Key
	msg  string // a substring of Error.Msg
}

// assertConfigError checks that err is an *Error naming the source and the key, and that its
// text holds both.
func assertConfigError(t *testing.T, err error, source string, tc errCase) {
	t.Helper()
	if err == nil {
		t.Fatalf("Parse(%q): no error, want one at key %q", tc.yaml, tc.key)
	}
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T) is not a *config.Error", err, err)
	}
	if ce.Source != source {
		t.Errorf("Source = %q, want %q", ce.Source, source)
	}
	if ce.Key != tc.key {
		t.Errorf("Key = %q, want %q (error: %v)", ce.Key, tc.key, err)
	}
	if !strings.Contains(ce.Msg, tc.msg) {
		t.Errorf("Msg = %q, want it to contain %q", ce.Msg, tc.msg)
	}
	text := err.Error()
	if !strings.Contains(text, source) {
		t.Errorf("error text %q does not name the source %q", text, source)
	}
	if tc.key != "" && !strings.Contains(text, "key "+tc.key+": ") {
		t.Errorf("error text %q does not name the key %q", text, tc.key)
	}
}

func TestParseShapeErrors(t *testing.T) {
	tests := []errCase{
		{"unknown top-level key", "mode: warn\nmodee: x", "modee", "unknown key (known keys here: checks, "},
		{"unknown nested key", "log:\n  fle: /x", "log.fle", "unknown key (known keys here: file, format, level, maxBackups, maxSizeMB)"},
		{"unknown key in second check", "checks:\n- {name: a, file: {path: /a}}\n- {name: b, file: {pth: /b}}", "checks[1].file.pth", "unknown key (known keys here: path)"},
		{"unknown key in podSelector", "exempt:\n  podSelector:\n    matchLabelz: {a: b}", "exempt.podSelector.matchLabelz", "unknown key"},
		{"unknown key in check", "checks: [{name: a, file: {path: /a}, tcp: {}}]", "checks[0].tcp", "cni, file, hint, http, iptables, name, nftables, socket"},
		{"unknown key in requirement", "exempt: {podSelector: {matchExpressions: [{key: a, op: In}]}}", "exempt.podSelector.matchExpressions[0].op", "unknown key"},
		{"unknown key is case sensitive", "Mode: warn", "Mode", "unknown key"},
		{"mode number", "mode: 3", "mode", "want a string, got number 3"},
		{"mode list", "mode: [warn]", "mode", "want a string, got a list"},
		{"checks mapping", "checks: {}", "checks", "want a list, got a mapping"},
		{"checks string", "checks: file", "checks", `want a list, got string "file"`},
		{"check string", "checks: [marker]", "checks[0]", `want a mapping, got string "marker"`},
		{"log string", "log: /var/log/x", "log", `want a mapping, got string "/var/log/x"`},
		{"maxSizeMB string", "log: {maxSizeMB: x}", "log.maxSizeMB", `want a whole number, got string "x"`},
		{"maxSizeMB fraction", "log: {maxSizeMB: 1.5}", "log.maxSizeMB", "want a whole number, got number 1.5"},
		{"maxBackups bool", "log: {maxBackups: true}", "log.maxBackups", "want a whole number, got boolean true"},
		{"settleTime number", "settleTime: 5", "settleTime", `want a duration such as "1s", got 5`},
		{"settleTime no unit", `settleTime: "5"`, "settleTime", `want a duration such as "1s", got "5"`},
		{"refresh interval word", "refresh: {interval: fast}", "refresh.interval", `want a duration such as "1s", got "fast"`},
		{"refresh timeout list", "refresh: {timeout: [1s]}", "refresh.timeout", "want a duration"},
		{"refresh string", "refresh: 1s", "refresh", "want a mapping"},
		{"namespaces string", "exempt: {namespaces: kube-system}", "exempt.namespaces", "want a list"},
		{"namespace number", "exempt: {namespaces: [kube-system, 7]}", "exempt.namespaces[1]", "want a string, got number 7"},
		{"matchLabels list", "exempt: {podSelector: {matchLabels: [a]}}", "exempt.podSelector.matchLabels", "want a mapping, got a list"},
		{"matchLabels number value", "exempt: {podSelector: {matchLabels: {version: 1}}}", "exempt.podSelector.matchLabels.version", "want a string, got number 1"},
		{"operator number", "exempt: {podSelector: {matchExpressions: [{key: a, operator: 1}]}}", "exempt.podSelector.matchExpressions[0].operator", "want a string"},
		{"ipv6 word", `checks: [{name: a, iptables: {table: nat, chain: X, ipv6: "sure"}}]`, "checks[0].iptables.ipv6", `want true or false, got string "sure"`},
		{"binDirs string", "checks: [{name: a, cni: {confDir: /a, binDirs: /b}}]", "checks[0].cni.binDirs", "want a list"},
		{"addresses number", "checks: [{name: a, socket: {addresses: [1]}}]", "checks[0].socket.addresses[0]", "want a string"},
		{"file mapping wanted", "checks: [{name: a, file: /a}]", "checks[0].file", "want a mapping"},
		{"disableChecks string", "disableChecks: cni-config", "disableChecks", "want a list"},
		{"whole document is a list", "- mode: warn", "", "want a mapping, got a list"},
		{"whole document is a scalar", "warn", "", `want a mapping, got string "warn"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), testSource)
			assertConfigError(t, err, testSource, tc)
		})
	}
}

// An unknown key's error lists every key allowed at that level, sorted.
func TestUnknownKeyListsKnownKeys(t *testing.T) {
	tests := []struct {
		yaml string
		t    reflect.Type
	}{
		{"modee: x", reflect.TypeOf(Config{})},
		{"log: {fle: x}", reflect.TypeOf(Log{})},
		{"refresh: {intervall: 1s}", reflect.TypeOf(Refresh{})},
		{"checks: [{name: a, socket: {adresses: []}}]", reflect.TypeOf(SocketCheck{})},
		{"exempt: {nammespaces: []}", reflect.TypeOf(Exempt{})},
	}
	for _, tt := range tests {
		_, err := Parse([]byte(tt.yaml), testSource)
		var ce *Error
		if !errors.As(err, &ce) {
			t.Fatalf("Parse(%q) = %v, want a *Error", tt.yaml, err)
		}
		var want []string
		for i := 0; i < tt.t.NumField(); i++ {
			want = append(want, strings.Split(tt.t.Field(i).Tag.Get("json"), ",")[0])
		}
		sort.Strings(want)
		if wantMsg := "unknown key (known keys here: " + strings.Join(want, ", ") + ")"; ce.Msg != wantMsg {
			t.Errorf("Parse(%q) Msg = %q, want %q", tt.yaml, ce.Msg, wantMsg)
		}
	}
}

func TestParseSyntaxErrors(t *testing.T) {
	tests := []struct {
		name, yaml string
		msg        []string
	}{
		{"duplicate top-level key", "mode: warn\nmode: enforce\n", []string{"not valid YAML", `"mode" already defined`}},
		{"duplicate nested key", "log:\n  file: /a\n  file: /b\n", []string{"not valid YAML", `"file" already defined`}},
		{"duplicate key in a check", "checks:\n- name: a\n  name: b\n  file: {path: /a}\n", []string{"not valid YAML", `"name" already defined`}},
		{"unterminated flow", "mode: [", []string{"not valid YAML"}},
		{"bad indentation", "log:\n  file: /a\n maxSizeMB: 3\n", []string{"not valid YAML"}},
		{"tab indentation", "log:\n\tfile: /a\n", []string{"not valid YAML"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tt.yaml), testSource)
			if err == nil {
				t.Fatalf("Parse(%q) = %+v, want an error", tt.yaml, cfg)
			}
			if cfg != nil {
				t.Errorf("Parse returned a config with a syntax error")
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is not a *config.Error", err)
			}
			if ce.Source != testSource || ce.Key != "" {
				t.Errorf("Source, Key = %q, %q; want %q, empty", ce.Source, ce.Key, testSource)
			}
			if strings.Contains(ce.Msg, "error converting YAML to JSON") {
				t.Errorf("Msg %q keeps the library's prefix", ce.Msg)
			}
			for _, m := range tt.msg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not contain %q", err, m)
				}
			}
			if !strings.HasPrefix(err.Error(), "config "+testSource+": ") {
				t.Errorf("error %q does not start with the source", err)
			}
		})
	}
}

func TestErrorText(t *testing.T) {
	tests := []struct {
		err  Error
		want string
	}{
		{Error{Source: "/etc/x.conf", Key: "checks[1].file.path", Msg: "bad"}, "config /etc/x.conf: key checks[1].file.path: bad"},
		{Error{Source: "/etc/x.conf", Msg: "not valid YAML: y"}, "config /etc/x.conf: not valid YAML: y"},
		{Error{Key: "mode", Msg: "bad"}, "config: key mode: bad"},
		{Error{Msg: "bad"}, "config: bad"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func TestDurationJSON(t *testing.T) {
	var d Duration
	if err := d.UnmarshalJSON([]byte(`"1m30s"`)); err != nil || d.Duration != 90*time.Second {
		t.Errorf("UnmarshalJSON(1m30s) = %v, %v", d.Duration, err)
	}
	for _, bad := range []string{`5`, `"5"`, `"fast"`, `null`, `true`, `{}`} {
		var d Duration
		if err := d.UnmarshalJSON([]byte(bad)); err == nil {
			t.Errorf("UnmarshalJSON(%s) = %v, want an error", bad, d.Duration)
		}
	}
	b, err := Duration{1500 * time.Millisecond}.MarshalJSON()
	if err != nil || string(b) != `"1.5s"` {
		t.Errorf("MarshalJSON = %s, %v; want \"1.5s\"", b, err)
	}
}

func TestParseLenient(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		wantLog string
		wantMod Mode
	}{
		{"valid", "log: {file: /var/log/a.log}\nmode: warn", "/var/log/a.log", ModeWarn},
		{"unknown keys ignored", "bogus: 1\nlog: {file: /var/log/b.log, fle: x}", "/var/log/b.log", ModeEnforce},
		{"invalid value kept", "mode: sometimes\nlog: {file: /var/log/c.log}", "/var/log/c.log", "sometimes"},
		{"number for a string", "mode: 3\nlog: {file: /var/log/d.log}", "/var/log/d.log", ModeEnforce},
		{"syntax error gives defaults", "log: [", "/var/log/sandbox-guard.log", ModeEnforce},
		{"empty gives defaults", "", "/var/log/sandbox-guard.log", ModeEnforce},
		{"null gives defaults", "null", "/var/log/sandbox-guard.log", ModeEnforce},
		{"list document gives defaults", "- a", "/var/log/sandbox-guard.log", ModeEnforce},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ParseLenient([]byte(tt.yaml))
			if cfg == nil {
				t.Fatal("ParseLenient returned nil")
			}
			eq(t, cfg.Log.File, tt.wantLog)
			eq(t, cfg.Mode, tt.wantMod)
		})
	}
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()

	t.Run("missing file", func(t *testing.T) {
		path := filepath.Join(dir, "absent.conf")
		cfg, err := LoadFile(path)
		if err == nil || cfg != nil {
			t.Fatalf("LoadFile(missing) = %v, %v; want nil and an error", cfg, err)
		}
		var ce *Error
		if !errors.As(err, &ce) || ce.Source != path || ce.Key != "" {
			t.Fatalf("error %#v does not name the file", err)
		}
		if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "cannot read") {
			t.Errorf("error %q does not say the file %s cannot be read", err, path)
		}
		if !strings.Contains(err.Error(), "no such file or directory") {
			t.Errorf("error %q does not carry the cause", err)
		}
	})

	t.Run("valid file", func(t *testing.T) {
		path := filepath.Join(dir, "good.conf")
		if err := os.WriteFile(path, []byte("mode: warn\nsettleTime: 4s\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := LoadFile(path)
		if err != nil {
			t.Fatalf("LoadFile: %v", err)
		}
		eq(t, cfg.Mode, ModeWarn)
		eq(t, cfg.SettleTime.Duration, 4*time.Second)
	})

	t.Run("invalid file names the file and the key", func(t *testing.T) {
		path := filepath.Join(dir, "bad.conf")
		if err := os.WriteFile(path, []byte("checks:\n- name: a\n  file: {path: relative}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := LoadFile(path)
		assertConfigError(t, err, path, errCase{yaml: "bad.conf", key: "checks[0].file.path", msg: `"relative" is not an absolute path`})
	})

	t.Run("empty file gives defaults", func(t *testing.T) {
		path := filepath.Join(dir, "empty.conf")
		if err := os.WriteFile(path, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := LoadFile(path)
		if err != nil || !reflect.DeepEqual(cfg, Default()) {
			t.Errorf("LoadFile(empty) = %+v, %v; want defaults", cfg, err)
		}
	})

	t.Run("directory", func(t *testing.T) {
		_, err := LoadFile(dir)
		var ce *Error
		if !errors.As(err, &ce) || ce.Source != dir {
			t.Errorf("LoadFile(dir) = %v, want a config error naming %s", err, dir)
		}
	})
}

func eq[T any](t *testing.T, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %#v, want %#v", got, want)
	}
}
