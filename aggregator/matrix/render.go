package matrix

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
)

// RenderOptions choose what Render draws.
type RenderOptions struct {
	Check string // default "tcp"
	// Phase default: "connect" when the check has it, else its first phase.
	Phase string
	// Color uses ANSI background colours in the heat map; the characters
	// stay, so the map also reads without colour.
	Color   bool
	MaxCols int // destination nodes shown in the heat map; default 64
	MaxRows int // source nodes shown; default 64
}

// Heat map levels: upper bounds in seconds and their characters, light to heavy.
var (
	levelBounds = []float64{0.5e-3, 1e-3, 2e-3, 5e-3, 10e-3, 20e-3, 50e-3}
	levelChars  = []byte(".:-=+*#%")
	// 256-colour backgrounds from green to red, one per level.
	levelColors = []int{28, 34, 70, 142, 178, 172, 166, 160}
)

const (
	charNoData  = ' '
	charFailure = 'X'
	charNoPhase = '?' // succeeded without the selected phase
	charSelf    = '\\'
	colorFail   = 124
)

// phasePreference picks the default phase: the pure network round trip first.
var phasePreference = []string{"connect", "resolve_system", "resolve_direct", "first_byte", "total", "dns", "resolve_short"}

// osOrder sorts Linux first so linux->linux, the baseline, leads.
func osOrder(os string) int {
	switch os {
	case "linux":
		return 0
	case "windows":
		return 1
	}
	return 2
}

// Render writes the OS x OS table and the per-node heat map of one check and phase.
func Render(w io.Writer, m *Matrix, o RenderOptions) error {
	if o.Check == "" {
		o.Check = "tcp"
	}
	if o.MaxCols <= 0 {
		o.MaxCols = 64
	}
	if o.MaxRows <= 0 {
		o.MaxRows = 64
	}
	if o.Phase == "" {
		o.Phase = defaultPhase(m, o.Check)
	}
	fmt.Fprintf(w, "xosprobe matrix: check %s, phase %s, window %s, generated %s\n\n",
		Printable(o.Check), Printable(o.Phase), Printable(m.Window), m.GeneratedAt.UTC().Format(time.RFC3339))
	if err := renderPairs(w, m, o); err != nil {
		return err
	}
	fmt.Fprintln(w)
	return renderHeatMap(w, m, o)
}

// defaultPhase is the preferred phase the check has data for, or "connect".
func defaultPhase(m *Matrix, check string) string {
	have := map[string]bool{}
	for _, p := range m.Pairs {
		for ph := range p.Checks[check].Phases {
			have[ph] = true
		}
	}
	for _, c := range m.Cells {
		if c.Check == check {
			for ph := range c.Phases {
				have[ph] = true
			}
		}
	}
	for _, ph := range phasePreference {
		if have[ph] {
			return ph
		}
	}
	if len(have) > 0 {
		names := make([]string, 0, len(have))
		for ph := range have {
			names = append(names, ph)
		}
		slices.Sort(names)
		return names[0]
	}
	return "connect"
}

// renderPairs draws rows = source OS, columns = destination OS; each cell
// is two lines: quantiles, then success rate, samples and delta.
func renderPairs(w io.Writer, m *Matrix, o RenderOptions) error {
	var oses []string
	byPair := map[[2]string]Pair{}
	for _, p := range m.Pairs {
		byPair[[2]string{p.SrcOS, p.DstOS}] = p
		for _, os := range []string{p.SrcOS, p.DstOS} {
			if !slices.Contains(oses, os) {
				oses = append(oses, os)
			}
		}
	}
	fmt.Fprintf(w, "OS x OS, %s %s over %s (p50 / p90 of successful runs; Δ vs linux->linux)\n", Printable(o.Check), Printable(o.Phase), Printable(m.Window))
	if len(oses) == 0 {
		fmt.Fprintln(w, "  no results in the window")
		return nil
	}
	slices.SortFunc(oses, func(a, b string) int { return cmp.Or(cmp.Compare(osOrder(a), osOrder(b)), cmp.Compare(a, b)) })
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fmt.Fprint(tw, "  src \\ dst")
	for _, d := range oses {
		fmt.Fprintf(tw, "\t%s", Printable(d))
	}
	fmt.Fprintln(tw)
	for _, s := range oses {
		line1, line2 := []string{"  " + Printable(s)}, []string{""}
		for _, d := range oses {
			a, b := pairCell(byPair[[2]string{s, d}], s, d, o)
			line1, line2 = append(line1, a), append(line2, b)
		}
		fmt.Fprintln(tw, strings.Join(line1, "\t"))
		fmt.Fprintln(tw, strings.Join(line2, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "  Δ: p50/p90 minus linux->linux; * significant at 99%, ? too few samples to judge")
	return nil
}

func pairCell(p Pair, src, dst string, o RenderOptions) (string, string) {
	cs, ok := p.Checks[o.Check]
	if !ok || cs.Samples == 0 {
		return "no data", ""
	}
	ph, ok := cs.Phases[o.Phase]
	first := "no latency data"
	if ok && ph.Samples > 0 {
		first = fmt.Sprintf("%s / %s", FormatSeconds(ph.P50), FormatSeconds(ph.P90))
	}
	second := fmt.Sprintf("ok %s n=%d", formatRate(cs.SuccessRate), cs.Samples)
	switch {
	case src == "linux" && dst == "linux":
		second += " (baseline)"
	case ph.DeltaP50 != nil && ph.DeltaP90 != nil:
		second += fmt.Sprintf(" Δ %s%s/%s%s", formatDelta(ph.DeltaP50.Seconds), mark(ph.DeltaP50),
			formatDelta(ph.DeltaP90.Seconds), mark(ph.DeltaP90))
	}
	return first, second
}

func mark(d *Delta) string {
	switch {
	case d.Insufficient:
		return "?"
	case d.Significant:
		return "*"
	}
	return ""
}

func formatRate(r float64) string {
	if r >= 1 {
		return "100%"
	}
	return fmt.Sprintf("%.1f%%", r*100)
}

// FormatSeconds prints a latency with three significant digits in µs, ms or s.
func FormatSeconds(s float64) string {
	switch a := max(s, -s); {
	case a == 0:
		return "0"
	case a < 1e-3:
		return fmt.Sprintf("%.3gµs", s*1e6)
	case a < 1:
		return fmt.Sprintf("%.3gms", s*1e3)
	}
	return fmt.Sprintf("%.3gs", s)
}

func formatDelta(s float64) string {
	if s >= 0 {
		return "+" + FormatSeconds(s)
	}
	return FormatSeconds(s)
}

// nodeStat ranks nodes for the heat map when not all fit.
type nodeStat struct {
	node, os string
	cells    int
	failures int
}

// renderHeatMap draws rows = source nodes, columns = destination nodes, one
// character per cell by latency level or failure.
func renderHeatMap(w io.Writer, m *Matrix, o RenderOptions) error {
	type key struct{ src, dst string }
	cells := map[key]Cell{}
	srcs, dsts := map[string]*nodeStat{}, map[string]*nodeStat{}
	count := func(set map[string]*nodeStat, node, os string, failed bool) {
		st := set[node]
		if st == nil {
			st = &nodeStat{node: node, os: os}
			set[node] = st
		}
		st.cells++
		if failed {
			st.failures++
		}
	}
	var failures []Cell
	for _, c := range m.Cells {
		if c.Check != o.Check {
			continue
		}
		cells[key{c.Src, c.Dst}] = c
		failed := c.Outcome != "success"
		count(srcs, c.Src, c.SrcOS, failed)
		count(dsts, c.Dst, c.DstOS, failed)
		if failed {
			failures = append(failures, c)
		}
	}
	fmt.Fprintf(w, "Per-node heat map, %s %s: latest result per node pair (rows: source, columns: destination)\n", Printable(o.Check), Printable(o.Phase))
	if len(cells) == 0 {
		fmt.Fprintln(w, "  no per-node results for this check")
		return nil
	}
	rows := pickNodes(srcs, o.MaxRows)
	// Columns from the shown rows' destinations: each source probes only
	// its k peers, so arbitrary columns would be mostly blank.
	shown := map[string]bool{}
	for _, r := range rows {
		shown[r.node] = true
	}
	colStats := map[string]*nodeStat{}
	for k, c := range cells {
		if shown[k.src] {
			count(colStats, c.Dst, c.DstOS, c.Outcome != "success")
		}
	}
	cols := pickNodes(colStats, o.MaxCols)
	if len(rows) < len(srcs) || len(cols) < len(dsts) {
		fmt.Fprintf(w, "  showing %d of %d source and %d of %d destination nodes: failing and busiest first, both OSes;\n"+
			"  --max-rows and --max-cols show more, --json everything\n", len(rows), len(srcs), len(cols), len(dsts))
	}

	labelW := 0
	labels := make([]string, len(rows))
	for i, r := range rows {
		labels[i] = fmt.Sprintf("%-7s %s", Printable(r.os), truncate(Printable(r.node), 32))
		labelW = max(labelW, len([]rune(labels[i])))
	}
	// Column numbers, written vertically so each column stays one character wide.
	digits := len(fmt.Sprint(len(cols)))
	for d := digits - 1; d >= 0; d-- {
		var sb strings.Builder
		sb.WriteString("  " + strings.Repeat(" ", labelW) + " ")
		for i := range cols {
			n := i + 1
			for range d {
				n /= 10
			}
			if d > 0 && i+1 < pow10(d) {
				sb.WriteByte(' ')
			} else {
				sb.WriteByte(byte('0' + n%10))
			}
		}
		fmt.Fprintln(w, strings.TrimRight(sb.String(), " "))
	}
	for i, r := range rows {
		var sb strings.Builder
		sb.WriteString("  " + labels[i] + strings.Repeat(" ", labelW-len([]rune(labels[i]))) + " ")
		for _, c := range cols {
			ch, color := cellChar(cells[key{r.node, c.node}], r.node == c.node, o.Phase)
			if o.Color && color >= 0 {
				fmt.Fprintf(&sb, "\x1b[48;5;%dm\x1b[97m%c\x1b[0m", color, ch)
			} else {
				sb.WriteRune(ch)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(sb.String(), " "))
	}

	var legend []string
	for i, ch := range levelChars {
		lo := "0"
		if i > 0 {
			lo = FormatSeconds(levelBounds[i-1])
		}
		if i < len(levelBounds) {
			legend = append(legend, fmt.Sprintf("%c %s-%s", ch, lo, FormatSeconds(levelBounds[i])))
		} else {
			legend = append(legend, fmt.Sprintf("%c >=%s", ch, lo))
		}
	}
	fmt.Fprintf(w, "  legend: %s\n", strings.Join(legend, "  "))
	fmt.Fprintf(w, "          %c failed  %c no %s phase  %c self  blank: not probed\n", charFailure, charNoPhase, Printable(o.Phase), charSelf)
	fmt.Fprintln(w, "  columns:")
	colW := 0
	for _, c := range cols {
		colW = max(colW, len([]rune(truncate(Printable(c.node), 32))))
	}
	perLine := max(1, 100/(colW+digits+13))
	var line strings.Builder
	for i, c := range cols {
		fmt.Fprintf(&line, "  %*d %-*s %-9s", digits, i+1, colW, truncate(Printable(c.node), 32), "("+Printable(c.os)+")")
		if i%perLine == perLine-1 || i == len(cols)-1 {
			fmt.Fprintln(w, "  "+strings.TrimRight(line.String(), " "))
			line.Reset()
		}
	}
	if len(failures) > 0 {
		slices.SortFunc(failures, func(a, b Cell) int {
			return cmp.Or(b.At.Compare(a.At), cmp.Compare(a.Src, b.Src), cmp.Compare(a.Dst, b.Dst))
		})
		fmt.Fprintf(w, "\n  %d failing node pairs (latest first):\n", len(failures))
		for i, c := range failures {
			if i == 10 {
				fmt.Fprintf(w, "    ... and %d more (--json for all)\n", len(failures)-10)
				break
			}
			fmt.Fprintf(w, "    %s (%s) -> %s (%s): %s at %s\n", Printable(c.Src), Printable(c.SrcOS), Printable(c.Dst), Printable(c.DstOS),
				Printable(c.Outcome), c.At.UTC().Format(time.TimeOnly))
		}
	}
	return nil
}

func pow10(d int) int {
	n := 1
	for range d {
		n *= 10
	}
	return n
}

// cellChar returns the character and colour (-1: none) of one cell.
func cellChar(c Cell, self bool, phase string) (rune, int) {
	switch {
	case c.Check == "" && self:
		return charSelf, -1
	case c.Check == "":
		return charNoData, -1
	case c.Outcome != "success":
		return charFailure, colorFail
	}
	v, ok := c.Phases[phase]
	if !ok {
		return charNoPhase, -1
	}
	l := level(v)
	return rune(levelChars[l]), levelColors[l]
}

func level(seconds float64) int {
	for i, b := range levelBounds {
		if seconds < b {
			return i
		}
	}
	return len(levelBounds)
}

// pickNodes returns at most limit nodes: failing and busiest first, taking
// turns between OSes so a few Windows nodes are not crowded out by many
// Linux ones; then sorted by OS and name for display.
func pickNodes(set map[string]*nodeStat, limit int) []*nodeStat {
	byOS := map[string][]*nodeStat{}
	var oses []string
	for _, st := range set {
		if _, ok := byOS[st.os]; !ok {
			oses = append(oses, st.os)
		}
		byOS[st.os] = append(byOS[st.os], st)
	}
	slices.SortFunc(oses, func(a, b string) int { return cmp.Or(cmp.Compare(osOrder(a), osOrder(b)), cmp.Compare(a, b)) })
	for _, l := range byOS {
		slices.SortFunc(l, func(a, b *nodeStat) int {
			return cmp.Or(cmp.Compare(b.failures, a.failures), cmp.Compare(b.cells, a.cells), cmp.Compare(a.node, b.node))
		})
	}
	var out []*nodeStat
	for len(out) < limit {
		took := false
		for _, os := range oses {
			if l := byOS[os]; len(l) > 0 && len(out) < limit {
				out = append(out, l[0])
				byOS[os] = l[1:]
				took = true
			}
		}
		if !took {
			break
		}
	}
	slices.SortFunc(out, func(a, b *nodeStat) int {
		return cmp.Or(cmp.Compare(osOrder(a.os), osOrder(b.os)), cmp.Compare(a.os, b.os), cmp.Compare(a.node, b.node))
	})
	return out
}

// Printable is s, or s quoted with Go escapes when it holds a rune that is
// not printable: node names and outcomes come from agents' batches, and an
// escape sequence among them must not reach the operator's terminal.
func Printable(s string) string {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
