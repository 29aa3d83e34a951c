package aggregator

import (
	"cmp"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/xosprobe/xosprobe/aggregator/matrix"
	"github.com/xosprobe/xosprobe/aggregator/stats"
)

// Matrix builds the /matrix document. check, if not empty, keeps only that
// check's cells; withCells false leaves cells and nodes out.
func (s *Server) Matrix(check string, withCells bool) *matrix.Matrix {
	now := s.now()
	m := &matrix.Matrix{
		GeneratedAt:   now,
		Window:        s.cfg.DeltaWindow.String(),
		WindowSeconds: s.cfg.DeltaWindow.Seconds(),
		Pairs:         []matrix.Pair{},
		Nodes:         []matrix.Node{},
		Cells:         []matrix.Cell{},
	}
	comp := s.computed.Load()
	if comp != nil {
		m.ComputedAt = comp.at
	}
	sums := s.state.sums(now, s.cfg.DeltaWindow)
	for si := range nOS {
		for di := range nOS {
			pi := pairIndex(si, di)
			p := matrix.Pair{Pair: pairNames[pi], SrcOS: oses[si], DstOS: oses[di], Checks: map[string]matrix.CheckSummary{}}
			for ci, c := range checks {
				n := sums[ci][pi]
				if n.total == 0 {
					continue
				}
				cs := matrix.CheckSummary{Samples: n.total, SuccessRate: float64(n.success) / float64(n.total)}
				if comp != nil {
					cs.Phases = phaseSummaries(comp, s.keys[ci], si, di)
				}
				p.Checks[c] = cs
			}
			if len(p.Checks) > 0 {
				m.Pairs = append(m.Pairs, p)
			}
		}
	}
	if withCells {
		s.addCells(m, check)
	}
	return m
}

func phaseSummaries(comp *computed, keys [nPhases][nOS][nOS]stats.Key, si, di int) map[string]matrix.PhaseSummary {
	var out map[string]matrix.PhaseSummary
	for phi := range nPhases {
		k := keys[phi][si][di]
		q, ok := comp.quantiles[k]
		if !ok {
			continue
		}
		ps := matrix.PhaseSummary{Samples: q.samples, P50: q.values[0.5], P90: q.values[0.9], P99: q.values[0.99]}
		delta := func(q float64) *matrix.Delta {
			d, ok := comp.deltas[deltaKey{k, q}]
			if !ok {
				return nil
			}
			return &matrix.Delta{Seconds: d.Delta, Significant: d.Significant, Insufficient: d.Insufficient}
		}
		ps.DeltaP50, ps.DeltaP90 = delta(0.5), delta(0.9)
		if out == nil {
			out = map[string]matrix.PhaseSummary{}
		}
		out[phases[phi]] = ps
	}
	return out
}

func (s *Server) addCells(m *matrix.Matrix, check string) {
	ci := checkIndex(check) // -1 for an unknown check: no cells match
	// Copy under the lock, build outside it: ingest waits on this lock, and
	// a 300,000-cell document takes far longer to build than to copy.
	type entry struct {
		k cellKey
		c cellVal
	}
	nodes := map[string]string{}
	var picked []entry
	s.state.mu.Lock()
	for k, c := range s.state.cells {
		// Only what the query selects: a one-check document lists the
		// nodes of that check's cells.
		if check == "" || int(k.check) == ci {
			picked = append(picked, entry{k, c})
			nodes[k.src] = oses[c.srcOS]
			nodes[k.dst] = oses[c.dstOS]
		}
	}
	s.state.mu.Unlock()
	m.Cells = slices.Grow(m.Cells, len(picked))
	for _, e := range picked {
		k, c := e.k, e.c
		cell := matrix.Cell{Src: k.src, SrcOS: oses[c.srcOS], Dst: k.dst, DstOS: oses[c.dstOS],
			Check: checks[k.check], Outcome: outcomes[c.outcome], At: time.Unix(0, c.at).UTC()}
		for phi := range nPhases {
			if c.mask&(1<<phi) != 0 {
				if cell.Phases == nil {
					cell.Phases = map[string]float64{}
				}
				cell.Phases[phases[phi]] = float64(c.us[phi]) / 1e6
			}
		}
		m.Cells = append(m.Cells, cell)
	}
	for n, os := range nodes {
		m.Nodes = append(m.Nodes, matrix.Node{Node: n, OS: os})
	}
	slices.SortFunc(m.Nodes, func(a, b matrix.Node) int { return cmp.Or(cmp.Compare(a.OS, b.OS), cmp.Compare(a.Node, b.Node)) })
	slices.SortFunc(m.Cells, func(a, b matrix.Cell) int {
		return cmp.Or(cmp.Compare(a.Src, b.Src), cmp.Compare(a.Dst, b.Dst), cmp.Compare(a.Check, b.Check))
	})
}

func (s *Server) handleMatrix(w http.ResponseWriter, r *http.Request) {
	// A full document of a large cluster is tens of MB while it is built and
	// written: only a couple at once, the rest told to retry.
	select {
	case s.matrixSlots <- struct{}{}:
		defer func() { <-s.matrixSlots }()
	default:
		w.Header().Set("Retry-After", "1")
		httpError(w, http.StatusServiceUnavailable, "%d /matrix documents are being built already: retry", cap(s.matrixSlots))
		return
	}
	q := r.URL.Query()
	withCells := true
	if v := q.Get("cells"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			httpError(w, http.StatusBadRequest, "cells=%q: want true or false", v)
			return
		}
		withCells = b
	}
	check := q.Get("check")
	if check != "" && checkIndex(check) < 0 {
		httpError(w, http.StatusBadRequest, "check=%q: not one of %v", check, checks)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(s.Matrix(check, withCells))
}
