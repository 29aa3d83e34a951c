package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/xosprobe/xosprobe/aggregator/matrix"
)

type matrixFlags struct {
	url, check, phase, color string
	json                     bool
	maxCols, maxRows         int
	timeout                  time.Duration
}

func newMatrixCmd() *cobra.Command {
	var f matrixFlags
	cmd := &cobra.Command{
		Use:   "matrix",
		Short: "Show the aggregator's OS x OS latency table and per-node heat map",
		Long: `Fetches /matrix from the aggregator and prints, for one check and phase, the p50/p90,
success rate and delta against linux->linux of every OS pair, then a heat map of the
latest result between each pair of nodes (rows: source, columns: destination).
Large clusters show the failing and busiest nodes first; --json prints everything.`,
		Example: `  kubectl -n xosprobe port-forward svc/xosprobe-aggregator 9446 &
  xosprobe matrix --url http://127.0.0.1:9446
  xosprobe matrix --url http://127.0.0.1:9446 --check http --phase first_byte --max-cols 120`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runMatrix(cmd.Context(), cmd.OutOrStdout(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.url, "url", "http://127.0.0.1:9446", "aggregator base URL")
	fl.StringVar(&f.check, "check", "tcp", "check to show: dns, tcp, http, service, netpol-allow, netpol-deny")
	fl.StringVar(&f.phase, "phase", "", `phase to show (default "connect" when the check has it)`)
	fl.BoolVar(&f.json, "json", false, "print the aggregator's JSON document (every check and cell) instead")
	fl.StringVar(&f.color, "color", "auto", "colour the heat map: auto (when writing to a terminal), always, never")
	fl.IntVar(&f.maxCols, "max-cols", 64, "destination nodes shown in the heat map")
	fl.IntVar(&f.maxRows, "max-rows", 64, "source nodes shown in the heat map")
	fl.DurationVar(&f.timeout, "timeout", 30*time.Second, "deadline of the request")
	return cmd
}

func runMatrix(ctx context.Context, out io.Writer, f matrixFlags) error {
	base, err := url.Parse(strings.TrimSuffix(f.url, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return fmt.Errorf("--url %q: want http(s)://HOST:PORT", f.url)
	}
	var color bool
	switch f.color {
	case "always":
		color = true
	case "never":
	case "auto":
		fh, ok := out.(*os.File)
		color = ok && term.IsTerminal(int(fh.Fd())) && os.Getenv("NO_COLOR") == ""
	default:
		return fmt.Errorf("--color %q: want auto, always or never", f.color)
	}
	u := base.JoinPath(matrix.Path)
	if !f.json {
		// The heat map shows one check: fetch only its cells.
		u.RawQuery = url.Values{"check": {f.check}}.Encode()
	}
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			return fmt.Errorf("cannot reach the aggregator at %s (%w); is the port-forward running? "+
				"kubectl -n xosprobe port-forward svc/xosprobe-aggregator 9446", f.url, err)
		}
		return fmt.Errorf("fetching the matrix: %w", err)
	}
	defer resp.Body.Close()
	// An HTML page comes from a proxy or another service, never from the
	// aggregator: say so instead of dumping it.
	html := strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html")
	if resp.StatusCode != http.StatusOK {
		if html {
			return fmt.Errorf("%s answered %s with a text/html page: is --url the aggregator (port 9446)?", u, resp.Status)
		}
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("%s answered %s: %s", u, resp.Status, matrix.Printable(strings.TrimSpace(string(msg))))
	}
	if html {
		return fmt.Errorf("%s answered with a text/html page, not the aggregator's JSON: is --url the aggregator (port 9446)?", u)
	}
	if f.json {
		_, err := io.Copy(out, resp.Body)
		return err
	}
	var m matrix.Matrix
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		return fmt.Errorf("decoding the matrix from %s (is --url the aggregator, port 9446?): %w", u, err)
	}
	return matrix.Render(out, &m, matrix.RenderOptions{Check: f.check, Phase: f.phase, Color: color,
		MaxCols: f.maxCols, MaxRows: f.maxRows})
}
