package aggregator

import (
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metric names, shared with dashboards and alert rules. Every metric the
// aggregator exports is defined in this file.
//
// Label values: check is one of dns, tcp, http, service, netpol-allow,
// netpol-deny; phase one of resolve_system, resolve_direct, resolve_short,
// dns, connect, first_byte, total; pair "src->dst" over linux and windows
// (the delta metrics never carry the baseline linux->linux); quantile "0.5",
// "0.9", "0.99".
//
// The computed metrics are recomputed every compute interval over the delta
// window (xosprobe_aggregator_delta_window_seconds) and served from a cache,
// so a scrape costs nothing. With two replicas both export the same values;
// aggregate with max by (...) in rules and dashboards.
const (
	// CrossOSDelta is q(pair) - q(linux->linux), seconds.
	// Labels: check, phase, pair, quantile.
	CrossOSDelta = "xosprobe_cross_os_delta_seconds"
	// CrossOSDeltaSamples is the pair's sample count behind the delta.
	// Labels: check, phase, pair.
	CrossOSDeltaSamples = "xosprobe_cross_os_delta_samples"
	// CrossOSBaselineSamples is linux->linux's sample count, the other side
	// of every delta of that check and phase. Labels: check, phase.
	CrossOSBaselineSamples = "xosprobe_cross_os_baseline_samples"
	// CrossOSDeltaSignificant is 1 when the delta's 99% interval excludes 0
	// and both sides have enough samples. Labels: check, phase, pair, quantile.
	CrossOSDeltaSignificant = "xosprobe_cross_os_delta_significant"
	// CrossOSDeltaInsufficient is 1 when a side has too few samples for the
	// quantile (p50 20, p90 50, p99 500): the delta is exported, but flagged.
	CrossOSDeltaInsufficient = "xosprobe_cross_os_delta_insufficient"
	// CrossOSDeltaCILow and CrossOSDeltaCIHigh bound the delta's confidence
	// interval. A bound that small samples cannot give (±Inf) is omitted,
	// not clamped: a missing series reads as "unbounded", a made-up number
	// would not.
	CrossOSDeltaCILow  = "xosprobe_cross_os_delta_ci_low_seconds"
	CrossOSDeltaCIHigh = "xosprobe_cross_os_delta_ci_high_seconds"
	// PairQuantile is each pair's own quantile, all four pairs.
	// Labels: check, phase, pair, quantile.
	PairQuantile = "xosprobe_pair_quantile_seconds"
	// PairSamples is each pair's sample count. Labels: check, phase, pair.
	PairSamples = "xosprobe_pair_samples"

	// CrossOSRegression is the delta over the current (delta) window minus
	// the same delta over the trailing baseline window before it.
	// Labels: check, phase, pair, quantile.
	CrossOSRegression = "xosprobe_cross_os_regression_seconds"
	// CrossOSRegressionBaseline is the delta over the trailing baseline window.
	CrossOSRegressionBaseline = "xosprobe_cross_os_regression_baseline_delta_seconds"
	// CrossOSRegressed is 1 when the increase is significant and at least the
	// minimum regression; the metric the alert rules use.
	CrossOSRegressed = "xosprobe_cross_os_regressed"
	// CrossOSRegressionInsufficient is 1 when either window has too few samples to judge.
	CrossOSRegressionInsufficient = "xosprobe_cross_os_regression_insufficient"

	// PairResults counts results by outcome. Labels: check, pair (all four),
	// result (success or the failure reason; "other" for unknown ones).
	PairResults = "xosprobe_pair_results_total"

	// Aggregator health.
	Batches            = "xosprobe_aggregator_batches_total"              // source (agent, peer), result
	ResultsIngested    = "xosprobe_aggregator_results_total"              // source
	ResultsSkipped     = "xosprobe_aggregator_results_skipped_total"      // reason
	PhasesSkipped      = "xosprobe_aggregator_phases_skipped_total"       // reason
	IngestDuration     = "xosprobe_aggregator_ingest_duration_seconds"    // source
	DedupIDs           = "xosprobe_aggregator_dedup_ids"                  //
	DedupHorizon       = "xosprobe_aggregator_dedup_horizon_seconds"      //
	StoreSeries        = "xosprobe_aggregator_store_series"               //
	StoreBuckets       = "xosprobe_aggregator_store_buckets"              //
	MatrixCells        = "xosprobe_aggregator_matrix_cells"               //
	MatrixCellsDropped = "xosprobe_aggregator_matrix_cells_dropped_total" //
	ComputeDuration    = "xosprobe_aggregator_compute_duration_seconds"   //
	ComputeTimestamp   = "xosprobe_aggregator_last_compute_timestamp_seconds"
	DeltaWindowSeconds = "xosprobe_aggregator_delta_window_seconds"
	ReplicationBatches = "xosprobe_aggregator_replication_batches_total" // result: sent, dropped
	ReplicationErrors  = "xosprobe_aggregator_replication_errors_total"  // failed forward attempts
	ReplicationQueue   = "xosprobe_aggregator_replication_queue_batches" // queued, all peers
	ReplicationPeers   = "xosprobe_aggregator_replication_peers"         //
	Bootstrap          = "xosprobe_aggregator_bootstrap_total"           // result: merged, empty, none, failed
	Ready              = "xosprobe_aggregator_ready"                     //
	AuthCache          = "xosprobe_aggregator_auth_cache_lookups_total"  // result: hit, miss, refused
	BuildInfo          = "xosprobe_aggregator_build_info"                // version
)

// Values of the result label of Batches.
const (
	batchAccepted     = "accepted"
	batchDuplicate    = "duplicate"
	batchRejectedAuth = "rejected_auth"
	batchMalformed    = "malformed"
	batchTooLarge     = "too_large"
	batchUnsupported  = "unsupported" // content type or format version
	batchUnavailable  = "unavailable" // not ready, or auth backend down
)

const (
	sourceAgent = "agent"
	sourcePeer  = "peer"
)

// metrics holds the aggregator's own instruments and the descriptors of the
// computed ones.
type metrics struct {
	reg           *prometheus.Registry
	batches       *prometheus.CounterVec
	results       *prometheus.CounterVec
	skipped       *prometheus.CounterVec
	phasesSkipped *prometheus.CounterVec
	ingest        *prometheus.HistogramVec
	cellsDropped  prometheus.Counter
	forwarded     *prometheus.CounterVec
	forwardErrors prometheus.Counter
	bootstrap     *prometheus.CounterVec
	ready         prometheus.Gauge

	delta, deltaSamples, baseSamples, significant, insufficient, ciLow, ciHigh *prometheus.Desc
	pairQuantile, pairSamples                                                  *prometheus.Desc
	regression, regressionBase, regressed, regressionInsufficient              *prometheus.Desc
	pairResults                                                                *prometheus.Desc
	dedupIDs, dedupHorizon, storeSeries, storeBuckets, cells                   *prometheus.Desc
	computeDuration, computeTimestamp, window                                  *prometheus.Desc
	queue, peers, authCache                                                    *prometheus.Desc
}

func newMetrics(version string) *metrics {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	cpq := []string{"check", "phase", "pair", "quantile"}
	m := &metrics{
		reg: prometheus.NewRegistry(),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{Name: Batches,
			Help: "Batches received, by source (agent or peer replica) and result: accepted, duplicate (a retried or forwarded batch ID already counted), rejected_auth, malformed, too_large, unsupported, unavailable."},
			[]string{"source", "result"}),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{Name: ResultsIngested,
			Help: "Results ingested from accepted batches, by source."}, []string{"source"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: ResultsSkipped,
			Help: "Results of accepted batches that were skipped: unknown_check, unknown_os, too_old."}, []string{"reason"}),
		phasesSkipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: PhasesSkipped,
			Help: "Phases of successful results not added to the sketches: unknown_phase, too_old, series_limit, invalid."}, []string{"reason"}),
		ingest: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: IngestDuration,
			Help:    "Time to authenticate, decode and merge one batch.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 4, 9)}, []string{"source"}),
		cellsDropped: prometheus.NewCounter(prometheus.CounterOpts{Name: MatrixCellsDropped,
			Help: "Node-pair results not kept for /matrix because the cell table was full."}),
		forwarded: prometheus.NewCounterVec(prometheus.CounterOpts{Name: ReplicationBatches,
			Help: "Batches forwarded to peer replicas: sent, or dropped (queue full, peer gone, peer rejected)."}, []string{"result"}),
		forwardErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: ReplicationErrors,
			Help: "Failed attempts to forward to a peer; they are retried."}),
		bootstrap: prometheus.NewCounterVec(prometheus.CounterOpts{Name: Bootstrap,
			Help: "Start-up state transfers: merged (a peer's snapshot), empty (no peer had state), none (no peers configured), failed."}, []string{"result"}),
		ready: prometheus.NewGauge(prometheus.GaugeOpts{Name: Ready,
			Help: "1 when bootstrapped and accepting batches."}),

		delta:        desc(CrossOSDelta, "Quantile of the OS pair minus the same quantile of linux->linux, over the delta window.", cpq...),
		deltaSamples: desc(CrossOSDeltaSamples, "Samples of the OS pair behind the cross-OS delta.", "check", "phase", "pair"),
		baseSamples:  desc(CrossOSBaselineSamples, "Samples of linux->linux, the baseline of every cross-OS delta.", "check", "phase"),
		significant:  desc(CrossOSDeltaSignificant, "1 when the delta's 99% confidence interval excludes 0 and the samples suffice.", cpq...),
		insufficient: desc(CrossOSDeltaInsufficient, "1 when a side has too few samples for the quantile; the delta is still exported.", cpq...),
		ciLow:        desc(CrossOSDeltaCILow, "Lower bound of the delta's confidence interval; absent when unbounded.", cpq...),
		ciHigh:       desc(CrossOSDeltaCIHigh, "Upper bound of the delta's confidence interval; absent when unbounded.", cpq...),
		pairQuantile: desc(PairQuantile, "Quantile of each OS pair over the delta window.", cpq...),
		pairSamples:  desc(PairSamples, "Samples of each OS pair over the delta window.", "check", "phase", "pair"),
		regression:   desc(CrossOSRegression, "Cross-OS delta over the current window minus the same delta over the trailing baseline window.", cpq...),
		regressionBase: desc(CrossOSRegressionBaseline,
			"Cross-OS delta over the trailing baseline window the regression compares against.", cpq...),
		regressed: desc(CrossOSRegressed, "1 when the cross-OS delta increased significantly and by at least the minimum regression.", cpq...),
		regressionInsufficient: desc(CrossOSRegressionInsufficient,
			"1 when either window has too few samples to judge a regression.", cpq...),
		pairResults: desc(PairResults, "Results by check, OS pair and outcome (success or the failure reason).", "check", "pair", "result"),
		dedupIDs:    desc(DedupIDs, "Batch IDs remembered for deduplication.", nil...),
		dedupHorizon: desc(DedupHorizon,
			"How far back batch IDs are remembered; below the configured TTL when the ID limit forced evictions.", nil...),
		storeSeries:      desc(StoreSeries, "Sketch series (check, phase, src_os, dst_os) held.", nil...),
		storeBuckets:     desc(StoreBuckets, "Sketch buckets allocated over all series and tiers.", nil...),
		cells:            desc(MatrixCells, "Latest node-pair results held for /matrix.", nil...),
		computeDuration:  desc(ComputeDuration, "Time the last computation of quantiles, deltas and regressions took.", nil...),
		computeTimestamp: desc(ComputeTimestamp, "When quantiles, deltas and regressions were last computed.", nil...),
		window:           desc(DeltaWindowSeconds, "Length of the window the cross-OS delta is computed over.", nil...),
		queue:            desc(ReplicationQueue, "Batches waiting to be forwarded, over all peers.", nil...),
		peers:            desc(ReplicationPeers, "Peer replicas this replica forwards to.", nil...),
		authCache:        desc(AuthCache, "Agent authentications answered from the cache (hit), by a TokenReview (miss), or refused without one (refused: not a JWT, too long, another audience, expired).", "result"),
	}
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: BuildInfo, Help: "Build of the running aggregator."}, []string{"version"})
	build.WithLabelValues(version).Set(1)
	m.reg.MustRegister(m.batches, m.results, m.skipped, m.phasesSkipped, m.ingest, m.cellsDropped,
		m.forwarded, m.forwardErrors, m.bootstrap, m.ready, build,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// pairCounters back PairResults without a label lookup per result.
type pairCounters [nChecks][nPairs][nOutcomes]atomic.Uint64

// quantileLabel renders 0.5 as "0.5", 0.99 as "0.99".
func quantileLabel(q float64) string { return strconv.FormatFloat(q, 'f', -1, 64) }

// serverCollector exports the computed cache and the live gauges.
type serverCollector struct{ s *Server }

func (c serverCollector) Describe(ch chan<- *prometheus.Desc) {
	m := c.s.metrics
	for _, d := range []*prometheus.Desc{m.delta, m.deltaSamples, m.baseSamples, m.significant, m.insufficient,
		m.ciLow, m.ciHigh, m.pairQuantile, m.pairSamples, m.regression, m.regressionBase, m.regressed,
		m.regressionInsufficient, m.pairResults, m.dedupIDs, m.dedupHorizon, m.storeSeries, m.storeBuckets,
		m.cells, m.computeDuration, m.computeTimestamp, m.window, m.queue, m.peers, m.authCache} {
		ch <- d
	}
}

func (c serverCollector) Collect(ch chan<- prometheus.Metric) {
	s, m := c.s, c.s.metrics
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	if comp := s.computed.Load(); comp != nil {
		for _, mt := range comp.metrics {
			ch <- mt
		}
		gauge(m.storeSeries, float64(comp.series))
		gauge(m.storeBuckets, float64(comp.buckets))
		gauge(m.computeDuration, comp.took.Seconds())
		gauge(m.computeTimestamp, float64(comp.at.UnixNano())/1e9)
	}
	for ci := range nChecks {
		for p := range nPairs {
			for o := range nOutcomes {
				if v := s.pairCounts[ci][p][o].Load(); v > 0 {
					ch <- prometheus.MustNewConstMetric(m.pairResults, prometheus.CounterValue, float64(v),
						checks[ci], pairNames[p], outcomes[o])
				}
			}
		}
	}
	now := s.now()
	gauge(m.dedupIDs, float64(s.dedup.size()))
	gauge(m.dedupHorizon, s.dedup.horizon(now).Seconds())
	gauge(m.cells, float64(s.state.cellCount()))
	gauge(m.window, s.cfg.DeltaWindow.Seconds())
	q, n := s.peers.stats()
	gauge(m.queue, float64(q))
	gauge(m.peers, float64(n))
	if cs, ok := s.cfg.Auth.(interface{ CacheStats() (uint64, uint64) }); ok {
		hits, misses := cs.CacheStats()
		ch <- prometheus.MustNewConstMetric(m.authCache, prometheus.CounterValue, float64(hits), "hit")
		ch <- prometheus.MustNewConstMetric(m.authCache, prometheus.CounterValue, float64(misses), "miss")
	}
	if r, ok := s.cfg.Auth.(interface{ Refused() uint64 }); ok {
		ch <- prometheus.MustNewConstMetric(m.authCache, prometheus.CounterValue, float64(r.Refused()), "refused")
	}
}
