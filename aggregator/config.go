package aggregator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/xosprobe/xosprobe/aggregator/auth"
	"github.com/xosprobe/xosprobe/aggregator/stats"
)

// HTTP paths the aggregator serves besides /matrix.
const (
	ResultsPath   = "/api/v1/results"   // agents POST batches (agent/reporter.Path)
	ReplicatePath = "/api/v1/replicate" // replicas POST forwarded batches
	SnapshotPath  = "/api/v1/snapshot"  // replicas GET the state to bootstrap
	MetricsPath   = "/metrics"
	HealthPath    = "/healthz"
	ReadyPath     = "/readyz"
)

// Config is everything a Server needs; cmd fills it from flags. Zero fields
// take the defaults noted.
type Config struct {
	// Auth admits agents; required.
	Auth auth.Authenticator
	// ReplicaAuth admits peers on the replication endpoints; nil disables
	// them (a single replica).
	ReplicaAuth auth.Authenticator
	// ReplicaToken returns what this replica presents to its peers, called per
	// request so a rotated projected ServiceAccount token is picked up.
	ReplicaToken func() (string, error)
	// Peers are the other replicas' base URLs, always forwarded to.
	Peers []string
	// LookupPeers, if set, discovers peers (a headless Service) at start and
	// every PeerRefresh. Results equal to SelfURL are ignored.
	LookupPeers func(context.Context) ([]string, error)
	PeerRefresh time.Duration // default 30s
	// SelfURL is this replica's base URL as peers reach it. Sent when
	// bootstrapping so the peer starts forwarding here before it snapshots.
	SelfURL string

	// DeltaWindow is the window of the exported quantiles and deltas and the
	// current side of the regression comparison; default 5m.
	DeltaWindow time.Duration
	// BaselineWindow is the regression's trailing baseline; default 1h.
	BaselineWindow time.Duration
	// MinRegression is the smallest increase of a delta that counts as a
	// regression; default 2ms.
	MinRegression   time.Duration
	ComputeInterval time.Duration // how often deltas are recomputed; default 10s
	Delta           stats.DeltaOptions
	Stats           stats.Config

	MaxBodyBytes int64 // per batch; default 8 MiB
	// MaxIngestBytes bounds the body bytes being read at once (declared
	// lengths, reserved as reading starts); default 32 batches of
	// MaxBodyBytes. MaxIngestBytesPerSource bounds one source address;
	// default 2 x MaxBodyBytes. Beyond them a request gets 503 or 429 with
	// Retry-After, and the agent retries.
	MaxIngestBytes          int64
	MaxIngestBytesPerSource int64
	// MaxMatrixInFlight bounds the /matrix documents built at once; more get
	// 503 with Retry-After. Default 2.
	MaxMatrixInFlight int
	// DedupTTL is how long a batch ID is remembered; default the sketches'
	// retention, beyond which a retried batch could not be counted anyway.
	DedupTTL    time.Duration
	DedupMaxIDs int // default 1<<24 (128 MiB of hashes at most)
	// CellTTL forgets a node pair's latest result after this long; default 10m.
	CellTTL  time.Duration
	MaxCells int // default 1<<20

	// MaxConnections caps the connections served at once; more wait in the
	// kernel's accept queue. Every agent keeps one open (keep-alive), so it
	// must exceed the number of nodes; default 10000 (~100 MiB if all idle).
	MaxConnections int

	// AuthFailureBurst failed authentications are allowed per source
	// address, then one per AuthFailureEvery; beyond that a source gets 429
	// before any TokenReview, unless its token is already admitted
	// (authFailures). Defaults 20 and 1 s; AuthFailureSources (default
	// 16384) bounds the sources remembered.
	AuthFailureBurst   int
	AuthFailureEvery   time.Duration
	AuthFailureSources int

	// ForwardQueueBytes bounds each peer's queue of batches to forward;
	// default 64 MiB. Beyond it the oldest are dropped (and counted).
	ForwardQueueBytes int
	// PeerExpiry removes a discovered peer after failing this long; default 10m.
	PeerExpiry time.Duration
	// MaxSnapshotBytes bounds a peer's snapshot read while bootstrapping;
	// default 512 MiB, half the shipped memory limit. A larger one fails the
	// bootstrap from that peer, as an unreachable peer does.
	MaxSnapshotBytes int64
	// BootstrapTimeout is how long a starting replica waits for a peer's
	// snapshot before starting empty; default 60s.
	BootstrapTimeout time.Duration
	// BootstrapGrace is how long a starting replica waits when no peer is
	// reachable, or every peer is starting too and this one goes first
	// (lowest SelfURL); default 3s.
	BootstrapGrace time.Duration
	// ShutdownDelay keeps serving, unready, so the Service stops routing
	// here before the listener closes; default 5s.
	ShutdownDelay time.Duration
	// DrainTimeout bounds forwarding what is queued at shutdown; default 10s.
	DrainTimeout time.Duration

	// HTTPClient talks to peers; requests carry their own deadlines.
	HTTPClient *http.Client
	Now        func() time.Time
	Log        *slog.Logger
	Version    string
}

func (c *Config) setDefaults() error {
	if c.Auth == nil {
		return errors.New("aggregator: no authenticator")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.DeltaWindow, 5*time.Minute)
	def(&c.BaselineWindow, time.Hour)
	def(&c.MinRegression, 2*time.Millisecond)
	def(&c.ComputeInterval, 10*time.Second)
	def(&c.PeerRefresh, 30*time.Second)
	def(&c.CellTTL, 10*time.Minute)
	def(&c.PeerExpiry, 10*time.Minute)
	def(&c.BootstrapTimeout, time.Minute)
	def(&c.BootstrapGrace, 3*time.Second)
	def(&c.DrainTimeout, 10*time.Second)
	if c.ShutdownDelay < 0 {
		c.ShutdownDelay = 0
	} else if c.ShutdownDelay == 0 {
		c.ShutdownDelay = 5 * time.Second
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 8 << 20
	}
	if c.MaxMatrixInFlight <= 0 {
		c.MaxMatrixInFlight = 2
	}
	if c.MaxIngestBytes <= 0 {
		c.MaxIngestBytes = 32 * c.MaxBodyBytes
	}
	if c.MaxIngestBytesPerSource <= 0 {
		c.MaxIngestBytesPerSource = 2 * c.MaxBodyBytes
	}
	if c.DedupMaxIDs <= 0 {
		c.DedupMaxIDs = 1 << 24
	}
	if c.MaxCells <= 0 {
		c.MaxCells = 1 << 20
	}
	if c.MaxSnapshotBytes <= 0 {
		c.MaxSnapshotBytes = 512 << 20
	}
	if c.AuthFailureBurst <= 0 {
		c.AuthFailureBurst = 20
	}
	if c.AuthFailureEvery <= 0 {
		c.AuthFailureEvery = time.Second
	}
	if c.AuthFailureSources <= 0 {
		c.AuthFailureSources = 16384
	}
	if c.MaxConnections <= 0 {
		c.MaxConnections = 10000
	}
	if c.ForwardQueueBytes <= 0 {
		c.ForwardQueueBytes = 64 << 20
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if (len(c.Peers) > 0 || c.LookupPeers != nil) && (c.ReplicaAuth == nil || c.ReplicaToken == nil) {
		return errors.New("aggregator: peers need replica credentials (ReplicaAuth and ReplicaToken)")
	}
	c.Peers = slices.Clone(c.Peers)
	for i, p := range c.Peers {
		u, err := normalizeURL(p)
		if err != nil {
			return fmt.Errorf("aggregator: peer %q: %w", p, err)
		}
		c.Peers[i] = u
	}
	if c.SelfURL != "" {
		u, err := normalizeURL(c.SelfURL)
		if err != nil {
			return fmt.Errorf("aggregator: self URL %q: %w", c.SelfURL, err)
		}
		c.SelfURL = u
	}
	return nil
}

// normalizeURL checks a peer base URL and drops a trailing slash so URLs
// compare equal however they were written.
func normalizeURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", errors.New("want http(s)://host:port")
	}
	return strings.TrimRight(u.Scheme+"://"+u.Host+u.Path, "/"), nil
}
