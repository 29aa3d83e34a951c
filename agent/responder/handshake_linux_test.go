package responder

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/xosprobe/xosprobe/probe"
)

// On the connect-check ports a probe's handshake completes while the
// responder never accepts it; a client that sends data is accepted as before.
func TestConnectOnlyProbesStayInTheKernel(t *testing.T) {
	lc := net.ListenConfig{Control: handshakeOnly}
	l, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	accepted := make(chan net.Conn, 4)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		close(accepted)
		for c := range accepted {
			c.Close()
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, check := range []probe.Check{probe.CheckTCP, probe.CheckNetpolAllow} {
		r := probe.New().Func(check)(ctx, probe.Target{Addr: l.Addr().String(), Expect: probe.VerdictAllow})
		require.Equal(t, probe.OutcomeSuccess, r.Outcome, "%s: %s", check, r.Detail)
	}
	silent, err := net.Dial("tcp", l.Addr().String())
	require.NoError(t, err, "the handshake completes without an accept")
	defer silent.Close()
	select {
	case c := <-accepted:
		t.Fatalf("accepted %s, which sent nothing (well before the kernel's one-second wait)", c.RemoteAddr())
	case <-time.After(300 * time.Millisecond):
	}

	talker, err := net.Dial("tcp", l.Addr().String())
	require.NoError(t, err)
	defer talker.Close()
	_, err = talker.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
	require.NoError(t, err)
	select {
	case c := <-accepted:
		require.Equal(t, talker.LocalAddr().String(), c.RemoteAddr().String())
		c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("a connection that sent data was not accepted")
	}
}

// Listen gives the connect-check ports TCP_DEFER_ACCEPT and leaves the
// health port, whose clients always send a request, as it is.
func TestListenDefersAcceptOnTheConnectPortsOnly(t *testing.T) {
	r := start(t)
	for name, want := range map[string]bool{"http": false, "tcp": true, "allow": true, "deny": true} {
		l := r.httpL
		if name != "http" {
			l = r.acceptors[name]
		}
		rc, err := l.(*net.TCPListener).SyscallConn()
		require.NoError(t, err)
		var v int
		var gerr error
		require.NoError(t, rc.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT) }))
		require.NoError(t, gerr)
		assert.Equal(t, want, v > 0, "%s port: TCP_DEFER_ACCEPT %d", name, v)
	}
}
