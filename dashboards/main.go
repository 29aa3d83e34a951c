// Command dashboards generates xosprobe's Grafana dashboards from Go code
// with the Grafana Foundation SDK and writes them, with the list of their
// PromQL queries, next to this file:
//
//	go run .                 # writes overview.json, node.json, agent-health.json, queries.txt
//	go run . -list-queries   # prints every query, one a line, variables substituted
//
// The JSON files are committed; the test in this module fails when they
// differ from what the code generates, when a query does not parse, or when
// a query names a metric the agent or aggregator does not export.
//
// This is a module of its own so that the SDK and the Prometheus parser the
// test uses stay out of the main module's dependencies.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// run is main without the exit, for tests.
func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dashboards", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", ".", "directory to write the dashboards and queries.txt to")
	list := fs.Bool("list-queries", false, "print every PromQL query of the dashboards, one a line, with template variables substituted, and write nothing")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	files, err := generate()
	if err != nil {
		fmt.Fprintln(stderr, "dashboards:", err)
		return 1
	}
	if *list {
		if _, err := stdout.Write(files[queriesFile]); err != nil {
			fmt.Fprintln(stderr, "dashboards:", err)
			return 1
		}
		return 0
	}
	for _, name := range fileNames(files) {
		if err := os.WriteFile(filepath.Join(*out, name), files[name], 0o644); err != nil {
			fmt.Fprintln(stderr, "dashboards:", err)
			return 1
		}
	}
	return 0
}

// queriesFile lists every query of every dashboard, one a line, with the
// template variables substituted, for the end-to-end test to run against a
// real Prometheus.
const queriesFile = "queries.txt"

// builders are the dashboards by file name, in the order queries.txt lists
// their queries.
var builders = []struct {
	file  string
	build func() *dashboard.DashboardBuilder
}{
	{"overview.json", overview},
	{"node.json", node},
	{"agent-health.json", health},
}

// built is one generated dashboard.
type built struct {
	file      string
	dashboard dashboard.Dashboard
}

// buildAll builds every dashboard and numbers its panels.
func buildAll() ([]built, error) {
	out := make([]built, 0, len(builders))
	for _, b := range builders {
		d, err := b.build().Build()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", b.file, err)
		}
		numberPanels(&d)
		out = append(out, built{file: b.file, dashboard: d})
	}
	return out, nil
}

// numberPanels gives every panel and row a unique ID in layout order;
// Grafana keys panel state and links (viewPanel=N) by it.
func numberPanels(d *dashboard.Dashboard) {
	var id uint32
	for i := range d.Panels {
		p := &d.Panels[i]
		id++
		switch {
		case p.Panel != nil:
			p.Panel.Id = ptr(id)
		case p.RowPanel != nil:
			p.RowPanel.Id = id
			for j := range p.RowPanel.Panels {
				id++
				p.RowPanel.Panels[j].Id = ptr(id)
			}
		}
	}
}

func ptr[T any](v T) *T { return &v }

// generate renders every output file: the dashboards' JSON and queries.txt.
func generate() (map[string][]byte, error) {
	all, err := buildAll()
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{}
	var queries []string
	seen := map[string]bool{}
	for _, b := range all {
		js, err := render(b.dashboard)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", b.file, err)
		}
		files[b.file] = js
		for _, q := range queriesOf(b.file, b.dashboard) {
			s, err := substitute(q.Expr)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", q, err)
			}
			s = strings.ReplaceAll(s, "\n", " ")
			if !seen[s] {
				seen[s] = true
				queries = append(queries, s)
			}
		}
	}
	var buf bytes.Buffer
	for _, q := range queries {
		buf.WriteString(q)
		buf.WriteByte('\n')
	}
	files[queriesFile] = buf.Bytes()
	return files, nil
}

// render is a dashboard's JSON, indented, with <, > and & left readable
// (the OS pairs are spelled "windows->linux").
func render(d dashboard.Dashboard) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(d); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// fileNames lists the generated files in a fixed order.
func fileNames(files map[string][]byte) []string {
	names := make([]string, 0, len(files))
	for _, b := range builders {
		names = append(names, b.file)
	}
	return append(names, queriesFile)
}
