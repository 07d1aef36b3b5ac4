package keeper_test

import (
	"archive/tar"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distribution/reference"
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/sandbox-guard/sandbox-guard/internal/containerd"
	"github.com/sandbox-guard/sandbox-guard/internal/keeper"
)

// fakeImages is an in-memory stand-in for the containerd adapter: image records by name, the
// state of the content behind each target digest, a registry of pullable sources, and an image
// event stream that the test drives. Every call is recorded. Safe for concurrent use.
type fakeImages struct {
	mu      sync.Mutex
	records map[string]containerd.Image
	content map[digest.Digest]contentState
	remotes map[string]remote // pull source -> what its registry serves
	calls   []call
	streams []*stream

	// wantUser and wantSecret are what a registry that challenges (remote.auth) accepts.
	wantUser, wantSecret string
	// onPull, when set, runs at the start of every Pull, outside the lock.
	onPull func(ctx context.Context, ref string)
	// errs makes an operation ("Get", "Usable", "Put", "SetLabels", "Unpack", "Export",
	// "Import") fail.
	errs map[string]error
}

// contentState is what the content store and the snapshotter hold for a target digest.
type contentState struct {
	complete, unpacked bool
	config             string // config digest, CRI's image ID
}

// remote is one pull source.
type remote struct {
	target ocispec.Descriptor
	config string
	err    error // the pull fails with it
	auth   bool  // the registry answers 401 until given wantUser/wantSecret
}

// call is one recorded method call.
type call struct {
	op     string
	name   string
	target digest.Digest
	labels map[string]string
	host   string // Pull: the host the credentials were asked for
	user   string // Pull: the user the credentials gave
}

func newFake() *fakeImages {
	return &fakeImages{
		records: map[string]containerd.Image{},
		content: map[digest.Digest]contentState{},
		remotes: map[string]remote{},
		errs:    map[string]error{},
	}
}

var _ keeper.Images = (*fakeImages)(nil)

// image returns a descriptor and config digest derived from seed.
func image(seed string) (ocispec.Descriptor, string) {
	return ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageIndex,
		Digest:    digest.FromString("manifest " + seed),
		Size:      int64(100 + len(seed)),
	}, digest.FromString("config " + seed).String()
}

// serve makes ref pullable; it returns what a pull of it yields.
func (f *fakeImages) serve(ref, seed string) (ocispec.Descriptor, string) {
	desc, cfg := image(seed)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.remotes[ref] = remote{target: desc, config: cfg}
	return desc, cfg
}

// serveAuth is serve behind a registry that wants credentials.
func (f *fakeImages) serveAuth(ref, seed string) (ocispec.Descriptor, string) {
	desc, cfg := f.serve(ref, seed)
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.remotes[ref]
	r.auth = true
	f.remotes[ref] = r
	return desc, cfg
}

// failPull makes pulls of ref fail with err (nil: succeed again).
func (f *fakeImages) failPull(ref string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.remotes[ref]
	r.err = err
	f.remotes[ref] = r
}

// setRecord stores a record as it is, without recording a call.
func (f *fakeImages) setRecord(name string, target ocispec.Descriptor, labels map[string]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.records[name] = containerd.Image{Name: name, Target: target, Labels: maps.Clone(labels)}
}

// setContent sets what is stored for target, without recording a call.
func (f *fakeImages) setContent(target digest.Digest, st contentState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.content[target] = st
}

// remove deletes a record and, when gc is set, its content (containerd's GC after a delete).
func (f *fakeImages) remove(name string, gc bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if gc {
		delete(f.content, f.records[name].Target.Digest)
	}
	delete(f.records, name)
}

// record returns the record name as stored.
func (f *fakeImages) record(name string) (containerd.Image, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.records[name]
	r.Labels = maps.Clone(r.Labels)
	return r, ok
}

func (f *fakeImages) recordNames() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for n := range f.records {
		out = append(out, n)
	}
	return out
}

func (f *fakeImages) log(c call) {
	c.labels = maps.Clone(c.labels)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, c)
}

// callsOf returns the recorded calls of op.
func (f *fakeImages) callsOf(op string) []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []call
	for _, c := range f.calls {
		if c.op == op {
			out = append(out, c)
		}
	}
	return out
}

// count returns how many calls of op were made for name ("" for any name).
func (f *fakeImages) count(op, name string) int {
	n := 0
	for _, c := range f.callsOf(op) {
		if name == "" || c.name == name {
			n++
		}
	}
	return n
}

func (f *fakeImages) resetCalls() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = nil
}

func (f *fakeImages) fail(op string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.errs[op]
}

func (f *fakeImages) Get(_ context.Context, name string) (containerd.Image, bool, error) {
	f.log(call{op: "Get", name: name})
	if err := f.fail("Get"); err != nil {
		return containerd.Image{}, false, err
	}
	r, ok := f.record(name)
	if !ok {
		return containerd.Image{}, false, nil
	}
	return r, true, nil
}

func (f *fakeImages) Usable(_ context.Context, name string) (bool, bool, string, error) {
	f.log(call{op: "Usable", name: name})
	if err := f.fail("Usable"); err != nil {
		return false, false, "", err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.records[name]
	if !ok {
		return false, false, "", fmt.Errorf("looking up image %s: not found", name)
	}
	st := f.content[r.Target.Digest]
	if !st.complete {
		return false, false, "", nil
	}
	return true, st.unpacked, st.config, nil
}

// hostOf is the registry host of ref, as containerd's resolver sees it.
func hostOf(ref string) string {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return ""
	}
	return reference.Domain(named)
}

// Pull answers like containerd's: an unknown or failing source is an error; a registry that
// wants credentials gets them from creds for the source's host, as containerd's resolver asks
// on a 401 challenge; a success stores the record under ref with exactly labels, the content
// complete and unpacked.
func (f *fakeImages) Pull(ctx context.Context, ref string, creds containerd.Credentials, labels map[string]string) (containerd.Image, error) {
	c := call{op: "Pull", name: ref, labels: labels}
	defer func() { f.log(c) }()
	if f.onPull != nil {
		f.onPull(ctx, ref)
	}
	f.mu.Lock()
	r, ok := f.remotes[ref]
	wantUser, wantSecret := f.wantUser, f.wantSecret
	f.mu.Unlock()
	if !ok {
		return containerd.Image{}, fmt.Errorf("failed to resolve reference %q: %s: not found", ref, ref)
	}
	if r.err != nil {
		return containerd.Image{}, r.err
	}
	if r.auth {
		c.host = hostOf(ref)
		user, secret := "", ""
		if creds != nil {
			var err error
			if user, secret, err = creds(ctx, c.host); err != nil {
				return containerd.Image{}, fmt.Errorf("failed to resolve reference %q: failed to authorize: %w", ref, err)
			}
		}
		c.user = user
		if user != wantUser || secret != wantSecret {
			return containerd.Image{}, fmt.Errorf("failed to resolve reference %q: pulling from host %s failed with status code [manifests]: 401 Unauthorized", ref, c.host)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.records[ref] = containerd.Image{Name: ref, Target: r.target, Labels: maps.Clone(labels)}
	f.content[r.target.Digest] = contentState{complete: true, unpacked: true, config: r.config}
	c.target = r.target.Digest
	return containerd.Image{Name: ref, Target: r.target, Labels: maps.Clone(labels)}, nil
}

func (f *fakeImages) Put(_ context.Context, name string, target ocispec.Descriptor, labels map[string]string) error {
	f.log(call{op: "Put", name: name, target: target.Digest, labels: labels})
	if err := f.fail("Put"); err != nil {
		return err
	}
	f.setRecord(name, target, labels)
	return nil
}

func (f *fakeImages) SetLabels(_ context.Context, name string, labels map[string]string) error {
	f.log(call{op: "SetLabels", name: name, labels: labels})
	if err := f.fail("SetLabels"); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.records[name]
	if !ok {
		return fmt.Errorf("labelling image %s: not found", name)
	}
	r.Labels = maps.Clone(r.Labels)
	if r.Labels == nil {
		r.Labels = map[string]string{}
	}
	maps.Copy(r.Labels, labels)
	f.records[name] = r
	return nil
}

func (f *fakeImages) Unpack(_ context.Context, name string) error {
	f.log(call{op: "Unpack", name: name})
	if err := f.fail("Unpack"); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.records[name]
	if !ok {
		return fmt.Errorf("looking up image %s: not found", name)
	}
	st := f.content[r.Target.Digest]
	if !st.complete {
		return fmt.Errorf("unpacking %s: content incomplete", name)
	}
	st.unpacked = true
	f.content[r.Target.Digest] = st
	return nil
}

// Export writes a small OCI image layout tar as containerd's exporter does: oci-layout,
// index.json naming the image's target descriptor, and the blobs (a stand-in manifest that
// names the config, and the config).
func (f *fakeImages) Export(_ context.Context, name string, w io.Writer) error {
	f.log(call{op: "Export", name: name})
	if err := f.fail("Export"); err != nil {
		return err
	}
	f.mu.Lock()
	r, ok := f.records[name]
	st := f.content[r.Target.Digest]
	f.mu.Unlock()
	if !ok {
		return fmt.Errorf("exporting %s: not found", name)
	}
	if !st.complete {
		return fmt.Errorf("exporting %s: content incomplete", name)
	}
	target := r.Target
	target.Annotations = map[string]string{"io.containerd.image.name": name}
	index, _ := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{target}})
	manifest, _ := json.Marshal(map[string]string{"config": st.config})
	tw := tar.NewWriter(w)
	for _, file := range []struct {
		name string
		data []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", index},
		{"blobs/sha256/" + r.Target.Digest.Encoded(), manifest},
		{"blobs/sha256/" + strings.TrimPrefix(st.config, "sha256:"), []byte(`{"architecture":"amd64","os":"linux"}`)},
	} {
		if err := tw.WriteHeader(&tar.Header{Name: file.name, Mode: 0o444, Size: int64(len(file.data)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		if _, err := tw.Write(file.data); err != nil {
			return err
		}
	}
	return tw.Close()
}

// Import stores the archive's image as name with labels; like containerd's import the content
// is complete but not unpacked.
func (f *fakeImages) Import(_ context.Context, r io.Reader, name string, labels map[string]string) (containerd.Image, error) {
	f.log(call{op: "Import", name: name, labels: labels})
	if err := f.fail("Import"); err != nil {
		return containerd.Image{}, err
	}
	files := map[string][]byte{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return containerd.Image{}, fmt.Errorf("importing %s: %w", name, err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return containerd.Image{}, fmt.Errorf("importing %s: %w", name, err)
		}
		files[h.Name] = b
	}
	var index ocispec.Index
	if err := json.Unmarshal(files["index.json"], &index); err != nil || len(index.Manifests) != 1 {
		return containerd.Image{}, fmt.Errorf("importing %s: bad index.json (%v)", name, err)
	}
	target := index.Manifests[0]
	target.Annotations = nil
	var manifest map[string]string
	if err := json.Unmarshal(files["blobs/sha256/"+target.Digest.Encoded()], &manifest); err != nil {
		return containerd.Image{}, fmt.Errorf("importing %s: manifest blob: %v", name, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.records[name] = containerd.Image{Name: name, Target: target, Labels: maps.Clone(labels)}
	st := f.content[target.Digest]
	st.complete, st.config = true, manifest["config"]
	f.content[target.Digest] = st
	return containerd.Image{Name: name, Target: target, Labels: maps.Clone(labels)}, nil
}

// stream is one subscription. The test sends events on it and can break it; it also ends, as
// containerd's does, when the subscriber's context ends.
type stream struct {
	events chan containerd.Event
	errs   chan error

	mu     sync.Mutex
	closed bool
	done   chan struct{}
}

func (s *stream) send(t *testing.T, ev containerd.Event) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		t.Fatalf("sending %+v on a closed stream", ev)
	}
	select {
	case s.events <- ev:
	case <-time.After(5 * time.Second):
		t.Fatalf("nobody reads the event stream")
	}
}

// stop ends the stream with err: the event channel closes and err is delivered.
func (s *stream) stop(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	close(s.events)
	s.errs <- err
	close(s.done)
}

func (f *fakeImages) Subscribe(ctx context.Context) (<-chan containerd.Event, <-chan error) {
	f.log(call{op: "Subscribe"})
	s := &stream{events: make(chan containerd.Event, 64), errs: make(chan error, 1), done: make(chan struct{})}
	f.mu.Lock()
	f.streams = append(f.streams, s)
	f.mu.Unlock()
	go func() {
		select {
		case <-ctx.Done():
			s.stop(ctx.Err())
		case <-s.done:
		}
	}()
	return s.events, s.errs
}

// stream waits for the n-th subscription (from 1) and returns it.
func (f *fakeImages) stream(t *testing.T, n int) *stream {
	t.Helper()
	var s *stream
	waitFor(t, fmt.Sprintf("subscription %d", n), func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		if len(f.streams) >= n {
			s = f.streams[n-1]
			return true
		}
		return false
	})
	return s
}

// waitFor polls cond until it holds, failing the test after a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *fakeClock { return &fakeClock{now: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// testLogger returns a logger that records every entry, at every level.
func testLogger() (*logrus.Logger, *logtest.Hook) {
	l, hook := logtest.NewNullLogger()
	l.SetLevel(logrus.TraceLevel)
	return l, hook
}

// logLines renders every recorded entry with its fields, as a text log would show them.
func logLines(hook *logtest.Hook) []string {
	var out []string
	for _, e := range hook.AllEntries() {
		var b strings.Builder
		b.WriteString(e.Level.String() + " " + e.Message)
		for k, v := range e.Data {
			fmt.Fprintf(&b, " %s=%v", k, v)
		}
		out = append(out, b.String())
	}
	return out
}

// assertNoSecret fails when secret appears in any log line, error or text.
func assertNoSecret(t *testing.T, secret string, hook *logtest.Hook, errs []error, texts ...string) {
	t.Helper()
	if secret == "" {
		t.Fatal("empty secret")
	}
	for _, l := range logLines(hook) {
		if strings.Contains(l, secret) {
			t.Errorf("log line contains the ECR password: %s", l)
		}
	}
	for _, err := range errs {
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("error contains the ECR password: %v", err)
		}
	}
	for _, s := range texts {
		if strings.Contains(s, secret) {
			t.Errorf("text contains the ECR password: %s", s)
		}
	}
}
