package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// send emits a constant metric, or an invalid metric (reported by the scrape, not a panic).
func send(ch chan<- prometheus.Metric, d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) {
	m, err := prometheus.NewConstMetric(d, t, v, labels...)
	if err != nil {
		m = prometheus.NewInvalidMetric(d, err)
	}
	ch <- m
}

// snapshotCollector turns the checks' latest results into metrics at scrape time.
type snapshotCollector struct {
	m                         *Metrics
	checkOK, checkTook, ready *prometheus.Desc
}

func newSnapshotCollector(m *Metrics) *snapshotCollector {
	return &snapshotCollector{
		m:         m,
		checkOK:   prometheus.NewDesc(name("check_ok"), helpCheckOK, []string{"check", "kind"}, nil),
		checkTook: prometheus.NewDesc(name("check_duration_seconds"), helpCheckTook, []string{"check"}, nil),
		ready:     prometheus.NewDesc(name("ready"), helpReady, nil, nil),
	}
}

func (c *snapshotCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.checkOK
	ch <- c.checkTook
	ch <- c.ready
}

func (c *snapshotCollector) Collect(ch chan<- prometheus.Metric) {
	f := c.m.checks.Load()
	if f == nil {
		send(ch, c.ready, prometheus.GaugeValue, 0)
		return
	}
	results, ready := (*f)()
	seen := make(map[string]bool, len(results))
	for _, r := range results {
		if seen[r.Name] { // names are unique in a valid configuration; never emit duplicates
			continue
		}
		seen[r.Name] = true
		check := cleanLabel(r.Name)
		send(ch, c.checkOK, prometheus.GaugeValue, b2f(r.OK), check, cleanLabel(r.Kind))
		send(ch, c.checkTook, prometheus.GaugeValue, r.Took.Seconds(), check)
	}
	send(ch, c.ready, prometheus.GaugeValue, b2f(ready))
}

// imagesCollector turns the image keeper's latest statuses into metrics at scrape time.
type imagesCollector struct {
	m                                *Metrics
	present, pinned, repair, repairs *prometheus.Desc
	copyFailing                      *prometheus.Desc
}

func newImagesCollector(m *Metrics) *imagesCollector {
	labels := []string{"image", "role"}
	return &imagesCollector{
		m:           m,
		present:     prometheus.NewDesc(name("image_present"), helpImagePresent, labels, nil),
		pinned:      prometheus.NewDesc(name("image_pinned"), helpImagePinned, labels, nil),
		repair:      prometheus.NewDesc(name("image_last_repair_timestamp_seconds"), helpImageRepair, labels, nil),
		repairs:     prometheus.NewDesc(name("image_repairs"), helpImageRepairs, labels, nil),
		copyFailing: prometheus.NewDesc(name("image_local_copy_failing"), helpImageCopyFailing, labels, nil),
	}
}

func (c *imagesCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.present
	ch <- c.pinned
	ch <- c.repair
	ch <- c.repairs
	ch <- c.copyFailing
}

func (c *imagesCollector) Collect(ch chan<- prometheus.Metric) {
	f := c.m.images.Load()
	if f == nil {
		return
	}
	images := (*f)()
	seen := make(map[string]bool, len(images))
	for _, st := range images {
		if seen[st.Name] {
			continue
		}
		seen[st.Name] = true
		image, role := cleanLabel(st.Name), cleanLabel(st.Role)
		send(ch, c.present, prometheus.GaugeValue, b2f(st.Present), image, role)
		send(ch, c.pinned, prometheus.GaugeValue, b2f(st.Pinned), image, role)
		if !st.LastRepair.IsZero() {
			send(ch, c.repair, prometheus.GaugeValue, float64(st.LastRepair.UnixNano())/1e9, image, role)
		}
		send(ch, c.repairs, prometheus.GaugeValue, float64(st.Repairs), image, role)
		send(ch, c.copyFailing, prometheus.GaugeValue, b2f(st.CopyFailing), image, role)
	}
}

// bridgeCollector turns the credential bridge's hosts into metrics at scrape time.
type bridgeCollector struct {
	m         *Metrics
	effective *prometheus.Desc
}

func newBridgeCollector(m *Metrics) *bridgeCollector {
	return &bridgeCollector{
		m:         m,
		effective: prometheus.NewDesc(name("credential_bridge_effective"), helpBridgeEffective, []string{"host"}, nil),
	}
}

func (c *bridgeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.effective }

// Collect emits one series per host, at most maxSeries; the hosts beyond share the overflow
// series, which is 1 only if all of them are effective (an alert on 0 still fires).
func (c *bridgeCollector) Collect(ch chan<- prometheus.Metric) {
	f := c.m.bridgeHosts.Load()
	if f == nil {
		return
	}
	hosts := (*f)()
	var order []string
	effective := make(map[string]bool, len(hosts))
	for _, h := range hosts {
		host := hostLabel(h.Host)
		if _, seen := effective[host]; !seen && len(order) >= maxSeries {
			host = overflow
		}
		was, seen := effective[host]
		if !seen {
			order = append(order, host)
			was = true
		}
		effective[host] = was && h.Effective
	}
	for _, host := range order {
		send(ch, c.effective, prometheus.GaugeValue, b2f(effective[host]), host)
	}
}

// scrapeCollector reads counters owned by other packages, and the build information, at
// scrape time.
type scrapeCollector struct {
	m                                             *Metrics
	ecrFetches, ecrErrors, nriConnects, buildInfo *prometheus.Desc
	logDrops                                      *prometheus.Desc
}

func newScrapeCollector(m *Metrics) *scrapeCollector {
	return &scrapeCollector{
		m:           m,
		ecrFetches:  prometheus.NewDesc(name("ecr_token_fetches_total"), helpECRFetches, nil, nil),
		ecrErrors:   prometheus.NewDesc(name("ecr_token_errors_total"), helpECRErrors, nil, nil),
		nriConnects: prometheus.NewDesc(name("nri_connects_total"), helpNRIConnects, nil, nil),
		buildInfo:   prometheus.NewDesc(name("build_info"), helpBuildInfo, []string{"version"}, nil),
		logDrops:    prometheus.NewDesc(name("log_lines_dropped_total"), helpLogDrops, nil, nil),
	}
}

func (c *scrapeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.ecrFetches
	ch <- c.ecrErrors
	ch <- c.nriConnects
	ch <- c.buildInfo
	ch <- c.logDrops
}

func (c *scrapeCollector) Collect(ch chan<- prometheus.Metric) {
	if f := c.m.ecrStats.Load(); f != nil {
		fetches, errs := (*f)()
		send(ch, c.ecrFetches, prometheus.CounterValue, float64(fetches))
		send(ch, c.ecrErrors, prometheus.CounterValue, float64(errs))
	}
	if f := c.m.nriConnects.Load(); f != nil {
		send(ch, c.nriConnects, prometheus.CounterValue, float64((*f)()))
	}
	if f := c.m.logDrops.Load(); f != nil {
		send(ch, c.logDrops, prometheus.CounterValue, float64((*f)()))
	}
	if v := c.m.version.Load(); v != nil {
		send(ch, c.buildInfo, prometheus.GaugeValue, 1, *v)
	}
}
