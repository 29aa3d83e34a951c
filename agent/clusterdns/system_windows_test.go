package clusterdns

import (
	"errors"
	"net/netip"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The real GetAdaptersAddresses call. Under Wine it lists the Linux host's
// interfaces and hands every one the servers of the host's resolv.conf: that
// proves the call and its decoding, not what Windows would answer.
func TestAdaptersReadsTheSystem(t *testing.T) {
	adapters, err := Adapters()
	require.NoError(t, err)
	require.NotEmpty(t, adapters)
	var loopback bool
	for _, a := range adapters {
		t.Logf("adapter %q index %d up %v metric %d unicast %v gateways %v dns %v", a.Name, a.Index, a.Up, a.Metric, a.Unicast, a.Gateways, a.DNSServers)
		assert.NotEmpty(t, a.Name)
		assert.NotZero(t, a.Index, a.Name)
		for _, ip := range slices.Concat(a.Unicast, a.Gateways, a.DNSServers) {
			assert.True(t, ip.IsValid(), "%s: %v", a.Name, ip)
		}
		loopback = loopback || slices.Contains(a.Unicast, netip.MustParseAddr("127.0.0.1"))
	}
	assert.True(t, loopback, "no adapter carries 127.0.0.1")

	s, err := System(netip.Addr{})
	if err != nil {
		assert.ErrorIs(t, err, ErrNotFound)
		t.Logf("System: %v", err)
		return
	}
	assert.Equal(t, SourceAdapter, s.Source)
	t.Logf("System: %s (%s)", s.Addr, s.Detail)
}

func TestSystemSourceIsTheAdapter(t *testing.T) {
	_, err := Finder{System: func(netip.Addr) (Server, error) { return Server{}, errors.New("x") }}.Find(t.Context(), "", netip.Addr{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "adapter: x")
}
