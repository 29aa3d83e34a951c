package aggregator

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/net/netutil"

	"github.com/xosprobe/xosprobe/aggregator/matrix"
	"github.com/xosprobe/xosprobe/aggregator/stats"
)

// Server is the aggregator: ingest, state, computation and HTTP endpoints.
// Create it with New, serve it with Run.
type Server struct {
	cfg          Config
	authFailures *authFailures // per source address
	ingestBudget *ingestBudget // body bytes being read
	matrixSlots  chan struct{} // /matrix documents being built
	log          *slog.Logger
	now          func() time.Time
	store        *stats.Store
	dedup        *dedup
	state        *state
	metrics      *metrics
	peers        *peerSet
	delta        stats.DeltaOptions

	// applyMu: batches apply under the read lock, snapshots take the write
	// lock, so a snapshot is a consistent cut of sketches, IDs and cells.
	applyMu sync.RWMutex

	computed   atomic.Pointer[computed]
	pairCounts pairCounters
	ready      atomic.Bool // readiness: bootstrapped and not shutting down
	// bootstrapped gates ingest: before the peer's snapshot is merged a batch
	// could be counted twice. It stays true through shutdown, so batches the
	// Service still routes here are taken and forwarded while draining.
	bootstrapped atomic.Bool
	maxAge       time.Duration // oldest result the sketches still take
	keys         [nChecks][nPhases][nOS][nOS]stats.Key
}

// New builds a Server from cfg. It does not serve until Run.
func New(cfg Config) (*Server, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	store, err := stats.NewStore(cfg.Stats)
	if err != nil {
		return nil, err
	}
	// The longest tier decides how old a result may be and still count, and
	// so how long a retried batch ID must be remembered.
	var retention time.Duration
	fitsDelta, fitsRegression := false, false
	for _, t := range store.Tiers() {
		retention = max(retention, t.Width*time.Duration(t.Buckets-1))
		// As stats selects windows: whole buckets, the newest one partial.
		buckets := func(d time.Duration) int { return int((d + t.Width - 1) / t.Width) }
		fitsDelta = fitsDelta || buckets(cfg.DeltaWindow) <= t.Buckets
		fitsRegression = fitsRegression || buckets(cfg.DeltaWindow)+buckets(cfg.BaselineWindow) <= t.Buckets
	}
	if !fitsDelta || !fitsRegression {
		return nil, errors.New("aggregator: the delta window plus the regression baseline is longer than the sketches retain")
	}
	if cfg.DedupTTL <= 0 {
		cfg.DedupTTL = retention + time.Minute
	}
	delta := cfg.Delta
	if delta.Quantiles == nil {
		delta.Quantiles = stats.DefaultQuantiles
	}
	s := &Server{
		cfg:          cfg,
		authFailures: newAuthFailures(cfg.AuthFailureEvery, cfg.AuthFailureBurst, cfg.AuthFailureSources),
		ingestBudget: newIngestBudget(cfg.MaxIngestBytes, cfg.MaxIngestBytesPerSource),
		matrixSlots:  make(chan struct{}, cfg.MaxMatrixInFlight),
		log:          cfg.Log,
		now:          cfg.Now,
		store:        store,
		dedup:        newDedup(cfg.DedupTTL, cfg.DedupMaxIDs),
		state:        newState(cfg.DeltaWindow, cfg.MaxCells, cfg.CellTTL),
		metrics:      newMetrics(cfg.Version),
		delta:        delta,
		maxAge:       retention,
	}
	s.peers = newPeerSet(s)
	for _, p := range cfg.Peers {
		s.peers.add(p, true)
	}
	for ci, c := range checks {
		for pi, p := range phases {
			for si, so := range oses {
				for di, do := range oses {
					s.keys[ci][pi][si][di] = stats.Key{Check: c, Phase: p, SrcOS: so, DstOS: do}
				}
			}
		}
	}
	s.metrics.reg.MustRegister(serverCollector{s})
	return s, nil
}

// Handler serves every endpoint.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+ResultsPath, s.handleResults)
	mux.HandleFunc("POST "+ReplicatePath, s.handleReplicate)
	mux.HandleFunc("GET "+SnapshotPath, s.handleSnapshot)
	mux.HandleFunc("GET "+matrix.Path, s.handleMatrix)
	mux.Handle("GET "+MetricsPath, promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET "+HealthPath, func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET "+ReadyPath, func(w http.ResponseWriter, _ *http.Request) {
		if !s.ready.Load() {
			httpError(w, http.StatusServiceUnavailable, "not ready")
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	return mux
}

// Ready reports whether the server accepts batches.
func (s *Server) Ready() bool { return s.ready.Load() }

func (s *Server) setReady(ok bool) {
	s.ready.Store(ok)
	if ok {
		s.metrics.ready.Set(1)
	} else {
		s.metrics.ready.Set(0)
	}
}

// Run serves on ln until ctx ends. It bootstraps from a peer first (ready
// only afterwards), then computes, expires and forwards in the background.
// On cancellation it turns unready, keeps serving for ShutdownDelay so the
// Service stops routing here, stops the listener, forwards what is queued
// (up to DrainTimeout) and returns once every goroutine has ended.
func (s *Server) Run(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		// A client that stops reading (a /matrix it never drains) gives up
		// its connection and the answer's memory.
		WriteTimeout:   2 * time.Minute,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	ln = netutil.LimitListener(ln, s.cfg.MaxConnections)
	// Shutdown waits up to 5 s for connections that never sent a request
	// (clients dial spares); track them so shutdown can close them at once.
	// A client that was about to use one retries, and batches are idempotent.
	var connMu sync.Mutex
	fresh := map[net.Conn]struct{}{}
	srv.ConnState = func(c net.Conn, st http.ConnState) {
		connMu.Lock()
		if st == http.StateNew {
			fresh[c] = struct{}{}
		} else {
			delete(fresh, c)
		}
		connMu.Unlock()
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() { s.peers.run(bg) })
	if s.cfg.LookupPeers != nil {
		wg.Go(func() { s.discover(bg) })
	}

	s.bootstrap(ctx)
	if err := s.Compute(); err != nil {
		s.log.Error("computing deltas", "error", err)
	}
	wg.Go(func() { s.maintain(bg) })
	s.bootstrapped.Store(true)
	if ctx.Err() == nil {
		s.setReady(true)
		s.log.Info("aggregator ready", "addr", ln.Addr().String(), "peers", s.peers.urls())
	}

	var err error
	select {
	case <-ctx.Done():
	case err = <-serveErr:
	}
	s.setReady(false)
	if err == nil {
		s.log.Info("shutting down: unready, then draining", "delay", s.cfg.ShutdownDelay)
		time.Sleep(s.cfg.ShutdownDelay)
		connMu.Lock()
		for c := range fresh {
			_ = c.Close()
		}
		connMu.Unlock()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if e := srv.Shutdown(sctx); e != nil {
			_ = srv.Close()
		}
		cancel()
		if e := <-serveErr; e != nil && !errors.Is(e, http.ErrServerClosed) {
			s.log.Warn("server stopped with an error", "error", e)
		}
		dctx, cancel := context.WithTimeout(context.Background(), s.cfg.DrainTimeout)
		s.peers.drain(dctx)
		cancel()
	} else {
		_ = srv.Close()
	}
	stopBG()
	wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// maintain recomputes every ComputeInterval and frees expired state.
func (s *Server) maintain(ctx context.Context) {
	compute := time.NewTicker(s.cfg.ComputeInterval)
	defer compute.Stop()
	sweep := time.NewTicker(10 * time.Second)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-compute.C:
			if err := s.Compute(); err != nil {
				s.log.Error("computing deltas", "error", err)
			}
		case <-sweep.C:
			now := s.now()
			s.store.Expire(now)
			s.state.sweep(now)
			s.dedup.compact()
		}
	}
}
