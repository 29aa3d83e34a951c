//go:build linux

package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/xosprobe/xosprobe/test/e2e/cluster"
	"github.com/xosprobe/xosprobe/test/nfqueue"
)

// podClient is an HTTP client whose connections start inside pod p's network
// namespace: a socket stays in the namespace it was created in, so only the
// dial switches namespaces. The host cannot reach pod IPs (they are
// blackholed there), and a process per request (ip netns exec) is too slow
// for the tight reads of the fault tests.
func podClient(p *cluster.Pod) *http.Client {
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		var conn net.Conn
		err := nfqueue.InNetns(p.NetNS, func() (err error) {
			conn, err = (&net.Dialer{Timeout: 3 * time.Second}).DialContext(ctx, network, addr)
			return err
		})
		return conn, err
	}
	return &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true},
	}
}

// podGet GETs url from inside pod p and returns the body of a 200 response.
func podGet(ctx context.Context, p *cluster.Pod, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := podClient(p).Do(req)
	if err != nil {
		return "", fmt.Errorf("GET %s in %s: %w", url, p, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("GET %s in %s: %w", url, p, err)
	}
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("GET %s in %s: %s: %.300s", url, p, resp.Status, b)
	}
	return string(b), nil
}

// podMetrics scrapes /metrics on port from inside pod p (agents 9445, the
// aggregator 9446).
func podMetrics(ctx context.Context, p *cluster.Pod, port int) ([]sample, error) {
	body, err := podGet(ctx, p, fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		return nil, err
	}
	return parseMetrics(body), nil
}
