package aggregator

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/xosprobe/xosprobe/aggregator/wire"
)

// checkPhases is what the six checks time on success: 11 (check, phase)
// series per OS pair, 44 in all. The store allows all 6x7x4 = 168.
var checkPhases = map[string][]string{
	"dns":          {"resolve_system", "resolve_direct", "resolve_short"},
	"tcp":          {"connect"},
	"http":         {"connect", "first_byte", "total"},
	"service":      {"connect", "first_byte", "total"},
	"netpol-allow": {"connect"},
	"netpol-deny":  nil, // a blocked connection has no phase to time
}

// realisticBatch is one agent's batch: k peers x 6 checks x rounds, a
// third of the peers Windows, 1% failures, lognormal latencies.
func realisticBatch(r *rand.Rand, node, os string, k, rounds int, sent time.Time) *wire.Batch {
	b := &wire.Batch{ID: fmt.Sprintf("%-40s", node+"/0"), Agent: wire.Agent{Pod: "xosprobe-agent-" + node, Node: node, OS: os}, Sent: sent}
	for round := range rounds {
		for p := range k {
			dstOS := "linux"
			if p%3 == 0 {
				dstOS = "windows"
			}
			dst := fmt.Sprintf("node-%04d", (p*37+len(node))%5000)
			start := sent.Add(-time.Duration(rounds-round) * time.Second)
			for _, c := range checks {
				outcome := "success"
				if r.IntN(100) == 0 {
					outcome = "connect_timeout"
				}
				res := wire.Result{Check: c, DstPod: "xosprobe-agent-" + dst, DstNode: dst, DstOS: dstOS, Outcome: outcome, Start: start}
				for _, ph := range checkPhases[c] {
					d := time.Duration(float64(500*time.Microsecond) * math.Exp(0.5*r.NormFloat64()))
					if os == "windows" || dstOS == "windows" {
						d += 8 * time.Millisecond
					}
					res.Phases = append(res.Phases, wire.Phase{Name: ph, Duration: d})
				}
				b.Results = append(b.Results, res)
			}
		}
	}
	return b
}

// ingestCorpus is bodies of realistic batches whose IDs are a fixed-width
// field, so a benchmark can make each one unique in place.
type ingestCorpus struct {
	bodies  [][]byte
	idAt    []int // offset of the ID's first byte
	results int   // per pass over bodies
}

func newIngestCorpus(b *testing.B, batches, k, rounds int) *ingestCorpus {
	r := rand.New(rand.NewPCG(1, 2))
	c := &ingestCorpus{}
	for i := range batches {
		os := "linux"
		if i%5 == 0 {
			os = "windows"
		}
		batch := realisticBatch(r, fmt.Sprintf("node-%04d", i), os, k, rounds, time.Now())
		body, err := wire.Encode(nil, batch)
		if err != nil {
			b.Fatal(err)
		}
		c.bodies = append(c.bodies, body)
		c.idAt = append(c.idAt, bytes.Index(body, []byte(batch.ID)))
		c.results += len(batch.Results)
	}
	return c
}

// stamp writes a unique sequence number into body i's ID.
func (c *ingestCorpus) stamp(i int, seq uint64) []byte {
	body := c.bodies[i]
	copy(body[c.idAt[i]+20:], fmt.Appendf(nil, "%020d", seq))
	return body
}

func benchServer(b *testing.B) *Server {
	s, err := New(Config{Auth: sharedAuth(b, testToken)})
	if err != nil {
		b.Fatal(err)
	}
	s.bootstrapped.Store(true)
	s.setReady(true)
	return s
}

// BenchmarkIngest is the aggregator's per-result cost on one core: decode,
// dedup, validate, sketch merge, node-pair cells and counters, no HTTP.
// Batches are an agent's 2 s flush at k=10 peers, 6 checks, 1 s interval
// (120 results), or a larger backlog batch. Run with -cpu 1.
func BenchmarkIngest(b *testing.B) {
	for _, tc := range []struct {
		name          string
		k, rounds, nb int
	}{{"batch=120", 10, 2, 500}, {"batch=3000", 10, 50, 40}} {
		b.Run(tc.name, func(b *testing.B) {
			s := benchServer(b)
			c := newIngestCorpus(b, tc.nb, tc.k, tc.rounds)
			b.SetBytes(int64(len(c.bodies[0])))
			b.ReportAllocs()
			b.ResetTimer()
			var results int
			for i := range b.N {
				j := i % len(c.bodies)
				batch, err := wire.Decode(c.stamp(j, uint64(i)))
				if err != nil {
					b.Fatal(err)
				}
				if _, dup := s.apply(batch, time.Now(), sourceAgent); dup {
					b.Fatal("duplicate")
				}
				results += len(batch.Results)
			}
			b.ReportMetric(float64(results)/b.Elapsed().Seconds(), "results/s")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(results), "ns/result")
		})
	}
}

// BenchmarkIngestHTTP adds the handler: auth, content type, body read,
// response. No network: the request goes straight to ServeHTTP.
func BenchmarkIngestHTTP(b *testing.B) {
	s := benchServer(b)
	h := s.Handler()
	c := newIngestCorpus(b, 500, 10, 2)
	b.ReportAllocs()
	b.ResetTimer()
	var results int
	for i := range b.N {
		j := i % len(c.bodies)
		req := httptest.NewRequest(http.MethodPost, ResultsPath, bytes.NewReader(c.stamp(j, uint64(i))))
		req.Header.Set("Content-Type", wire.ContentType)
		req.Header.Set("Authorization", "Bearer "+testToken)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatal(w.Code, w.Body.String())
		}
		results += c.results / len(c.bodies)
	}
	b.ReportMetric(float64(results)/b.Elapsed().Seconds(), "results/s")
}

// fillStore gives every realistic series data in every bucket of every
// tier, as 65 minutes of a 5,000-node cluster would: per 10 s bucket and
// series, `perBucket` lognormal values (the sketches' size depends on the
// value range, not the count).
func fillStore(b *testing.B, s *Server, now time.Time, perBucket int) {
	r := rand.New(rand.NewPCG(3, 4))
	span := 65 * time.Minute
	for t := now.Add(-span + time.Second); !t.After(now); t = t.Add(10 * time.Second) {
		for c, phs := range checkPhases {
			for _, ph := range phs {
				for _, src := range oses {
					for _, dst := range oses {
						k := s.keys[checkIndex(c)][phaseIndex(ph)][osIndex(src)][osIndex(dst)]
						shift := 0.0
						if src == "windows" || dst == "windows" {
							shift = 0.008
						}
						for range perBucket {
							v := 0.0005*math.Exp(0.5*r.NormFloat64()) + shift
							if err := s.store.Add(k, v, t); err != nil {
								b.Fatal(err)
							}
						}
					}
				}
			}
		}
	}
}

// BenchmarkComputeAll is one compute cycle over a full store: every pair's
// quantiles, all deltas with CIs, all regressions, and the metric cache.
func BenchmarkComputeAll(b *testing.B) {
	now := t0
	s, err := New(Config{Auth: sharedAuth(b, testToken), Now: func() time.Time { return now }})
	if err != nil {
		b.Fatal(err)
	}
	fillStore(b, s, now, 200)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := s.Compute(); err != nil {
			b.Fatal(err)
		}
	}
	c := s.computed.Load()
	b.ReportMetric(float64(c.series), "series")
	b.ReportMetric(float64(len(c.metrics)), "metrics")
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkMemory5000Nodes estimates the aggregator's memory for 5,000
// nodes x k=10 peers x 6 checks at a 1 s interval (300,000 results/s),
// agents flushing every 2 s (2,500 batches/s), after 65 minutes, by part:
//   - sketches: bounded by series x buckets, whatever the result rate;
//   - node-pair cells for /matrix: 5,000 x 10 x 6 = 300,000;
//   - batch IDs: 2,500/s over the 66-minute dedup TTL = 9.9 million hashes.
//
// Run with -benchtime=1x; it reports bytes, not time.
func BenchmarkMemory5000Nodes(b *testing.B) {
	for b.Loop() {
		now := t0
		base := heapInUse()
		s, err := New(Config{Auth: sharedAuth(b, testToken), Now: func() time.Time { return now }})
		if err != nil {
			b.Fatal(err)
		}
		fillStore(b, s, now, 200)
		sketches := heapInUse() - base

		base = heapInUse()
		r := rand.New(rand.NewPCG(5, 6))
		for n := range 5000 {
			os := "linux"
			if n%5 == 0 {
				os = "windows"
			}
			batch := realisticBatch(r, fmt.Sprintf("node-%04d", n), os, 10, 1, now)
			var updates []cellUpdate
			for _, res := range batch.Results {
				u := cellUpdate{dst: res.DstNode, check: uint8(checkIndex(res.Check)), dstOS: uint8(osIndex(res.DstOS)), at: now.UnixNano()}
				for _, p := range res.Phases {
					i := phaseIndex(p.Name)
					u.us[i], u.mask = micros(p.Duration), u.mask|1<<i
				}
				updates = append(updates, u)
			}
			var oc outcomeCounter
			s.state.apply(batch.Agent.Node, uint8(osIndex(os)), updates, &oc)
		}
		cells := heapInUse() - base

		base = heapInUse()
		const batchesPerSecond = 2500
		ttl := s.cfg.DedupTTL
		n := int(ttl.Seconds()) * batchesPerSecond
		for i := range n {
			s.dedup.claim(uint64(i)*0x9E3779B97F4A7C15+1, now.Add(-ttl+time.Duration(i)*time.Second/batchesPerSecond))
		}
		s.dedup.compact()
		ids := heapInUse() - base

		b.ReportMetric(float64(s.store.Stats().Series), "series")
		b.ReportMetric(float64(sketches), "sketch-bytes")
		b.ReportMetric(float64(s.state.cellCount()), "cells")
		b.ReportMetric(float64(cells), "cell-bytes")
		b.ReportMetric(float64(s.dedup.size()), "batch-ids")
		b.ReportMetric(float64(ids), "id-bytes")
		b.ReportMetric(float64(sketches+cells+ids), "total-bytes")
		runtime.KeepAlive(s)
	}
}
