package aggregator

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/xosprobe/xosprobe/aggregator/matrix"
	"github.com/xosprobe/xosprobe/aggregator/wire"
)

func getMatrix(t *testing.T, url, query string) (int, *matrix.Matrix, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url+matrix.Path+query, nil)
	r := do(t, req)
	if r.code != http.StatusOK {
		return r.code, nil, r.body
	}
	var m matrix.Matrix
	require.NoError(t, json.Unmarshal([]byte(r.body), &m))
	return r.code, &m, r.body
}

func TestMatrixEndpoint(t *testing.T) {
	clk := newClock(t0)
	s := startServer(t, Config{Now: clk.Now}, nil)
	lin, win := &agent{node: "lin-1", os: "linux"}, &agent{node: "win-1", os: "windows"}
	var ll, wl []wire.Result
	for i := range 40 {
		ll = append(ll, res("tcp", "lin-2", "linux", "success", t0.Add(-2*time.Second), connect(time.Duration(400+i)*time.Microsecond)))
		wl = append(wl, res("tcp", "lin-2", "linux", "success", t0.Add(-2*time.Second), connect(time.Duration(9000+i)*time.Microsecond)))
	}
	ll = append(ll, res("tcp", "win-1", "windows", "connect_timeout", t0.Add(-time.Second)))
	// An older result for a cell does not replace a newer one.
	ll = append(ll, res("tcp", "win-1", "windows", "success", t0.Add(-5*time.Second), connect(time.Millisecond)))
	require.Equal(t, http.StatusOK, send(t, s.URL, lin.batch(ll...)).code)
	require.Equal(t, http.StatusOK, send(t, s.URL, win.batch(wl...)).code)
	require.NoError(t, s.Compute())

	code, m, raw := getMatrix(t, s.URL, "")
	require.Equal(t, http.StatusOK, code, raw)
	assert.Equal(t, "5m0s", m.Window)
	assert.Equal(t, 300.0, m.WindowSeconds)
	assert.Equal(t, t0.UTC(), m.GeneratedAt.UTC())
	assert.Equal(t, []matrix.Node{{Node: "lin-1", OS: "linux"}, {Node: "lin-2", OS: "linux"}, {Node: "win-1", OS: "windows"}}, m.Nodes)

	byPair := map[string]matrix.Pair{}
	for _, p := range m.Pairs {
		byPair[p.Pair] = p
	}
	require.Contains(t, byPair, "linux->windows")
	lw := byPair["linux->windows"].Checks["tcp"]
	assert.Equal(t, int64(2), lw.Samples)
	assert.Equal(t, 0.5, lw.SuccessRate)
	ll2 := byPair["linux->linux"].Checks["tcp"]
	assert.Equal(t, int64(40), ll2.Samples)
	assert.Equal(t, 1.0, ll2.SuccessRate)
	assert.InEpsilon(t, 0.000419, ll2.Phases["connect"].P50, 0.02)
	assert.Nil(t, ll2.Phases["connect"].DeltaP50, "the baseline has no delta")
	wlc := byPair["windows->linux"].Checks["tcp"].Phases["connect"]
	require.NotNil(t, wlc.DeltaP50)
	assert.InDelta(t, 0.0086, wlc.DeltaP50.Seconds, 0.0002)
	assert.True(t, wlc.DeltaP50.Significant)
	require.NotNil(t, wlc.DeltaP90)
	assert.True(t, wlc.DeltaP90.Insufficient, "p90 needs 50 samples a side")

	require.Len(t, m.Cells, 3)
	c := m.Cells[1] // sorted by src, dst: lin-1->lin-2, lin-1->win-1, win-1->lin-2
	assert.Equal(t, matrix.Cell{Src: "lin-1", SrcOS: "linux", Dst: "win-1", DstOS: "windows", Check: "tcp",
		Outcome: "connect_timeout", At: t0.Add(-time.Second).UTC()}, c)
	assert.Equal(t, map[string]float64{"connect": 0.000439}, m.Cells[0].Phases)

	_, m, _ = getMatrix(t, s.URL, "?check=http")
	assert.Empty(t, m.Cells)
	assert.Empty(t, m.Nodes, "only what the query selects: no http cells, no nodes")
	_, m, _ = getMatrix(t, s.URL, "?check=tcp")
	assert.Len(t, m.Cells, 3)
	assert.Len(t, m.Nodes, 3)

	// Two documents are built at once at most; a third is told to retry.
	s.matrixSlots <- struct{}{}
	s.matrixSlots <- struct{}{}
	code, _, raw = getMatrix(t, s.URL, "")
	assert.Equal(t, http.StatusServiceUnavailable, code)
	assert.Contains(t, raw, "retry")
	<-s.matrixSlots
	code, _, _ = getMatrix(t, s.URL, "")
	assert.Equal(t, http.StatusOK, code)
	<-s.matrixSlots
	_, m, _ = getMatrix(t, s.URL, "?cells=false")
	assert.Empty(t, m.Cells)
	assert.Empty(t, m.Nodes)
	assert.NotEmpty(t, m.Pairs)
	code, _, raw = getMatrix(t, s.URL, "?check=quic")
	assert.Equal(t, http.StatusBadRequest, code)
	assert.Contains(t, raw, "quic")

	// Cells not updated for CellTTL are forgotten.
	clk.Set(t0.Add(11 * time.Minute))
	assert.Equal(t, 0, s.state.sweep(clk.Now()))
	assert.Empty(t, s.Matrix("", true).Cells)
}

func TestCellsBounded(t *testing.T) {
	s := startServer(t, Config{Now: newClock(t0).Now, MaxCells: 10}, nil)
	a := &agent{node: "lin", os: "linux"}
	var rs []wire.Result
	for i := range 25 {
		rs = append(rs, res("tcp", string(rune('a'+i)), "linux", "success", t0, connect(time.Millisecond)))
	}
	require.Equal(t, http.StatusOK, send(t, s.URL, a.batch(rs...)).code)
	assert.Equal(t, 10, s.state.cellCount())
	assert.Equal(t, 15.0, mustMetric(t, s.Server, MatrixCellsDropped, nil))
}
