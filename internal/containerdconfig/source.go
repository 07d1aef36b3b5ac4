package containerdconfig

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
)

// source is where config files are read: fsys holds the node's file system
// root, and overlay holds files that count as present with that content (or,
// when nil, as absent) whatever fsys says. Every name given to it is a node
// path: absolute and clean, as containerd resolves imports.
type source struct {
	fsys    fs.FS
	overlay map[string][]byte
}

// fsName turns a node path into an fs.FS name ("/etc/x" -> "etc/x").
func fsName(nodePath string) string {
	if nodePath == "/" {
		return "."
	}
	return strings.TrimPrefix(nodePath, "/")
}

func (s source) readFile(nodePath string) ([]byte, error) {
	// containerd opens the main path as given; fs.FS names must be clean.
	name := path.Clean(nodePath)
	if data, ok := s.overlay[name]; ok {
		if data == nil {
			return nil, &fs.PathError{Op: "open", Path: nodePath, Err: fs.ErrNotExist}
		}
		return data, nil
	}
	if !path.IsAbs(nodePath) {
		return nil, &fs.PathError{Op: "open", Path: nodePath, Err: errors.New("not an absolute path")}
	}
	data, err := fs.ReadFile(s.fsys, fsName(name))
	var pe *fs.PathError
	if errors.As(err, &pe) {
		// Name the file as containerd would, not by its fs.FS name.
		pe.Path = nodePath
	}
	return data, err
}

// glob is filepath.Glob on the node with the overlay applied. fs.Glob and
// filepath.Glob both ignore I/O errors and list matches directory by
// directory in name order; overlay files are merged into that order.
func (s source) glob(pattern string) ([]string, error) {
	names, err := fs.Glob(s.fsys, fsName(pattern))
	if err != nil {
		return nil, fmt.Errorf("glob %q: %w", pattern, err)
	}
	var out []string
	for _, n := range names {
		p := "/" + n
		if data, ok := s.overlay[p]; ok && data == nil {
			continue
		}
		out = append(out, p)
	}
	added := false
	for p, data := range s.overlay {
		if data == nil || slices.Contains(out, p) {
			continue
		}
		if ok, _ := path.Match(pattern, p); ok {
			out = append(out, p)
			added = true
		}
	}
	if added {
		sortByElement(out)
	}
	return out, nil
}

// sortByElement orders paths the way a glob lists them: element by
// element, so "/a/x" comes before "/a-b/x" ('/' sorts after '-').
func sortByElement(paths []string) { slices.SortFunc(paths, compareByElement) }

func compareByElement(a, b string) int {
	ea, eb := strings.Split(a, "/"), strings.Split(b, "/")
	for i := 0; i < len(ea) && i < len(eb); i++ {
		if c := strings.Compare(ea[i], eb[i]); c != 0 {
			return c
		}
	}
	return len(ea) - len(eb)
}
