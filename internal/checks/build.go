package checks

import (
	"fmt"

	"github.com/sandbox-guard/sandbox-guard/internal/config"
)

// Build turns configured checks into runnable ones.
func Build(specs []config.Check) ([]Check, error) {
	out := make([]Check, 0, len(specs))
	for _, s := range specs {
		c := Check{Name: s.Name, Hint: s.Hint}
		switch {
		case s.File != nil:
			c.Kind, c.Prober = "file", FileProber{Path: s.File.Path}
		default:
			return nil, fmt.Errorf("check %q: this build does not support its kind yet", s.Name)
		}
		out = append(out, c)
	}
	return out, nil
}
