package main

import (
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

// forOS keeps the series of expr that come from agents of the selected OS.
// Only build_info and the clock carry an os label, so the rest join on the
// scrape target.
func forOS(expr string) string {
	return fmt.Sprintf(`(%s and on (instance) xosprobe_build_info{job="%s", os=~"$os"})`, expr, agentJob)
}

// agentSel is a selector over the chosen agents.
func agentSel(metric string) string {
	return sel(metric, `job="`+agentJob+`"`, selNode)
}

// health is the agents' own health: clock resolution, reporter, probe loops,
// the probes' cost in CPU and memory, and the versions running.
func health() *dashboard.DashboardBuilder {
	d := newDashboard("xosprobe-agents", "xosprobe / Agent health",
		"The agents themselves: the clock they time with, the reporter to the aggregator, probe loops, CPU and memory cost, versions.").
		WithVariable(datasourceVariable()).
		WithVariable(customVariable("os", "OS", osValues, true, "")).
		WithVariable(labelValuesVariable("node", "Node", sel(mBuildInfo, `job="`+agentJob+`"`, `os=~"$os"`), "node", true))

	d = d.WithRow(row("Fleet")).
		WithPanel(statPanel("Agents by OS",
			"Agents Prometheus scrapes, by OS.",
			"none", rangeQ(`count by (os) (xosprobe_build_info{job="`+agentJob+`", os=~"$os"})`, "{{os}}")).
			Span(6)).
		WithPanel(statPanel("Agent targets down",
			"Agent pods Prometheus discovers but cannot scrape. On Windows nodes check that the host firewall and the pod's metrics port allow the Prometheus pod in.",
			"none", rangeQ(`count(up{job="`+agentJob+`"} == 0) or vector(0)`, "down")).
			Span(6).
			Thresholds(thresholds("green", 1, "red"))).
		WithPanel(tablePanel("Versions",
			"Agents by OS and version; more than one version per OS is a rollout in progress (or stuck).",
			[]string{"os", "version"}, []string{"agents"},
			instantQ(`count by (os, version) (xosprobe_build_info{job="`+agentJob+`", os=~"$os"})`)).
			Height(4))

	d = d.WithRow(row("Clock")).
		WithPanel(tablePanel("Clock resolution by OS",
			"Worst measured step per OS and clock: the probe clock (qpc on Windows, monotonic on Linux) and time.Now for comparison. On Windows time.Now steps 0.5-15.6 ms, which is why probes use QPC; a probe clock above 100 µs fires XosprobeCoarseClock.",
			[]string{"os", "clock"}, []string{"worst step"},
			instantQ(`max by (os, clock) (xosprobe_clock_resolution_seconds{os=~"$os"})`)).
			Unit("s").
			OverrideByName("worst step", []dashboard.DynamicConfigValue{
				{Id: "thresholds", Value: thresholdsConfig("green", 1e-4, "orange", 1e-3, "red")},
				colorBackground(),
			})).
		WithPanel(timeSeries("Clock step per node",
			"Measured clock step per node and clock.",
			"s", rangeQ(`max by (node, clock) (xosprobe_clock_resolution_seconds{os=~"$os", node=~"$node"})`, "{{node}} {{clock}}")).
			ScaleDistribution(logScale()))

	d = d.WithRow(row("Reporter")).
		WithPanel(timeSeries("Buffered results",
			"Results waiting to be sent to the aggregator. Growing: the aggregator is slow or unreachable from this node.",
			"none", rangeQ(fmt.Sprintf("sum by (node) %s", forOS(agentSel(mReporterBuffered))), "{{node}}"))).
		WithPanel(timeSeries("Results sent",
			"Results per second the aggregator accepted.",
			"ops", rangeQ(fmt.Sprintf("sum by (node) %s", forOS(fmt.Sprintf("rate(%s[$__rate_interval])", agentSel(mReporterSent)))), "{{node}}"))).
		WithPanel(timeSeries("Results dropped",
			"Results dropped before the aggregator accepted them: buffer_full (oldest dropped) or rejected (4xx from the aggregator, e.g. authentication).",
			"ops", rangeQ(fmt.Sprintf("sum by (node, reason) %s", forOS(fmt.Sprintf("rate(%s[$__rate_interval])", agentSel(mReporterDropped)))), "{{node}} {{reason}}"))).
		WithPanel(timeSeries("Send errors",
			"Failed batch sends by reason; they are retried with backoff.",
			"ops", rangeQ(fmt.Sprintf("sum by (node, reason) %s", forOS(fmt.Sprintf("rate(%s[$__rate_interval])", agentSel(mReporterSendErrors)))), "{{node}} {{reason}}")))

	d = d.WithRow(row("Probe loops")).
		WithPanel(timeSeries("Probe loops",
			"Running (peer, check) probe loops per agent: peers x checks.",
			"none", rangeQ(fmt.Sprintf("sum by (node) %s", forOS(agentSel(mProbeLoops))), "{{node}}"))).
		WithPanel(timeSeries("Skipped probe runs",
			"Runs skipped because the concurrency limit stayed full for a whole interval.",
			"ops", rangeQ(fmt.Sprintf("sum by (node, check) %s", forOS(fmt.Sprintf("rate(%s[$__rate_interval])", agentSel(mProbeSkipped)))), "{{node}} {{check}}")))

	d = d.WithRow(row("Lifecycle")).
		WithPanel(timeSeries("Peers not probed",
			"Agents the selected agents do not probe, by destination OS and reason: not_ready, terminating, no_ip (pods starting or going away), node_cordoned, node_draining (nodes being emptied), node_unknown. A rollout or a drain shows here, not as failures.",
			"none", rangeQ(fmt.Sprintf("sum by (dst_os, reason) %s", forOS(agentSel(mPeersExcluded))), "{{dst_os}} {{reason}}"))).
		WithPanel(timeSeries("Pending failures",
			"Failed runs held back from the failure ratio and the alerts: warmup (nothing toward a new peer has succeeded yet) or grace (the expected NetworkPolicy verdict just changed and the network may not have applied it).",
			"ops", rangeQ(fmt.Sprintf("sum by (check, hold, result) %s", forOS(fmt.Sprintf("rate(%s[$__rate_interval])", agentSel(mProbeHeld)))), "{{check}} {{hold}} {{result}}"))).
		WithPanel(timeSeries("Policy realization latency p90",
			"Time from a change of an expected NetworkPolicy verdict to the first run observing it, per destination OS, over the last hour: on Windows the HNS ACL programming time.",
			"s", rangeQ(fmt.Sprintf("histogram_quantile(0.9, sum by (le, dst_os) %s)", forOS(fmt.Sprintf("rate(%s[1h])", agentSel(mRealization+"_bucket")))), "-> {{dst_os}}"))).
		WithPanel(tablePanel("Time to first success",
			"Per agent and destination OS, the time from the agent's start to its first successful connection: its warm-up.",
			[]string{"node", "dst_os"}, []string{"seconds"},
			instantQ(fmt.Sprintf("max by (node, dst_os) %s", forOS(agentSel(mFirstSuccess))))).
			Unit("s"))

	cpu := fmt.Sprintf("rate(%s[$__rate_interval])", agentSel("process_cpu_seconds_total"))
	d = d.WithRow(row("Cost")).
		WithPanel(timeSeries("CPU",
			"Agent CPU as a share of one core: probing, serving peers, reporting.",
			"percentunit", rangeQ(fmt.Sprintf("sum by (node) %s", forOS(cpu)), "{{node}}"))).
		WithPanel(timeSeries("CPU per probe run",
			"Agent CPU seconds divided by probe runs: the cost of one probe, serving included.",
			"s", rangeQ(fmt.Sprintf("sum by (node) %s\n/\nsum by (node) (rate(%s[$__rate_interval]))", forOS(cpu), agentSel(mProbeTotal)), "{{node}}"))).
		WithPanel(timeSeries("Resident memory",
			"Agent RSS.",
			"bytes", rangeQ(fmt.Sprintf("sum by (node) %s", forOS(agentSel("process_resident_memory_bytes"))), "{{node}}"))).
		WithPanel(timeSeries("Goroutines",
			"Goroutines per agent; growth without more peers is a leak.",
			"none", rangeQ(fmt.Sprintf("sum by (node) %s", forOS(agentSel("go_goroutines"))), "{{node}}")))
	return d
}
