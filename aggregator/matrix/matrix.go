// Package matrix is the aggregator's /matrix document and its terminal
// rendering: a per-OS-pair summary (the cross-OS delta a human reads) and
// the latest result of every (source node, destination node, check), which
// Prometheus never sees because per-node labels would be O(n²) series.
//
// The aggregator builds a Matrix; `xosprobe matrix` decodes one and Renders
// it as an OS x OS table and a per-node heat map.
package matrix

import (
	"time"
)

// Path is where the aggregator serves the matrix. Query parameters: check
// (only that check's cells), cells=false (summaries only).
const Path = "/matrix"

// Matrix is the /matrix document. Durations are seconds.
type Matrix struct {
	GeneratedAt time.Time `json:"generatedAt"`
	// Window is the span the pair summaries cover, as a Go duration ("5m0s").
	Window        string  `json:"window"`
	WindowSeconds float64 `json:"windowSeconds"`
	// ComputedAt is when the quantiles and deltas were last computed; they
	// lag GeneratedAt by up to the compute interval.
	ComputedAt time.Time `json:"computedAt"`
	Pairs      []Pair    `json:"pairs"`
	Nodes      []Node    `json:"nodes"`
	Cells      []Cell    `json:"cells"`
}

// Pair summarises one (source OS, destination OS) combination.
type Pair struct {
	Pair   string                  `json:"pair"` // "windows->linux"
	SrcOS  string                  `json:"srcOS"`
	DstOS  string                  `json:"dstOS"`
	Checks map[string]CheckSummary `json:"checks"`
}

// CheckSummary is one check over the window for one pair.
type CheckSummary struct {
	// Samples is the number of results (any outcome) in the window.
	Samples     int64   `json:"samples"`
	SuccessRate float64 `json:"successRate"` // 0-1
	// Phases of successful results, by phase name.
	Phases map[string]PhaseSummary `json:"phases,omitempty"`
}

// PhaseSummary is the latency of one phase. Deltas are against
// linux->linux and absent for linux->linux itself or without a baseline.
type PhaseSummary struct {
	Samples  int64   `json:"samples"`
	P50      float64 `json:"p50"`
	P90      float64 `json:"p90"`
	P99      float64 `json:"p99"`
	DeltaP50 *Delta  `json:"deltaP50,omitempty"`
	DeltaP90 *Delta  `json:"deltaP90,omitempty"`
}

// Delta is one quantile's difference to the baseline pair.
type Delta struct {
	Seconds     float64 `json:"seconds"`
	Significant bool    `json:"significant"`
	// Insufficient: too few samples on a side to judge; shown, not hidden.
	Insufficient bool `json:"insufficient"`
}

// Node is a node seen as a source or destination.
type Node struct {
	Node string `json:"node"`
	OS   string `json:"os"`
}

// Cell is the latest result of one check from one node to another.
type Cell struct {
	Src     string             `json:"src"`
	SrcOS   string             `json:"srcOS"`
	Dst     string             `json:"dst"`
	DstOS   string             `json:"dstOS"`
	Check   string             `json:"check"`
	Outcome string             `json:"outcome"`
	Phases  map[string]float64 `json:"phases,omitempty"`
	At      time.Time          `json:"at"`
}
