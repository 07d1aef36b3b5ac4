// Package keepertest supports tests of the keeper and of what it runs on: Fake, an in-memory
// keeper.Images, and Conformance, the contract every keeper.Images must meet, run against the
// fake in the keeper's unit tests and against real containerd (the internal/containerd adapter)
// in the end-to-end tests. Only tests import it.
package keepertest

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

	"github.com/containerd/containerd/v2/core/images"
	"github.com/distribution/reference"
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/sandbox-guard/sandbox-guard/internal/containerd"
	"github.com/sandbox-guard/sandbox-guard/internal/keeper"
	"github.com/sandbox-guard/sandbox-guard/internal/testutil"
)

// Fake is an in-memory stand-in for the containerd adapter: image records by name, the state of
// the content behind each target digest, a registry of pullable sources, and image event streams.
// Like containerd it announces every change made through keeper.Images on the open streams
// (created, updated, deleted); changes a test makes with SetRecord, SetContent or Remove happen
// behind the keeper's back, without an event, and the test sends events itself (Stream.Send).
// Every keeper.Images call is recorded. Safe for concurrent use.
type Fake struct {
	mu      sync.Mutex
	records map[string]containerd.Image
	content map[digest.Digest]Content
	remotes map[string]remote // pull source -> what its registry serves
	calls   []Call
	streams []*Stream

	// wantUser and wantSecret are what a registry that challenges (ServeAuth) accepts.
	wantUser, wantSecret string
	onPull               func(ctx context.Context, ref string)
	errs                 map[string]error
}

// Content is what the content store and the snapshotter hold for a target digest.
type Content struct {
	Complete, Unpacked bool
	Config             string // config digest, CRI's image ID
}

// remote is one pull source.
type remote struct {
	target ocispec.Descriptor
	config string
	err    error // the pull fails with it
	auth   bool  // the registry answers 401 until given wantUser/wantSecret
}

// Call is one recorded keeper.Images call.
type Call struct {
	Op     string // the method: "Get", "Pull", "Put", ...
	Name   string // the record name (Pull: the reference)
	Target digest.Digest
	Labels map[string]string
	Host   string // Pull: the host the credentials were asked for
	User   string // Pull: the user the credentials gave
}

// NewFake returns an empty fake: no records, nothing pullable.
func NewFake() *Fake {
	return &Fake{
		records: map[string]containerd.Image{},
		content: map[digest.Digest]Content{},
		remotes: map[string]remote{},
		errs:    map[string]error{},
	}
}

var _ keeper.Images = (*Fake)(nil)

// Image returns a descriptor and config digest derived from seed: the same seed, the same image.
func Image(seed string) (ocispec.Descriptor, string) {
	return ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageIndex,
		Digest:    digest.FromString("manifest " + seed),
		Size:      int64(100 + len(seed)),
	}, digest.FromString("config " + seed).String()
}

// Serve makes ref pullable, as the image Image(seed); it returns what a pull of it yields.
func (f *Fake) Serve(ref, seed string) (ocispec.Descriptor, string) {
	desc, cfg := Image(seed)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.remotes[ref] = remote{target: desc, config: cfg}
	return desc, cfg
}

// ServeAuth is Serve behind a registry that wants the credentials set with RequireCredentials
// (none set: it takes anonymous pulls, after asking).
func (f *Fake) ServeAuth(ref, seed string) (ocispec.Descriptor, string) {
	desc, cfg := f.Serve(ref, seed)
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.remotes[ref]
	r.auth = true
	f.remotes[ref] = r
	return desc, cfg
}

// RequireCredentials sets the user and secret that registries of ServeAuth sources accept.
func (f *Fake) RequireCredentials(user, secret string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.wantUser, f.wantSecret = user, secret
}

// FailPull makes pulls of ref fail with err (nil: succeed again).
func (f *Fake) FailPull(ref string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.remotes[ref]
	r.err = err
	f.remotes[ref] = r
}

// Fail makes the operation op ("Get", "Usable", "Put", "SetLabels", "Unpack", "Export",
// "Import") fail with err (nil: succeed again).
func (f *Fake) Fail(op string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		delete(f.errs, op)
		return
	}
	f.errs[op] = err
}

// OnPull sets a function that runs at the start of every Pull, outside the fake's lock.
func (f *Fake) OnPull(fn func(ctx context.Context, ref string)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.onPull = fn
}

// SetRecord stores a record as it is, without recording a call or sending an event.
func (f *Fake) SetRecord(name string, target ocispec.Descriptor, labels map[string]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.records[name] = containerd.Image{Name: name, Target: target, Labels: maps.Clone(labels)}
}

// SetContent sets what is stored for target, without recording a call.
func (f *Fake) SetContent(target digest.Digest, st Content) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.content[target] = st
}

// Remove deletes a record without an event and, when gc is set, its content (containerd's GC
// after a delete), whatever else refers to it.
func (f *Fake) Remove(name string, gc bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if gc {
		delete(f.content, f.records[name].Target.Digest)
	}
	delete(f.records, name)
}

// Delete deletes a record as `ctr images rm` does: the open streams hear of it, and the content
// goes once no record refers to it.
func (f *Fake) Delete(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.records[name]
	if !ok {
		return fmt.Errorf("image %q: not found", name)
	}
	delete(f.records, name)
	used := false
	for _, o := range f.records {
		used = used || o.Target.Digest == r.Target.Digest
	}
	if !used {
		delete(f.content, r.Target.Digest)
	}
	f.announce(containerd.Event{Kind: containerd.Deleted, Name: name})
	return nil
}

// Record returns the record name as stored.
func (f *Fake) Record(name string) (containerd.Image, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.records[name]
	r.Labels = maps.Clone(r.Labels)
	return r, ok
}

// RecordNames returns the names of every record, in no order.
func (f *Fake) RecordNames() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for n := range f.records {
		out = append(out, n)
	}
	return out
}

func (f *Fake) log(c Call) {
	c.Labels = maps.Clone(c.Labels)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, c)
}

// CallsOf returns the recorded calls of op, in order.
func (f *Fake) CallsOf(op string) []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Call
	for _, c := range f.calls {
		if c.Op == op {
			out = append(out, c)
		}
	}
	return out
}

// Count returns how many calls of op were made for name ("" for any name).
func (f *Fake) Count(op, name string) int {
	n := 0
	for _, c := range f.CallsOf(op) {
		if name == "" || c.Name == name {
			n++
		}
	}
	return n
}

// ResetCalls forgets the recorded calls.
func (f *Fake) ResetCalls() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = nil
}

func (f *Fake) fail(op string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.errs[op]
}

// store creates or replaces a record and announces it, as containerd's image service does.
// The caller holds f.mu.
func (f *Fake) store(name string, target ocispec.Descriptor, labels map[string]string) containerd.Image {
	kind := containerd.Updated
	if _, ok := f.records[name]; !ok {
		kind = containerd.Created
	}
	f.records[name] = containerd.Image{Name: name, Target: target, Labels: maps.Clone(labels)}
	f.announce(containerd.Event{Kind: kind, Name: name, Labels: labels})
	return containerd.Image{Name: name, Target: target, Labels: maps.Clone(labels)}
}

// announce queues ev on every open stream. The caller holds f.mu.
func (f *Fake) announce(ev containerd.Event) {
	ev.Labels = maps.Clone(ev.Labels)
	for _, s := range f.streams {
		s.push(ev)
	}
}

func (f *Fake) Get(_ context.Context, name string) (containerd.Image, bool, error) {
	f.log(Call{Op: "Get", Name: name})
	if err := f.fail("Get"); err != nil {
		return containerd.Image{}, false, err
	}
	r, ok := f.Record(name)
	if !ok {
		return containerd.Image{}, false, nil
	}
	return r, true, nil
}

func (f *Fake) Usable(_ context.Context, name string) (bool, bool, string, error) {
	f.log(Call{Op: "Usable", Name: name})
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
	if !st.Complete {
		return false, false, "", nil
	}
	return true, st.Unpacked, st.Config, nil
}

// hostOf is the registry host of ref, as containerd's resolver sees it.
func hostOf(ref string) string {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return ""
	}
	return reference.Domain(named)
}

// Pull answers like containerd's: an ended context, an unknown or a failing source is an error;
// a registry that wants credentials gets them from creds for the source's host (the image's
// registry host, which the adapter asks whichever host, mirror or not, answers 401); a success stores the record under ref with exactly labels
// (replacing those of an existing record), the content complete and unpacked.
func (f *Fake) Pull(ctx context.Context, ref string, creds containerd.Credentials, labels map[string]string) (containerd.Image, error) {
	c := Call{Op: "Pull", Name: ref, Labels: labels}
	defer func() { f.log(c) }()
	f.mu.Lock()
	onPull := f.onPull
	f.mu.Unlock()
	if onPull != nil {
		onPull(ctx, ref)
	}
	if err := ctx.Err(); err != nil {
		return containerd.Image{}, fmt.Errorf("pulling %s: %w", ref, err)
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
		c.Host = hostOf(ref)
		user, secret := "", ""
		if creds != nil {
			var err error
			if user, secret, err = creds(ctx, c.Host); err != nil {
				return containerd.Image{}, fmt.Errorf("failed to resolve reference %q: failed to authorize: %w", ref, err)
			}
		}
		c.User = user
		if user != wantUser || secret != wantSecret {
			return containerd.Image{}, fmt.Errorf("failed to resolve reference %q: pulling from host %s failed with status code [manifests]: 401 Unauthorized", ref, c.Host)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.content[r.target.Digest] = Content{Complete: true, Unpacked: true, Config: r.config}
	c.Target = r.target.Digest
	return f.store(ref, r.target, labels), nil
}

func (f *Fake) Put(_ context.Context, name string, target ocispec.Descriptor, labels map[string]string) error {
	f.log(Call{Op: "Put", Name: name, Target: target.Digest, Labels: labels})
	if err := f.fail("Put"); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.store(name, target, labels)
	return nil
}

func (f *Fake) SetLabels(_ context.Context, name string, labels map[string]string) error {
	f.log(Call{Op: "SetLabels", Name: name, Labels: labels})
	if err := f.fail("SetLabels"); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.records[name]
	if !ok {
		return fmt.Errorf("labelling image %s: not found", name)
	}
	all := maps.Clone(r.Labels)
	if all == nil {
		all = map[string]string{}
	}
	maps.Copy(all, labels)
	f.store(name, r.Target, all)
	return nil
}

func (f *Fake) Unpack(_ context.Context, name string) error {
	f.log(Call{Op: "Unpack", Name: name})
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
	if !st.Complete {
		return fmt.Errorf("unpacking %s: content incomplete", name)
	}
	st.Unpacked = true
	f.content[r.Target.Digest] = st
	return nil
}

// Export writes a small OCI image layout tar as containerd's exporter does: oci-layout,
// index.json naming the image's target descriptor, and the blobs (a stand-in manifest that
// names the config, and the config).
func (f *Fake) Export(_ context.Context, name string, w io.Writer) error {
	f.log(Call{Op: "Export", Name: name})
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
	if !st.Complete {
		return fmt.Errorf("exporting %s: content incomplete", name)
	}
	if err := WriteArchive(w, name, r.Target, st.Config); err != nil {
		return fmt.Errorf("exporting %s: %w", name, err)
	}
	return nil
}

// WriteArchive writes the small OCI image layout tar Export writes for an image (target and
// config digest, as Image returns them) exported under name: oci-layout, index.json naming target with name as its
// io.containerd.image.name annotation, and the blobs (a stand-in manifest that names the config,
// and the config). Import reads it back; tests write archive fallbacks with it.
func WriteArchive(w io.Writer, name string, target ocispec.Descriptor, config string) error {
	target.Annotations = map[string]string{images.AnnotationImageName: name}
	index, err := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{target}})
	if err != nil {
		return err
	}
	manifest, err := json.Marshal(map[string]string{"config": config})
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	for _, file := range []struct {
		name string
		data []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", index},
		{"blobs/sha256/" + target.Digest.Encoded(), manifest},
		{"blobs/sha256/" + strings.TrimPrefix(config, "sha256:"), []byte(`{"architecture":"amd64","os":"linux"}`)},
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

// Import stores the archive's one image as name with exactly labels (replacing those of an
// existing record), whatever name the archive carries; the content is complete, and unpacked
// only if it was before. An archive whose index.json does not name exactly one image is refused
// and nothing is stored.
func (f *Fake) Import(_ context.Context, r io.Reader, name string, labels map[string]string) (containerd.Image, error) {
	f.log(Call{Op: "Import", Name: name, Labels: labels})
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
		return containerd.Image{}, fmt.Errorf("importing %s: manifest blob: %w", name, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.content[target.Digest]
	st.Complete, st.Config = true, manifest["config"]
	f.content[target.Digest] = st
	return f.store(name, target, labels), nil
}

// Subscribe opens an event stream. It ends, as containerd's does, when ctx ends (the error
// channel then delivers ctx's error) or when the test stops it (Stream.Stop).
func (f *Fake) Subscribe(ctx context.Context) (<-chan containerd.Event, <-chan error) {
	f.log(Call{Op: "Subscribe"})
	s := &Stream{events: make(chan containerd.Event), errs: make(chan error, 1), wake: make(chan struct{}, 1)}
	f.mu.Lock()
	f.streams = append(f.streams, s)
	f.mu.Unlock()
	go s.run(ctx)
	return s.events, s.errs
}

// Stream waits for the n-th subscription (from 1) and returns it.
func (f *Fake) Stream(t testing.TB, n int) *Stream {
	t.Helper()
	var s *Stream
	testutil.WaitFor(t, fmt.Sprintf("subscription %d", n), func() bool {
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

// Stream is one subscription. Events queue without bound until the subscriber reads them, as
// containerd's event exchange queues them per subscriber.
type Stream struct {
	events chan containerd.Event
	errs   chan error
	wake   chan struct{} // the queue grew or the stream was stopped

	mu     sync.Mutex
	queue  []containerd.Event
	closed bool
	err    error
}

// Send queues ev as if containerd had published it; sending on a stream that has ended fails the
// test.
func (s *Stream) Send(t testing.TB, ev containerd.Event) {
	t.Helper()
	if !s.push(ev) {
		t.Fatalf("sending %+v on a closed stream", ev)
	}
}

// Stop ends the stream with err: the event channel closes (events not yet read are lost, as
// when containerd's stream breaks) and err is delivered.
func (s *Stream) Stop(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed, s.err, s.queue = true, err, nil
	s.signal()
}

func (s *Stream) push(ev containerd.Event) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.queue = append(s.queue, ev)
	s.signal()
	return true
}

// signal wakes run; the caller holds s.mu.
func (s *Stream) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// run delivers the queue in order until the stream is stopped or ctx ends.
func (s *Stream) run(ctx context.Context) {
	for {
		s.mu.Lock()
		closed, err := s.closed, s.err
		var out chan containerd.Event
		var next containerd.Event
		if len(s.queue) > 0 {
			out, next = s.events, s.queue[0]
		}
		s.mu.Unlock()
		if closed {
			close(s.events)
			s.errs <- err
			return
		}
		select {
		case <-ctx.Done():
			s.Stop(ctx.Err())
		case <-s.wake:
		case out <- next:
			s.mu.Lock()
			if len(s.queue) > 0 {
				s.queue = s.queue[1:]
			}
			s.mu.Unlock()
		}
	}
}
