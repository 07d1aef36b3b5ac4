package bridge

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzMerge: whatever hosts.toml holds, Merge never panics; what it accepts parses, keeps the
// operator's text before the managed block, carries the header exactly once, and merging again
// (a token refresh) or removing the block gives back the same file.
func FuzzMerge(f *testing.F) {
	for _, s := range []string{
		"",
		"server = \"https://" + host + "\"\n",
		"server = \"https://" + host + "\"\n[host.\"http://127.0.0.1:30020\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
		"server = \"http://127.0.0.1:5000\"\r\n[header]\r\n  X = [\"1\"]\r\n",
		"# BEGIN sandbox-guard credential bridge (managed; do not edit)\n",
		"server = \n[[[",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, existing []byte) {
		out, err := Merge(existing, "https://"+host, auth)
		if err != nil {
			return
		}
		if _, err := parse(out); err != nil {
			t.Fatalf("merged file does not parse: %v\n%s", err, out)
		}
		if n := strings.Count(string(out), auth); n != 1 {
			t.Fatalf("header %d times in:\n%s", n, out)
		}
		again, err := Merge(out, "https://"+host, auth)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("merging again changed the file (err %v):\n%s\n---\n%s", err, out, again)
		}
		r, err := removeBlock(out)
		if err != nil || HasBlock(r.content) || strings.Contains(string(r.content), auth) {
			t.Fatalf("removing the block left it (err %v):\n%s", err, r.content)
		}
	})
}
