package aggregator

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/xosprobe/xosprobe/aggregator/auth"
	"github.com/xosprobe/xosprobe/aggregator/stats"
	"github.com/xosprobe/xosprobe/aggregator/wire"
)

// IngestResponse is the JSON body of a 200 answer to a batch.
type IngestResponse struct {
	Batch string `json:"batch"`
	// Status is "accepted", or "duplicate" for a batch ID already counted
	// (a retry, or a batch a peer replica forwarded first); a duplicate
	// changes nothing.
	Status    string         `json:"status"`
	Results   int            `json:"results"`
	Ingested  int            `json:"ingested"`
	Skipped   int            `json:"skipped"`
	SkippedBy map[string]int `json:"skippedBy,omitempty"`
}

// BatchStatusHeader carries IngestResponse.Status for clients that skip the body.
const BatchStatusHeader = "Xosprobe-Batch-Status"

// Reasons a result or phase is skipped (labels of ResultsSkipped, PhasesSkipped).
const (
	skipUnknownCheck = "unknown_check"
	skipUnknownOS    = "unknown_os"
	skipUnknownPhase = "unknown_phase"
	skipTooOld       = "too_old"
	skipSeriesLimit  = "series_limit"
	skipInvalid      = "invalid"
)

func (s *Server) handleResults(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	result := s.serveResults(w, r)
	s.metrics.batches.WithLabelValues(sourceAgent, result).Inc()
	if result == batchAccepted || result == batchDuplicate {
		s.metrics.ingest.WithLabelValues(sourceAgent).Observe(time.Since(start).Seconds())
	}
}

// serveResults answers one agent batch and returns the Batches result label.
func (s *Server) serveResults(w http.ResponseWriter, r *http.Request) string {
	if !s.bootstrapped.Load() {
		return unavailable(w, "aggregator is starting: bootstrapping from its peer replica")
	}
	// Authenticate before reading the body: an anonymous client must not make
	// us read and decode 8 MiB.
	if res, ok := s.authenticate(w, r, s.cfg.Auth); !ok {
		return res
	}
	body, res, ok := s.readBatchBody(w, r, wire.ContentType, s.cfg.MaxBodyBytes)
	if !ok {
		return res
	}
	b, err := wire.Decode(body)
	if err != nil {
		return decodeError(w, err)
	}
	if osIndex(b.Agent.OS) < 0 {
		httpError(w, http.StatusBadRequest, "malformed batch: agent os: %q is not one of %s", b.Agent.OS, strings.Join(oses, ", "))
		return batchMalformed
	}
	recv := s.now()
	out, dup := s.apply(b, recv, sourceAgent)
	if !dup {
		s.peers.enqueue(frame{recv: recv.UnixNano(), data: body})
	}
	writeIngestResponse(w, b, out, dup)
	if dup {
		return batchDuplicate
	}
	return batchAccepted
}

func writeIngestResponse(w http.ResponseWriter, b *wire.Batch, out applied, dup bool) {
	resp := IngestResponse{Batch: b.ID, Status: batchAccepted, Results: len(b.Results)}
	if dup {
		resp.Status = batchDuplicate
	} else {
		resp.Ingested = len(b.Results) - out.skippedTotal()
		resp.Skipped = out.skippedTotal()
		if resp.Skipped > 0 {
			resp.SkippedBy = map[string]int{}
			for i, n := range out.skipped {
				if n > 0 {
					resp.SkippedBy[skipReasons[i]] = n
				}
			}
		}
	}
	w.Header().Set(BatchStatusHeader, resp.Status)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

// authenticate checks the bearer token and writes the error answer when it
// fails: 401 for a missing or invalid token (WWW-Authenticate says which),
// 403 for a valid identity that is not allowed, 503 when it cannot decide.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request, a auth.Authenticator) (string, bool) {
	src, now := sourceAddr(r.RemoteAddr), s.now()
	tok, err := auth.BearerToken(r)
	if err == nil && s.authFailures.spent(src, now) {
		if k, ok := a.(interface{ Known(string) bool }); !ok || !k.Known(tok) {
			w.Header().Set("Retry-After", strconv.Itoa(int(s.cfg.AuthFailureEvery.Seconds())+1))
			httpError(w, http.StatusTooManyRequests, "too many failed authentications from %s: retry later with a valid token", src)
			return batchRejectedAuth, false
		}
	}
	if err == nil {
		_, err = a.Authenticate(r.Context(), tok)
	}
	if errors.Is(err, auth.ErrNoToken) || errors.Is(err, auth.ErrUnauthenticated) || errors.Is(err, auth.ErrForbidden) {
		s.authFailures.failed(src, now)
	}
	switch {
	case err == nil:
		return "", true
	case errors.Is(err, auth.ErrNoToken):
		w.Header().Set("WWW-Authenticate", `Bearer realm="xosprobe-aggregator"`)
		httpError(w, http.StatusUnauthorized, "missing bearer token: send Authorization: Bearer <token>")
	case errors.Is(err, auth.ErrUnauthenticated):
		w.Header().Set("WWW-Authenticate", `Bearer realm="xosprobe-aggregator", error="invalid_token"`)
		httpError(w, http.StatusUnauthorized, "%v", err)
	case errors.Is(err, auth.ErrForbidden):
		httpError(w, http.StatusForbidden, "%v", err)
	default:
		s.log.Warn("cannot authenticate a request", "error", err)
		w.Header().Set("Retry-After", "5")
		httpError(w, http.StatusServiceUnavailable, "cannot verify the token now: %v", err)
		return batchUnavailable, false
	}
	return batchRejectedAuth, false
}

// readBatchBody checks the media type and reads at most limit bytes.
func (s *Server) readBatchBody(w http.ResponseWriter, r *http.Request, contentType string, limit int64) ([]byte, string, bool) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != contentType {
		w.Header().Set("Accept-Post", contentType)
		httpError(w, http.StatusUnsupportedMediaType, "content type %q not supported: send %s", r.Header.Get("Content-Type"), contentType)
		return nil, batchUnsupported, false
	}
	if r.ContentLength > limit {
		httpError(w, http.StatusRequestEntityTooLarge, "batch of %d bytes is over the %d-byte limit: split it", r.ContentLength, limit)
		return nil, batchTooLarge, false
	}
	reserve := limit
	if r.ContentLength >= 0 {
		reserve = r.ContentLength
	}
	release, refused := s.ingestBudget.take(sourceAddr(r.RemoteAddr), reserve)
	if refused != "" {
		w.Header().Set("Retry-After", "1")
		if refused == "source" {
			httpError(w, http.StatusTooManyRequests, "this source has %d bytes of bodies being read already: send one batch at a time", s.cfg.MaxIngestBytesPerSource)
		} else {
			httpError(w, http.StatusServiceUnavailable, "%d bytes of bodies being read already: retry", s.cfg.MaxIngestBytes)
		}
		return nil, batchUnavailable, false
	}
	defer release()
	// The buffer grows as the body arrives: a declared length is not memory
	// until its bytes come (ReadTimeout ends a body that never does).
	size := int64(64 << 10)
	if r.ContentLength >= 0 {
		size = min(size, r.ContentLength)
	}
	buf := make([]byte, 0, size+1) // +1: ReadAll's final read sees EOF without growing
	body, err := readAllInto(buf, http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			httpError(w, http.StatusRequestEntityTooLarge, "batch is over the %d-byte limit: split it", limit)
			return nil, batchTooLarge, false
		}
		httpError(w, http.StatusBadRequest, "reading the body: %v", err)
		return nil, batchMalformed, false
	}
	return body, "", true
}

func readAllInto(b []byte, r io.Reader) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// decodeError answers a batch that does not decode: 415 for a format version
// this build cannot read, 400 naming the field otherwise.
func decodeError(w http.ResponseWriter, err error) string {
	var ve *wire.VersionError
	if errors.As(err, &ve) {
		httpError(w, http.StatusUnsupportedMediaType, "%v", err)
		return batchUnsupported
	}
	httpError(w, http.StatusBadRequest, "malformed batch: %v", err)
	return batchMalformed
}

func unavailable(w http.ResponseWriter, msg string) string {
	w.Header().Set("Retry-After", "1")
	httpError(w, http.StatusServiceUnavailable, "%s", msg)
	return batchUnavailable
}

func httpError(w http.ResponseWriter, code int, format string, args ...any) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	fmt.Fprintf(w, format+"\n", args...)
}

// applied counts what apply skipped, by reason.
type applied struct {
	skipped [len(skipReasons)]int
}

var skipReasons = [...]string{skipUnknownCheck, skipUnknownOS, skipTooOld}

func (a applied) skippedTotal() int {
	n := 0
	for _, v := range a.skipped {
		n += v
	}
	return n
}

// scratch is one apply's working memory, pooled: ingest allocates nothing
// per result beyond what the decoder does.
type scratch struct {
	obs     []stats.Observation
	slot    []uint16
	sorted  []stats.Observation
	updates []cellUpdate
	pairs   [nChecks][nPairs][nOutcomes]uint32
	oc      outcomeCounter
	offsets [nChecks * nPhases * nOS * nOS]int
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// apply counts a batch once: it returns dup=true and changes nothing when
// the batch ID was seen before. recv is the aggregator's receive time (for
// a forwarded batch, the receiving peer's): each result is placed at recv
// minus its age by the agent's own clock (Sent - Start), so a skewed agent
// clock shifts nothing, and nothing lands in the future.
func (s *Server) apply(b *wire.Batch, recv time.Time, source string) (out applied, dup bool) {
	// The read lock makes claim-and-apply atomic with respect to a snapshot:
	// a peer never gets a batch's ID without its data, or the reverse.
	s.applyMu.RLock()
	defer s.applyMu.RUnlock()
	if !s.dedup.claim(hashID(b.ID), s.now()) {
		return out, true
	}
	sc := scratchPool.Get().(*scratch)
	defer scratchPool.Put(sc)
	sc.obs, sc.slot, sc.updates = sc.obs[:0], sc.slot[:0], sc.updates[:0]

	src := osIndex(b.Agent.OS)
	if src < 0 { // agents' batches are refused earlier; a peer's should never get here
		out.skipped[1] = len(b.Results)
		s.metrics.skipped.WithLabelValues(skipUnknownOS).Add(float64(len(b.Results)))
		return out, false
	}
	recvNS, sentNS := recv.UnixNano(), b.Sent.UnixNano()
	oldest := recvNS - int64(s.maxAge)
	var unknownPhases int
	for i := range b.Results {
		r := &b.Results[i]
		ci := checkIndex(r.Check)
		if ci < 0 {
			out.skipped[0]++
			continue
		}
		di := osIndex(r.DstOS)
		if di < 0 {
			out.skipped[1]++
			continue
		}
		at := recvNS - max(sentNS-r.Start.UnixNano(), 0)
		if at < oldest {
			out.skipped[2]++
			continue
		}
		oi := outcomeIndex(r.Outcome)
		pi := pairIndex(src, di)
		sc.pairs[ci][pi][oi]++
		sc.oc.add(s.state, ci, pi, at, oi == 0)
		u := cellUpdate{dst: r.DstNode, check: uint8(ci), dstOS: uint8(di), outcome: uint8(oi), at: at}
		for _, p := range r.Phases {
			phi := phaseIndex(p.Name)
			if phi < 0 {
				unknownPhases++
				continue
			}
			u.us[phi], u.mask = micros(p.Duration), u.mask|1<<phi
			// Phases of a failed run are partial and would skew the
			// distribution; only successes feed the sketches.
			if oi == 0 {
				sc.obs = append(sc.obs, stats.Observation{Key: s.keys[ci][phi][src][di], Value: p.Duration.Seconds(), At: time.Unix(0, at)})
				sc.slot = append(sc.slot, uint16(((ci*nPhases+phi)*nOS+src)*nOS+di))
			}
		}
		if r.DstNode != "" {
			sc.updates = append(sc.updates, u)
		}
	}

	s.addObservations(sc)
	if dropped := s.state.apply(b.Agent.Node, uint8(src), sc.updates, &sc.oc); dropped > 0 {
		s.metrics.cellsDropped.Add(float64(dropped))
	}
	for ci := range nChecks {
		for pi := range nPairs {
			for oi := range nOutcomes {
				if n := sc.pairs[ci][pi][oi]; n > 0 {
					s.pairCounts[ci][pi][oi].Add(uint64(n))
					sc.pairs[ci][pi][oi] = 0
				}
			}
		}
	}
	if n := len(b.Results) - out.skippedTotal(); n > 0 {
		s.metrics.results.WithLabelValues(source).Add(float64(n))
	}
	for i, n := range out.skipped {
		if n > 0 {
			s.metrics.skipped.WithLabelValues(skipReasons[i]).Add(float64(n))
		}
	}
	if unknownPhases > 0 {
		s.metrics.phasesSkipped.WithLabelValues(skipUnknownPhase).Add(float64(unknownPhases))
	}
	return out, false
}

// addObservations groups the batch's observations by series with a counting
// sort (the keys are a small dense index), so AddBatch takes each series'
// lock once per batch.
func (s *Server) addObservations(sc *scratch) {
	if len(sc.obs) == 0 {
		return
	}
	clear(sc.offsets[:])
	for _, k := range sc.slot {
		sc.offsets[k]++
	}
	sum := 0
	for i, n := range sc.offsets {
		sc.offsets[i] = sum
		sum += n
	}
	if cap(sc.sorted) < len(sc.obs) {
		sc.sorted = make([]stats.Observation, len(sc.obs))
	}
	sorted := sc.sorted[:len(sc.obs)]
	for i, k := range sc.slot {
		sorted[sc.offsets[k]] = sc.obs[i]
		sc.offsets[k]++
	}
	added, err := s.store.AddBatch(sorted)
	if lost := len(sorted) - added; lost > 0 {
		reason := skipInvalid
		switch {
		case errors.Is(err, stats.ErrTooOld):
			reason = skipTooOld
		case errors.Is(err, stats.ErrTooManySeries):
			reason = skipSeriesLimit
		}
		s.metrics.phasesSkipped.WithLabelValues(reason).Add(float64(lost))
	}
}
