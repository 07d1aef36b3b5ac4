// Package metrics exposes sandbox-guard's Prometheus metrics and its health endpoints.
//
// Everything lives in one Metrics value with a private registry: nothing is registered
// globally and the package has no mutable state of its own. Every method is safe on a nil
// *Metrics (a no-op), so callers keep a nil pointer when metrics are off.
//
// Label values come from the configuration (check names, image names, registry hosts), so the
// number of series is bounded by it; as a second line of defence each labelled metric accepts at
// most maxSeries distinct label sets and counts the rest under the value "_other" (configured
// names never start with '_').
package metrics

import (
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const (
	namespace = "sandbox_guard"

	// maxSeries bounds the label sets of each labelled metric that accumulates over the
	// process's life (counters and histograms); anything beyond is counted under overflow.
	maxSeries = 256
	// overflow is the label value used once maxSeries is reached, and for unknown verdicts.
	overflow = "_other"
	// maxLabelLen bounds one label value.
	maxLabelLen = 256
)

// Verdicts the hook reports (gate.Verdict's String values).
const (
	VerdictAdmit       = "admit"
	VerdictReject      = "reject"
	VerdictWouldReject = "would-reject"
)

// numVerdicts counts the verdict slots: the three verdicts and overflow.
const numVerdicts = 4

// verdictLabel is the label value of verdict slot i (the inverse of verdictIndex).
func verdictLabel(i int) string {
	switch i {
	case 0:
		return VerdictAdmit
	case 1:
		return VerdictReject
	case 2:
		return VerdictWouldReject
	}
	return overflow
}

func verdictIndex(v string) int {
	switch v {
	case VerdictAdmit:
		return 0
	case VerdictReject:
		return 1
	case VerdictWouldReject:
		return 2
	}
	return 3
}

// HookBuckets returns the hook-duration histogram's upper bounds: 1µs to 50ms in 1-2.5-5
// steps. The hook is one atomic load and a pure decision, normally a few microseconds.
func HookBuckets() []float64 {
	return []float64{
		1e-6, 2.5e-6, 5e-6,
		1e-5, 2.5e-5, 5e-5,
		1e-4, 2.5e-4, 5e-4,
		1e-3, 2.5e-3, 5e-3,
		1e-2, 2.5e-2, 5e-2,
	}
}

// PullBuckets returns the image-pull histogram's upper bounds: 100ms to about 7 minutes.
func PullBuckets() []float64 { return prometheus.ExponentialBuckets(0.1, 2, 13) }

// Metrics holds every collector in a private registry. The zero value is not usable; use New.
type Metrics struct {
	reg     *prometheus.Registry
	handler http.Handler

	// hook (hot path: no map writes, no allocations once a check name has been seen)
	podsVec    *prometheus.CounterVec
	pods       [numVerdicts]prometheus.Counter // nil for overflow
	rejections [numVerdicts]counterCache
	hook       prometheus.Histogram

	// checks and images: read from their owners at scrape time
	checks atomic.Pointer[func() ([]Check, bool)]
	images atomic.Pointer[func() []Image]
	// bridgeHosts: the credential bridge's hosts, read at scrape time
	bridgeHosts atomic.Pointer[func() []BridgeHost]

	ensures      *prometheus.CounterVec
	ensureLimit  labelLimit
	pulls        *prometheus.HistogramVec
	pullLimit    labelLimit
	bridge       *prometheus.CounterVec
	bridgeLimit  labelLimit
	nriConnected prometheus.Gauge
	standingBy   prometheus.Gauge
	panics       *prometheus.CounterVec

	// read at scrape time
	ecrStats    atomic.Pointer[func() (fetches, errors uint64)]
	nriConnects atomic.Pointer[func() int64]
	logDrops    atomic.Pointer[func() uint64]
	version     atomic.Pointer[string]
}

// Help texts, shared with the tests.
const (
	helpPods             = "Pod sandboxes the RunPodSandbox hook decided, by verdict (admit, reject, would-reject)."
	helpRejections       = "Pod sandboxes rejected (verdict reject) or admitted only because of warn mode (verdict would-reject), per failing check."
	helpHook             = "Time the RunPodSandbox hook took to decide."
	helpCheckOK          = "1 when the check passed at its last run, else 0."
	helpCheckTook        = "How long the check's last run took."
	helpReady            = "1 when every gating check passes, else 0."
	helpImagePresent     = "1 when the image is present, complete and unpacked under the name CRI looks up, else 0."
	helpImagePinned      = "1 when the image is pinned against kubelet's image garbage collection, else 0."
	helpImageRepair      = "When the image keeper last repaired the image (pulled or restored it), as a Unix time; absent if never."
	helpImageRepairs     = "How often the image keeper has repaired the image since it was built."
	helpImageCopyFailing = "1 when the image keeper could not keep the image's local copy at its last ensure (a full or read-only state directory), else 0."
	helpEnsures          = "Image ensure attempts by outcome and the source the image came from."
	helpPulls            = "Time an image pull (including fallbacks and restoring the local copy) took."
	helpECRFetches       = "ECR GetAuthorizationToken calls made (each may include SDK retries)."
	helpECRErrors        = "ECR token fetches that failed."
	helpNRIConnected     = "1 while the plugin is registered with containerd through NRI, else 0."
	helpStandingBy       = "1 while this external plugin stands by because a pre-registered sandbox-guard holds its stand-by lock (containerd runs that one and it gates), else 0."
	helpNRIConnects      = "Successful NRI registrations with containerd (reconnects are this minus 1)."
	helpBridge           = "Registry credentials written for containerd by the credential bridge, by host and outcome."
	helpBridgeEffective  = "1 when containerd's own pulls from the host get the ECR token through the credential bridge: containerd reads the hosts directory, and the host's entry is written, without error, with a token that has not expired. 0 means they do not (private ECR answers 401): run `sandbox-guard check` on the node and read its credential-bridge row. Absent while ecr.credentialBridge is off."
	helpBuildInfo        = "Always 1; the version label names the running build."
	helpPanics           = "Panics recovered, by where (hook, or the worker that was restarted)."
	helpLogDrops         = "Log lines lost: dropped because the log output did not keep up (a stalled stderr pipe or log file; the hook never waits for it), or refused by it (a full disk)."
)

func name(n string) string { return namespace + "_" + n }

// New returns metrics with every collector registered in a private registry, together with the
// Go runtime and process collectors.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	pods := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name("pods_total"), Help: helpPods}, []string{"verdict"})
	m.podsVec = pods
	rejections := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name("pod_rejections_total"), Help: helpRejections}, []string{"check", "verdict"})
	for i := range numVerdicts {
		v := verdictLabel(i)
		if v != overflow {
			m.pods[i] = pods.WithLabelValues(v) // exported as 0 from the start
		}
		m.rejections[i].init(rejections, v)
	}
	m.hook = prometheus.NewHistogram(prometheus.HistogramOpts{Name: name("hook_duration_seconds"), Help: helpHook, Buckets: HookBuckets()})

	m.ensures = prometheus.NewCounterVec(prometheus.CounterOpts{Name: name("image_ensures_total"), Help: helpEnsures}, []string{"image", "outcome", "source"})
	m.pulls = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name("image_pull_duration_seconds"), Help: helpPulls, Buckets: PullBuckets()}, []string{"image"})
	m.bridge = prometheus.NewCounterVec(prometheus.CounterOpts{Name: name("bridge_writes_total"), Help: helpBridge}, []string{"host", "outcome"})
	m.nriConnected = prometheus.NewGauge(prometheus.GaugeOpts{Name: name("nri_connected"), Help: helpNRIConnected})
	m.standingBy = prometheus.NewGauge(prometheus.GaugeOpts{Name: name("standing_by"), Help: helpStandingBy})
	m.panics = prometheus.NewCounterVec(prometheus.CounterOpts{Name: name("panics_total"), Help: helpPanics}, []string{"where"})

	m.reg.MustRegister(
		pods, rejections, m.hook, m.ensures, m.pulls, m.bridge, m.nriConnected, m.standingBy, m.panics,
		newSnapshotCollector(m), newImagesCollector(m), newBridgeCollector(m), newScrapeCollector(m),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	m.handler = promhttp.InstrumentMetricHandler(m.reg, promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError, // one broken collector must not hide the rest
		Registry:            m.reg,
		MaxRequestsInFlight: 4,
	}))
	return m
}

// Handler serves the metrics in the Prometheus exposition formats. On a nil *Metrics it
// answers 404.
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return http.NotFoundHandler()
	}
	return m.handler
}

// Registry returns the private registry (e.g. to add a collector or to gather in tests); nil on
// a nil *Metrics.
func (m *Metrics) Registry() *prometheus.Registry {
	if m == nil {
		return nil
	}
	return m.reg
}

// SetBuildInfo sets sandbox_guard_build_info{version}; an empty version is reported as
// "unknown". The metric is absent until the first call.
func (m *Metrics) SetBuildInfo(version string) {
	if m == nil {
		return
	}
	if version == "" {
		version = "unknown"
	}
	v := cleanLabel(version)
	m.version.Store(&v)
}

// ObservePod records one RunPodSandbox decision: its verdict (admit, reject or would-reject;
// anything else is counted as "_other"), the gating checks that failed, and how long the hook
// took. It is called on every pod and does not allocate once each check name has been seen.
func (m *Metrics) ObservePod(verdict string, failingChecks []string, took time.Duration) {
	if m == nil {
		return
	}
	i := verdictIndex(verdict)
	if c := m.pods[i]; c != nil {
		c.Inc()
	} else {
		m.podsVec.WithLabelValues(overflow).Inc() // created on first use: absent unless it happens
	}
	for _, check := range failingChecks {
		m.rejections[i].get(check).Inc()
	}
	m.hook.Observe(took.Seconds())
}

// Check is one readiness check's latest result.
type Check struct {
	Name, Kind string
	OK         bool
	Took       time.Duration
}

// Image is what the image keeper last found about one image. Error texts are never exported.
type Image struct {
	Name, Role      string
	Present, Pinned bool
	LastRepair      time.Time // zero: never repaired
	Repairs         int
	CopyFailing     bool // the local copy could not be kept (a full or read-only state directory)
}

// WatchChecks makes every scrape read the checks' latest results from f:
// sandbox_guard_check_ok{check,kind}, sandbox_guard_check_duration_seconds{check} and
// sandbox_guard_ready. Checks f no longer returns disappear; nil (or f returning no checks and
// not ready) reports not ready. f must be cheap and safe for concurrent use.
func (m *Metrics) WatchChecks(f func() (checks []Check, ready bool)) {
	if m == nil {
		return
	}
	if f == nil {
		m.checks.Store(nil)
		return
	}
	m.checks.Store(&f)
}

// WatchImages makes every scrape read the image keeper's statuses from f:
// sandbox_guard_image_present, _image_pinned, _image_last_repair_timestamp_seconds,
// _image_repairs and _image_local_copy_failing, each labelled {image,role}. f must be cheap and safe for concurrent use.
func (m *Metrics) WatchImages(f func() []Image) {
	if m == nil {
		return
	}
	if f == nil {
		m.images.Store(nil)
		return
	}
	m.images.Store(&f)
}

// BridgeHost is whether the credential bridge works for one registry host: containerd's own
// pulls from it get the ECR token.
type BridgeHost struct {
	Host      string
	Effective bool
}

// WatchBridge makes every scrape read sandbox_guard_credential_bridge_effective{host} from f.
// f returns no host while the bridge is off, so there is no series then. As in
// ObserveBridgeWrite, anything before an '@' in a host is dropped; a host listed twice is
// effective only if both say so. f must be cheap and safe for concurrent use.
func (m *Metrics) WatchBridge(f func() []BridgeHost) {
	if m == nil {
		return
	}
	if f == nil {
		m.bridgeHosts.Store(nil)
		return
	}
	m.bridgeHosts.Store(&f)
}

// ObserveEnsure counts one attempt to make an image present
// (sandbox_guard_image_ensures_total{image,outcome,source}) and, when a pull happened
// (pullTook > 0), records its duration in sandbox_guard_image_pull_duration_seconds{image}.
func (m *Metrics) ObserveEnsure(image, outcome, source string, pullTook time.Duration) {
	if m == nil {
		return
	}
	lv := m.ensureLimit.admit(cleanLabel(image), cleanLabel(outcome), cleanLabel(source))
	m.ensures.WithLabelValues(lv...).Inc()
	if pullTook > 0 {
		m.pulls.WithLabelValues(m.pullLimit.admit(cleanLabel(image))...).Observe(pullTook.Seconds())
	}
}

// WatchECR makes every scrape read the ECR token provider's counters
// (sandbox_guard_ecr_token_fetches_total and _errors_total), e.g.
// func() (uint64, uint64) { s := p.Stats(); return s.Fetches, s.Errors }. A later call replaces
// the source; nil removes the metrics. stats must be cheap and safe for concurrent use.
func (m *Metrics) WatchECR(stats func() (fetches, errors uint64)) {
	if m == nil {
		return
	}
	if stats == nil {
		m.ecrStats.Store(nil)
		return
	}
	m.ecrStats.Store(&stats)
}

// ObservePanic counts one recovered panic (sandbox_guard_panics_total{where}); where is a fixed
// name (hook, checks, images, bridge).
func (m *Metrics) ObservePanic(where string) {
	if m == nil {
		return
	}
	m.panics.WithLabelValues(cleanLabel(where)).Inc()
}

// WatchLogDrops makes every scrape read sandbox_guard_log_lines_dropped_total from f (e.g.
// logging.Async.Dropped). nil removes the metric.
func (m *Metrics) WatchLogDrops(f func() uint64) {
	if m == nil {
		return
	}
	if f == nil {
		m.logDrops.Store(nil)
		return
	}
	m.logDrops.Store(&f)
}

// SetNRIConnected sets sandbox_guard_nri_connected.
func (m *Metrics) SetNRIConnected(connected bool) {
	if m == nil {
		return
	}
	m.nriConnected.Set(b2f(connected))
}

// SetStandingBy sets sandbox_guard_standing_by.
func (m *Metrics) SetStandingBy(standingBy bool) {
	if m == nil {
		return
	}
	m.standingBy.Set(b2f(standingBy))
}

// WatchNRIConnects makes every scrape read sandbox_guard_nri_connects_total from f (e.g.
// nriplugin.Plugin.Connects). A later call replaces the source; nil removes the metric.
func (m *Metrics) WatchNRIConnects(f func() int64) {
	if m == nil {
		return
	}
	if f == nil {
		m.nriConnects.Store(nil)
		return
	}
	m.nriConnects.Store(&f)
}

// ObserveBridgeWrite counts one credential write by the credential bridge
// (sandbox_guard_bridge_writes_total{host,outcome}). host is a registry host name; anything
// before an '@' (user information) is dropped, so credentials never become a label.
func (m *Metrics) ObserveBridgeWrite(host, outcome string) {
	if m == nil {
		return
	}
	m.bridge.WithLabelValues(m.bridgeLimit.admit(hostLabel(host), cleanLabel(outcome))...).Inc()
}

// hostLabel is a registry host as a label value: anything before an '@' (user information) is
// dropped, so credentials never become a label.
func hostLabel(host string) string {
	if i := strings.LastIndexByte(host, '@'); i >= 0 {
		host = host[i+1:]
	}
	return cleanLabel(host)
}

// counterCache maps a check name to its rejection counter for one verdict. Reads are one atomic
// load and a map lookup; a new name copies the map (rare: names come from the configuration).
type counterCache struct {
	vec     *prometheus.CounterVec
	verdict string
	m       atomic.Pointer[map[string]prometheus.Counter]
	mu      sync.Mutex
}

func (c *counterCache) init(vec *prometheus.CounterVec, verdict string) {
	c.vec, c.verdict = vec, verdict
	empty := map[string]prometheus.Counter{}
	c.m.Store(&empty)
}

func (c *counterCache) get(check string) prometheus.Counter {
	if ctr, ok := (*c.m.Load())[check]; ok {
		return ctr
	}
	return c.add(check)
}

func (c *counterCache) add(check string) prometheus.Counter {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := *c.m.Load()
	if ctr, ok := old[check]; ok {
		return ctr
	}
	key, label := strings.Clone(check), cleanLabel(check)
	if len(old) >= maxSeries {
		if ctr, ok := old[overflow]; ok {
			return ctr // not cached under check: the map stays bounded
		}
		key, label = overflow, overflow
	}
	ctr := c.vec.WithLabelValues(label, c.verdict)
	next := make(map[string]prometheus.Counter, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[key] = ctr
	c.m.Store(&next)
	return ctr
}

// labelLimit admits at most maxSeries distinct label sets; later new ones become overflow.
type labelLimit struct {
	mu   sync.Mutex
	seen map[string]struct{}
}

func (l *labelLimit) admit(values ...string) []string {
	key := strings.Join(values, "\xff")
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.seen[key]; ok {
		return values
	}
	if len(l.seen) >= maxSeries {
		for i := range values {
			values[i] = overflow
		}
		return values
	}
	if l.seen == nil {
		l.seen = map[string]struct{}{}
	}
	l.seen[key] = struct{}{}
	return values
}

// cleanLabel makes v a valid, bounded label value (invalid UTF-8 would make the client panic).
func cleanLabel(v string) string {
	if len(v) > maxLabelLen {
		v = v[:maxLabelLen]
	}
	return strings.ToValidUTF8(v, "\uFFFD")
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
