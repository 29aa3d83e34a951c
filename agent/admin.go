package agent

import (
	"fmt"
	"net"
	"net/http"
	"time"

	"golang.org/x/net/netutil"
)

// adminMaxConnections bounds the admin port's (metrics, health, readiness)
// connections at once: its clients are a scraper or two and the kubelet's
// probes, while any pod can reach the port. Further ones wait to be accepted,
// so idle connections cannot grow the agent toward its memory limit.
const adminMaxConnections = 64

// listenAdmin opens the admin port with the connection cap.
func listenAdmin(addr string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin listener %s: %w", addr, err)
	}
	return netutil.LimitListener(l, adminMaxConnections), nil
}

// newAdminServer serves h with deadlines on every phase of a connection: a
// client that sends slowly, never reads, or keeps a connection idle gives it
// up, and with it its slot under adminMaxConnections.
func newAdminServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       30 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
}
