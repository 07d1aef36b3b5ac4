// Package keeper keeps the pod sandbox image (and other configured images) present the way CRI
// needs it: an image record under the exact name CRI looks up, complete content, unpacked into
// CRI's snapshotter, CRI's references and labels, pinned against kubelet's image GC. It repairs
// a deletion as soon as containerd reports it, reconciles periodically, pulls with ECR
// credentials it gets itself, falls back to alternative sources, and keeps a local copy to
// restore from when every source fails.
package keeper

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/distribution/reference"

	clog "github.com/containerd/log"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/sirupsen/logrus"

	"github.com/sandbox-guard/sandbox-guard/internal/backoff"
	"github.com/sandbox-guard/sandbox-guard/internal/config"
	"github.com/sandbox-guard/sandbox-guard/internal/containerd"
)

// Labels CRI uses; a pinned image is skipped by kubelet's image garbage collection.
const (
	LabelManaged = "io.cri-containerd.image"
	LabelPinned  = "io.cri-containerd.pinned"
	LabelSource  = "io.cri-containerd.source" // where a fallback image really came from
)

// Images is what the keeper needs from containerd.
type Images interface {
	Get(ctx context.Context, name string) (containerd.Image, bool, error)
	Usable(ctx context.Context, name string) (complete, unpacked bool, configDigest string, err error)
	Pull(ctx context.Context, ref string, creds containerd.Credentials, labels map[string]string) (containerd.Image, error)
	Put(ctx context.Context, name string, target ocispec.Descriptor, labels map[string]string) error
	SetLabels(ctx context.Context, name string, labels map[string]string) error
	Unpack(ctx context.Context, name string) error
	Export(ctx context.Context, name string, w io.Writer) error
	Import(ctx context.Context, r io.Reader, name string, labels map[string]string) (containerd.Image, error)
	Subscribe(ctx context.Context) (<-chan containerd.Event, <-chan error)
}

var _ Images = (*containerd.Client)(nil)

// Target is one image to keep.
type Target struct {
	Name    string   // the normalized reference CRI looks up
	Sources []string // where to pull it from, in order; Sources[0] is normally Name
	Role    string   // "sandbox image" or "pinned image", for messages
}

// Status is what the keeper last found about a target.
type Status struct {
	Name       string
	Role       string
	Present    bool // complete, unpacked, recorded under Name
	Pinned     bool
	Source     string // where the present image came from
	LastError  string
	Checked    time.Time
	LastRepair time.Time
	Repairs    int
	// CopyError is why the local copy was not kept at the last ensure (a full or read-only
	// state directory): an older copy, or none, is what a restore would find.
	CopyError string
}

// Options configure a Keeper.
type Options struct {
	Targets     []Target
	Credentials containerd.Credentials // nil: anonymous pulls only
	// LocalCopies keeps and restores archives; nil disables local copies.
	LocalCopies *LocalCopies
	Reconcile   time.Duration
	// PullTimeout bounds each pull, so a registry that hangs never stalls the keeper.
	PullTimeout time.Duration
	Retry       backoff.Policy
	Now         func() time.Time
	// Observe, when set, hears about every ensure: outcome ok, repaired or failed, the source
	// that served a repair, and how long the repair took (metrics).
	Observe func(image, outcome, source string, took time.Duration)
}

// Keeper keeps targets present.
type Keeper struct {
	images Images
	opts   Options

	mu     sync.Mutex
	status []Status
	refs   []map[string]bool // per target: record names that belong to it (tag, name@digest, id)

	queue   chan int
	pending []bool
}

// New returns a keeper over images.
func New(images Images, opts Options) *Keeper {
	if opts.Reconcile <= 0 {
		opts.Reconcile = time.Minute
	}
	if opts.PullTimeout <= 0 {
		opts.PullTimeout = 2 * time.Minute
	}
	if opts.Retry.Initial == 0 {
		opts.Retry = backoff.Policy{Initial: 500 * time.Millisecond, Max: time.Minute, Jitter: 0.2}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	k := &Keeper{images: images, opts: opts, queue: make(chan int, len(opts.Targets)), pending: make([]bool, len(opts.Targets))}
	for _, t := range opts.Targets {
		k.status = append(k.status, Status{Name: t.Name, Role: t.Role})
		k.refs = append(k.refs, map[string]bool{t.Name: true})
	}
	return k
}

// Targets returns the configured targets.
func (k *Keeper) Targets() []Target { return k.opts.Targets }

// Status returns a copy of every target's status.
func (k *Keeper) Status() []Status {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]Status(nil), k.status...)
}

// EnsureAll ensures every target once, in order, and returns every failure (the `ensure`
// command).
func (k *Keeper) EnsureAll(ctx context.Context) error {
	var errs []error
	for i := range k.opts.Targets {
		if err := k.Ensure(ctx, i); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Ensure makes target i present, complete, unpacked and pinned, repairing what is missing.
func (k *Keeper) Ensure(ctx context.Context, i int) error {
	t := k.opts.Targets[i]
	start := k.opts.Now()
	st, err := k.ensure(ctx, t, i)
	st.Checked = k.opts.Now()
	if k.opts.Observe != nil {
		switch {
		case err != nil:
			k.opts.Observe(t.Name, "failed", "", 0)
		case !st.LastRepair.IsZero():
			k.opts.Observe(t.Name, "repaired", st.Source, st.Checked.Sub(start))
		default:
			k.opts.Observe(t.Name, "ok", "", 0)
		}
	}
	if err != nil {
		st.LastError = err.Error()
	}
	k.mu.Lock()
	prev := k.status[i]
	st.Name, st.Role = t.Name, t.Role
	st.Repairs = prev.Repairs
	if st.LastRepair.IsZero() {
		st.LastRepair = prev.LastRepair
	} else {
		st.Repairs++
	}
	if st.Source == "" {
		st.Source = prev.Source
	}
	k.status[i] = st
	k.mu.Unlock()
	return err
}

func (k *Keeper) ensure(ctx context.Context, t Target, i int) (Status, error) {
	log := clog.G(ctx).WithField("image", t.Name)
	rec, ok, err := k.images.Get(ctx, t.Name)
	if err != nil {
		return Status{}, fmt.Errorf("%s %s: %w", t.Role, t.Name, err)
	}
	if ok {
		complete, unpacked, configDigest, err := k.images.Usable(ctx, t.Name)
		if err != nil {
			return Status{}, fmt.Errorf("%s %s: %w", t.Role, t.Name, err)
		}
		if complete {
			if !unpacked {
				if err := k.images.Unpack(ctx, t.Name); err != nil {
					return Status{}, fmt.Errorf("%s %s: %w", t.Role, t.Name, err)
				}
				log.Info("unpacked the image again")
			}
			if rec.Labels[LabelPinned] != "pinned" || rec.Labels[LabelManaged] != "managed" {
				if err := k.images.SetLabels(ctx, t.Name, map[string]string{LabelManaged: "managed", LabelPinned: "pinned"}); err != nil {
					return Status{}, fmt.Errorf("%s %s: pinning: %w", t.Role, t.Name, err)
				}
				log.Info("pinned the image (label " + LabelPinned + "=pinned)")
			}
			source := rec.Labels[LabelSource]
			if err := k.completeRefs(ctx, t, i, rec.Target, configDigest, source); err != nil {
				return Status{}, err
			}
			return Status{Present: true, Pinned: true, Source: orDefault(source, t.Name), CopyError: k.saveCopy(ctx, t, i, rec.Target, source)}, nil
		}
		log.Warn("image record present but its content is incomplete; pulling it again")
	}
	return k.repair(ctx, t, i, rec.Labels)
}

// repair pulls the image from its sources in order, then falls back to the local copy.
func (k *Keeper) repair(ctx context.Context, t Target, i int, existing map[string]string) (Status, error) {
	start := k.opts.Now()
	log := clog.G(ctx).WithField("image", t.Name)
	labels := map[string]string{}
	for key, v := range existing { // a re-pull never drops labels
		if key != LabelSource {
			labels[key] = v
		}
	}
	labels[LabelManaged], labels[LabelPinned] = "managed", "pinned"

	var failures []string
	for _, src := range t.Sources {
		img, source, err := k.fetch(ctx, t, src, labels)
		if err != nil {
			failures = append(failures, fmt.Sprintf("%s: %s", src, oneLine(err)))
			log.WithField("source", src).WithError(errors.New(oneLine(err))).Warn(verb(src) + " failed")
			continue
		}
		_, _, configDigest, err := k.images.Usable(ctx, t.Name)
		if err != nil {
			return Status{}, fmt.Errorf("%s %s: %w", t.Role, t.Name, err)
		}
		if err := k.completeRefs(ctx, t, i, img.Target, configDigest, source); err != nil {
			return Status{}, err
		}
		copyErr := k.saveCopy(ctx, t, i, img.Target, source)
		log.WithFields(logrus.Fields{"source": src, "took": k.opts.Now().Sub(start).Round(time.Millisecond).String()}).Info("image " + verb(src) + "ed, present and pinned")
		return Status{Present: true, Pinned: true, Source: orDefault(source, t.Name), LastRepair: k.opts.Now(), CopyError: copyErr}, nil
	}
	if lc := k.opts.LocalCopies; lc != nil {
		img, err := lc.Restore(ctx, k.images, t.Name, labels)
		if err == nil {
			_, _, configDigest, uerr := k.images.Usable(ctx, t.Name)
			if uerr == nil {
				uerr = k.completeRefs(ctx, t, i, img.Target, configDigest, img.Labels[LabelSource])
			}
			if uerr != nil {
				return Status{}, fmt.Errorf("%s %s: %w", t.Role, t.Name, uerr)
			}
			log.WithField("took", k.opts.Now().Sub(start).Round(time.Millisecond).String()).Warn("every source failed; image restored from the local copy: " + strings.Join(failures, "; "))
			return Status{Present: true, Pinned: true, Source: "local copy", LastRepair: k.opts.Now()}, nil
		}
		failures = append(failures, "local copy: "+oneLine(err))
	}
	return Status{}, fmt.Errorf("%s %s is missing and every source failed: %s", t.Role, t.Name, strings.Join(failures, "; "))
}

// fetch stores the image of one source under t.Name with labels: a pull of a reference (tagged
// under t.Name when it is a fallback), or the import of an archive fallback. It returns the
// source label the record got ("" for t.Name itself).
func (k *Keeper) fetch(ctx context.Context, t Target, src string, labels map[string]string) (containerd.Image, string, error) {
	ctx, cancel := context.WithTimeout(ctx, k.opts.PullTimeout)
	defer cancel()
	if a, ok, err := config.ParseArchiveSource(src); ok {
		if err != nil {
			return containerd.Image{}, "", err
		}
		img, err := k.fromArchive(ctx, t, a, labels)
		return img, a.Path, err
	}
	img, err := k.images.Pull(ctx, src, k.opts.Credentials, labelsFor(labels, src, t.Name))
	if err != nil {
		return containerd.Image{}, "", err
	}
	if src != t.Name {
		if err := k.images.Put(ctx, t.Name, img.Target, labelsFor(labels, src, t.Name)); err != nil {
			return containerd.Image{}, "", fmt.Errorf("tagging as %s: %w", t.Name, err)
		}
	}
	return img, sourceLabel(src, t.Name), nil
}

// verb is what fetch does with src, for log lines: "pull" or "import".
func verb(src string) string {
	if strings.HasPrefix(src, config.ArchivePrefix) {
		return "import"
	}
	return "pull"
}

// completeRefs makes sure the references CRI itself records exist: sha256:<config digest> (the
// image ID) always, and name@<manifest digest> when the image came from its own repository.
func (k *Keeper) completeRefs(ctx context.Context, t Target, i int, target ocispec.Descriptor, configDigest, source string) error {
	labels := map[string]string{LabelManaged: "managed", LabelPinned: "pinned"}
	names := []string{}
	if configDigest != "" {
		names = append(names, configDigest)
	}
	if source == "" {
		if repo, ok := repository(t.Name); ok {
			names = append(names, repo+"@"+target.Digest.String())
		}
	}
	for _, n := range names {
		rec, ok, err := k.images.Get(ctx, n)
		if err != nil {
			return fmt.Errorf("%s %s: %w", t.Role, t.Name, err)
		}
		if ok && rec.Target.Digest == target.Digest && rec.Labels[LabelPinned] == "pinned" {
			continue
		}
		recLabels := labels
		if ok {
			recLabels = map[string]string{}
			for key, v := range rec.Labels {
				recLabels[key] = v
			}
			recLabels[LabelManaged], recLabels[LabelPinned] = "managed", "pinned"
		}
		if err := k.images.Put(ctx, n, target, recLabels); err != nil {
			return fmt.Errorf("%s %s: %w", t.Role, t.Name, err)
		}
	}
	k.mu.Lock()
	for _, n := range names {
		k.refs[i][n] = true
	}
	k.mu.Unlock()
	return nil
}

// saveCopy keeps the local copy of target i and returns why it could not ("" when it did). A
// failure is logged when it first appears or changes, not at every ensure (a full disk lasts).
func (k *Keeper) saveCopy(ctx context.Context, t Target, i int, target ocispec.Descriptor, source string) string {
	if k.opts.LocalCopies == nil {
		return ""
	}
	k.mu.Lock()
	prev := k.status[i].CopyError
	k.mu.Unlock()
	saved, err := k.opts.LocalCopies.Save(ctx, k.images, t.Name, target, source)
	if err != nil {
		if oneLine(err) != prev {
			clog.G(ctx).WithField("image", t.Name).WithError(err).Warn("cannot keep a local copy; a restore would find the previous one, if any (logged again when the error changes)")
		}
		return oneLine(err)
	}
	if saved {
		clog.G(ctx).WithField("image", t.Name).Info("local copy saved")
	} else if prev != "" {
		clog.G(ctx).WithField("image", t.Name).Info("local copy kept again")
	}
	return ""
}

// labelsFor adds the source label when src is a fallback.
func labelsFor(base map[string]string, src, name string) map[string]string {
	out := make(map[string]string, len(base)+1)
	for key, v := range base {
		out[key] = v
	}
	if s := sourceLabel(src, name); s != "" {
		out[LabelSource] = s
	}
	return out
}

func sourceLabel(src, name string) string {
	if src == name {
		return ""
	}
	return src
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// repository is the name without tag or digest (docker.io/library/x for x:1).
func repository(name string) (string, bool) {
	named, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return "", false
	}
	return named.Name(), true
}

// oneLine keeps containerd's multi-line errors on one line.
func oneLine(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }

// InspectAll looks at every target without repairing anything (the `check` command).
func (k *Keeper) InspectAll(ctx context.Context) {
	for i, t := range k.opts.Targets {
		st := Status{Name: t.Name, Role: t.Role, Checked: k.opts.Now()}
		rec, ok, err := k.images.Get(ctx, t.Name)
		switch {
		case err != nil:
			st.LastError = fmt.Sprintf("%s %s: %v", t.Role, t.Name, err)
		case !ok:
			st.LastError = fmt.Sprintf("%s %s is missing", t.Role, t.Name)
		default:
			complete, unpacked, _, err := k.images.Usable(ctx, t.Name)
			switch {
			case err != nil:
				st.LastError = fmt.Sprintf("%s %s: %v", t.Role, t.Name, err)
			case !complete || !unpacked:
				st.LastError = fmt.Sprintf("%s %s is incomplete (content complete %v, unpacked %v)", t.Role, t.Name, complete, unpacked)
			case rec.Labels[LabelPinned] != "pinned":
				st.Present, st.LastError = true, fmt.Sprintf("%s %s is present but not pinned: kubelet's image GC may delete it", t.Role, t.Name)
			default:
				st.Present, st.Pinned, st.Source = true, true, orDefault(rec.Labels[LabelSource], t.Name)
				if lc := k.opts.LocalCopies; lc != nil {
					if err := lc.Check(t.Name, rec.Target); err != nil {
						st.CopyError = oneLine(err)
					}
				}
			}
		}
		k.mu.Lock()
		k.status[i] = st
		k.mu.Unlock()
	}
}
