package aggregator

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/gob"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/xosprobe/xosprobe/aggregator/stats"
	"github.com/xosprobe/xosprobe/aggregator/wire"
)

// Replication wire details.
const (
	// ReplicateContentType is a body of frames, each a forwarded batch:
	// recv varint (the receiving replica's receive time, unix ns) |
	// len uvarint | an encoded wire.Batch, exactly as the agent sent it.
	ReplicateContentType = "application/vnd.xosprobe.replicate.v1"
	// SnapshotContentType is a gob-encoded replicaSnapshot.
	SnapshotContentType = "application/vnd.xosprobe.snapshot.v1+gob"
	// ReplicaHeader carries a bootstrapping replica's base URL on a snapshot
	// request, so the peer forwards to it from before the snapshot on.
	ReplicaHeader = "Xosprobe-Replica"
	// StateHeader on a 503 says the replica is itself "bootstrapping".
	StateHeader = "Xosprobe-State"

	snapshotVersion = 1
	maxGroupFrames  = 1024
)

// frame is one forwarded batch.
type frame struct {
	recv int64
	data []byte
}

func appendFrame(dst []byte, f frame) []byte {
	dst = binary.AppendVarint(dst, f.recv)
	dst = binary.AppendUvarint(dst, uint64(len(f.data)))
	return append(dst, f.data...)
}

func decodeFrames(body []byte) ([]frame, error) {
	var out []frame
	for i := 0; len(body) > 0; i++ {
		recv, n := binary.Varint(body)
		if n <= 0 {
			return nil, fmt.Errorf("frame %d: receive time: truncated varint", i)
		}
		body = body[n:]
		size, n := binary.Uvarint(body)
		if n <= 0 || size > uint64(len(body)-n) {
			return nil, fmt.Errorf("frame %d: length: truncated or beyond the body", i)
		}
		body = body[n:]
		out = append(out, frame{recv: recv, data: body[:size:size]})
		body = body[size:]
	}
	return out, nil
}

// peerSet is the replicas this one forwards to, each with its own queue and
// goroutine.
type peerSet struct {
	s       *Server
	mu      sync.Mutex
	peers   map[string]*peer
	ctx     context.Context // set by run; nil before, and after it ends
	wg      sync.WaitGroup
	stopped bool
}

type peer struct {
	url    string
	static bool
	wake   chan struct{}
	cancel context.CancelFunc

	mu      sync.Mutex
	q       []frame
	qbytes  int
	headSeq uint64 // sequence number of q[0]
	failing time.Time
	// limit is the most bytes sent in one request: MaxBodyBytes, halved
	// whenever the peer answers 413 (it may be configured smaller), doubled
	// again after growAfter requests in a row succeed (it may have been
	// smaller only during a rollout).
	limit int64
	okRun int
}

// growAfter is how many successful forwards in a row earn a larger request
// limit after a 413: rare enough that a peer with a smaller limit costs one
// refused request in growAfter.
const growAfter = 32

func newPeerSet(s *Server) *peerSet { return &peerSet{s: s, peers: map[string]*peer{}} }

// add starts forwarding to url, unless it is this replica or known already.
func (ps *peerSet) add(url string, static bool) {
	if url == "" || url == ps.s.cfg.SelfURL {
		return
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if p, ok := ps.peers[url]; ok {
		p.static = p.static || static
		return
	}
	if ps.stopped {
		return
	}
	p := &peer{url: url, static: static, wake: make(chan struct{}, 1), limit: ps.s.cfg.MaxBodyBytes}
	ps.peers[url] = p
	ps.s.log.Info("forwarding batches to peer", "peer", url, "static", static)
	if ps.ctx != nil {
		ps.start(p)
	}
}

// start runs p's forwarder; ps.mu is held.
func (ps *peerSet) start(p *peer) {
	ctx, cancel := context.WithCancel(ps.ctx)
	p.cancel = cancel
	ps.wg.Go(func() { ps.forward(ctx, p) })
}

func (ps *peerSet) remove(p *peer, why string) {
	ps.mu.Lock()
	if ps.peers[p.url] == p {
		delete(ps.peers, p.url)
	}
	if p.cancel != nil {
		p.cancel()
	}
	ps.mu.Unlock()
	p.mu.Lock()
	lost := len(p.q)
	p.q, p.qbytes = nil, 0
	p.mu.Unlock()
	if lost > 0 {
		ps.s.metrics.forwarded.WithLabelValues("dropped").Add(float64(lost))
	}
	ps.s.log.Warn("stopped forwarding to peer", "peer", p.url, "reason", why, "dropped_batches", lost)
}

// run starts the forwarders and returns once ctx has ended and they have all stopped.
func (ps *peerSet) run(ctx context.Context) {
	ps.mu.Lock()
	ps.ctx = ctx
	for _, p := range ps.peers {
		ps.start(p)
	}
	ps.mu.Unlock()
	<-ctx.Done()
	ps.mu.Lock()
	ps.stopped = true
	ps.mu.Unlock()
	ps.wg.Wait()
}

// enqueue queues a batch for every peer, dropping a peer's oldest queued
// batches when its queue is over its byte limit.
func (ps *peerSet) enqueue(f frame) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for _, p := range ps.peers {
		dropped := p.push(f, ps.s.cfg.ForwardQueueBytes)
		if dropped > 0 {
			ps.s.metrics.forwarded.WithLabelValues("dropped").Add(float64(dropped))
		}
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
}

func (p *peer) push(f frame, limit int) (dropped int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.q = append(p.q, f)
	p.qbytes += len(f.data)
	for p.qbytes > limit && len(p.q) > 1 {
		p.qbytes -= len(p.q[0].data)
		p.q[0] = frame{}
		p.q = p.q[1:]
		p.headSeq++
		dropped++
	}
	return dropped
}

// next returns up to maxBytes of frames from the front of the queue and the
// sequence number one past the last.
func (p *peer) next(maxBytes int64) ([]frame, uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var size int64
	n := 0
	for n < len(p.q) && n < maxGroupFrames && (n == 0 || size+int64(len(p.q[n].data)) <= maxBytes) {
		size += int64(len(p.q[n].data))
		n++
	}
	return slices.Clone(p.q[:n]), p.headSeq + uint64(n)
}

// ack removes the frames before seq, unless drop-oldest already did.
func (p *peer) ack(seq uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.headSeq < seq && len(p.q) > 0 {
		p.qbytes -= len(p.q[0].data)
		p.q[0] = frame{}
		p.q = p.q[1:]
		p.headSeq++
	}
}

func (p *peer) pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.q)
}

// forward sends p's queue in order, retrying with capped backoff: a peer
// that is restarting answers 503 until it has bootstrapped.
func (ps *peerSet) forward(ctx context.Context, p *peer) {
	const minBackoff, maxBackoff = 50 * time.Millisecond, 2 * time.Second
	backoff := minBackoff
	for {
		group, seq := p.next(p.limit)
		if len(group) == 0 {
			select {
			case <-ctx.Done():
				return
			case <-p.wake:
			}
			continue
		}
		err := ps.post(ctx, p.url, group)
		if ctx.Err() != nil {
			return
		}
		var se *peerStatusError
		switch {
		case err == nil:
			p.ack(seq)
			ps.s.metrics.forwarded.WithLabelValues("sent").Add(float64(len(group)))
			if p.okRun++; p.okRun >= growAfter && p.limit < ps.s.cfg.MaxBodyBytes {
				p.limit, p.okRun = min(2*p.limit, ps.s.cfg.MaxBodyBytes), 0
			}
			p.mu.Lock()
			p.failing = time.Time{}
			p.mu.Unlock()
			backoff = minBackoff
			continue
		case errors.As(err, &se) && se.code == http.StatusRequestEntityTooLarge && len(group) > 1:
			p.limit, p.okRun = max(groupBytes(group)/2, 1), 0
			continue
		case errors.As(err, &se) && se.permanent():
			// The peer will never take these (a version it cannot read):
			// retrying would block everything behind them.
			p.ack(seq)
			ps.s.metrics.forwarded.WithLabelValues("dropped").Add(float64(len(group)))
			ps.s.log.Error("peer rejected forwarded batches; dropping them", "peer", p.url, "batches", len(group), "error", err)
			continue
		}
		ps.s.metrics.forwardErrors.Inc()
		now := time.Now()
		p.mu.Lock()
		if p.failing.IsZero() {
			p.failing = now
			ps.s.log.Warn("forwarding to peer failed; retrying", "peer", p.url, "error", err)
		}
		failingFor := now.Sub(p.failing)
		p.mu.Unlock()
		if !p.static && failingFor > ps.s.cfg.PeerExpiry {
			ps.remove(p, fmt.Sprintf("unreachable for %v: %v", failingFor.Round(time.Second), err))
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff/2 + rand.N(backoff/2+1)):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

func groupBytes(group []frame) int64 {
	var n int64
	for _, f := range group {
		n += int64(len(f.data))
	}
	return n
}

type peerStatusError struct {
	code int
	msg  string
}

func (e *peerStatusError) Error() string { return fmt.Sprintf("peer answered %d: %s", e.code, e.msg) }

func (e *peerStatusError) permanent() bool {
	return e.code >= 400 && e.code < 500 && e.code != http.StatusUnauthorized &&
		e.code != http.StatusRequestTimeout && e.code != http.StatusTooManyRequests && e.code != http.StatusNotFound
}

func (ps *peerSet) post(ctx context.Context, url string, group []frame) error {
	var size int
	for _, f := range group {
		size += len(f.data) + 2*binary.MaxVarintLen64
	}
	body := make([]byte, 0, size)
	for _, f := range group {
		body = appendFrame(body, f)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+ReplicatePath, bytes.NewReader(body))
	if err != nil {
		return &peerStatusError{code: http.StatusBadRequest, msg: err.Error()}
	}
	req.Header.Set("Content-Type", ReplicateContentType)
	tok, err := ps.s.cfg.ReplicaToken()
	if err != nil {
		return fmt.Errorf("replica token: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := ps.s.cfg.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 == 2 {
		return nil
	}
	return &peerStatusError{code: resp.StatusCode, msg: string(bytes.TrimSpace(msg))}
}

// drain waits until the queues of reachable peers are empty or ctx ends.
// A peer already failing would only hold shutdown for its full timeout.
func (ps *peerSet) drain(ctx context.Context) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		q := 0
		ps.mu.Lock()
		for _, p := range ps.peers {
			p.mu.Lock()
			if p.failing.IsZero() {
				q += len(p.q)
			}
			p.mu.Unlock()
		}
		ps.mu.Unlock()
		if q == 0 {
			return
		}
		select {
		case <-ctx.Done():
			ps.s.log.Warn("shutting down with batches not forwarded", "batches", q)
			return
		case <-t.C:
		}
	}
}

// stats returns the batches queued over all peers and the number of peers.
func (ps *peerSet) stats() (queued, peers int) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for _, p := range ps.peers {
		queued += p.pending()
	}
	return queued, len(ps.peers)
}

func (ps *peerSet) urls() []string {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	out := make([]string, 0, len(ps.peers))
	for u := range ps.peers {
		out = append(out, u)
	}
	slices.Sort(out)
	return out
}

// PendingForwards is the number of batches queued for peers; tests and
// shutdown wait for it to reach 0.
func (s *Server) PendingForwards() int {
	q, _ := s.peers.stats()
	return q
}

func (s *Server) handleReplicate(w http.ResponseWriter, r *http.Request) {
	if s.cfg.ReplicaAuth == nil {
		http.NotFound(w, r)
		return
	}
	start := time.Now()
	accepted, dups, result := s.serveReplicate(w, r)
	if result != "" {
		s.metrics.batches.WithLabelValues(sourcePeer, result).Inc()
		return
	}
	s.metrics.batches.WithLabelValues(sourcePeer, batchAccepted).Add(float64(accepted))
	s.metrics.batches.WithLabelValues(sourcePeer, batchDuplicate).Add(float64(dups))
	s.metrics.ingest.WithLabelValues(sourcePeer).Observe(time.Since(start).Seconds())
}

// serveReplicate applies a peer's forwarded batches. Every frame is decoded
// before any is applied, so a bad request changes nothing.
func (s *Server) serveReplicate(w http.ResponseWriter, r *http.Request) (accepted, dups int, result string) {
	if !s.bootstrapped.Load() {
		// Until the snapshot is merged a forwarded batch could be counted
		// twice (once here, once in the snapshot); the peer retries.
		w.Header().Set(StateHeader, "bootstrapping")
		return 0, 0, unavailable(w, "replica is bootstrapping")
	}
	if res, ok := s.authenticate(w, r, s.cfg.ReplicaAuth); !ok {
		return 0, 0, res
	}
	body, res, ok := s.readBatchBody(w, r, ReplicateContentType, s.cfg.MaxBodyBytes+1<<20)
	if !ok {
		return 0, 0, res
	}
	frames, err := decodeFrames(body)
	if err != nil {
		httpError(w, http.StatusBadRequest, "malformed replication body: %v", err)
		return 0, 0, batchMalformed
	}
	batches := make([]*wire.Batch, len(frames))
	for i, f := range frames {
		if batches[i], err = wire.Decode(f.data); err != nil {
			return 0, 0, decodeError(w, fmt.Errorf("frame %d: %w", i, err))
		}
	}
	now := s.now().UnixNano()
	for i, b := range batches {
		// Trust the peer's receive time so both replicas bucket a result
		// alike; only never in this replica's future.
		if _, dup := s.apply(b, time.Unix(0, min(frames[i].recv, now)), sourcePeer); dup {
			dups++
		} else {
			accepted++
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]int{"accepted": accepted, "duplicate": dups})
	return accepted, dups, ""
}

// replicaSnapshot is the state a starting replica takes from a peer.
type replicaSnapshot struct {
	Version      int
	Taken        time.Time
	Stats        *stats.Snapshot
	Dedup        dedupSnapshot
	Cells        []cellSnapshot
	Outcomes     []outcomeSnapshot
	OutcomeWidth time.Duration
}

// takeSnapshot is a consistent cut: no batch is half applied in it.
func (s *Server) takeSnapshot() *replicaSnapshot {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	sn := &replicaSnapshot{Version: snapshotVersion, Taken: s.now(), Stats: s.store.Snapshot(),
		Dedup: s.dedup.snapshot(), OutcomeWidth: outcomeWidth}
	sn.Cells, sn.Outcomes = s.state.snapshot()
	return sn
}

func (s *Server) handleSnapshot(w http.ResponseWriter, r *http.Request) {
	if s.cfg.ReplicaAuth == nil {
		http.NotFound(w, r)
		return
	}
	if _, ok := s.authenticate(w, r, s.cfg.ReplicaAuth); !ok {
		return
	}
	if !s.bootstrapped.Load() {
		w.Header().Set(StateHeader, "bootstrapping")
		unavailable(w, "replica is bootstrapping itself")
		return
	}
	// Register the requester before the cut: every batch accepted after it
	// is then queued for the requester, and those before are in the
	// snapshot (some in both, which its dedup absorbs).
	if u := r.Header.Get(ReplicaHeader); u != "" {
		// A replica may register itself only: the URL's host must be the
		// address the request came from, or a leaked replica credential
		// could point forwarding (and our token) anywhere.
		nu, err := normalizeURL(u)
		if err == nil && sameHost(nu, r.RemoteAddr) {
			s.peers.add(nu, false)
		} else {
			s.log.Warn("ignoring a replica URL that is not the requester's own", "url", u, "from", r.RemoteAddr)
		}
	}
	sn := s.takeSnapshot()
	w.Header().Set("Content-Type", SnapshotContentType)
	if err := gob.NewEncoder(w).Encode(sn); err != nil {
		s.log.Warn("sending snapshot", "peer", r.RemoteAddr, "error", err)
	}
}

// sameHost reports whether base URL u points at the host of remoteAddr.
func sameHost(u, remoteAddr string) bool {
	pu, err := url.Parse(u)
	if err != nil {
		return false
	}
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		return false
	}
	a, errA := netip.ParseAddr(pu.Hostname())
	b, errB := netip.ParseAddr(host)
	return errA == nil && errB == nil && a.Unmap() == b.Unmap()
}

// limitedBody reads at most left bytes and then fails, naming the limit: a
// snapshot comes from whatever the peer list names, and decoding must not
// grow without bound.
type limitedBody struct {
	r    io.Reader
	left int64
}

func (l *limitedBody) Read(p []byte) (int, error) {
	if l.left <= 0 {
		return 0, errSnapshotTooLarge
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}

var errSnapshotTooLarge = errors.New("snapshot larger than the limit (Config.MaxSnapshotBytes)")

// errBootstrapping is a peer that is itself starting.
var errBootstrapping = errors.New("peer is bootstrapping")

func (s *Server) fetchSnapshot(ctx context.Context, url string) (*replicaSnapshot, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+SnapshotPath, nil)
	if err != nil {
		return nil, err
	}
	tok, err := s.cfg.ReplicaToken()
	if err != nil {
		return nil, fmt.Errorf("replica token: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	if s.cfg.SelfURL != "" {
		req.Header.Set(ReplicaHeader, s.cfg.SelfURL)
	}
	resp, err := s.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get(StateHeader) == "bootstrapping" {
			return nil, errBootstrapping
		}
		return nil, &peerStatusError{code: resp.StatusCode, msg: string(bytes.TrimSpace(msg))}
	}
	var sn replicaSnapshot
	body := &limitedBody{r: resp.Body, left: s.cfg.MaxSnapshotBytes}
	if err := gob.NewDecoder(body).Decode(&sn); err != nil {
		return nil, fmt.Errorf("decoding snapshot: %w", err)
	}
	if sn.Version != snapshotVersion || sn.Stats == nil {
		return nil, fmt.Errorf("snapshot version %d, want %d", sn.Version, snapshotVersion)
	}
	return &sn, nil
}

func (s *Server) mergeSnapshot(sn *replicaSnapshot) error {
	if sn.Stats.RelativeAccuracy != s.store.RelativeAccuracy() || !slices.Equal(sn.Stats.Tiers, s.store.Tiers()) {
		return fmt.Errorf("peer's sketches differ (accuracy %v, tiers %v)", sn.Stats.RelativeAccuracy, sn.Stats.Tiers)
	}
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	err := s.store.MergeSnapshot(sn.Stats)
	s.dedup.merge(sn.Dedup, s.now())
	s.state.merge(sn.Cells, sn.Outcomes, sn.OutcomeWidth)
	return err
}

// candidates are the peers to bootstrap from: configured and discovered.
func (s *Server) candidates(ctx context.Context) []string {
	if s.cfg.LookupPeers != nil {
		s.lookupPeers(ctx)
	}
	return s.peers.urls()
}

func (s *Server) lookupPeers(ctx context.Context) {
	urls, err := s.cfg.LookupPeers(ctx)
	if err != nil {
		s.log.Warn("discovering peers", "error", err)
	}
	for _, u := range urls {
		if nu, err := normalizeURL(u); err == nil {
			s.peers.add(nu, false)
		}
	}
}

func (s *Server) discover(ctx context.Context) {
	t := time.NewTicker(s.cfg.PeerRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.lookupPeers(ctx)
		}
	}
}

// bootstrap merges a peer's snapshot before this replica turns ready. It
// gives up, starting empty, when no peer has state: after BootstrapGrace
// if every peer is unreachable or itself bootstrapping with a higher URL
// (the lower URL starts first, so two replicas starting together do not
// wait for each other), after BootstrapTimeout otherwise.
func (s *Server) bootstrap(ctx context.Context) {
	if len(s.cfg.Peers) == 0 && s.cfg.LookupPeers == nil {
		s.metrics.bootstrap.WithLabelValues("none").Inc()
		return
	}
	deadline := time.Now().Add(s.cfg.BootstrapTimeout)
	var quietSince time.Time
	for ctx.Err() == nil {
		quiet := true
		for _, url := range s.candidates(ctx) {
			sn, err := s.fetchSnapshot(ctx, url)
			if err == nil {
				if err := s.mergeSnapshot(sn); err != nil {
					s.metrics.bootstrap.WithLabelValues("failed").Inc()
					s.log.Error("merging a peer's snapshot", "peer", url, "error", err)
					quiet = false
					continue
				}
				s.metrics.bootstrap.WithLabelValues("merged").Inc()
				s.log.Info("bootstrapped from peer", "peer", url, "series", len(sn.Stats.Series), "cells", len(sn.Cells), "taken", sn.Taken)
				return
			}
			var op *net.OpError
			switch {
			case errors.Is(err, errBootstrapping) && s.cfg.SelfURL != "" && s.cfg.SelfURL < url:
			case errors.As(err, &op) && op.Op == "dial":
			default:
				quiet = false
				s.log.Info("peer has no snapshot for us yet", "peer", url, "error", err)
			}
		}
		now := time.Now()
		if !quiet {
			quietSince = time.Time{}
		} else if quietSince.IsZero() {
			quietSince = now
		}
		if (quiet && now.Sub(quietSince) >= s.cfg.BootstrapGrace) || now.After(deadline) {
			s.metrics.bootstrap.WithLabelValues("empty").Inc()
			s.log.Warn("no peer had state to bootstrap from; starting empty")
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
}
