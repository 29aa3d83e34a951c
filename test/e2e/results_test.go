package e2e

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

// results collects the summary's verdict lines, one per claim the e2e proves:
//
//	RESULT <name> pass|fail [figures]
//
// A line passes only when its scenario ran to the end without a failed
// assertion; a scenario that was skipped or stopped early reads fail, with why.
type results struct {
	mu    sync.Mutex
	lines []string
}

// result is one scenario's line being built: figures are kept even when the
// scenario fails half way, so the line shows how far it got.
type result struct {
	mu      sync.Mutex
	figures []string
}

// Figure adds a figure (a measured number with its unit and meaning) to the line.
func (r *result) Figure(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.figures = append(r.figures, fmt.Sprintf(format, args...))
}

func (r *result) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.figures, "; ")
}

// Run runs f as the subtest name and records its line: pass when the
// subtest passed and was not skipped.
func (rs *results) Run(t *testing.T, name string, f func(t *testing.T, r *result)) bool {
	t.Helper()
	r := &result{}
	skipped := false
	ok := t.Run(name, func(t *testing.T) {
		defer func() { skipped = t.Skipped() }()
		f(t, r)
	})
	pass := ok && !skipped
	if skipped {
		r.Figure("not run: skipped")
	}
	rs.Add(name, pass, r.String())
	return pass
}

// Add records a line whose verdict the caller decided.
func (rs *results) Add(name string, pass bool, figures string) {
	verdict := "fail"
	if pass {
		verdict = "pass"
	}
	line := "RESULT " + name + " " + verdict
	if figures != "" {
		line += " " + figures
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.lines = append(rs.lines, line)
}

// Lines returns the recorded lines in the order they were added.
func (rs *results) Lines() []string {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return append([]string(nil), rs.lines...)
}

func TestResultsLines(t *testing.T) {
	var rs results
	// Run: a scenario that passes and one that skips (a failing one would
	// fail this test; its verdict is Add's, below).
	rs.Run(t, "ok", func(t *testing.T, r *result) {
		r.Figure("alerts %d", 0)
		r.Figure("took %s", "3s")
	})
	rs.Run(t, "bare", func(t *testing.T, r *result) {})
	rs.Run(t, "skipped", func(t *testing.T, r *result) {
		r.Figure("alerts %d", 1)
		t.Skip("no Prometheus")
	})
	rs.Add("broken", false, "alerts 2")
	want := []string{
		"RESULT ok pass alerts 0; took 3s",
		"RESULT bare pass",
		"RESULT skipped fail alerts 1; not run: skipped",
		"RESULT broken fail alerts 2",
	}
	got := rs.Lines()
	for i := range max(len(got), len(want)) {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			if i >= len(got) || i >= len(want) || got[i] != want[i] {
				t.Errorf("lines %q, want %q", got, want)
			}
		})
	}
}
