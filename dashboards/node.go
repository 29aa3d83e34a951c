package main

import (
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

// selNode selects the agent on the chosen node. The node target label comes
// from the scrape config's relabelling (__meta_kubernetes_pod_node_name).
const selNode = `node=~"$node"`

// node is the per-node drill-down: one probing node's view. Agent metrics
// carry no per-peer labels (O(n²) series), so "per node" means this node's
// outgoing probes by destination OS, its failures, its peers and its clock;
// per-peer detail is in the aggregator's /matrix.
func node() *dashboard.DashboardBuilder {
	d := newDashboard("xosprobe-node", "xosprobe / Node",
		"One node's agent: its outgoing latency by destination OS, failures by reason, peers and clock, against the other nodes of its OS.").
		WithVariable(datasourceVariable()).
		WithVariable(labelValuesVariable("node", "Node", sel(mBuildInfo, `job="`+agentJob+`"`), "node", false)).
		WithVariable(labelValuesVariable("src_os", "OS", sel(mBuildInfo, `job="`+agentJob+`"`, selNode), "os", false).
			Hide(dashboard.VariableHideHideVariable)).
		WithVariable(customVariable("check", "Check", checkValues, true, "")).
		WithVariable(customVariable("phase", "Phase", phaseValues, true, ""))

	d = d.WithRow(row("Agent on $node")).
		WithPanel(statPanel("Agent",
			"OS, version and pod of the agent on this node.",
			"none", rangeQ(sel(mBuildInfo, `job="`+agentJob+`"`, selNode), "{{os}} {{version}} {{pod}}")).
			Span(6).
			GraphMode(common.BigValueGraphModeNone).
			TextMode(common.BigValueTextModeName)).
		WithPanel(statPanel("Peers by OS",
			"Peers this agent probes, by destination OS. Each agent must have cross-OS peers even when Windows nodes are few.",
			"none", rangeQ(`sum by (dst_os) (xosprobe_peers{node=~"$node"})`, "-> {{dst_os}}")).
			Span(6).
			Thresholds(thresholds("red", 1, "green"))).
		WithPanel(statPanel("Probe loops",
			"Running (peer, check) probe loops.",
			"none", rangeQ(`sum(xosprobe_probe_loops{node=~"$node"})`, "loops"))).
		WithPanel(statPanel("Success rate",
			"Share of this node's probe runs over the range that passed, all checks.",
			"percentunit", rangeQ(`sum(increase(xosprobe_probe_total{node=~"$node", result="success"}[$__range])) / sum(increase(xosprobe_probe_total{node=~"$node"}[$__range]))`, "success")).
			Thresholds(thresholds("red", 0.95, "orange", 0.99, "green")).
			Decimals(2)).
		WithPanel(statPanel("Clock step",
			"Measured step of the probe clock (qpc on Windows, monotonic on Linux) and of time.Now for comparison. A probe clock above 100 µs cannot time pod RTTs.",
			"s", rangeQ(`max by (clock) (xosprobe_clock_resolution_seconds{node=~"$node"})`, "{{clock}}")).
			GraphMode(common.BigValueGraphModeNone))

	d = d.WithRow(row("Outgoing latency"))
	for _, q := range quantileValues {
		d = d.WithPanel(timeSeries(fmt.Sprintf("p%s by destination OS", quantileName(q)),
			"Quantile of this node's successful probe phases, by check, phase and destination OS, from its histograms.",
			"s", rangeQ(histQuantile(q, mProbeDuration, []string{"check", "phase", "dst_os"}, selNode, selCheck, selPhase), "-> {{dst_os}} {{check}}/{{phase}}")).
			Span(8))
	}
	d = d.WithPanel(timeSeries("p90: this node vs all $src_os nodes",
		"This node's p90 against the p90 of every node of the same OS: an outlier node (noisy neighbour, vSwitch or HNS trouble) stands out.",
		"s",
		rangeQ(histQuantile("0.9", mProbeDuration, []string{"check", "phase", "dst_os"}, selNode, selCheck, selPhase), "this node -> {{dst_os}} {{check}}/{{phase}}"),
		rangeQ(histQuantile("0.9", mProbeDuration, []string{"check", "phase", "dst_os"}, `src_os=~"$src_os"`, selCheck, selPhase), "all $src_os -> {{dst_os}} {{check}}/{{phase}}"))).
		WithPanel(timeSeries("Kernel RTT by destination OS",
			"The kernel's smoothed RTT of probe connections (TCP_INFO on Linux, SIO_TCP_INFO on Windows). Connect time well above it is spent in the host (HNS/vSwitch on Windows, netfilter on Linux), not on the wire.",
			"s",
			rangeQ(histQuantile("0.5", mKernelRTT, []string{"dst_os", "source"}, selNode), "p50 -> {{dst_os}} ({{source}})"),
			rangeQ(histQuantile("0.9", mKernelRTT, []string{"dst_os", "source"}, selNode), "p90 -> {{dst_os}} ({{source}})")))

	d = d.WithRow(row("Failures")).
		WithPanel(timeSeries("Failures by reason",
			"Failed runs per second by check, destination OS and classified reason.",
			"ops", rangeQ(`sum by (check, dst_os, result) (rate(xosprobe_probe_total{node=~"$node", check=~"$check", result!="success"}[$__rate_interval]))`, "{{result}} {{check}} -> {{dst_os}}"))).
		WithPanel(timeSeries("Success rate by check and destination OS",
			"Share of runs that passed; for netpol-deny a pass is a blocked connection.",
			"percentunit", rangeQ(`sum by (check, dst_os) (rate(xosprobe_probe_total{node=~"$node", check=~"$check", result="success"}[$__rate_interval]))
/
sum by (check, dst_os) (rate(xosprobe_probe_total{node=~"$node", check=~"$check"}[$__rate_interval]))`, "{{check}} -> {{dst_os}}")).
			Min(0).Max(1)).
		WithPanel(tablePanel("NetworkPolicy verdict mismatches",
			"netpol checks over the range whose observed verdict differs from the expected one.",
			[]string{"check", "dst_os", "expected", "observed"}, []string{"runs"},
			instantQ(`sum by (check, dst_os, expected, observed) (increase(xosprobe_netpol_mismatch_total{node=~"$node"}[$__range])) > 0`)).
			Decimals(0)).
		WithPanel(tablePanel("DNS findings",
			"DNS findings over the range, e.g. short_name_fails (Windows single DNS suffix).",
			[]string{"finding", "dst_os"}, []string{"runs"},
			instantQ(`sum by (finding, dst_os) (increase(xosprobe_dns_findings_total{node=~"$node"}[$__range])) > 0`)).
			Decimals(0))

	d = d.WithRow(row("Peers and scheduling")).
		WithPanel(timeSeries("Peers by OS and reason",
			"Peers by destination OS and why each was selected. A drop in Windows peers means Windows agents went away or discovery broke.",
			"none", rangeQ(`sum by (dst_os, reason) (xosprobe_peers{node=~"$node"})`, "{{dst_os}} {{reason}}"))).
		WithPanel(timeSeries("Skipped probe runs",
			"Runs skipped because the concurrency limit stayed full for a whole interval: the agent cannot keep up with its peers.",
			"ops", rangeQ(`sum by (check) (rate(xosprobe_probe_skipped_total{node=~"$node"}[$__rate_interval]))`, "{{check}}")))
	return d
}
