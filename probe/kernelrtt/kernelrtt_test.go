package kernelrtt

import (
	"net"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestReadConnectedSocket(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	require.NoError(t, err)
	defer c.Close()

	s := Read(c, nil)
	t.Logf("%s: %+v", runtime.GOOS, s)
	if s.Available() {
		assert.Positive(t, s.RTT)
		assert.Empty(t, s.Unavailable)
	} else {
		assert.NotEmpty(t, s.Unavailable, "no reading must come with a reason")
	}
	if runtime.GOOS == "linux" {
		assert.Equal(t, SourceTCPInfo, s.Source)
	}
}

func TestReadClosedSocket(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	require.NoError(t, err)
	c.Close()
	s := Read(c, nil)
	assert.False(t, s.Available())
	assert.NotEmpty(t, s.Unavailable)
}

type notASocket struct{ net.Conn }

func TestReadNonSocket(t *testing.T) {
	s := Read(notASocket{}, nil)
	assert.False(t, s.Available())
	assert.Contains(t, s.Unavailable, "not a socket")
}
