// Package aggregator receives agents' result batches, keeps windowed
// sketches of every (check, phase, src_os, dst_os), and exports the
// cross-OS latency delta, its significance and its regressions as
// Prometheus metrics, with the per-node picture at /matrix.
//
// # Ingest
//
// Agents POST wire batches to /api/v1/results (agent/reporter). In order:
// a replica still bootstrapping answers 503 with Retry-After; the
// bearer token is checked before the body is read (401 with
// WWW-Authenticate when missing or invalid, 403 for an identity that is
// not the agent ServiceAccount, 503 when TokenReview cannot be reached);
// the Content-Type must be wire.ContentType (415); the body is capped at
// MaxBodyBytes (413, which makes the reporter split the batch); a batch
// that does not decode is 400 naming the field, one of another format
// version 415 naming the version this build reads. A 200 carries an
// IngestResponse: "accepted" with counts of what was skipped, or
// "duplicate".
//
// Each batch ID is counted once. The set of IDs seen is kept for the
// sketches' retention (65 min by default), beyond which a retried batch
// could not be counted anyway, as 64-bit hashes in time generations, capped
// at DedupMaxIDs; see dedup. A result with an unknown check or OS is
// skipped and counted, an unknown phase likewise; an unknown outcome is a
// failure counted as "other". Label values therefore stay bounded whatever
// an agent sends.
//
// # Time
//
// Results are placed by the aggregator's clock, never the agent's: a result
// lands at receive time minus its age, and the age is Sent - Start, both
// read from the agent's clock, so the agent's offset cancels. A skewed
// agent can neither write into the future (which would recycle live
// buckets) nor into the past; a result older than the sketches retain is
// skipped as too_old. A retried batch keeps its results' ages (the reporter
// restamps Sent on every attempt), so it still lands where it belongs.
//
// # High availability
//
// Two (or more) replicas run behind one Service, all active; no leader
// election. Each ingests whatever the Service sends it and forwards every
// batch it accepted from an agent to each peer, asynchronously, in a
// bounded per-peer queue with retry, over /api/v1/replicate (the batch
// bytes as received plus the receive time, so the peer places every result
// in the same bucket). A peer dedups forwarded batches by ID like any
// other, so every replica counts every batch exactly once, including an
// agent's retry that reaches the other replica. Both replicas therefore
// hold the same sketches and export the same metrics; rules and dashboards
// aggregate with max by (...).
//
// Why not leader election: a passive standby has no sketches, so failover
// would lose the 5 min delta and the 1 h regression baseline until they
// refill, and the agents would need to find the leader. Here either
// replica can die and the other already has everything, up to the
// forwarding lag: the batches the dying replica accepted but had not yet
// forwarded (normally milliseconds; a graceful shutdown drains its queue
// first, up to DrainTimeout; a crash loses what was queued). Replicas are
// independent of the API server for this.
//
// A starting replica is unready (and refuses batches with 503) until it has
// bootstrapped: it GETs /api/v1/snapshot from a peer, naming itself in the
// Xosprobe-Replica header. The peer first adds it as a forwarding target,
// then takes a consistent cut of sketches, batch IDs and cells (batches
// apply under a read lock, the cut takes the write lock). Batches accepted
// before the cut are in the snapshot, those after it are forwarded; a batch
// in both is a duplicate by ID. The new replica merges the snapshot and
// turns ready. Replicas starting together do not wait for each other: the
// one with the lower SelfURL starts empty, the other bootstraps from it. If
// every replica dies at once the state is gone; it refills within the
// windows.
//
// Replicas authenticate to each other with a shared secret (ReplicaAuth,
// ReplicaToken). Peers come from Config.Peers and Config.LookupPeers (a
// headless Service) and from bootstrap requests; a dynamic peer that fails
// for PeerExpiry is dropped with its queue.
//
// # Computation
//
// Every ComputeInterval the server builds a View over DeltaWindow, reads
// each pair's quantiles, the deltas against linux->linux and the
// regressions of each delta against the BaselineWindow before it, and
// swaps the resulting metrics into a cache that scrapes and /matrix read.
// The metric names and labels are in metrics.go.
package aggregator
