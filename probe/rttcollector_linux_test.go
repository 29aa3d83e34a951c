package probe

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/xosprobe/xosprobe/probe/kernelrtt"
)

// fakeCollector answers lookups from a script and records how it was asked.
type fakeCollector struct {
	mu      sync.Mutex
	marks   int
	lookups []netip.AddrPort
	answer  kernelrtt.Sample
	ok      bool
}

func (f *fakeCollector) Mark() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.marks++
	return uint64(f.marks) * 100
}

func (f *fakeCollector) Lookup(remote netip.AddrPort, mark uint64) (kernelrtt.Sample, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if mark != uint64(f.marks)*100 {
		return kernelrtt.Sample{}, false // not the mark of this connect
	}
	f.lookups = append(f.lookups, remote)
	return f.answer, f.ok
}

func TestCollectorSuppliesKernelRTT(t *testing.T) {
	addr := tcpServer(t, nil)
	for _, tc := range []struct {
		name   string
		ok     bool
		source kernelrtt.Source
	}{
		{"collector answers", true, kernelrtt.SourceEBPF},
		{"collector misses: TCP_INFO", false, kernelrtt.SourceTCPInfo},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeCollector{answer: kernelrtt.Sample{RTT: 42 * time.Microsecond, Source: kernelrtt.SourceEBPF}, ok: tc.ok}
			p := New()
			p.RTTCollector = f
			for _, r := range []Result{
				p.TCP(context.Background(), Target{Addr: addr}),
				p.NetpolAllow(context.Background(), Target{Addr: addr, Expect: VerdictAllow}),
			} {
				require.Equal(t, OutcomeSuccess, r.Outcome, r.Detail)
				assert.Equal(t, tc.source, r.KernelRTT.Source)
				if tc.ok {
					assert.Equal(t, 42*time.Microsecond, r.KernelRTT.RTT)
				}
			}
			assert.Equal(t, 2, f.marks)
			assert.Equal(t, []netip.AddrPort{netip.MustParseAddrPort(addr), netip.MustParseAddrPort(addr)}, f.lookups,
				"looked up by the dialed address, with the mark taken before connect")
		})
	}
}
