// Package docs checks that the README's map of the code matches the tree.
package docs

import (
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestReadmeMapNamesEveryInternalPackage: the "Where to change what" list names every package
// under internal/, one line each, and nothing else.
func TestReadmeMapNamesEveryInternalPackage(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(readme)
	start := strings.Index(text, "### Where to change what")
	if start < 0 {
		t.Fatal(`README.md has no "### Where to change what" section`)
	}
	section := text[start+1:]
	if end := strings.Index(section, "\n#"); end >= 0 {
		section = section[:end]
	}
	line := regexp.MustCompile("(?m)^- `(internal/[^`]+)`: \\S")
	var named []string
	for _, m := range line.FindAllStringSubmatch(section, -1) {
		named = append(named, m[1])
	}
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}}", "../../internal/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var packages []string
	for _, p := range strings.Fields(string(out)) {
		packages = append(packages, strings.TrimPrefix(p, "github.com/sandbox-guard/sandbox-guard/"))
	}
	for _, p := range packages {
		if n := countOf(named, p); n != 1 {
			t.Errorf("README map names %s %d times, want once", p, n)
		}
	}
	for _, n := range named {
		if !slices.Contains(packages, n) {
			t.Errorf("README map names %s, which is not a package", n)
		}
	}
}

func countOf(list []string, s string) int {
	n := 0
	for _, x := range list {
		if x == s {
			n++
		}
	}
	return n
}
