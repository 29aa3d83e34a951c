// Package responder serves what peers probe: an HTTP health endpoint, a TCP
// port for connect checks, and the two ports NetworkPolicy allows and denies.
//
// Every agent runs one, and anyone can hit it, so it is cheap and safe: the
// TCP ports accept and close at once (no goroutine per connection, nothing to
// amplify; on Linux a connection that sends nothing is not even accepted),
// and the health endpoint answers GET with a fixed few bytes, bounded in
// size, time and concurrency (health.go).
package responder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Default ports. The manifests and NetworkPolicies use the same numbers.
const (
	DefaultHTTPPort  = 9440
	DefaultTCPPort   = 9441
	DefaultAllowPort = 9442
	DefaultDenyPort  = 9443
)

// HealthPath is what the http and service checks GET.
const HealthPath = "/healthz"

// Config holds listen addresses (host:port; port 0 picks a free one).
type Config struct {
	HTTPAddr, TCPAddr, AllowAddr, DenyAddr string
	// Node and OS are echoed in the health body so a human curling the
	// endpoint sees which pod answered (a Service may pick any).
	Node, OS string
}

// DefaultConfig listens on all interfaces on the default ports.
func DefaultConfig() Config {
	return Config{
		HTTPAddr:  fmt.Sprintf(":%d", DefaultHTTPPort),
		TCPAddr:   fmt.Sprintf(":%d", DefaultTCPPort),
		AllowAddr: fmt.Sprintf(":%d", DefaultAllowPort),
		DenyAddr:  fmt.Sprintf(":%d", DefaultDenyPort),
	}
}

// Responder is a running set of listeners.
type Responder struct {
	health    *health
	httpL     net.Listener
	acceptors map[string]net.Listener // name -> listener, for tcp, allow, deny
	wg        sync.WaitGroup
}

// Listen opens every port; it fails without leaving any open if one cannot be bound.
func Listen(cfg Config, log *slog.Logger) (*Responder, error) {
	r := &Responder{acceptors: map[string]net.Listener{}}
	// Every connection lives for one exchange: keep-alive options on each
	// accepted socket would cost system calls for nothing.
	health := net.ListenConfig{KeepAlive: -1}
	connectOnly := net.ListenConfig{KeepAlive: -1, Control: handshakeOnly}
	open := func(lc net.ListenConfig, name, addr string) (net.Listener, error) {
		l, err := lc.Listen(context.Background(), "tcp", addr)
		if err != nil {
			r.closeListeners()
			return nil, fmt.Errorf("responder %s port %s: %w", name, addr, err)
		}
		return l, nil
	}
	var err error
	if r.httpL, err = open(health, "http", cfg.HTTPAddr); err != nil {
		return nil, err
	}
	for _, p := range []struct{ name, addr string }{{"tcp", cfg.TCPAddr}, {"allow", cfg.AllowAddr}, {"deny", cfg.DenyAddr}} {
		l, err := open(connectOnly, p.name, p.addr)
		if err != nil {
			return nil, err
		}
		r.acceptors[p.name] = l
	}
	r.health = newHealth([]byte(fmt.Sprintf("ok %s %s\n", cfg.OS, cfg.Node)), log)
	return r, nil
}

// Addr returns the bound address of "http", "tcp", "allow" or "deny".
func (r *Responder) Addr(name string) net.Addr {
	if name == "http" {
		return r.httpL.Addr()
	}
	if l, ok := r.acceptors[name]; ok {
		return l.Addr()
	}
	return nil
}

// Serve runs until ctx ends, then closes the listeners and waits for its
// goroutines (an exchange in progress ends within exchangeTimeout).
func (r *Responder) Serve(ctx context.Context) {
	for _, l := range r.acceptors {
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			acceptAndClose(l)
		}()
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.health.serve(r.httpL)
	}()
	<-ctx.Done()
	r.closeListeners()
	r.wg.Wait()
}

func (r *Responder) closeListeners() {
	if r.httpL != nil {
		r.httpL.Close()
	}
	for _, l := range r.acceptors {
		l.Close()
	}
}

// acceptAndClose closes what it accepts at once: the handshake is the whole
// measurement, and holding nothing makes a flood harmless. Where the kernel
// can (handshakeOnly), a connection that never sends data is never accepted.
func acceptAndClose(l net.Listener) {
	sl := steadyListener{l}
	for {
		c, err := sl.Accept()
		if err != nil {
			return // closed
		}
		c.Close()
	}
}

// steadyListener keeps accepting through errors that concern one connection
// or a passing shortage, and ends only when the listener is closed.
// A probe that resets its connection before it is accepted yields one on
// Windows (WSAECONNRESET, WSAENOTCONN under Wine) and must not take the
// health endpoint down.
type steadyListener struct{ net.Listener }

func (l steadyListener) Accept() (net.Conn, error) {
	backoff := time.Millisecond
	for {
		c, err := l.Listener.Accept()
		if err == nil || errors.Is(err, net.ErrClosed) {
			return c, err
		}
		// EMFILE and friends: back off instead of spinning.
		time.Sleep(backoff)
		backoff = min(2*backoff, 100*time.Millisecond)
	}
}
