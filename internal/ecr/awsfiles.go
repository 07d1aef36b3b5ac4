package ecr

import (
	"os"
	"path/filepath"
	"strings"
)

// profile is one profile of the AWS shared config and credentials files: its keys (lower
// case) merged over every file, later files winning, as the SDK merges them.
type profile map[string]string

// sharedFiles are the AWS config and credentials files the credential chain reads: the named
// ones, else AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE, else ~/.aws/config and
// ~/.aws/credentials (a plugin started by containerd has no HOME: then none).
func sharedFiles(c ClientConfig) (config, credentials []string) {
	config, credentials = c.SharedConfigFiles, c.SharedCredentialsFiles
	home, _ := os.UserHomeDir()
	if len(config) == 0 {
		if v := os.Getenv("AWS_CONFIG_FILE"); v != "" {
			config = []string{v}
		} else if home != "" {
			config = []string{filepath.Join(home, ".aws", "config")}
		}
	}
	if len(credentials) == 0 {
		if v := os.Getenv("AWS_SHARED_CREDENTIALS_FILE"); v != "" {
			credentials = []string{v}
		} else if home != "" {
			credentials = []string{filepath.Join(home, ".aws", "credentials")}
		}
	}
	return config, credentials
}

// loadProfiles reads the profiles of the config files ([default], [profile NAME]) and then
// of the credentials files ([NAME]), the latter winning key by key. A file that cannot be read
// counts as empty, as in the SDK.
func loadProfiles(config, credentials []string) map[string]profile {
	profiles := map[string]profile{}
	for _, f := range config {
		parseINI(f, profiles, true)
	}
	for _, f := range credentials {
		parseINI(f, profiles, false)
	}
	return profiles
}

// parseINI adds the profiles of file to profiles, with the rules of the SDK's parser
// (config/internal/ini): `#` and `;` start a comment (inside a value only after a space or
// tab), `=` or `:` separate key and value, keys are case-insensitive, quotes around a value
// are dropped, indented lines belong to the property above (sub-properties, ignored here). In
// a config file only [default] and [profile NAME] are profiles.
func parseINI(file string, profiles map[string]profile, isConfig bool) {
	b, err := os.ReadFile(file)
	if err != nil {
		return
	}
	var cur profile
	for _, line := range strings.Split(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || trimmed[0] == '#' || trimmed[0] == ';' {
			continue
		}
		if sec := strings.TrimSpace(cutAny(line, "#", ";")); len(sec) >= 2 && sec[0] == '[' && sec[len(sec)-1] == ']' {
			cur = nil
			name, ok := profileName(strings.TrimSpace(sec[1:len(sec)-1]), isConfig)
			if !ok {
				continue
			}
			if profiles[name] == nil {
				profiles[name] = profile{}
			}
			cur = profiles[name]
			continue
		}
		if cur == nil || line[0] == ' ' || line[0] == '\t' {
			continue // outside a profile, or a sub-property or continuation
		}
		value := strings.TrimRight(cutAny(line, " #", " ;", "\t#", "\t;"), " \t")
		sep := "="
		if eq, colon := strings.Index(value, "="), strings.Index(value, ":"); eq < 0 || colon >= 0 && colon < eq {
			sep = ":"
		}
		k, v, ok := strings.Cut(value, sep)
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' && v[len(v)-1] == '"' || v[0] == '\'' && v[len(v)-1] == '\'') {
			v = v[1 : len(v)-1]
		}
		cur[strings.ToLower(strings.TrimSpace(k))] = v
	}
}

// profileName is the profile a section header names: in a config file "default" or
// "profile NAME"; in a credentials file the header itself.
func profileName(header string, isConfig bool) (string, bool) {
	if !isConfig {
		return header, header != ""
	}
	if header == "default" {
		return header, true
	}
	typ, name, ok := strings.Cut(header, " ")
	if !ok || typ != "profile" {
		return "", false // sso-session, services, or not a profile
	}
	name = strings.TrimSpace(name)
	return name, name != ""
}

// cutAny returns s up to the first of seps.
func cutAny(s string, seps ...string) string {
	for _, sep := range seps {
		s, _, _ = strings.Cut(s, sep)
	}
	return s
}
