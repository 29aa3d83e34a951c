//go:build linux

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// deltaAlertWatch checks the shipped XosprobeCrossOSDeltaHigh against the
// delay the ground truth applies to packets into the Windows pods: while the
// hold D is above the shipped threshold the alert fires for linux->windows
// tcp and http connect (the phases that pay D once); at D below it no
// linux->windows connect alert is active (phases that pay D more than once,
// like http total, may legitimately cross the threshold at D = 5 ms), and
// once the delay is removed no linux->windows delta alert is.
type deltaAlertWatch struct {
	t         *testing.T
	prom      *promServer
	threshold time.Duration // xosprobe:cross_os_delta_threshold_seconds, as Prometheus evaluates it
	quantile  string        // of the threshold

	// Results, for the summary.
	Fired    time.Duration // time from setting D to the alert firing for every expected series
	Resolved time.Duration // time from removing D to no linux->windows delta alert
	FiredD   time.Duration
	Lines    []string
}

// deltaAlertExpected are the series that must fire: the connect phases pay
// the hold exactly once.
var deltaAlertExpected = []struct{ check, phase string }{{"tcp", "connect"}, {"http", "connect"}}

// newDeltaAlertWatch reads the thresholds of the expected series from
// Prometheus (the recording rules of the shipped rules.yaml): a check and
// phase's own (xosprobe:cross_os_delta_phase_threshold_seconds), else the
// default; the watch's threshold is the largest, so a D above it must fire
// every expected series.
func newDeltaAlertWatch(t *testing.T, p *promServer) *deltaAlertWatch {
	t.Helper()
	w := &deltaAlertWatch{t: t, prom: p}
	eventually(t, 30*time.Second, "the delta threshold recording rules", func() error {
		ss, err := p.query("xosprobe:cross_os_delta_threshold_seconds")
		if err != nil {
			return err
		}
		if len(ss) != 1 {
			return fmt.Errorf("xosprobe:cross_os_delta_threshold_seconds: %d series, want 1", len(ss))
		}
		def := time.Duration(ss[0].float() * 1e9)
		w.quantile = ss[0].Metric["quantile"]
		own, err := p.query(fmt.Sprintf("xosprobe:cross_os_delta_phase_threshold_seconds{quantile=%q}", w.quantile))
		if err != nil {
			return err
		}
		w.threshold = 0
		for _, e := range deltaAlertExpected {
			th := def
			for _, s := range own {
				if s.Metric["check"] == e.check && s.Metric["phase"] == e.phase {
					th = time.Duration(s.float() * 1e9)
				}
			}
			w.threshold = max(w.threshold, th)
		}
		return nil
	})
	return w
}

// active returns the linux->windows delta alerts that are pending or firing.
func (w *deltaAlertWatch) active() ([]promAlert, error) {
	as, err := w.prom.alerts()
	if err != nil {
		return nil, err
	}
	var out []promAlert
	for _, a := range as {
		if a.Labels["alertname"] == deltaAlert && a.Labels["pair"] == "linux->windows" {
			out = append(out, a)
		}
	}
	return out, nil
}

// stage runs after D changed (0: the baseline), until end at the latest.
func (w *deltaAlertWatch) stage(d time.Duration, end time.Time) {
	t := w.t
	if d <= w.threshold {
		// Checked at the end of the stage, when the window holds only D.
		time.Sleep(time.Until(end.Add(-2 * time.Second)))
		as, err := w.active()
		if err != nil {
			t.Error(err)
			return
		}
		var connect, other []string
		for _, a := range as {
			if a.Labels["phase"] == "connect" {
				connect = append(connect, a.String())
			} else {
				other = append(other, a.String())
			}
		}
		if len(connect) > 0 {
			t.Errorf("%s active for a connect phase at D=%s, below the threshold %s: %v", deltaAlert, d, w.threshold, connect)
		}
		w.Lines = append(w.Lines, fmt.Sprintf("D=%s (below the threshold %s at q%s): no linux->windows connect alert; other phases active: %v", d, w.threshold, w.quantile, other))
		return
	}
	start := time.Now()
	var missing []string
	for time.Now().Before(end) {
		as, err := w.active()
		if err != nil {
			t.Error(err)
			return
		}
		missing = missing[:0]
		for _, e := range deltaAlertExpected {
			if !hasAlert(as, map[string]string{"check": e.check, "phase": e.phase, "quantile": w.quantile}, "firing") {
				missing = append(missing, e.check+"/"+e.phase)
			}
		}
		if len(missing) == 0 {
			w.Fired, w.FiredD = time.Since(start), d
			var names []string
			for _, a := range as {
				names = append(names, a.String())
			}
			w.Lines = append(w.Lines, fmt.Sprintf("D=%s (above the threshold %s): %s firing after %s: %s", d, w.threshold, deltaAlert,
				w.Fired.Round(time.Second), strings.Join(names, "; ")))
			return
		}
		time.Sleep(time.Second)
	}
	t.Errorf("D=%s above the threshold %s: %s not firing for linux->windows %v within %s", d, w.threshold, deltaAlert, missing, time.Since(start).Round(time.Second))
}

// resolve waits, after the delay was removed, until no linux->windows delta
// alert is active.
func (w *deltaAlertWatch) resolve(timeout time.Duration) {
	start := time.Now()
	var last []promAlert
	for time.Since(start) < timeout {
		as, err := w.active()
		if err != nil {
			w.t.Error(err)
			return
		}
		if len(as) == 0 {
			w.Resolved = time.Since(start)
			w.Lines = append(w.Lines, fmt.Sprintf("D=0 again: resolved after %s", w.Resolved.Round(time.Second)))
			return
		}
		last = as
		time.Sleep(time.Second)
	}
	w.t.Errorf("%s still active %s after the delay was removed: %v", deltaAlert, timeout, last)
}

// hasAlert reports whether as holds an alert in state with all of labels.
func hasAlert(as []promAlert, labels map[string]string, state string) bool {
	for _, a := range as {
		if a.State == state && hasLabels(a.Labels, labels) {
			return true
		}
	}
	return false
}
