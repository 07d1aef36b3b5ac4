package config

import (
	"errors"
	"testing"
)

// FuzzParse: Parse never panics, every error is a *Error with a message, and every accepted
// configuration is valid and has effective checks that validate.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"",
		"null",
		fullDocument,
		"mode: warn\nmode: off\n",
		"checks: [{name: a, file: {path: /a}, http: {url: http://x/}}]",
		"exempt: {podSelector: {matchExpressions: [{key: a, operator: In}]}}",
		"refresh: {interval: 1ns}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data, "fuzz")
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %v (%T) is not a *config.Error", err, err)
			}
			if ce.Msg == "" {
				t.Fatalf("error %#v has no message", ce)
			}
			if ce.Source != "fuzz" {
				t.Fatalf("error %#v does not name the source", ce)
			}
			return
		}
		if cfg == nil {
			t.Fatal("Parse returned neither a config nor an error")
		}
		if verr := cfg.validate("again"); verr != nil {
			t.Fatalf("accepted configuration does not validate: %v", verr)
		}
		seen := map[string]bool{}
		for _, c := range cfg.EffectiveChecks() {
			if seen[c.Name] {
				t.Fatalf("effective checks name %q twice", c.Name)
			}
			seen[c.Name] = true
			if verr := c.validate("effective"); verr != nil {
				t.Fatalf("effective check does not validate: %v", verr)
			}
		}
		_ = ParseLenient(data)
	})
}
