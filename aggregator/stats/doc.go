// Package stats keeps windowed, mergeable latency sketches per series and
// computes the cross-OS latency delta, its significance and its regressions.
// It is pure computation: time is always passed in, nothing here serves HTTP
// or touches Prometheus.
//
// # Series and buckets
//
// A series is (check, phase, src_os, dst_os), all plain strings. Each series
// keeps one ring of time buckets per tier, and every observation goes into
// the current bucket of every tier. The default tiers are 30 buckets of 10 s
// (windows up to 5 min) and 65 buckets of 1 min (windows up to 65 min: the
// 1 h regression baseline behind the current 5 min). Buckets are aligned to
// the Unix epoch, so replicas agree on them and merge exactly.
//
// Each bucket is a DDSketch with 1% relative accuracy: any quantile read is
// within 1% of the sample's true order statistic (±5 µs on a 0.5 ms p50, ±85
// µs on an 8.5 ms one). That is below the sampling error of a quantile until
// a window holds several thousand samples, which is where the 8-15 ms deltas
// this project measures are already unmistakable; 0.5% would double the
// memory for precision the confidence interval then throws away. The mapping
// is the cubically interpolated one (1% more bins than the logarithmic one,
// no math.Log on the hot path). The store is a collapsing-lowest dense store
// capped at 1024 bins per bucket: at 1% that spans a max/min ratio of ~8e8,
// so nothing collapses in practice, and if it ever does the lowest values
// merge, which latency quantiles can afford.
//
// Memory is bounded by series x buckets, never by the number of results:
// at most Store.MaxBytesPerSeries (~800 KB with the defaults) per series, and
// ~110 KB measured for a realistic series with every bucket filled, because a
// dense store only allocates the bins between its minimum and maximum (plus
// 64). Add recycles a ring slot when time moves past it; Expire frees buckets
// and series that have gone quiet, and Config.MaxSeries caps the key count.
//
// # Windows
//
// A window of length L ending Offset before now is the ceil(L/width) newest
// buckets ending with the one that contains now-Offset, from the finest tier
// that retains them all. With Offset 0 the newest bucket is still filling,
// so the window holds between L-width and L of data. A View is the merge of those buckets, per
// series; Quantiles, Estimate and Deltas read it.
//
// # Significance of a delta
//
// For each check and phase, and each OS pair P other than the baseline B
// (linux->linux), Deltas reports q_P - q_B at p50, p90 and p99 with the
// sample counts of both sides.
//
// Each quantile gets a distribution-free confidence interval from order
// statistics: the number of samples at or below the true q-quantile is
// Binomial(n, q), so [X(l), X(u)] covers it with probability >= c when l and
// u cut (1-c)/2 off each binomial tail (exact sums while sqrt(nq(1-q)) < 20,
// normal approximation with continuity correction beyond). X(l) and X(u) are
// read from the sketch at those ranks and widened by the sketch's relative
// accuracy a: [X(l)/(1+a), X(u)/(1-a)]. When no rank is far enough out the
// bound is 0 below (durations are non-negative) or +Inf above: with n=5 the
// median cannot be bounded at 99%, nor p99 from above until n=528.
//
// The two intervals combine by MOVER (Zou & Donner 2008) into an interval for
// the difference: d - sqrt((P-lowP)^2 + (highB-B)^2) to d + sqrt((highP-P)^2
// + (B-lowB)^2). It keeps the asymmetry of order-statistic intervals and,
// because P and B come from independent samples, is close to nominal, where
// the plain difference [lowP-highB, highP-lowB] (DeltaOptions.Conservative,
// with each side at 1-(1-c)/2) is 40-55% wider. The default confidence is
// 99% because a scrape tests ~200 deltas at once. Measured on two identical
// lognormal samples of 5000: 0 false positives in 150 tests at 99%, 1 in 150
// at 95%; the sketch error term makes it conservative at large n.
//
// A delta is Significant when its interval excludes 0 and both sides have
// enough samples. Below that (MinSamples, default 20, raised to
// MinTailSamples/min(q,1-q), default 5, so p90 needs 50 and p99 500) it is
// still reported, flagged Insufficient, and never Significant.
//
// # Regression
//
// Regressions compares each delta over the current window (default 5 min)
// with the same delta over the trailing baseline window right before it
// (default 1 h), both read from the same tier so they are disjoint and
// adjacent. Increase = delta_now - delta_before, with a MOVER interval built
// from the two deltas' intervals. A (check, phase, pair, quantile) has
// Regressed when neither delta is Insufficient, the increase's interval lies
// above 0, and the increase is at least MinIncrease (default 2 ms). Because
// it compares deltas, a slowdown that hits linux->linux as much as the
// Windows paths is not a regression of the cross-OS delta.
//
// # Concurrency and speed
//
// Store is safe for concurrent use. The series map is copy-on-write, so Add
// takes no store-wide lock: it hashes the key once, locks that series only,
// and adds to each tier's current bucket (cached, so no division). On the
// development machine Add takes ~60 ns without allocating, and ~35 ns per
// observation through AddBatch, which shares the lookup and lock across
// consecutive observations of one key. Goroutines writing different series
// scale with cores; goroutines writing the same series trade its cache lines
// and together reach about one core's rate, so shard ingest by key if one
// core is not enough.
//
// # Replicas
//
// Snapshot copies every live bucket in DDSketch's binary encoding (JSON and
// gob friendly); MergeSnapshot and Merge add another store's buckets, bin by
// bin, so two replicas fed halves of the results and merged equal one
// replica fed them all.
package stats
