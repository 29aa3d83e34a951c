package main

import (
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

// Selectors of the overview's template variables.
const (
	selCheck    = `check=~"$check"`
	selPhase    = `phase=~"$phase"`
	selQuantile = `quantile="$quantile"`
)

// overview is the cross-OS overview: the delta and its significance, the
// per-pair quantiles, success by OS pair, NetworkPolicy enforcement, Windows
// DNS and regressions. The aggregator's metrics come from two replicas with
// identical values, hence max by (...) throughout.
func overview() *dashboard.DashboardBuilder {
	d := newDashboard("xosprobe-overview", "xosprobe / Overview",
		"Windows<->Linux pod connectivity and latency: cross-OS delta, per-pair quantiles, success by OS pair, NetworkPolicy enforcement and Windows DNS.").
		WithVariable(datasourceVariable()).
		WithVariable(customVariable("check", "Check", checkValues, true, "")).
		WithVariable(customVariable("phase", "Phase", phaseValues, true, "")).
		WithVariable(customVariable("quantile", "Quantile", quantileValues, false, "0.9"))

	deltaP90 := by("max", cpp, sel(mDelta, `quantile="0.9"`))
	significantP90 := by("max", cpp, sel(mDeltaSignificant, `quantile="0.9"`))

	d = d.WithRow(row("Summary")).
		WithPanel(statPanel("Worst significant p90 delta",
			"Largest p90 cross-OS delta (pair minus linux->linux) over all checks and phases whose difference is statistically significant. Red from 15 ms.",
			"s", rangeQ(fmt.Sprintf("max(%s and on (check, phase, pair) (%s == 1))", deltaP90, significantP90), "worst p90 delta")).
			Thresholds(thresholds("green", 0.005, "orange", deltaThresholdSeconds, "red")).
			NoValue("none significant")).
		WithPanel(statPanel("Regressed deltas",
			"Number of (check, phase, pair, quantile) deltas the aggregator flags as regressed against their trailing baseline.",
			"none", rangeQ(fmt.Sprintf("count(%s == 1) or vector(0)", by("max", cppq, mRegressed)), "regressed")).
			Thresholds(thresholds("green", 1, "red"))).
		WithPanel(statPanel("Deny checks not enforced",
			"netpol-deny runs over the dashboard range whose connection completed although NetworkPolicy denies it (policy_not_enforced).",
			"none", rangeQ(`sum(increase(xosprobe_probe_total{check="netpol-deny", result="policy_not_enforced"}[$__range])) or vector(0)`, "not enforced")).
			Thresholds(thresholds("green", 1, "red"))).
		WithPanel(statPanel("Success rate",
			"Share of probe runs, all checks and OS pairs, that passed.",
			"percentunit", rangeQ(`sum(rate(xosprobe_probe_total{result="success"}[$__rate_interval])) / sum(rate(xosprobe_probe_total[$__rate_interval]))`, "success")).
			Thresholds(thresholds("red", 0.95, "orange", 0.99, "green")).
			Decimals(2)).
		WithPanel(statPanel("Agents by OS",
			"Agents Prometheus scrapes, by OS (from xosprobe_build_info).",
			"none", rangeQ(fmt.Sprintf(`count by (os) (%s)`, sel(mBuildInfo, `job="`+agentJob+`"`)), "{{os}}"))).
		WithPanel(statPanel("Aggregator replicas up",
			"Aggregator replicas that answer scrapes. At 0 no cross-OS delta is computed.",
			"none", rangeQ(`sum(up{job="`+aggregatorJob+`"})`, "up")).
			Thresholds(thresholds("red", 1, "green")))

	deltaNow := by("max", cppq, sel(mDelta, selCheck, selPhase))
	d = d.WithRow(row("Cross-OS delta")).
		WithPanel(tablePanel("Cross-OS delta now",
			"Per check, phase, OS pair and quantile: q(pair) - q(linux->linux) over the aggregator's delta window; whether the difference is significant (99% interval excludes 0); whether a side has too few samples for that quantile (p50 20, p90 50, p99 500); and the pair's sample count. A delta flagged 'too few samples' is a guess.",
			cppq, []string{"delta", "significant", "insufficient", "samples"},
			instantQ(deltaNow),
			instantQ(by("max", cppq, sel(mDeltaSignificant, selCheck, selPhase))),
			instantQ(by("max", cppq, sel(mDeltaInsufficient, selCheck, selPhase))),
			instantQ(fmt.Sprintf("%s * 0 + on (check, phase, pair) group_left () %s", deltaNow, by("max", cpp, sel(mDeltaSamples, selCheck, selPhase))))).
			Span(24).Height(10).
			OverrideByName("delta", []dashboard.DynamicConfigValue{
				{Id: "unit", Value: "s"},
				{Id: "thresholds", Value: thresholdsConfig("green", 0.005, "orange", deltaThresholdSeconds, "red")},
				colorBackground(),
			}).
			OverrideByName("significant", []dashboard.DynamicConfigValue{
				{Id: "mappings", Value: valueText("1", "significant", "blue", "0", "no", "text")},
				colorBackground(),
			}).
			OverrideByName("insufficient", []dashboard.DynamicConfigValue{
				{Id: "mappings", Value: valueText("1", "too few samples", "purple", "0", "ok", "text")},
				colorBackground(),
			}).
			OverrideByName("samples", []dashboard.DynamicConfigValue{{Id: "unit", Value: "none"}, {Id: "decimals", Value: 0}}))
	for _, q := range quantileValues {
		d = d.WithPanel(timeSeries(fmt.Sprintf("Cross-OS delta p%s", quantileName(q)),
			fmt.Sprintf("q%s(pair) - q%s(linux->linux) per check and phase. The dashed red line is the default alert threshold recorded by rules.yaml (%s) for this quantile, when there is one; checks and phases with their own (%s: connects 10 ms, answers 50 ms, the Windows resolver 30 ms at p90) are judged by that. Check the significance timeline before reading a difference into it.", q, q, rDeltaThreshold, rPhaseThreshold),
			"s",
			rangeQ(by("max", cpp, sel(mDelta, `quantile="`+q+`"`, selCheck, selPhase)), "{{pair}} {{check}}/{{phase}}"),
			rangeQ(fmt.Sprintf("max(%s)", sel(rDeltaThreshold, `quantile="`+q+`"`)), "alert threshold")).
			Span(8).
			OverrideByName("alert threshold", dashedRed()))
	}
	d = d.WithPanel(stateTimeline("Delta significance, quantile $quantile",
		"Per pair, check and phase: significant (the delta's 99% interval excludes 0), not significant, or too few samples for the quantile (the delta is exported but not to be trusted).",
		rangeQ(fmt.Sprintf("%s + 2 * %s",
			by("max", cpp, sel(mDeltaSignificant, selQuantile, selCheck, selPhase)),
			by("max", cpp, sel(mDeltaInsufficient, selQuantile, selCheck, selPhase))), "{{pair}} {{check}}/{{phase}}")).
		Mappings(valueText("0", "not significant", "green", "1", "significant", "orange", "2", "too few samples", "blue", "3", "too few samples", "blue")))

	d = d.WithRow(row("Per-pair quantiles")).
		WithPanel(timeSeries("Pair quantile $quantile (aggregator)",
			"Each OS pair's own quantile over the aggregator's delta window (merged sketches from every agent), linux->linux included as the baseline.",
			"s", rangeQ(by("max", cpp, sel(mPairQuantile, selQuantile, selCheck, selPhase)), "{{pair}} {{check}}/{{phase}}"))).
		WithPanel(timeSeries("Pair quantile $quantile (agent histograms)",
			"The same quantile from the agents' own histograms (native when ingested, else the classic buckets: 50 µs doubling). Available without the aggregator; coarser than its sketches.",
			"s", rangeQ(histQuantile("$quantile", mProbeDuration, []string{"check", "phase", "src_os", "dst_os"}, selCheck, selPhase), "{{src_os}}->{{dst_os}} {{check}}/{{phase}}")))

	d = d.WithRow(row("Success by OS pair")).
		WithPanel(timeSeries("Success rate by OS pair and check",
			"Share of probe runs that passed, per check and source->destination OS (agents' counters). For netpol-deny a pass is a blocked connection.",
			"percentunit", rangeQ(`sum by (check, src_os, dst_os) (rate(xosprobe_probe_total{result="success", check=~"$check"}[$__rate_interval]))
/
sum by (check, src_os, dst_os) (rate(xosprobe_probe_total{check=~"$check"}[$__rate_interval]))`, "{{src_os}}->{{dst_os}} {{check}}")).
			Min(0).Max(1)).
		WithPanel(tablePanel("Failures by OS pair and reason",
			"Failed runs over the dashboard range, by check, OS pair and classified reason (aggregator's counters, all agents).",
			[]string{"check", "pair", "result"}, []string{"failures"},
			instantQ(`max by (check, pair, result) (increase(xosprobe_pair_results_total{result!="success", check=~"$check"}[$__range])) > 0`)).
			Decimals(0).
			SortBy(sortDesc("failures")))

	d = d.WithRow(row("NetworkPolicy enforcement")).
		WithPanel(statPanel("Deny enforced by OS pair",
			"Share of netpol-deny runs over the range that were blocked, per source->destination OS. Below 100% NetworkPolicy is not enforced on that path: on Windows nodes the CNI must implement it (Flannel alone does not).",
			"percentunit", rangeQ(`sum by (src_os, dst_os) (increase(xosprobe_probe_total{check="netpol-deny", result="success"}[$__range]))
/
sum by (src_os, dst_os) (increase(xosprobe_probe_total{check="netpol-deny", result!="canceled"}[$__range]))`, "{{src_os}}->{{dst_os}}")).
			Span(8).Height(8).
			GraphMode(common.BigValueGraphModeNone).
			Thresholds(thresholds("red", 0.99, "orange", 1, "green")).
			Decimals(1)).
		WithPanel(timeSeries("Deny checks: blocked vs not enforced",
			"netpol-deny runs per second: blocked (the passing outcome) and policy_not_enforced (the connection completed).",
			"ops",
			rangeQ(`sum by (src_os, dst_os) (rate(xosprobe_probe_total{check="netpol-deny", result="success"}[$__rate_interval]))`, "{{src_os}}->{{dst_os}} blocked"),
			rangeQ(`sum by (src_os, dst_os) (rate(xosprobe_probe_total{check="netpol-deny", result="policy_not_enforced"}[$__rate_interval]))`, "{{src_os}}->{{dst_os}} NOT enforced")).
			Span(8).
			OverrideByRegexp(".*NOT enforced", fixedColor("red"))).
		WithPanel(tablePanel("Verdict mismatches",
			"NetworkPolicy checks over the range whose observed verdict differs from the one the evaluator expected (netpol-allow blocked, netpol-deny allowed).",
			[]string{"check", "src_os", "dst_os", "expected", "observed"}, []string{"runs"},
			instantQ(`sum by (check, src_os, dst_os, expected, observed) (increase(xosprobe_netpol_mismatch_total[$__range])) > 0`)).
			Span(8).
			Decimals(0))

	d = d.WithRow(row("Windows DNS")).
		WithPanel(timeSeries("DNS failures from Windows pods",
			"Runs per second from Windows pods that failed on name resolution, by reason, check and destination OS. dns_timeout or dns_error on Windows only: check the pod's DNS server and that the node's HNS endpoint can reach CoreDNS.",
			"ops", rangeQ(`sum by (check, dst_os, result) (rate(xosprobe_probe_total{src_os="windows", result=~"dns_.*"}[$__rate_interval]))`, "{{result}} {{check}} -> {{dst_os}}")).
			Span(8)).
		WithPanel(timeSeries("DNS findings from Windows pods",
			"Findings that do not fail the check. short_name_fails: the short svc.ns form does not resolve while the FQDN does, the Windows single-DNS-suffix symptom; applications must use FQDNs.",
			"ops", rangeQ(`sum by (finding, dst_os) (rate(xosprobe_dns_findings_total{src_os="windows"}[$__rate_interval]))`, "{{finding}} -> {{dst_os}}")).
			Span(8)).
		WithPanel(timeSeries("Resolver latency p90 by OS",
			"resolve_system is what applications see (GetAddrInfoW on Windows), resolve_direct one query straight to the cluster DNS server. A gap only on Windows is the Windows resolver, not the network.",
			"s", rangeQ(histQuantile("0.9", mProbeDuration, []string{"src_os", "phase"}, `check="dns"`, `phase=~"resolve_.*"`), "{{src_os}} {{phase}}")).
			Span(8))

	d = d.WithRow(row("Regression")).
		WithPanel(timeSeries("Delta regression vs trailing baseline, quantile $quantile",
			"Cross-OS delta over the current window minus the same delta over the trailing baseline window: how much slower the cross-OS path got.",
			"s", rangeQ(by("max", cpp, sel(mRegression, selQuantile, selCheck, selPhase)), "{{pair}} {{check}}/{{phase}}"))).
		WithPanel(tablePanel("Regressed now",
			"Deltas the aggregator flags as regressed (significant increase of at least the minimum regression), with the increase. These fire XosprobeCrossOSDeltaRegressed after 15 minutes.",
			cppq, []string{"increase"},
			instantQ(fmt.Sprintf("%s and on (check, phase, pair, quantile) (%s == 1)", by("max", cppq, mRegression), by("max", cppq, mRegressed)))).
			Unit("s").
			SortBy(sortDesc("increase")))
	return d
}

// quantileName renders "0.9" as "90", "0.99" as "99".
func quantileName(q string) string {
	switch q {
	case "0.5":
		return "50"
	case "0.9":
		return "90"
	case "0.99":
		return "99"
	}
	return q
}
