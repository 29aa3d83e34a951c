package matrix

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var at = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func sample() *Matrix {
	ph := func(n int64, p50, p90 float64, d50, d90 *Delta) map[string]PhaseSummary {
		return map[string]PhaseSummary{"connect": {Samples: n, P50: p50, P90: p90, P99: p90 * 1.5, DeltaP50: d50, DeltaP90: d90}}
	}
	m := &Matrix{
		GeneratedAt: at, Window: "5m0s", WindowSeconds: 300, ComputedAt: at,
		Pairs: []Pair{
			{Pair: "linux->linux", SrcOS: "linux", DstOS: "linux", Checks: map[string]CheckSummary{
				"tcp": {Samples: 1200, SuccessRate: 1, Phases: ph(1200, 0.00041, 0.0009, nil, nil)}}},
			{Pair: "linux->windows", SrcOS: "linux", DstOS: "windows", Checks: map[string]CheckSummary{
				"tcp": {Samples: 600, SuccessRate: 0.995, Phases: ph(597, 0.0035, 0.0051,
					&Delta{Seconds: 0.00309, Significant: true}, &Delta{Seconds: 0.0042, Significant: true})}}},
			{Pair: "windows->linux", SrcOS: "windows", DstOS: "linux", Checks: map[string]CheckSummary{
				"tcp": {Samples: 600, SuccessRate: 1, Phases: ph(600, 0.0102, 0.0121,
					&Delta{Seconds: 0.00979, Significant: true}, &Delta{Seconds: 0.0112, Significant: true})}}},
			{Pair: "windows->windows", SrcOS: "windows", DstOS: "windows", Checks: map[string]CheckSummary{
				"tcp": {Samples: 12, SuccessRate: 0.75, Phases: ph(9, 0.0131, 0.02,
					&Delta{Seconds: 0.0127, Insufficient: true}, &Delta{Seconds: 0.0191, Insufficient: true})}}},
		},
		Nodes: []Node{{Node: "lin-a", OS: "linux"}, {Node: "lin-b", OS: "linux"}, {Node: "win-a", OS: "windows"}},
	}
	cell := func(src, srcOS, dst, dstOS, outcome string, connect float64) Cell {
		c := Cell{Src: src, SrcOS: srcOS, Dst: dst, DstOS: dstOS, Check: "tcp", Outcome: outcome, At: at}
		if outcome == "success" {
			c.Phases = map[string]float64{"connect": connect}
		}
		return c
	}
	m.Cells = []Cell{
		cell("lin-a", "linux", "lin-b", "linux", "success", 0.0004),
		cell("lin-a", "linux", "win-a", "windows", "success", 0.0035),
		cell("lin-b", "linux", "lin-a", "linux", "success", 0.0008),
		cell("lin-b", "linux", "win-a", "windows", "connect_timeout", 0),
		cell("win-a", "windows", "lin-a", "linux", "success", 0.0102),
		cell("win-a", "windows", "lin-b", "linux", "success", 0.06),
		{Src: "lin-a", SrcOS: "linux", Dst: "lin-b", DstOS: "linux", Check: "http", Outcome: "success", At: at},
	}
	return m
}

func TestRender(t *testing.T) {
	var sb strings.Builder
	require.NoError(t, Render(&sb, sample(), RenderOptions{}))
	out := sb.String()
	t.Log("\n" + out)
	for _, want := range []string{
		"check tcp, phase connect, window 5m0s, generated 2026-03-01T12:00:00Z",
		"src \\ dst",
		"410µs / 900µs",
		"ok 100% n=1200 (baseline)",
		"ok 99.5% n=600 Δ +3.09ms*/+4.2ms*",
		"ok 75.0% n=12 Δ +12.7ms?/+19.1ms?",
		"* significant at 99%, ? too few samples",
		"legend: . 0-500µs",
		"# 20ms-50ms",
		"% >=50ms",
		"X failed",
		"1 failing node pairs",
		"lin-b (linux) -> win-a (windows): connect_timeout",
	} {
		assert.Contains(t, out, want)
	}
	// The heat map rows, one char per destination column (lin-a, lin-b, win-a).
	assert.Contains(t, out, "linux   lin-a \\.=\n")
	assert.Contains(t, out, "linux   lin-b :\\X\n")
	assert.Contains(t, out, "windows win-a *%\\\n")
	assert.NotContains(t, out, "\x1b[", "no colour unless asked")
}

func TestRenderColor(t *testing.T) {
	var sb strings.Builder
	require.NoError(t, Render(&sb, sample(), RenderOptions{Color: true}))
	assert.Contains(t, sb.String(), "\x1b[48;5;124m\x1b[97mX\x1b[0m")
}

func TestRenderOtherPhaseAndEmpty(t *testing.T) {
	var sb strings.Builder
	require.NoError(t, Render(&sb, sample(), RenderOptions{Check: "http"}))
	out := sb.String()
	assert.Contains(t, out, "check http, phase connect")
	assert.Contains(t, out, "no data")
	assert.Contains(t, out, "linux   lin-a ?") // succeeded without the phase

	sb.Reset()
	require.NoError(t, Render(&sb, &Matrix{Window: "1m0s"}, RenderOptions{Check: "dns"}))
	assert.Contains(t, sb.String(), "no results in the window")
	assert.Contains(t, sb.String(), "no per-node results for this check")
}

// TestRenderWideCluster: more nodes than columns shows a subset, says so,
// keeps both OSes, and puts failing nodes first.
func TestRenderWideCluster(t *testing.T) {
	m := &Matrix{Window: "5m0s"}
	for i := range 300 {
		src := fmt.Sprintf("lin-%03d", i)
		for k := 1; k <= 10; k++ {
			dst, dstOS := fmt.Sprintf("lin-%03d", (i+k)%300), "linux"
			if k == 10 && i < 5 {
				dst, dstOS = fmt.Sprintf("win-%d", i), "windows"
			}
			m.Cells = append(m.Cells, Cell{Src: src, SrcOS: "linux", Dst: dst, DstOS: dstOS, Check: "tcp", Outcome: "success",
				Phases: map[string]float64{"connect": 0.0005}, At: at})
		}
	}
	m.Cells[1234].Outcome = "reset"
	var sb strings.Builder
	require.NoError(t, Render(&sb, m, RenderOptions{MaxCols: 20, MaxRows: 10}))
	out := sb.String()
	t.Log("\n" + out)
	assert.Contains(t, out, "showing 10 of 300 source and 20 of 305 destination nodes")
	assert.Contains(t, out, "(windows)", "Windows destinations are not crowded out")
	assert.Contains(t, out, m.Cells[1234].Src, "the failing source is shown")
	assert.Contains(t, out, m.Cells[1234].Dst)
	for _, line := range strings.Split(out, "\n") {
		assert.LessOrEqual(t, len([]rune(line)), 120, "line too wide: %q", line)
	}
}

func TestFormatSeconds(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 0.00041: "410µs", 0.0102: "10.2ms", 1.5: "1.5s", -0.003: "-3ms", 0.000001: "1µs"} {
		assert.Equal(t, want, FormatSeconds(v), "%v", v)
	}
}

// Names come from agents' batches: a terminal escape among them must be
// printed quoted, with or without colour, never raw.
func TestRenderQuotesNamesItDidNotChoose(t *testing.T) {
	m := sample()
	evil := "win-\x1b]0;owned\x07\x1b[2J"
	m.Cells = append(m.Cells,
		Cell{Src: evil, SrcOS: "windows\x1b[31m", Dst: "lin-a", DstOS: "linux", Check: "tcp", Outcome: "refused\x1b[8m", At: at},
		Cell{Src: "lin-a", SrcOS: "linux", Dst: evil, DstOS: "windows", Check: "tcp", Outcome: "success", Phases: map[string]float64{"connect": 0.001}, At: at})
	m.Pairs = append(m.Pairs, Pair{Pair: "x", SrcOS: "plan9\x1b[5m", DstOS: "linux", Checks: map[string]CheckSummary{"tcp": {Samples: 1}}})
	m.Window = "5m\x1b[1m"
	colour := regexp.MustCompile(`\x1b\[48;5;\d+m\x1b\[97m|\x1b\[0m`)
	for _, c := range []bool{false, true} {
		var sb strings.Builder
		require.NoError(t, Render(&sb, m, RenderOptions{Color: c}))
		out := colour.ReplaceAllString(sb.String(), "")
		assert.NotContains(t, out, "\x1b", "colour %v: a raw escape reached the output", c)
		assert.NotContains(t, out, "\x07")
		assert.Contains(t, out, `"win-\x1b]0;owned\a\x1b[2J"`, "the name is shown, quoted")
		assert.Contains(t, out, `"refused\x1b[8m"`)
	}
}
