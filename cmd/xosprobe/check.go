package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/xosprobe/xosprobe/probe"
	"github.com/xosprobe/xosprobe/probe/clock"
)

type checkConfig struct {
	target, path, name, dnsServer, service, allowTarget, denyTarget string
	timeout, denyTimeout                                            time.Duration
	json                                                            bool
}

func newCheckCmd() *cobra.Command {
	var cfg checkConfig
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Run the six-step connectivity check once and explain what failed",
		Long: `Runs dns, tcp, http, service, netpol-allow and netpol-deny once, each as far as
its inputs allow, and prints a table of verdicts, phase timings and kernel RTT.
Steps without inputs are shown as skipped. Exit code 0 only when every step that
ran passed; 1 when one failed; 2 on bad usage.`,
		Example: `  xosprobe check --target 10.244.1.7:8080 --name xosprobe-windows.xosprobe.svc.cluster.local \
      --dns-server 10.96.0.10:53 --service 10.96.12.4:8080 --deny-target 10.244.1.7:8082
  kubectl exec -n xosprobe ds/xosprobe-agent-windows -- xosprobe.exe check --target 10.244.2.9:8080 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rep := runCheck(cmd.Context(), probe.New(), cfg)
			if err := writeCheck(cmd.OutOrStdout(), rep, cfg.json); err != nil {
				return err
			}
			if !rep.Passed {
				return errFailed
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.target, "target", "", "peer pod HOST:PORT for the tcp and http steps")
	f.StringVar(&cfg.path, "path", probe.DefaultHTTPPath, "health path for the http and service steps")
	f.StringVar(&cfg.name, "name", "", "Service FQDN for the dns step (svc.ns.svc.cluster.local)")
	f.StringVar(&cfg.dnsServer, "dns-server", "", "cluster DNS IP:PORT for the direct query of the dns step")
	f.StringVar(&cfg.service, "service", "", "Service VIP:PORT for the service step")
	f.StringVar(&cfg.allowTarget, "allow-target", "", "HOST:PORT that NetworkPolicy allows from here (netpol-allow)")
	f.StringVar(&cfg.denyTarget, "deny-target", "", "HOST:PORT that NetworkPolicy denies from here (netpol-deny)")
	f.DurationVar(&cfg.timeout, "timeout", 5*time.Second, "deadline of each step")
	f.DurationVar(&cfg.denyTimeout, "deny-timeout", probe.DefaultDenyTimeout, "how long a NetworkPolicy step waits before calling a port blocked")
	f.BoolVar(&cfg.json, "json", false, "print one JSON document instead of a table")
	return cmd
}

// checkReport is the outcome of one `xosprobe check` run; --json prints it as is.
type checkReport struct {
	OS        string           `json:"os"`
	Clock     clock.Resolution `json:"clock"`
	WallClock clock.Resolution `json:"wallClock"` // time.Now, shown for comparison
	Passed    bool             `json:"passed"`
	Steps     []checkStep      `json:"steps"`
}

type checkStep struct {
	Check  probe.Check   `json:"check"`
	Status string        `json:"status"` // pass, fail, skipped
	Why    string        `json:"why,omitempty"`
	Result *probe.Result `json:"result,omitempty"`
}

// plan returns the target of each step, or why the step is skipped.
func (cfg checkConfig) plan() []struct {
	check  probe.Check
	target probe.Target
	skip   string
} {
	type step = struct {
		check  probe.Check
		target probe.Target
		skip   string
	}
	need := func(v, flag string) string {
		if v == "" {
			return "no " + flag + " given"
		}
		return ""
	}
	return []step{
		{probe.CheckDNS, probe.Target{Name: cfg.name, DNSServer: cfg.dnsServer}, need(cfg.name, "--name")},
		{probe.CheckTCP, probe.Target{Addr: cfg.target}, need(cfg.target, "--target")},
		{probe.CheckHTTP, probe.Target{Addr: cfg.target, HTTPPath: cfg.path}, need(cfg.target, "--target")},
		{probe.CheckService, probe.Target{ServiceAddr: cfg.service, HTTPPath: cfg.path}, need(cfg.service, "--service")},
		{probe.CheckNetpolAllow, probe.Target{Addr: cfg.allowTarget, Expect: probe.VerdictAllow}, need(cfg.allowTarget, "--allow-target")},
		{probe.CheckNetpolDeny, probe.Target{Addr: cfg.denyTarget, Expect: probe.VerdictDeny}, need(cfg.denyTarget, "--deny-target")},
	}
}

func runCheck(ctx context.Context, p *probe.Prober, cfg checkConfig) checkReport {
	p.DenyTimeout = cfg.denyTimeout
	rep := checkReport{
		OS:        runtime.GOOS,
		Clock:     clock.MeasureResolution(p.Clock, 50*time.Millisecond),
		WallClock: clock.MeasureResolution(clock.WallClock(), 50*time.Millisecond),
		Passed:    true,
	}
	for _, s := range cfg.plan() {
		if s.skip != "" {
			rep.Steps = append(rep.Steps, checkStep{Check: s.check, Status: "skipped", Why: s.skip})
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, cfg.timeout)
		r := p.Func(s.check)(sctx, s.target)
		cancel()
		st := checkStep{Check: s.check, Status: "pass", Result: &r}
		if !r.Succeeded() {
			st.Status, st.Why = "fail", r.Outcome.Explain()
			rep.Passed = false
		}
		rep.Steps = append(rep.Steps, st)
	}
	return rep
}

func writeCheck(w io.Writer, rep checkReport, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	fmt.Fprintf(w, "xosprobe check on %s: clock %s, resolution %s (time.Now steps %s)\n\n",
		rep.OS, rep.Clock.Clock, rep.Clock.Step, rep.WallClock.Step)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tVERDICT\tREASON\tTIMINGS (ms)\tKERNEL RTT")
	var notes []string
	for _, s := range rep.Steps {
		if s.Result == nil {
			fmt.Fprintf(tw, "%s\tSKIPPED\t%s\t\t\n", s.Check, s.Why)
			continue
		}
		r := s.Result
		reason := "-"
		if r.Succeeded() && r.Detail != "" {
			reason = r.Detail // e.g. "blocked as expected (connect_timeout)"
		}
		if !r.Succeeded() {
			reason = string(r.Outcome)
			notes = append(notes, fmt.Sprintf("%s: %s\n    %s\n    why: %s", s.Check, r.Outcome, r.Detail, s.Why))
		}
		for _, f := range r.Findings {
			notes = append(notes, fmt.Sprintf("%s: finding %s\n    %s", s.Check, f.Code, f.Detail))
		}
		rtt := "n/a"
		if r.KernelRTT.Available() {
			rtt = fmt.Sprintf("%s (%s)", ms(r.KernelRTT.RTT), r.KernelRTT.Source)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Check, strings.ToUpper(s.Status), reason, timings(r.Phases), rtt)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(notes) > 0 {
		fmt.Fprintf(w, "\n%s\n", strings.Join(notes, "\n"))
	}
	verdict := "all steps that ran passed"
	if !rep.Passed {
		verdict = "FAILED"
	}
	_, err := fmt.Fprintf(w, "\n%s\n", verdict)
	return err
}

func timings(phases []probe.PhaseDuration) string {
	parts := make([]string, 0, len(phases))
	for _, p := range phases {
		parts = append(parts, fmt.Sprintf("%s=%s", p.Phase, ms(p.Duration)))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}

// ms prints a duration in milliseconds to the microsecond.
func ms(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()*1e3) }
