package checks

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// FileProber passes when a path exists (a marker file written by a component when it is ready).
type FileProber struct {
	Path string
	Stat func(string) (fs.FileInfo, error) // os.Stat when nil
}

// Probe stats the path.
func (p FileProber) Probe(context.Context) Outcome {
	stat := p.Stat
	if stat == nil {
		stat = os.Stat
	}
	_, err := stat(p.Path)
	switch {
	case err == nil:
		return Outcome{OK: true, Detail: p.Path + " exists"}
	case errors.Is(err, fs.ErrNotExist):
		return Outcome{Detail: p.Path + " does not exist"}
	default:
		return Outcome{Detail: fmt.Sprintf("cannot stat %s: %v", p.Path, err), Err: true}
	}
}
