package keeper

import (
	"context"
	"time"

	"github.com/containerd/log"

	"github.com/sandbox-guard/sandbox-guard/internal/backoff"
	"github.com/sandbox-guard/sandbox-guard/internal/containerd"
)

// Run keeps the targets present until ctx ends: at once (retrying while containerd is not
// serving yet), on image events, and every Reconcile interval. After the event stream breaks
// (a containerd restart) it resubscribes and re-checks everything, since nothing is replayed.
func (k *Keeper) Run(ctx context.Context) {
	if len(k.opts.Targets) == 0 {
		return
	}
	watching := make(chan struct{})
	go func() {
		defer close(watching)
		k.watch(ctx)
	}()
	defer func() { <-watching }() // Run returns only when its event watcher has too
	k.enqueueAll()
	reconcile := time.NewTicker(k.opts.Reconcile)
	defer reconcile.Stop()
	retries := make([]*backoff.Backoff, len(k.opts.Targets))
	for i := range retries {
		retries[i] = backoff.New(k.opts.Retry)
	}
	// One pending retry per target: an ensure started by an event or the reconcile tick while
	// a retry waits replaces it, so retries never multiply during an outage.
	timers := make([]*time.Timer, len(k.opts.Targets))
	defer func() {
		for _, t := range timers {
			if t != nil {
				t.Stop()
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-reconcile.C:
			k.enqueueAll()
		case i := <-k.queue:
			k.mu.Lock()
			k.pending[i] = false
			k.mu.Unlock()
			if timers[i] != nil {
				timers[i].Stop()
				timers[i] = nil
			}
			if err := k.Ensure(ctx, i); err != nil {
				if ctx.Err() != nil {
					return
				}
				d := retries[i].Next()
				log.G(ctx).WithField("image", k.opts.Targets[i].Name).WithField("retry_in", d.Round(time.Millisecond).String()).Error(err.Error())
				timers[i] = time.AfterFunc(d, func() {
					if ctx.Err() == nil {
						k.enqueue(i)
					}
				})
			} else {
				retries[i].Reset()
			}
		}
	}
}

// enqueue schedules target i once, however many events ask for it.
func (k *Keeper) enqueue(i int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.pending[i] {
		return
	}
	k.pending[i] = true
	k.queue <- i // capacity len(targets), and each target is queued at most once
}

func (k *Keeper) enqueueAll() {
	for i := range k.opts.Targets {
		k.enqueue(i)
	}
}

// watch follows containerd's image events and queues the targets they touch.
func (k *Keeper) watch(ctx context.Context) {
	b := backoff.New(backoff.Policy{Initial: 200 * time.Millisecond, Max: 10 * time.Second, Jitter: 0.2})
	first := true
	for ctx.Err() == nil {
		events, errs := k.images.Subscribe(ctx)
		if !first {
			k.enqueueAll() // events during the break are lost: look at everything again
		}
		first = false
		connected := time.Now()
		for ev := range events {
			if i, ok := k.targetOf(ev); ok {
				k.enqueue(i)
			}
		}
		err := <-errs
		if ctx.Err() != nil {
			return
		}
		if time.Since(connected) > 10*time.Second {
			b.Reset()
		}
		d := b.Next()
		log.G(ctx).WithError(err).WithField("retry_in", d.Round(time.Millisecond).String()).Warn("image event stream broken; resubscribing")
		if !backoff.Sleep(ctx, d) {
			return
		}
	}
}

// targetOf tells which target an event concerns: a deletion of any of its records, or a change
// that leaves its name without the pinned label.
func (k *Keeper) targetOf(ev containerd.Event) (int, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for i, refs := range k.refs {
		if !refs[ev.Name] {
			continue
		}
		switch ev.Kind {
		case containerd.Deleted:
			return i, true
		case containerd.Updated, containerd.Created:
			if ev.Labels[LabelPinned] != "pinned" {
				return i, true
			}
		}
	}
	return 0, false
}
