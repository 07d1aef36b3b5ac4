package keeper_test

import (
	"context"
	"errors"
	"maps"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sandbox-guard/sandbox-guard/internal/keeper"
	"github.com/sandbox-guard/sandbox-guard/internal/keeper/keepertest"
	"github.com/sandbox-guard/sandbox-guard/internal/testutil"
)

const (
	testName     = "registry.test:5000/team/pause:3.10"
	testRepo     = "registry.test:5000/team/pause"
	testFallback = "registry.k8s.io/pause:3.10"
	testPublic   = "public.ecr.aws/eks-distro/kubernetes/pause:3.10"
)

func pinned() map[string]string {
	return map[string]string{keeper.LabelManaged: "managed", keeper.LabelPinned: "pinned"}
}

// with returns a copy of base with more key, value pairs.
func with(base map[string]string, kv ...string) map[string]string {
	out := maps.Clone(base)
	if out == nil {
		out = map[string]string{}
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// newKeeper builds a keeper over f with a fixed clock and a recording logger.
func newKeeper(f *keepertest.Fake, opts keeper.Options) (*keeper.Keeper, *fakeClock) {
	clock := newClock()
	if opts.Now == nil {
		opts.Now = clock.Now
	}
	return keeper.New(f, opts), clock
}

func sandboxTarget(sources ...string) keeper.Target {
	if len(sources) == 0 {
		sources = []string{testName}
	}
	return keeper.Target{Name: testName, Role: "sandbox image", Sources: sources}
}

// mutations returns the calls that change containerd's state.
func mutations(f *keepertest.Fake) []keepertest.Call {
	var out []keepertest.Call
	for _, op := range []string{"Pull", "Put", "SetLabels", "Unpack", "Import"} {
		out = append(out, f.CallsOf(op)...)
	}
	return out
}

func putsByName(f *keepertest.Fake) map[string]keepertest.Call {
	out := map[string]keepertest.Call{}
	for _, c := range f.CallsOf("Put") {
		out[c.Name] = c
	}
	return out
}

func TestEnsureExistingImage(t *testing.T) {
	desc, cfg := keepertest.Image("present")
	refs := func(f *keepertest.Fake) {
		f.SetRecord(cfg, desc, pinned())
		f.SetRecord(testRepo+"@"+desc.Digest.String(), desc, pinned())
	}
	tests := []struct {
		name          string
		labels        map[string]string
		unpacked      bool
		setup         func(f *keepertest.Fake)
		wantSetLabels bool
		wantUnpack    bool
		wantPuts      map[string]map[string]string // name -> exact labels
	}{
		{name: "complete, unpacked, pinned, with its references", labels: pinned(), unpacked: true, setup: refs},
		{name: "pinned label missing", labels: map[string]string{keeper.LabelManaged: "managed"}, unpacked: true, setup: refs, wantSetLabels: true},
		{name: "managed label missing", labels: map[string]string{keeper.LabelPinned: "pinned"}, unpacked: true, setup: refs, wantSetLabels: true},
		{name: "pinned label with another value", labels: with(pinned(), keeper.LabelPinned, "false"), unpacked: true, setup: refs, wantSetLabels: true},
		{name: "no labels at all", labels: nil, unpacked: true, setup: refs, wantSetLabels: true},
		{name: "other labels kept, pin added", labels: map[string]string{"team": "infra"}, unpacked: true, setup: refs, wantSetLabels: true},
		{name: "complete but not unpacked", labels: pinned(), unpacked: false, setup: refs, wantUnpack: true},
		{name: "not unpacked and not pinned", labels: nil, unpacked: false, setup: refs, wantUnpack: true, wantSetLabels: true},
		{
			name: "references missing", labels: pinned(), unpacked: true, setup: func(*keepertest.Fake) {},
			wantPuts: map[string]map[string]string{cfg: pinned(), testRepo + "@" + desc.Digest.String(): pinned()},
		},
		{
			name: "reference present but unpinned keeps its labels", labels: pinned(), unpacked: true,
			setup: func(f *keepertest.Fake) {
				f.SetRecord(cfg, desc, map[string]string{"kept": "yes"})
				f.SetRecord(testRepo+"@"+desc.Digest.String(), desc, pinned())
			},
			wantPuts: map[string]map[string]string{cfg: with(pinned(), "kept", "yes")},
		},
		{
			name: "image ID record pointing elsewhere is moved", labels: pinned(), unpacked: true,
			setup: func(f *keepertest.Fake) {
				other, _ := keepertest.Image("other")
				f.SetRecord(cfg, other, pinned())
				f.SetRecord(testRepo+"@"+desc.Digest.String(), desc, pinned())
			},
			wantPuts: map[string]map[string]string{cfg: pinned()},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := keepertest.NewFake()
			f.Serve(testName, "present")
			f.SetRecord(testName, desc, tt.labels)
			f.SetContent(desc.Digest, keepertest.Content{Complete: true, Unpacked: tt.unpacked, Config: cfg})
			tt.setup(f)
			k, _ := newKeeper(f, keeper.Options{Targets: []keeper.Target{sandboxTarget()}})

			if err := k.Ensure(context.Background(), 0); err != nil {
				t.Fatalf("Ensure: %v", err)
			}
			if n := f.Count("Pull", ""); n != 0 {
				t.Errorf("%d pulls of an image that is present", n)
			}
			if n := f.Count("Import", ""); n != 0 {
				t.Errorf("%d imports", n)
			}
			sl := f.CallsOf("SetLabels")
			switch {
			case !tt.wantSetLabels && len(sl) != 0:
				t.Errorf("SetLabels called: %+v", sl)
			case tt.wantSetLabels && len(sl) != 1:
				t.Errorf("SetLabels calls = %+v, want one", sl)
			case tt.wantSetLabels:
				if sl[0].Name != testName || !reflect.DeepEqual(sl[0].Labels, pinned()) {
					t.Errorf("SetLabels(%s, %v), want (%s, exactly %v)", sl[0].Name, sl[0].Labels, testName, pinned())
				}
			}
			if got, want := f.Count("Unpack", testName), map[bool]int{true: 1}[tt.wantUnpack]; got != want {
				t.Errorf("Unpack calls = %d, want %d", got, want)
			}
			puts := putsByName(f)
			if len(puts) != len(tt.wantPuts) {
				t.Errorf("Put calls %v, want %v", f.CallsOf("Put"), tt.wantPuts)
			}
			for n, want := range tt.wantPuts {
				c, ok := puts[n]
				if !ok {
					t.Errorf("no Put of %s", n)
					continue
				}
				if c.Target != desc.Digest || !reflect.DeepEqual(c.Labels, want) {
					t.Errorf("Put(%s) -> %s %v, want %s %v", n, c.Target, c.Labels, desc.Digest, want)
				}
			}

			// What containerd ends up with.
			rec, _ := f.Record(testName)
			if rec.Labels[keeper.LabelPinned] != "pinned" || rec.Labels[keeper.LabelManaged] != "managed" {
				t.Errorf("record labels %v", rec.Labels)
			}
			for k, v := range tt.labels {
				if k != keeper.LabelPinned && k != keeper.LabelManaged && rec.Labels[k] != v {
					t.Errorf("label %s=%s lost: %v", k, v, rec.Labels)
				}
			}
			st := k.Status()[0]
			if !st.Present || !st.Pinned || st.Source != testName || st.LastError != "" || st.Repairs != 0 || st.Role != "sandbox image" {
				t.Errorf("status %+v", st)
			}

			// A second ensure finds nothing to do.
			f.ResetCalls()
			if err := k.Ensure(context.Background(), 0); err != nil {
				t.Fatalf("second Ensure: %v", err)
			}
			if m := mutations(f); len(m) != 0 {
				t.Errorf("second Ensure changed something: %+v", m)
			}
		})
	}
}

func TestEnsurePullsMissingOrIncompleteImage(t *testing.T) {
	old, oldCfg := keepertest.Image("old")
	tests := []struct {
		name       string
		setup      func(f *keepertest.Fake)
		wantLabels map[string]string // exact labels of the Pull
	}{
		{name: "no record", setup: func(*keepertest.Fake) {}, wantLabels: pinned()},
		{
			name: "record with incomplete content",
			setup: func(f *keepertest.Fake) {
				f.SetRecord(testName, old, map[string]string{"team": "infra", keeper.LabelManaged: "managed"})
				f.SetContent(old.Digest, keepertest.Content{Complete: false, Config: oldCfg})
			},
			wantLabels: with(pinned(), "team", "infra"),
		},
		{
			name: "record once restored from a fallback: the source label goes",
			setup: func(f *keepertest.Fake) {
				f.SetRecord(testName, old, with(pinned(), keeper.LabelSource, testFallback, "team", "infra"))
				f.SetContent(old.Digest, keepertest.Content{})
			},
			wantLabels: with(pinned(), "team", "infra"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := keepertest.NewFake()
			desc, cfg := f.Serve(testName, "new")
			f.Serve(testFallback, "fallback")
			tt.setup(f)
			k, clock := newKeeper(f, keeper.Options{Targets: []keeper.Target{sandboxTarget(testName, testFallback)}})

			if err := k.Ensure(context.Background(), 0); err != nil {
				t.Fatalf("Ensure: %v", err)
			}
			pulls := f.CallsOf("Pull")
			if len(pulls) != 1 || pulls[0].Name != testName {
				t.Fatalf("pulls %+v, want one of Sources[0]", pulls)
			}
			if !reflect.DeepEqual(pulls[0].Labels, tt.wantLabels) {
				t.Errorf("Pull labels %v, want %v", pulls[0].Labels, tt.wantLabels)
			}
			rec, ok := f.Record(testName)
			if !ok || rec.Target.Digest != desc.Digest {
				t.Fatalf("record %+v", rec)
			}
			for _, n := range []string{cfg, testRepo + "@" + desc.Digest.String()} {
				r, ok := f.Record(n)
				if !ok {
					t.Errorf("no record %s (have %v)", n, f.RecordNames())
					continue
				}
				if r.Target.Digest != desc.Digest || !reflect.DeepEqual(r.Labels, pinned()) {
					t.Errorf("record %s: %s %v", n, r.Target.Digest, r.Labels)
				}
			}
			st := k.Status()[0]
			if !st.Present || !st.Pinned || st.Source != testName || st.Repairs != 1 || !st.LastRepair.Equal(clock.Now()) || st.LastError != "" {
				t.Errorf("status %+v", st)
			}
		})
	}
}

func TestEnsureFallsBack(t *testing.T) {
	f := keepertest.NewFake()
	f.Serve(testName, "primary")
	f.FailPull(testName, errors.New(`failed to resolve reference "`+testName+`": unexpected status from HEAD request to https://registry.test:5000/v2/team/pause/manifests/3.10: 403 Forbidden`))
	fdesc, fcfg := f.Serve(testFallback, "fallback")
	k, _ := newKeeper(f, keeper.Options{Targets: []keeper.Target{sandboxTarget(testName, testFallback, testPublic)}})

	if err := k.Ensure(context.Background(), 0); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	var pulled []string
	for _, c := range f.CallsOf("Pull") {
		pulled = append(pulled, c.Name)
	}
	if !reflect.DeepEqual(pulled, []string{testName, testFallback}) {
		t.Errorf("pulled %v, want the configured name then the first fallback only", pulled)
	}
	wantLabels := with(pinned(), keeper.LabelSource, testFallback)
	puts := putsByName(f)
	c, ok := puts[testName]
	if !ok {
		t.Fatalf("configured name never Put: %+v", f.CallsOf("Put"))
	}
	if c.Target != fdesc.Digest || !reflect.DeepEqual(c.Labels, wantLabels) {
		t.Errorf("Put(%s) -> %s %v, want %s %v", testName, c.Target, c.Labels, fdesc.Digest, wantLabels)
	}
	rec, _ := f.Record(testName)
	if rec.Target.Digest != fdesc.Digest || rec.Labels[keeper.LabelSource] != testFallback || rec.Labels[keeper.LabelPinned] != "pinned" {
		t.Errorf("record %+v", rec)
	}
	if r, ok := f.Record(fcfg); !ok || r.Target.Digest != fdesc.Digest || r.Labels[keeper.LabelPinned] != "pinned" {
		t.Errorf("image ID record %s: %+v %v", fcfg, r, ok)
	}
	for _, n := range f.RecordNames() {
		if strings.HasPrefix(n, testRepo+"@") {
			t.Errorf("record %s claims the fallback's digest exists in the configured repository", n)
		}
	}
	for n := range puts {
		if strings.Contains(n, "@") {
			t.Errorf("Put of a digest reference %s", n)
		}
	}
	st := k.Status()[0]
	if !st.Present || !st.Pinned || st.Source != testFallback || st.Repairs != 1 {
		t.Errorf("status %+v", st)
	}

	// The next ensure sees the fallback image as present, from its source, and pulls nothing.
	f.ResetCalls()
	if err := k.Ensure(context.Background(), 0); err != nil {
		t.Fatalf("second Ensure: %v", err)
	}
	if m := mutations(f); len(m) != 0 {
		t.Errorf("second Ensure changed something: %+v", m)
	}
	if st := k.Status()[0]; st.Source != testFallback || st.Repairs != 1 {
		t.Errorf("status after second Ensure %+v", st)
	}
}

func TestEnsureTaggingFailureTriesNextSource(t *testing.T) {
	f := keepertest.NewFake()
	f.Serve(testName, "primary")
	f.FailPull(testName, errors.New("403 Forbidden"))
	f.Serve(testFallback, "fallback")
	f.Serve(testPublic, "public")
	f.Fail("Put", errors.New("creating image record: unavailable"))
	k, _ := newKeeper(f, keeper.Options{Targets: []keeper.Target{sandboxTarget(testName, testFallback, testPublic)}})
	err := k.Ensure(context.Background(), 0)
	if err == nil {
		t.Fatal("Ensure succeeded although no fallback could be tagged")
	}
	for _, want := range []string{testName + ": 403 Forbidden", testFallback + ": tagging as " + testName + ": creating image record: unavailable", testPublic + ": tagging as"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if n := f.Count("Pull", ""); n != 3 {
		t.Errorf("%d pulls, want every source tried", n)
	}

	t.Run("multi-line tagging error", func(t *testing.T) {
		f.Fail("Put", errors.New("creating image record "+testName+": rpc error: code = Unknown desc = metadata:\n\tdatabase is locked"))
		err := k.Ensure(context.Background(), 0)
		if err == nil {
			t.Fatal("Ensure succeeded")
		}
		if strings.Contains(err.Error(), "\n") {
			t.Fatalf("regression: keeper.go:235 (repair) formats a tagging failure with %%v instead of oneLine(err), so the "+
				"\"every source failed\" error is no longer one line: %q", err)
		}
	})
}

func TestEnsureEverySourceFails(t *testing.T) {
	errs := map[string]error{
		testName:     errors.New(`failed to resolve reference "` + testName + `": unexpected status from HEAD request to https://registry.test:5000/v2/team/pause/manifests/3.10: 403 Forbidden`),
		testFallback: errors.New("failed to do request: Head \"https://registry.k8s.io/v2/pause/manifests/3.10\":\n\tdial tcp: lookup registry.k8s.io on 127.0.0.53:53:\n\tno such host"),
		testPublic:   errors.New("pulling from host public.ecr.aws failed with status code [manifests 3.10]: 429 Too Many Requests"),
	}
	tests := []struct {
		name       string
		localCopy  bool
		wantSuffix string
	}{
		{name: "no local copies"},
		{name: "local copies but none saved", localCopy: true, wantSuffix: "; local copy: no local copy saved"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := keepertest.NewFake()
			for src, err := range errs {
				f.Serve(src, src)
				f.FailPull(src, err)
			}
			opts := keeper.Options{Targets: []keeper.Target{sandboxTarget(testName, testFallback, testPublic)}}
			if tt.localCopy {
				opts.LocalCopies = &keeper.LocalCopies{Dir: t.TempDir()}
			}
			log, hook := testutil.CaptureLogger()
			k, _ := newKeeper(f, opts)
			err := k.Ensure(testutil.Context(log), 0)
			if err == nil {
				t.Fatal("Ensure succeeded")
			}
			msg := err.Error()
			if strings.ContainsAny(msg, "\n\r\t") {
				t.Errorf("error is not one line: %q", msg)
			}
			want := "sandbox image " + testName + " is missing and every source failed: " +
				testName + `: failed to resolve reference "` + testName + `": unexpected status from HEAD request to https://registry.test:5000/v2/team/pause/manifests/3.10: 403 Forbidden; ` +
				testFallback + `: failed to do request: Head "https://registry.k8s.io/v2/pause/manifests/3.10": dial tcp: lookup registry.k8s.io on 127.0.0.53:53: no such host; ` +
				testPublic + ": pulling from host public.ecr.aws failed with status code [manifests 3.10]: 429 Too Many Requests" + tt.wantSuffix
			if msg != want {
				t.Errorf("error\n got %s\nwant %s", msg, want)
			}
			if n := f.Count("Pull", ""); n != 3 {
				t.Errorf("%d pulls, want one per source", n)
			}
			if n := f.Count("Import", ""); n != 0 {
				t.Errorf("%d imports", n)
			}
			if len(f.RecordNames()) != 0 {
				t.Errorf("records created: %v", f.RecordNames())
			}
			st := k.Status()[0]
			if st.Present || st.Pinned || st.LastError != msg || st.Repairs != 0 {
				t.Errorf("status %+v", st)
			}
			for _, l := range logLines(hook) {
				if strings.ContainsAny(l, "\n\r") {
					t.Errorf("multi-line log line %q", l)
				}
			}
			if n := len(hook.AllEntries()); n < 3 {
				t.Errorf("%d log entries, want a warning per failed source", n)
			}
		})
	}
}

func TestEnsureContainerdErrors(t *testing.T) {
	desc, cfg := keepertest.Image("present")
	tests := []struct {
		name   string
		op     string
		labels map[string]string
		state  keepertest.Content
		want   []string
	}{
		{name: "Get fails", op: "Get", labels: pinned(), state: keepertest.Content{Complete: true, Unpacked: true, Config: cfg}, want: []string{"sandbox image " + testName, "connection refused"}},
		{name: "Usable fails", op: "Usable", labels: pinned(), state: keepertest.Content{Complete: true, Unpacked: true, Config: cfg}, want: []string{"sandbox image " + testName, "connection refused"}},
		{name: "Unpack fails", op: "Unpack", labels: pinned(), state: keepertest.Content{Complete: true, Config: cfg}, want: []string{"sandbox image " + testName, "connection refused"}},
		{name: "SetLabels fails", op: "SetLabels", labels: nil, state: keepertest.Content{Complete: true, Unpacked: true, Config: cfg}, want: []string{"sandbox image " + testName + ": pinning", "connection refused"}},
		{name: "Put of a reference fails", op: "Put", labels: pinned(), state: keepertest.Content{Complete: true, Unpacked: true, Config: cfg}, want: []string{"sandbox image " + testName, "connection refused"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := keepertest.NewFake()
			f.Serve(testName, "present")
			f.SetRecord(testName, desc, tt.labels)
			f.SetContent(desc.Digest, tt.state)
			f.Fail(tt.op, errors.New("connection refused"))
			k, _ := newKeeper(f, keeper.Options{Targets: []keeper.Target{sandboxTarget()}})
			err := k.Ensure(context.Background(), 0)
			if err == nil {
				t.Fatal("Ensure succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if n := f.Count("Pull", ""); n != 0 {
				t.Errorf("%d pulls after a containerd error", n)
			}
			if st := k.Status()[0]; st.Present || st.LastError != err.Error() {
				t.Errorf("status %+v", st)
			}
		})
	}
}

func TestEnsureAllJoinsFailures(t *testing.T) {
	f := keepertest.NewFake()
	f.Serve(testName, "a")
	f.FailPull(testName, errors.New("403 Forbidden"))
	f.Serve("docker.io/library/busybox:1.36", "b")
	k, _ := newKeeper(f, keeper.Options{Targets: []keeper.Target{
		sandboxTarget(),
		{Name: "docker.io/library/busybox:1.36", Role: "pinned image", Sources: []string{"docker.io/library/busybox:1.36"}},
	}})
	err := k.EnsureAll(context.Background())
	if err == nil || !strings.Contains(err.Error(), testName) || strings.Contains(err.Error(), "busybox") {
		t.Fatalf("EnsureAll: %v", err)
	}
	st := k.Status()
	if st[0].Present || !st[1].Present || st[1].Role != "pinned image" {
		t.Errorf("status %+v", st)
	}
}

func TestInspectAllRepairsNothing(t *testing.T) {
	desc, cfg := keepertest.Image("x")
	targets := []keeper.Target{
		{Name: "example.test/missing:1", Role: "pinned image", Sources: []string{"example.test/missing:1"}},
		{Name: "example.test/incomplete:1", Role: "pinned image", Sources: []string{"example.test/incomplete:1"}},
		{Name: "example.test/unpinned:1", Role: "pinned image", Sources: []string{"example.test/unpinned:1"}},
		{Name: "example.test/fine:1", Role: "pinned image", Sources: []string{"example.test/fine:1"}},
	}
	f := keepertest.NewFake()
	other, _ := keepertest.Image("incomplete")
	f.SetRecord("example.test/incomplete:1", other, pinned())
	f.SetRecord("example.test/unpinned:1", desc, nil)
	f.SetRecord("example.test/fine:1", desc, with(pinned(), keeper.LabelSource, "mirror.test/fine:1"))
	f.SetContent(desc.Digest, keepertest.Content{Complete: true, Unpacked: true, Config: cfg})
	k, _ := newKeeper(f, keeper.Options{Targets: targets})
	k.InspectAll(context.Background())
	if m := mutations(f); len(m) != 0 {
		t.Errorf("InspectAll changed something: %+v", m)
	}
	st := k.Status()
	want := []struct {
		present, pinned bool
		errPart, source string
	}{
		{errPart: "is missing"},
		{errPart: "is incomplete"},
		{present: true, errPart: "not pinned"},
		{present: true, pinned: true, source: "mirror.test/fine:1"},
	}
	for i, w := range want {
		if st[i].Present != w.present || st[i].Pinned != w.pinned || st[i].Source != w.source ||
			(w.errPart == "") != (st[i].LastError == "") || !strings.Contains(st[i].LastError, w.errPart) {
			t.Errorf("target %d: status %+v, want %+v", i, st[i], w)
		}
	}
}

func TestEnsureObserve(t *testing.T) {
	type observation struct {
		image, outcome, source string
		took                   time.Duration
	}
	tests := []struct {
		name  string
		setup func(f *keepertest.Fake)
		want  []observation
	}{
		{
			name: "present",
			setup: func(f *keepertest.Fake) {
				desc, cfg := keepertest.Image("primary")
				f.SetRecord(testName, desc, pinned())
				f.SetContent(desc.Digest, keepertest.Content{Complete: true, Unpacked: true, Config: cfg})
			},
			want: []observation{{image: testName, outcome: "ok"}},
		},
		{
			name:  "pulled",
			setup: func(*keepertest.Fake) {},
			want:  []observation{{image: testName, outcome: "repaired", source: testName, took: time.Second}},
		},
		{
			name:  "pulled from a fallback",
			setup: func(f *keepertest.Fake) { f.FailPull(testName, errors.New("403 Forbidden")) },
			want:  []observation{{image: testName, outcome: "repaired", source: testFallback, took: 2 * time.Second}},
		},
		{
			name: "every source fails",
			setup: func(f *keepertest.Fake) {
				f.FailPull(testName, errors.New("403 Forbidden"))
				f.FailPull(testFallback, errors.New("404 Not Found"))
			},
			want: []observation{{image: testName, outcome: "failed"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := keepertest.NewFake()
			f.Serve(testName, "primary")
			f.Serve(testFallback, "fallback")
			tt.setup(f)
			var got []observation
			clock := newClock()
			f.OnPull(func(context.Context, string) { clock.Advance(time.Second) })
			k, _ := newKeeper(f, keeper.Options{
				Targets: []keeper.Target{sandboxTarget(testName, testFallback)},
				Now:     clock.Now,
				Observe: func(image, outcome, source string, took time.Duration) {
					got = append(got, observation{image, outcome, source, took})
				},
			})
			// took is measured on the keeper's clock: a second per pull attempt.
			_ = k.Ensure(context.Background(), 0)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("observed %+v, want %+v", got, tt.want)
			}
		})
	}
}
