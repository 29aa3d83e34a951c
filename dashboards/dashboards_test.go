package main

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/prometheus/prometheus/model/labels"
	promparser "github.com/prometheus/prometheus/promql/parser"
)

// promQL is the parser with Prometheus' defaults: no experimental functions,
// which most servers do not enable.
var promQL = promparser.NewParser(promparser.Options{})

// TestCommittedFilesUpToDate is the drift check: the committed JSON and
// queries.txt must be exactly what the code generates.
func TestCommittedFilesUpToDate(t *testing.T) {
	files, err := generate()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range fileNames(files) {
		got, err := os.ReadFile(name)
		if err != nil {
			t.Errorf("%s: %v (run `go run .` in dashboards/)", name, err)
			continue
		}
		if !bytes.Equal(got, files[name]) {
			t.Errorf("%s differs from what the code generates: run `go run .` in dashboards/ and commit the result", name)
		}
	}
}

// allQueries lists every query of every dashboard, unsubstituted.
func allQueries(t *testing.T) []Query {
	t.Helper()
	all, err := buildAll()
	if err != nil {
		t.Fatal(err)
	}
	var qs []Query
	for _, b := range all {
		qs = append(qs, queriesOf(b.file, b.dashboard)...)
	}
	if len(qs) < 50 {
		t.Fatalf("found only %d queries; the walk over the dashboards misses some", len(qs))
	}
	return qs
}

// parsed is a query substituted and parsed.
type parsed struct {
	Query
	expr promparser.Expr
}

func parseAll(t *testing.T) []parsed {
	t.Helper()
	var out []parsed
	for _, q := range allQueries(t) {
		s, err := substitute(q.Expr)
		if err != nil {
			t.Errorf("%s: %v", q, err)
			continue
		}
		e, err := promQL.ParseExpr(s)
		if err != nil {
			t.Errorf("%s: does not parse: %v\n%s", q, err, s)
			continue
		}
		out = append(out, parsed{Query: q, expr: e})
	}
	return out
}

// TestQueriesParse checks every query with Prometheus' own parser, and that
// it yields what Grafana can plot: an instant vector or a scalar.
func TestQueriesParse(t *testing.T) {
	for _, p := range parseAll(t) {
		if ty := p.expr.Type(); ty != promparser.ValueTypeVector && ty != promparser.ValueTypeScalar {
			t.Errorf("%s: yields a %s, not a vector or scalar", p.Query, ty)
		}
	}
}

// targetLabels are attached by the scrape config, not by the exporters.
var targetLabels = []string{"job", "instance", "node", "pod", "namespace"}

// contractLabels are the labels of every metric the dashboards use, from
// the metric contract (agent/metrics/metrics.go, aggregator/metrics.go).
var contractLabels = map[string][]string{
	"xosprobe_probe_duration_seconds":              {"check", "phase", "src_os", "dst_os"},
	"xosprobe_probe_total":                         {"check", "src_os", "dst_os", "result"},
	"xosprobe_kernel_rtt_seconds":                  {"src_os", "dst_os", "source"},
	"xosprobe_clock_resolution_seconds":            {"os", "clock"},
	"xosprobe_netpol_mismatch_total":               {"check", "src_os", "dst_os", "expected", "observed"},
	"xosprobe_dns_findings_total":                  {"finding", "src_os", "dst_os"},
	"xosprobe_peers":                               {"dst_os", "reason"},
	"xosprobe_probe_loops":                         nil,
	"xosprobe_probe_skipped_total":                 {"check"},
	"xosprobe_reporter_buffered_results":           nil,
	"xosprobe_reporter_sent_results_total":         nil,
	"xosprobe_reporter_dropped_results_total":      {"reason"},
	"xosprobe_reporter_send_errors_total":          {"reason"},
	"xosprobe_build_info":                          {"version", "os"},
	"xosprobe_probe_held_total":                    {"check", "src_os", "dst_os", "result", "hold"},
	"xosprobe_peers_excluded":                      {"dst_os", "reason"},
	"xosprobe_policy_realization_seconds":          {"check", "src_os", "dst_os"},
	"xosprobe_agent_time_to_first_success_seconds": {"src_os", "dst_os"},
	"xosprobe_cross_os_delta_seconds":              {"check", "phase", "pair", "quantile"},
	"xosprobe_cross_os_delta_samples":              {"check", "phase", "pair"},
	"xosprobe_cross_os_delta_significant":          {"check", "phase", "pair", "quantile"},
	"xosprobe_cross_os_delta_insufficient":         {"check", "phase", "pair", "quantile"},
	"xosprobe_pair_quantile_seconds":               {"check", "phase", "pair", "quantile"},
	"xosprobe_cross_os_regression_seconds":         {"check", "phase", "pair", "quantile"},
	"xosprobe_cross_os_regressed":                  {"check", "phase", "pair", "quantile"},
	"xosprobe_pair_results_total":                  {"check", "pair", "result"},
	rDeltaThreshold:                                {"quantile"},
	"up":                                           nil,
	"process_cpu_seconds_total":                    nil,
	"process_resident_memory_bytes":                nil,
	"go_goroutines":                                nil,
}

// contractValues are the values an exact matcher may use, per label.
var contractValues = map[string][]string{
	"check":    checkValues,
	"phase":    phaseValues,
	"quantile": quantileValues,
	"src_os":   osValues,
	"dst_os":   osValues,
	"os":       osValues,
	"pair":     {"windows->linux", "linux->windows", "windows->windows", "linux->linux"},
	"job":      {agentJob, aggregatorJob},
	"result": {"success", "dns_nxdomain", "dns_timeout", "dns_no_answer", "dns_error",
		"connect_refused", "connect_timeout", "unreachable", "reset",
		"http_status", "http_timeout", "http_body_too_large", "http_protocol",
		"policy_not_enforced", "unexpected_block", "bad_target", "canceled", "error"},
}

// TestLabelsInContract checks every selector's label matchers against the
// metric's labels and the values the contract allows: a misspelt label or
// value matches nothing and leaves a panel silently empty.
func TestLabelsInContract(t *testing.T) {
	for _, p := range parseAll(t) {
		promparser.Inspect(p.expr, func(n promparser.Node, _ []promparser.Node) error {
			vs, ok := n.(*promparser.VectorSelector)
			if !ok {
				return nil
			}
			name := baseName(vs.Name)
			allowed, ok := contractLabels[name]
			if !ok {
				t.Errorf("%s: metric %s is not in the test's label contract", p.Query, vs.Name)
				return nil
			}
			for _, m := range vs.LabelMatchers {
				if m.Name == labels.MetricName {
					continue
				}
				if !slices.Contains(allowed, m.Name) && !slices.Contains(targetLabels, m.Name) &&
					(m.Name != "le" || name == vs.Name) {
					t.Errorf("%s: %s has no label %q", p.Query, vs.Name, m.Name)
				}
				values, known := contractValues[m.Name]
				if known && (m.Type == labels.MatchEqual || m.Type == labels.MatchNotEqual) && !slices.Contains(values, m.Value) {
					t.Errorf("%s: %s=%q is not a value of the contract", p.Query, m.Name, m.Value)
				}
			}
			return nil
		})
	}
}

// baseName strips the series suffixes of a histogram.
func baseName(name string) string {
	for _, s := range []string{"_bucket", "_count", "_sum"} {
		if base, ok := strings.CutSuffix(name, s); ok && strings.HasSuffix(base, "_seconds") {
			return base
		}
	}
	return name
}

// TestMetricNamesInContract checks every metric a query names against the
// constants of agent/metrics/metrics.go and aggregator/metrics.go and the
// recording rules of manifests/prometheus/rules.yaml, so a renamed metric
// breaks this test instead of a panel.
func TestMetricNamesInContract(t *testing.T) {
	known := map[string]bool{
		"up": true, "process_cpu_seconds_total": true, "process_resident_memory_bytes": true, "go_goroutines": true,
	}
	for _, f := range []string{"../agent/metrics/metrics.go", "../aggregator/metrics.go"} {
		for _, n := range metricConstants(t, f) {
			known[n] = true
		}
	}
	for _, n := range recordedNames(t, "../manifests/prometheus/rules.yaml") {
		known[n] = true
	}
	used := map[string]bool{}
	for _, p := range parseAll(t) {
		promparser.Inspect(p.expr, func(n promparser.Node, _ []promparser.Node) error {
			if vs, ok := n.(*promparser.VectorSelector); ok {
				used[vs.Name] = true
				if !known[vs.Name] && !known[baseName(vs.Name)] {
					t.Errorf("%s: metric %s is not exported by the agent or aggregator", p.Query, vs.Name)
				}
			}
			return nil
		})
	}
	for _, m := range []string{mProbeDuration, mProbeTotal, mDelta, mPairResults, mDNSFindings, mNetpolMismatch, mClockResolution} {
		if !used[m] && !used[m+"_bucket"] {
			t.Errorf("no query uses %s", m)
		}
	}
}

// metricConstants returns the string constants of a Go file that name
// xosprobe metrics.
func metricConstants(t *testing.T, file string) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
	if err != nil {
		t.Fatalf("reading the metric contract: %v", err)
	}
	var out []string
	ast.Inspect(f, func(n ast.Node) bool {
		vs, ok := n.(*ast.ValueSpec)
		if !ok {
			return true
		}
		for _, v := range vs.Values {
			if lit, ok := v.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, err := strconv.Unquote(lit.Value); err == nil && strings.HasPrefix(s, "xosprobe_") {
					out = append(out, s)
				}
			}
		}
		return true
	})
	if len(out) == 0 {
		t.Fatalf("%s: no metric name constants found", file)
	}
	return out
}

var recordRE = regexp.MustCompile(`(?m)^\s*-?\s*record:\s*"?([a-zA-Z_:][a-zA-Z0-9_:]*)"?\s*$`)

// recordedNames returns the metric names a Prometheus rule file records.
func recordedNames(t *testing.T, file string) []string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("reading the recording rules: %v", err)
	}
	var out []string
	for _, m := range recordRE.FindAllSubmatch(b, -1) {
		out = append(out, string(m[1]))
	}
	return out
}

// TestDashboardStructure checks what Grafana needs beyond the queries: a
// prometheus datasource variable every panel and query uses, and unique
// panel IDs.
func TestDashboardStructure(t *testing.T) {
	all, err := buildAll()
	if err != nil {
		t.Fatal(err)
	}
	uids := map[string]bool{}
	for _, b := range all {
		d := b.dashboard
		if d.Uid == nil || uids[*d.Uid] {
			t.Errorf("%s: missing or duplicate uid", b.file)
		} else {
			uids[*d.Uid] = true
		}
		hasDS := false
		for _, v := range d.Templating.List {
			if v.Type == "datasource" && v.Name == "datasource" && v.Query != nil && v.Query.String != nil && *v.Query.String == "prometheus" {
				hasDS = true
			}
		}
		if !hasDS {
			t.Errorf("%s: no datasource variable of type prometheus", b.file)
		}
		ids := map[uint32]bool{}
		check := func(p dashboard.Panel) {
			title := ""
			if p.Title != nil {
				title = *p.Title
			}
			if p.Id == nil || ids[*p.Id] {
				t.Errorf("%s: panel %q: missing or duplicate id", b.file, title)
			} else {
				ids[*p.Id] = true
			}
			if p.Datasource == nil || p.Datasource.Uid == nil || *p.Datasource.Uid != "${datasource}" {
				t.Errorf("%s: panel %q does not use the datasource variable", b.file, title)
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", b.file, title)
			}
		}
		for _, p := range d.Panels {
			if p.Panel != nil {
				check(*p.Panel)
			}
			if p.RowPanel != nil {
				if ids[p.RowPanel.Id] {
					t.Errorf("%s: row %d: duplicate id", b.file, p.RowPanel.Id)
				}
				ids[p.RowPanel.Id] = true
				for _, np := range p.RowPanel.Panels {
					check(np)
				}
			}
		}
	}
}

// TestListQueries checks -list-queries: one parseable query a line, no
// template variable left.
func TestListQueries(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-list-queries"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	lines := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
	if len(lines) < 50 {
		t.Fatalf("only %d queries listed", len(lines))
	}
	seen := map[string]bool{}
	for _, l := range lines {
		if seen[l] {
			t.Errorf("listed twice: %s", l)
		}
		seen[l] = true
		if strings.Contains(l, "$") {
			t.Errorf("template variable left: %s", l)
		}
		if _, err := promQL.ParseExpr(l); err != nil {
			t.Errorf("does not parse: %v\n%s", err, l)
		}
	}
}

// TestWrite checks that a run writes every file to -out.
func TestWrite(t *testing.T) {
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	if code := run([]string{"-out", dir}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	for _, name := range []string{"overview.json", "node.json", "agent-health.json", queriesFile} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Size() == 0 {
			t.Errorf("%s not written: %v", name, err)
		}
	}
}

func TestSubstitute(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{in: `rate(x{node=~"$node"}[$__rate_interval])`, want: `rate(x{node=~".*"}[1m])`},
		{in: `increase(x[${__range}])`, want: `increase(x[1h])`},
		{in: `label_replace(x, "a", "$1", "b", "(.*)")`, want: `label_replace(x, "a", "$1", "b", "(.*)")`},
		{in: `x{a="$nope"}`, err: "unknown template variables"},
	} {
		got, err := substitute(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("substitute(%q) error = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("substitute(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}
