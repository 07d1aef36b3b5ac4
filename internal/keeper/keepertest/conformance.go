package keepertest

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/distribution/reference"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/sandbox-guard/sandbox-guard/internal/containerd"
	"github.com/sandbox-guard/sandbox-guard/internal/keeper"
)

// Subject is a keeper.Images under test and what the conformance suite needs to drive it. The
// cases share it and never touch each other's records: each pulls images of its own and names
// the records it creates with a prefix unique to the run.
//
// Every record the suite writes carries io.cri-containerd.image=managed, as every record the
// keeper writes does. In CRI's namespace that matters: CRI adopts a record without it a moment
// after it appears (it adds the label and records the image ID), and its update writes back the
// target it read, undoing a Put made in between.
type Subject struct {
	// Images is the implementation under test.
	Images keeper.Images
	// Pullable returns an image that Pull can fetch with Creds, a different one (another
	// reference, another manifest and config) on every call, not yet pulled.
	Pullable func(t *testing.T) Pullable
	// Creds answers the challenge of the registry that serves the Pullable images (which
	// refuses anonymous pulls).
	Creds containerd.Credentials
	// Missing is a reference on that registry that it does not have.
	Missing string
	// Delete deletes the record name from outside Images, as an operator or kubelet's image GC
	// would (`ctr images rm`).
	Delete func(t *testing.T, name string)
}

// Pullable is an image the registry serves.
type Pullable struct {
	Ref    string        // the reference to pull
	Target digest.Digest // the manifest (or index) digest a pull records
	Config string        // the config digest (CRI's image ID), as Usable reports it
}

// Timeouts of the suite. A case that hangs fails after caseTimeout instead of holding the run.
const (
	caseTimeout   = 2 * time.Minute
	eventDeadline = 10 * time.Second
)

// Conformance runs the contract the keeper relies on against s, one subtest per case. Every
// case states behaviour of real containerd through the internal/containerd adapter; the fake
// must behave the same.
func Conformance(t *testing.T, s Subject) {
	t.Helper()
	id := make([]byte, 4)
	if _, err := rand.Read(id); err != nil {
		t.Fatalf("conformance run ID: %v", err)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), caseTimeout)
			defer cancel()
			c.run(ctx, t, &run{Subject: s, id: hex.EncodeToString(id)})
		})
	}
}

// run is one case's view of the subject.
type run struct {
	Subject
	id string

	mu    sync.Mutex
	hosts []string // hosts Creds was asked for
}

// managed returns labels as the keeper writes them: io.cri-containerd.image=managed and the
// given key, value pairs.
func managed(kv ...string) map[string]string {
	out := map[string]string{keeper.LabelManaged: "managed"}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// name is a record name of this case and run: a valid image reference that nothing else uses.
func (r *run) name(what string) string {
	return "conformance.test/" + what + ":" + r.id
}

// creds is Subject.Creds, recording the hosts it is asked for.
func (r *run) creds(ctx context.Context, host string) (string, string, error) {
	r.mu.Lock()
	r.hosts = append(r.hosts, host)
	r.mu.Unlock()
	return r.Creds(ctx, host)
}

func (r *run) askedHosts() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.hosts...)
}

// pull pulls a new Pullable image with labels and checks what Pull returns.
func (r *run) pull(ctx context.Context, t *testing.T, labels map[string]string) (Pullable, containerd.Image) {
	t.Helper()
	p := r.Pullable(t)
	img, err := r.Images.Pull(ctx, p.Ref, r.creds, labels)
	if err != nil {
		t.Fatalf("Pull(%s): %v", p.Ref, err)
	}
	if img.Name != p.Ref || img.Target.Digest != p.Target {
		t.Fatalf("Pull(%s) = %s -> %s, want %s -> %s", p.Ref, img.Name, img.Target.Digest, p.Ref, p.Target)
	}
	return p, img
}

// get returns the record name, failing the test when there is none.
func (r *run) get(ctx context.Context, t *testing.T, name string) containerd.Image {
	t.Helper()
	rec, ok, err := r.Images.Get(ctx, name)
	if err != nil || !ok {
		t.Fatalf("Get(%s) = found %v, error %v; want the record", name, ok, err)
	}
	if rec.Name != name {
		t.Errorf("Get(%s) returned the record %s", name, rec.Name)
	}
	return rec
}

// absent fails the test when the record name exists.
func (r *run) absent(ctx context.Context, t *testing.T, name, why string) {
	t.Helper()
	rec, ok, err := r.Images.Get(ctx, name)
	if err != nil || ok {
		t.Errorf("Get(%s) after %s = %+v, found %v, error %v; want no record and no error", name, why, rec, ok, err)
	}
}

// labels fails the test unless name's record has exactly want.
func (r *run) labels(ctx context.Context, t *testing.T, name string, want map[string]string) containerd.Image {
	t.Helper()
	rec := r.get(ctx, t, name)
	if !maps.Equal(rec.Labels, want) {
		t.Errorf("labels of %s = %v, want exactly %v", name, rec.Labels, want)
	}
	return rec
}

// usable fails the test unless name is complete, unpacked (when unpacked is set) and has the
// config digest config.
func (r *run) usable(ctx context.Context, t *testing.T, name string, unpacked bool, config string) {
	t.Helper()
	complete, isUnpacked, cfg, err := r.Images.Usable(ctx, name)
	if err != nil || !complete || unpacked && !isUnpacked || cfg != config {
		want := "complete"
		if unpacked {
			want += ", unpacked"
		}
		t.Errorf("Usable(%s) = complete %v, unpacked %v, config %q, error %v; want %s, config %q",
			name, complete, isUnpacked, cfg, err, want, config)
	}
}

// sameTarget fails the test unless got describes the same blob as want.
func sameTarget(t *testing.T, what string, got, want ocispec.Descriptor) {
	t.Helper()
	if got.Digest != want.Digest || got.MediaType != want.MediaType || got.Size != want.Size {
		t.Errorf("%s target = %s %s %d, want %s %s %d", what, got.Digest, got.MediaType, got.Size, want.Digest, want.MediaType, want.Size)
	}
}

// cases is the contract, as the keeper uses it.
var cases = []struct {
	name string
	run  func(ctx context.Context, t *testing.T, r *run)
}{
	{
		// ensure and InspectAll start with Get: a missing image is an answer, not a failure.
		name: "Get of a missing name is not found, without error",
		run: func(ctx context.Context, t *testing.T, r *run) {
			r.absent(ctx, t, r.name("never-created"), "nothing")
			if _, _, _, err := r.Images.Usable(ctx, r.name("never-created")); err == nil {
				t.Error("Usable of a missing name succeeded")
			}
		},
	},
	{
		// repair pulls with the labels it wants the record to end with, and asks for ECR
		// credentials by the registry host.
		name: "Pull records the reference with exactly the labels given, asking Creds for its host",
		run: func(ctx context.Context, t *testing.T, r *run) {
			labels := managed(keeper.LabelPinned, "pinned", "team", "infra")
			p, img := r.pull(ctx, t, labels)
			if !maps.Equal(img.Labels, labels) {
				t.Errorf("Pull returned labels %v, want exactly %v", img.Labels, labels)
			}
			rec := r.labels(ctx, t, p.Ref, labels)
			sameTarget(t, "record "+p.Ref, rec.Target, img.Target)
			named, err := reference.ParseNormalizedNamed(p.Ref)
			if err != nil {
				t.Fatalf("Pullable reference %s: %v", p.Ref, err)
			}
			hosts := r.askedHosts()
			if len(hosts) == 0 {
				t.Fatalf("Creds never asked while pulling %s from a registry that wants credentials", p.Ref)
			}
			for _, h := range hosts {
				if h != reference.Domain(named) {
					t.Errorf("Creds asked for host %q, want %q (the host of %s)", h, reference.Domain(named), p.Ref)
				}
			}
		},
	},
	{
		// A re-pull stores the labels it is given in full; the keeper passes the existing ones
		// along, so nothing is lost, and a stale source label goes.
		name: "Pull of an existing record replaces its labels with exactly those given",
		run: func(ctx context.Context, t *testing.T, r *run) {
			first := managed(keeper.LabelPinned, "pinned", keeper.LabelSource, "mirror.test/pause:1", "team", "infra")
			p, _ := r.pull(ctx, t, first)
			r.labels(ctx, t, p.Ref, first)
			again := managed(keeper.LabelPinned, "pinned", "team", "infra")
			img, err := r.Images.Pull(ctx, p.Ref, r.creds, again)
			if err != nil {
				t.Fatalf("second Pull(%s): %v", p.Ref, err)
			}
			if img.Target.Digest != p.Target {
				t.Errorf("second Pull(%s) -> %s, want %s", p.Ref, img.Target.Digest, p.Target)
			}
			r.labels(ctx, t, p.Ref, again)
			if _, err := r.Images.Pull(ctx, p.Ref, r.creds, again); err != nil {
				t.Fatalf("third Pull(%s): %v", p.Ref, err)
			}
			r.labels(ctx, t, p.Ref, again)
		},
	},
	{
		// Credentials are what lets the keeper pull from ECR: without them the registry refuses.
		name: "Pull without credentials from a registry that wants them fails and records nothing",
		run: func(ctx context.Context, t *testing.T, r *run) {
			p := r.Pullable(t)
			if _, err := r.Images.Pull(ctx, p.Ref, nil, managed(keeper.LabelPinned, "pinned")); err == nil {
				t.Fatalf("anonymous Pull(%s) succeeded", p.Ref)
			}
			r.absent(ctx, t, p.Ref, "a refused pull")
		},
	},
	{
		// repair moves on to the next source after a failure; it must get one.
		name: "Pull of a missing reference fails promptly and records nothing",
		run: func(ctx context.Context, t *testing.T, r *run) {
			pctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			_, err := r.Images.Pull(pctx, r.Missing, r.creds, managed(keeper.LabelPinned, "pinned"))
			if err == nil {
				t.Fatalf("Pull(%s) of a reference the registry does not have succeeded", r.Missing)
			}
			if pctx.Err() != nil {
				t.Fatalf("Pull(%s) returned only when its context ended (%v): a hang, not an answer", r.Missing, err)
			}
			r.absent(ctx, t, r.Missing, "a failed pull")
		},
	},
	{
		// The keeper bounds every pull with PullTimeout; a pull must stop when its context ends.
		name: "Pull with an ended context fails and records nothing",
		run: func(ctx context.Context, t *testing.T, r *run) {
			p := r.Pullable(t)
			ended, cancel := context.WithCancel(ctx)
			cancel()
			if _, err := r.Images.Pull(ended, p.Ref, r.creds, managed(keeper.LabelPinned, "pinned")); err == nil {
				t.Fatalf("Pull(%s) with a cancelled context succeeded", p.Ref)
			} else if !errors.Is(err, context.Canceled) {
				t.Errorf("Pull(%s) with a cancelled context: %v, want an error wrapping context.Canceled", p.Ref, err)
			}
			r.absent(ctx, t, p.Ref, "a cancelled pull")
		},
	},
	{
		// After a pull the image is ready for CRI, and Usable names the config digest the
		// keeper records as the image ID.
		name: "Usable after a pull is complete, unpacked, with the config digest",
		run: func(ctx context.Context, t *testing.T, r *run) {
			p, _ := r.pull(ctx, t, managed(keeper.LabelPinned, "pinned"))
			r.usable(ctx, t, p.Ref, true, p.Config)
		},
	},
	{
		// The keeper pins with SetLabels and must not lose anyone else's labels doing it.
		name: "SetLabels changes only the given keys",
		run: func(ctx context.Context, t *testing.T, r *run) {
			p, img := r.pull(ctx, t, managed("team", "infra", keeper.LabelPinned, "false", keeper.LabelSource, "mirror.test/pause:1"))
			set := map[string]string{keeper.LabelPinned: "pinned", "added": "yes"}
			if err := r.Images.SetLabels(ctx, p.Ref, set); err != nil {
				t.Fatalf("SetLabels(%s): %v", p.Ref, err)
			}
			rec := r.labels(ctx, t, p.Ref, managed("team", "infra", keeper.LabelPinned, "pinned", keeper.LabelSource, "mirror.test/pause:1", "added", "yes"))
			sameTarget(t, "record "+p.Ref+" after SetLabels", rec.Target, img.Target)
			if err := r.Images.SetLabels(ctx, r.name("never-created"), set); err == nil {
				t.Error("SetLabels of a missing name succeeded")
			}
			r.absent(ctx, t, r.name("never-created"), "SetLabels")
		},
	},
	{
		// A fallback image is tagged under the configured name, and the image ID and
		// name@digest references are records of their own: Put makes them, all usable at once.
		name: "Put creates another record for the same target",
		run: func(ctx context.Context, t *testing.T, r *run) {
			p, img := r.pull(ctx, t, managed("team", "infra"))
			name := r.name("put-copy")
			labels := managed(keeper.LabelPinned, "pinned", keeper.LabelSource, p.Ref)
			if err := r.Images.Put(ctx, name, img.Target, labels); err != nil {
				t.Fatalf("Put(%s): %v", name, err)
			}
			rec := r.labels(ctx, t, name, labels)
			sameTarget(t, "record "+name, rec.Target, img.Target)
			r.usable(ctx, t, name, true, p.Config)
			r.labels(ctx, t, p.Ref, managed("team", "infra"))
		},
	},
	{
		// completeRefs moves an image ID record that points elsewhere, with the labels it
		// chooses.
		name: "Put over an existing record replaces its target and labels",
		run: func(ctx context.Context, t *testing.T, r *run) {
			p1, img1 := r.pull(ctx, t, managed())
			p2, img2 := r.pull(ctx, t, managed())
			if p1.Target == p2.Target || p1.Config == p2.Config {
				t.Fatalf("Pullable returned the same image twice (%s, config %s)", p1.Target, p1.Config)
			}
			name := r.name("put-replace")
			if err := r.Images.Put(ctx, name, img1.Target, managed("old", "yes", keeper.LabelPinned, "pinned")); err != nil {
				t.Fatalf("first Put(%s): %v", name, err)
			}
			want := managed(keeper.LabelPinned, "pinned")
			if err := r.Images.Put(ctx, name, img2.Target, want); err != nil {
				t.Fatalf("second Put(%s): %v", name, err)
			}
			rec := r.labels(ctx, t, name, want)
			sameTarget(t, "record "+name, rec.Target, img2.Target)
			r.usable(ctx, t, name, true, p2.Config)
		},
	},
	{
		// Local copies: Export writes an archive whose index.json names exactly the image
		// (Restore checks it before importing), and Import brings it back, over a record that
		// is still there or after a deletion, with the keeper's labels, ready to unpack.
		name: "Export then Import round-trips the image with the labels given",
		run: func(ctx context.Context, t *testing.T, r *run) {
			p, img := r.pull(ctx, t, managed("team", "infra"))
			var archive bytes.Buffer
			if err := r.Images.Export(ctx, p.Ref, &archive); err != nil {
				t.Fatalf("Export(%s): %v", p.Ref, err)
			}
			if held, err := archiveTarget(archive.Bytes()); err != nil || held != p.Target {
				t.Fatalf("the archive of %s holds %s (%v), want exactly %s", p.Ref, held, err, p.Target)
			}
			imported := func(what string, labels map[string]string) {
				t.Helper()
				got, err := r.Images.Import(ctx, bytes.NewReader(archive.Bytes()), p.Ref, labels)
				if err != nil {
					t.Fatalf("Import(%s) %s: %v", p.Ref, what, err)
				}
				if got.Name != p.Ref || got.Target.Digest != p.Target || !maps.Equal(got.Labels, labels) {
					t.Errorf("Import %s returned %s -> %s %v, want %s -> %s %v", what, got.Name, got.Target.Digest, got.Labels, p.Ref, p.Target, labels)
				}
				rec := r.labels(ctx, t, p.Ref, labels)
				sameTarget(t, "record "+p.Ref+" imported "+what, rec.Target, img.Target)
			}
			imported("over the record", managed(keeper.LabelPinned, "pinned", keeper.LabelSource, "mirror.test/pause:1"))
			r.Delete(t, p.Ref)
			r.absent(ctx, t, p.Ref, "Delete")
			imported("after a deletion", managed(keeper.LabelPinned, "pinned"))
			// Whether an import is already unpacked depends on snapshots other images left;
			// the keeper unpacks after every import.
			r.usable(ctx, t, p.Ref, false, p.Config)
			if err := r.Images.Unpack(ctx, p.Ref); err != nil {
				t.Fatalf("Unpack(%s): %v", p.Ref, err)
			}
			r.usable(ctx, t, p.Ref, true, p.Config)
		},
	},
	{
		// An archive fallback (oci-archive:/etc/eks/pause.tar) carries whatever name it was
		// exported under; the keeper imports it under the name CRI looks up. Import stores the
		// archive's one image under the name given and touches no record of the archive's own
		// name; an archive whose index names more than one image stores nothing.
		name: "Import stores the image under the name given, whatever name the archive carries",
		run: func(ctx context.Context, t *testing.T, r *run) {
			p, img := r.pull(ctx, t, managed("team", "infra"))
			var archive bytes.Buffer
			if err := r.Images.Export(ctx, p.Ref, &archive); err != nil {
				t.Fatalf("Export(%s): %v", p.Ref, err)
			}
			other := r.name("imported-elsewhere")
			labels := managed(keeper.LabelPinned, "pinned", keeper.LabelSource, "/etc/eks/pause.tar")
			got, err := r.Images.Import(ctx, bytes.NewReader(archive.Bytes()), other, labels)
			if err != nil {
				t.Fatalf("Import of the archive of %s as %s: %v", p.Ref, other, err)
			}
			if got.Name != other || got.Target.Digest != p.Target || !maps.Equal(got.Labels, labels) {
				t.Errorf("Import returned %s -> %s %v, want %s -> %s %v", got.Name, got.Target.Digest, got.Labels, other, p.Target, labels)
			}
			rec := r.labels(ctx, t, other, labels)
			sameTarget(t, "record "+other, rec.Target, img.Target)
			r.labels(ctx, t, p.Ref, managed("team", "infra"))
			if err := r.Images.Unpack(ctx, other); err != nil {
				t.Fatalf("Unpack(%s): %v", other, err)
			}
			r.usable(ctx, t, other, true, p.Config)

			twice, err := withIndex(archive.Bytes(), func(idx *ocispec.Index) {
				idx.Manifests = append(idx.Manifests, idx.Manifests[0])
			})
			if err != nil {
				t.Fatal(err)
			}
			third := r.name("imported-from-two")
			if img, err := r.Images.Import(ctx, bytes.NewReader(twice), third, labels); err == nil {
				t.Errorf("Import of an archive whose index names two images succeeded: %+v", img)
			}
			r.absent(ctx, t, third, "an import of an archive naming two images")
		},
	},
	{
		// Run repairs a deletion, or a lost pin, as soon as containerd announces it: the
		// deleted name, and an update's full labels. The stream fails only when it breaks, and
		// ends with an error when its context ends.
		name: "Subscribe announces changes and deletions, and ends with its context",
		run: func(ctx context.Context, t *testing.T, r *run) {
			p, img := r.pull(ctx, t, managed())
			sctx, cancel := context.WithCancel(ctx)
			defer cancel()
			events, errs := r.Images.Subscribe(sctx)
			w := watcher{events: events, errs: errs}
			w.live(ctx, t, r, img.Target)

			name := r.name("watched")
			labels := managed(keeper.LabelPinned, "pinned", "team", "infra")
			if err := r.Images.Put(ctx, name, img.Target, labels); err != nil {
				t.Fatalf("Put(%s): %v", name, err)
			}
			w.await(t, "creation of "+name, func(ev containerd.Event) bool {
				return ev.Kind == containerd.Created && ev.Name == name && maps.Equal(ev.Labels, labels)
			})
			if err := r.Images.SetLabels(ctx, name, map[string]string{keeper.LabelPinned: "false"}); err != nil {
				t.Fatalf("SetLabels(%s): %v", name, err)
			}
			w.await(t, "update of "+name+" with its full labels", func(ev containerd.Event) bool {
				return ev.Kind == containerd.Updated && ev.Name == name &&
					maps.Equal(ev.Labels, managed(keeper.LabelPinned, "false", "team", "infra"))
			})
			r.Delete(t, name)
			w.await(t, "deletion of "+name, func(ev containerd.Event) bool {
				return ev.Kind == containerd.Deleted && ev.Name == name
			})
			r.absent(ctx, t, name, "Delete")
			r.get(ctx, t, p.Ref) // the other record of the same image stays

			select {
			case err := <-errs:
				t.Fatalf("the error channel delivered %v while nothing failed", err)
			default:
			}
			cancel()
			w.closes(t)
		},
	},
}

// watcher reads one subscription.
type watcher struct {
	events <-chan containerd.Event
	errs   <-chan error
}

// live returns once the subscription delivers: containerd's client subscribes in the
// background, so changes made right after Subscribe may not be announced. It puts a probe
// record until an event for it arrives.
func (w watcher) live(ctx context.Context, t *testing.T, r *run, target ocispec.Descriptor) {
	t.Helper()
	probe := r.name("probe")
	deadline := time.Now().Add(eventDeadline)
	for i := 0; time.Now().Before(deadline); i++ {
		if err := r.Images.Put(ctx, probe, target, managed("probe", fmt.Sprint(i))); err != nil {
			t.Fatalf("Put(%s): %v", probe, err)
		}
		tick := time.NewTimer(200 * time.Millisecond)
	wait:
		for {
			select {
			case ev, ok := <-w.events:
				if !ok {
					tick.Stop()
					t.Fatalf("the event channel closed before any event: %v", w.why())
				}
				if ev.Name == probe {
					tick.Stop()
					return
				}
			case err := <-w.errs:
				tick.Stop()
				t.Fatalf("the subscription failed: %v", err)
			case <-tick.C:
				break wait
			}
		}
	}
	t.Fatalf("no event for %s within %v of subscribing", probe, eventDeadline)
}

// await reads events until one matches, failing the test if none does within eventDeadline or
// the stream fails.
func (w watcher) await(t *testing.T, what string, match func(containerd.Event) bool) {
	t.Helper()
	timeout := time.NewTimer(eventDeadline)
	defer timeout.Stop()
	var seen []containerd.Event
	for {
		select {
		case ev, ok := <-w.events:
			if !ok {
				t.Fatalf("the event channel closed waiting for the %s: %v", what, w.why())
			}
			if match(ev) {
				return
			}
			seen = append(seen, ev)
		case err := <-w.errs:
			t.Fatalf("the subscription failed waiting for the %s: %v", what, err)
		case <-timeout.C:
			t.Fatalf("no %s within %v; other events: %+v", what, eventDeadline, seen)
		}
	}
}

// why returns what the error channel says after the event channel closed.
func (w watcher) why() error {
	select {
	case err := <-w.errs:
		return err
	case <-time.After(eventDeadline):
		return fmt.Errorf("and the error channel said nothing within %v", eventDeadline)
	}
}

// closes checks that, once the subscription's context has ended, the event channel closes and
// the error channel says why.
func (w watcher) closes(t *testing.T) {
	t.Helper()
	timeout := time.NewTimer(eventDeadline)
	defer timeout.Stop()
	for open := true; open; {
		select {
		case _, open = <-w.events:
		case <-timeout.C:
			t.Fatalf("the event channel is still open %v after the context ended", eventDeadline)
		}
	}
	select {
	case err := <-w.errs:
		if err == nil {
			t.Error("the error channel delivered nil after the context ended, want why the stream ended")
		}
	case <-timeout.C:
		t.Fatalf("the error channel delivered nothing within %v of the context ending", eventDeadline)
	}
}

// archiveTarget reads the digest of the only image an OCI archive's index.json names.
func archiveTarget(archive []byte) (digest.Digest, error) {
	tr := tar.NewReader(bytes.NewReader(archive))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return "", errors.New("no index.json in the archive")
		}
		if err != nil {
			return "", fmt.Errorf("reading the archive: %w", err)
		}
		if h.Name != "index.json" {
			continue
		}
		var idx ocispec.Index
		if err := json.NewDecoder(tr).Decode(&idx); err != nil {
			return "", fmt.Errorf("index.json: %w", err)
		}
		if len(idx.Manifests) != 1 {
			return "", fmt.Errorf("index.json lists %d images, want 1", len(idx.Manifests))
		}
		return idx.Manifests[0].Digest, nil
	}
}

// withIndex returns archive with its index.json rewritten by edit, every other file as it was.
func withIndex(archive []byte, edit func(*ocispec.Index)) ([]byte, error) {
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	tr := tar.NewReader(bytes.NewReader(archive))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading the archive: %w", err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", h.Name, err)
		}
		if h.Name == "index.json" {
			var idx ocispec.Index
			if err := json.Unmarshal(b, &idx); err != nil {
				return nil, fmt.Errorf("index.json: %w", err)
			}
			edit(&idx)
			if b, err = json.Marshal(idx); err != nil {
				return nil, fmt.Errorf("index.json: %w", err)
			}
			h.Size = int64(len(b))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("writing %s: %w", h.Name, err)
		}
		if _, err := tw.Write(b); err != nil {
			return nil, fmt.Errorf("writing %s: %w", h.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("writing the archive: %w", err)
	}
	return out.Bytes(), nil
}
