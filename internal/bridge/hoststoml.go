package bridge

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// The managed block is plain text between markers, so that everything else in the file
// (mirrors such as Spegel's, ca, skip_verify, comments) survives byte for byte.
const (
	beginMarker   = "# BEGIN sandbox-guard credential bridge (managed; do not edit)"
	endMarker     = "# END sandbox-guard credential bridge"
	createdMarker = "# created by sandbox-guard credential bridge"
)

type hostsFile struct {
	Server string                    `toml:"server"`
	Host   map[string]map[string]any `toml:"host"`
}

func parse(b []byte) (hostsFile, error) {
	var f hostsFile
	if err := toml.Unmarshal(b, &f); err != nil {
		return f, fmt.Errorf("not valid TOML: %w", err)
	}
	return f, nil
}

// Merge returns the hosts.toml content with the bridge's entry for serverURL holding
// authorization. The entry has the same URL as `server` and goes after every existing [host]
// entry: containerd tries hosts in file order and `server` last, so mirrors keep their
// priority, and when the header goes stale (ECR answers an expired token with 403, and
// containerd re-authenticates only on 401) containerd moves on to the header-less `server`,
// whose 401 lets kubelet's credentials work as without the bridge. A file that does not parse
// is an error and stays untouched.
func Merge(existing []byte, defaultServer, authorization string) ([]byte, error) {
	stripped, err := removeBlock(existing)
	if err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(stripped.content)) == 0 || (stripped.created && onlyServer(stripped.content)) {
		stripped.content = []byte(fmt.Sprintf("%s\nserver = %q\n", createdMarker, defaultServer))
	}
	f, perr := parse(stripped.content)
	if err = perr; err != nil {
		return nil, err
	}
	server := f.Server
	if server == "" {
		server = defaultServer
	}
	if _, ok := f.Host[server]; ok {
		return nil, fmt.Errorf("it already has a [host.%q] entry of its own; the bridge will not duplicate it", server)
	}
	var b bytes.Buffer
	b.Write(stripped.content)
	if b.Len() > 0 && !bytes.HasSuffix(b.Bytes(), []byte("\n")) {
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "\n%s\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n  [host.%q.header]\n    Authorization = [%q]\n%s\n",
		beginMarker, server, server, authorization, endMarker)
	if _, err := parse(b.Bytes()); err != nil {
		return nil, fmt.Errorf("merging would break the file: %w", err)
	}
	return b.Bytes(), nil
}

// Server is the URL the bridge's entry would carry the token to: the file's `server`, or
// defaultServer when the file (without the managed block) names none.
func Server(existing []byte, defaultServer string) (string, error) {
	stripped, err := removeBlock(existing)
	if err != nil {
		return "", err
	}
	f, err := parse(stripped.content)
	if err != nil {
		return "", err
	}
	if f.Server == "" {
		return defaultServer, nil
	}
	return f.Server, nil
}

// removed is a file's content without the managed block.
type removed struct {
	content []byte
	created bool // the bridge created the file
	changed bool // a managed block was there
}

// removeBlock strips the managed block; when the bridge created the file and nothing else was added
// since, Empty reports that the file can go.
func removeBlock(existing []byte) (removed, error) {
	var out []string
	lines := strings.SplitAfter(string(existing), "\n")
	r := removed{}
	in := false
	for _, l := range lines {
		t := strings.TrimSpace(l)
		switch {
		case t == beginMarker:
			in, r.changed = true, true
		case t == endMarker && in:
			in = false
		case in:
		default:
			if t == createdMarker {
				r.created = true
			}
			out = append(out, l)
		}
	}
	if in {
		return removed{content: existing}, errors.New("unterminated sandbox-guard block")
	}
	r.content = []byte(strings.TrimRight(strings.Join(out, ""), "\n"))
	if len(r.content) > 0 {
		r.content = append(r.content, '\n')
	}
	return r, nil
}

// Empty reports whether what is left after removeBlock is only what the bridge itself wrote.
func (r removed) Empty() bool { return r.created && onlyServer(r.content) }

func onlyServer(b []byte) bool {
	for _, l := range strings.Split(string(b), "\n") {
		t := strings.TrimSpace(l)
		if t != "" && t != createdMarker && !strings.HasPrefix(t, "server =") && !strings.HasPrefix(t, "server=") {
			return false
		}
	}
	return true
}

// HasBlock reports whether content holds the managed block.
func HasBlock(content []byte) bool { return bytes.Contains(content, []byte(beginMarker)) }
