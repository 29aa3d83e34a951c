package aggregator

import (
	"context"
	"encoding/gob"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/xosprobe/xosprobe/aggregator/stats"
)

// A bootstrapping replica reads a peer's snapshot only up to
// MaxSnapshotBytes: the peer list may name anything, and gob would decode
// whatever it is sent.
func TestSnapshotReadIsBounded(t *testing.T) {
	sn := replicaSnapshot{Version: snapshotVersion, Taken: time.Now(), Stats: &stats.Snapshot{}}
	for i := range 20000 {
		sn.Cells = append(sn.Cells, cellSnapshot{Src: strings.Repeat("s", 40), Dst: strings.Repeat("d", 40), Check: "tcp",
			SrcOS: "linux", DstOS: "windows", Outcome: "success", At: int64(i)})
	}
	peer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", SnapshotContentType)
		_ = gob.NewEncoder(w).Encode(&sn)
	}))
	defer peer.Close()
	fetch := func(limit int64) (*replicaSnapshot, error) {
		s, err := New(Config{Auth: sharedAuth(t, testToken), MaxSnapshotBytes: limit,
			ReplicaToken: func() (string, error) { return "t", nil }})
		require.NoError(t, err)
		return s.fetchSnapshot(context.Background(), peer.URL)
	}

	got, err := fetch(0) // the default
	require.NoError(t, err, "the snapshot itself is valid")
	assert.Len(t, got.Cells, 20000)

	_, err = fetch(1 << 20) // the snapshot is ~2.3 MB
	require.ErrorIs(t, err, errSnapshotTooLarge)
}
