// Package reporter ships probe results to the aggregator in batches.
//
// Probing never waits on the aggregator: Add only appends to a bounded ring
// buffer, dropping (and counting) the oldest result when it is full. One
// goroutine cuts batches from the buffer and POSTs them; a failed batch is
// retried with exponential backoff and full jitter under the same batch ID,
// so the aggregator counts it once however often it arrives. Memory is the
// buffer plus the one batch in flight, whatever the aggregator does.
package reporter

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/xosprobe/xosprobe/aggregator/wire"
)

// Path is where the aggregator accepts batches.
const Path = "/api/v1/results"

// Config tunes the reporter.
type Config struct {
	URL           string        // aggregator base URL, e.g. http://xosprobe-aggregator.xosprobe.svc:9446
	Agent         wire.Agent    // the sender, stamped on every batch
	BufferSize    int           // results held while the aggregator is away
	MaxBatch      int           // results per POST
	FlushInterval time.Duration // how often a partial batch is sent
	Timeout       time.Duration // per POST
	MinBackoff    time.Duration
	MaxBackoff    time.Duration
	// Token returns the bearer token for each request (re-read so a rotated
	// projected ServiceAccount token is picked up); nil sends none.
	Token func() (string, error)
}

// DefaultConfig buffers 10 minutes of a 100-peer agent at a 10 s interval.
func DefaultConfig() Config {
	return Config{BufferSize: 50_000, MaxBatch: 5_000, FlushInterval: 2 * time.Second,
		Timeout: 10 * time.Second, MinBackoff: 250 * time.Millisecond, MaxBackoff: 30 * time.Second}
}

// Stats is where the reporter counts what happened; the agent wires it to metrics.
type Stats interface {
	Buffered(n int)
	Sent(n int)
	Dropped(reason string, n int)
	SendError(reason string)
}

// Reporter batches and sends results. Create with New; Add from any goroutine.
type Reporter struct {
	cfg    Config
	client *http.Client
	log    *slog.Logger
	stats  Stats

	// pending holds cut batches the aggregator has not acknowledged. They are
	// retried under their own IDs, never re-cut into new batches, which the
	// aggregator could count twice. Only the Run goroutine touches it; it
	// holds at most one batch's results (split halves included).
	pending []*wire.Batch

	mu   sync.Mutex
	ring []wire.Result // circular buffer of cap BufferSize
	head int           // index of the oldest result
	n    int           // results in the ring
	kick chan struct{}

	idPrefix string
	seq      uint64
}

// New returns a Reporter; call Run to start sending.
func New(cfg Config, client *http.Client, stats Stats, log *slog.Logger) *Reporter {
	d := DefaultConfig()
	if cfg.BufferSize <= 0 {
		cfg.BufferSize = d.BufferSize
	}
	if cfg.MaxBatch <= 0 || cfg.MaxBatch > wire.MaxResults {
		cfg.MaxBatch = min(d.MaxBatch, wire.MaxResults)
	}
	cfg.MaxBatch = min(cfg.MaxBatch, cfg.BufferSize)
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = d.FlushInterval
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = d.Timeout
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = d.MinBackoff
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(d.MaxBackoff, cfg.MinBackoff)
	}
	return &Reporter{cfg: cfg, client: client, stats: stats, log: log,
		ring: make([]wire.Result, cfg.BufferSize), kick: make(chan struct{}, 1),
		idPrefix: batchIDPrefix(cfg.Agent.Pod, rand.Uint64())}
}

// maxSplitSuffix is the room a batch ID keeps for the "a"/"b" a split adds,
// once per halving of a batch the aggregator found too large.
const maxSplitSuffix = 24

// batchIDPrefix starts every batch ID of this process: the pod (so an ID
// says whose it is) and a nonce, so a restarted agent's IDs never collide
// with its predecessor's. A pod name may be 253 characters, more than an ID
// holds (wire.MaxIDLen): a long one is cut and completed with a hash of the
// whole name, so the ID keeps room for the sequence number and splits and
// stays unique per pod.
func batchIDPrefix(pod string, nonce uint64) string {
	const keep = 40
	if len(pod) > keep+17 {
		sum := sha256.Sum256([]byte(pod))
		pod = pod[:keep] + "~" + hex.EncodeToString(sum[:8])
	}
	return pod + "/" + strconv.FormatUint(nonce, 36) + "/"
}

// Add queues a result. It never blocks; when the buffer is full the oldest
// result is dropped and counted.
func (r *Reporter) Add(res wire.Result) {
	r.mu.Lock()
	dropped := false
	if r.n == len(r.ring) {
		r.ring[r.head] = wire.Result{}
		r.head = (r.head + 1) % len(r.ring)
		r.n--
		dropped = true
	}
	r.ring[(r.head+r.n)%len(r.ring)] = res
	r.n++
	full := r.n >= r.cfg.MaxBatch
	n := r.n
	r.mu.Unlock()
	if dropped {
		r.stats.Dropped("buffer_full", 1)
	}
	r.stats.Buffered(n)
	if full {
		select {
		case r.kick <- struct{}{}:
		default:
		}
	}
}

// take removes up to max results from the front of the ring.
func (r *Reporter) take(limit int) []wire.Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := min(limit, r.n)
	out := make([]wire.Result, k)
	for i := range k {
		j := (r.head + i) % len(r.ring)
		out[i] = r.ring[j]
		r.ring[j] = wire.Result{}
	}
	r.head = (r.head + k) % len(r.ring)
	r.n -= k
	r.stats.Buffered(r.n)
	return out
}

// Run sends batches until ctx ends, then makes one last attempt to flush
// what is buffered within a short grace period.
func (r *Reporter) Run(ctx context.Context) {
	t := time.NewTicker(r.cfg.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			gctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			r.flush(gctx, false)
			cancel()
			lost := len(r.take(len(r.ring)))
			for _, b := range r.pending {
				lost += len(b.Results)
			}
			if lost > 0 {
				r.stats.Dropped("shutdown", lost)
			}
			return
		case <-t.C:
		case <-r.kick:
		}
		r.flush(ctx, true)
	}
}

// flush sends everything buffered, batch by batch. With retry, a failing batch
// is retried with backoff until it is accepted, rejected or ctx ends.
func (r *Reporter) flush(ctx context.Context, retry bool) {
	for ctx.Err() == nil {
		var b *wire.Batch
		if len(r.pending) > 0 {
			b, r.pending = r.pending[0], r.pending[1:]
		} else {
			results := r.take(r.cfg.MaxBatch)
			if len(results) == 0 {
				return
			}
			r.seq++
			b = &wire.Batch{ID: r.idPrefix + strconv.FormatUint(r.seq, 10), Agent: r.cfg.Agent, Results: results}
		}
		if !r.deliver(ctx, b, retry) {
			return
		}
	}
}

// deliver sends b until it is accepted (true) or given up (false); a batch
// given up is left at the front of pending. Splits it in halves when the
// aggregator says it is too large.
func (r *Reporter) deliver(ctx context.Context, b *wire.Batch, retry bool) bool {
	backoff := r.cfg.MinBackoff
	for attempt := 1; ; attempt++ {
		b.Sent = time.Now()
		err := r.send(ctx, b)
		var se *statusError
		switch {
		case err == nil:
			r.stats.Sent(len(b.Results))
			return true
		case errors.As(err, &se) && se.code == http.StatusRequestEntityTooLarge && len(b.Results) > 1:
			r.stats.SendError("too_large")
			half := len(b.Results) / 2
			first := &wire.Batch{ID: b.ID + "a", Agent: b.Agent, Results: b.Results[:half]}
			second := &wire.Batch{ID: b.ID + "b", Agent: b.Agent, Results: b.Results[half:]}
			if !r.deliver(ctx, first, retry) {
				r.pending = slices.Insert(r.pending, 1, second) // right behind first
				return false
			}
			return r.deliver(ctx, second, retry)
		case errors.As(err, &se) && se.permanent():
			r.stats.SendError(se.reason())
			r.stats.Dropped("rejected", len(b.Results))
			r.log.Error("aggregator rejected a batch; dropping it", "batch", b.ID, "results", len(b.Results), "status", se.code, "error", se.body)
			return true
		}
		reason := "network"
		if errors.As(err, &se) {
			reason = se.reason()
			if se.retryAfter > 0 {
				backoff = se.retryAfter
			}
		}
		r.stats.SendError(reason)
		if attempt == 1 || attempt%10 == 0 {
			r.log.Warn("sending results to the aggregator failed; retrying", "batch", b.ID, "attempt", attempt, "error", err)
		}
		if !retry || ctx.Err() != nil {
			r.pending = slices.Insert(r.pending, 0, b)
			return false
		}
		// Full jitter: spread the agents of a whole cluster when the aggregator returns.
		wait := time.Duration(rand.Int64N(int64(backoff)) + 1)
		select {
		case <-ctx.Done():
			r.pending = slices.Insert(r.pending, 0, b)
			return false
		case <-time.After(wait):
		}
		backoff = min(backoff*2, r.cfg.MaxBackoff)
	}
}

type statusError struct {
	code       int
	body       string
	retryAfter time.Duration
}

func (e *statusError) Error() string {
	return fmt.Sprintf("aggregator answered %d: %s", e.code, e.body)
}

// permanent: the same batch will never be accepted. 401 is not: the token may
// have rotated since.
func (e *statusError) permanent() bool {
	return e.code >= 400 && e.code < 500 && e.code != http.StatusUnauthorized &&
		e.code != http.StatusRequestTimeout && e.code != http.StatusTooManyRequests
}

func (e *statusError) reason() string {
	switch {
	case e.code == http.StatusUnauthorized, e.code == http.StatusForbidden:
		return "unauthorized"
	case e.code == http.StatusTooManyRequests:
		return "throttled"
	case e.code >= 500:
		return "server_error"
	}
	return "rejected"
}

func (r *Reporter) send(ctx context.Context, b *wire.Batch) error {
	body, err := wire.Encode(nil, b)
	if err != nil {
		return &statusError{code: http.StatusBadRequest, body: "encoding: " + err.Error()}
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.cfg.URL+Path, bytes.NewReader(body))
	if err != nil {
		return &statusError{code: http.StatusBadRequest, body: err.Error()}
	}
	req.Header.Set("Content-Type", wire.ContentType)
	if r.cfg.Token != nil {
		tok, err := r.cfg.Token()
		if err != nil {
			return fmt.Errorf("reading token: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // let the connection be reused
	if resp.StatusCode/100 == 2 {
		return nil
	}
	se := &statusError{code: resp.StatusCode, body: string(bytes.TrimSpace(msg))}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		se.retryAfter = min(time.Duration(s)*time.Second, r.cfg.MaxBackoff)
	}
	return se
}
