package main

import (
	"fmt"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/statetimeline"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// Metric names, mirroring agent/metrics/metrics.go and aggregator/metrics.go.
// The dashboards module does not import the main module (that would drag its
// dependencies in here); TestMetricNamesInContract checks every name a query
// uses against the constants in those two files instead.
const (
	// Agent.
	mProbeDuration      = "xosprobe_probe_duration_seconds"
	mProbeTotal         = "xosprobe_probe_total"
	mKernelRTT          = "xosprobe_kernel_rtt_seconds"
	mClockResolution    = "xosprobe_clock_resolution_seconds"
	mNetpolMismatch     = "xosprobe_netpol_mismatch_total"
	mDNSFindings        = "xosprobe_dns_findings_total"
	mPeers              = "xosprobe_peers"
	mProbeLoops         = "xosprobe_probe_loops"
	mProbeSkipped       = "xosprobe_probe_skipped_total"
	mReporterBuffered   = "xosprobe_reporter_buffered_results"
	mReporterSent       = "xosprobe_reporter_sent_results_total"
	mReporterDropped    = "xosprobe_reporter_dropped_results_total"
	mReporterSendErrors = "xosprobe_reporter_send_errors_total"
	mBuildInfo          = "xosprobe_build_info"
	mProbeHeld          = "xosprobe_probe_held_total"
	mPeersExcluded      = "xosprobe_peers_excluded"
	mRealization        = "xosprobe_policy_realization_seconds"
	mFirstSuccess       = "xosprobe_agent_time_to_first_success_seconds"

	// Aggregator.
	mDelta             = "xosprobe_cross_os_delta_seconds"
	mDeltaSamples      = "xosprobe_cross_os_delta_samples"
	mDeltaSignificant  = "xosprobe_cross_os_delta_significant"
	mDeltaInsufficient = "xosprobe_cross_os_delta_insufficient"
	mPairQuantile      = "xosprobe_pair_quantile_seconds"
	mRegression        = "xosprobe_cross_os_regression_seconds"
	mRegressed         = "xosprobe_cross_os_regressed"
	mPairResults       = "xosprobe_pair_results_total"
	mAggComputeTime    = "xosprobe_aggregator_last_compute_timestamp_seconds"

	// Recorded by manifests/prometheus/rules.yaml: the cross-OS delta alert
	// threshold, drawn on the delta panels so dashboard and alert agree.
	rDeltaThreshold = "xosprobe:cross_os_delta_threshold_seconds"
	// The thresholds of checks and phases that have their own; named in the
	// delta panels' descriptions.
	rPhaseThreshold = "xosprobe:cross_os_delta_phase_threshold_seconds"
)

// Scrape jobs, as in manifests/prometheus/prometheus.yaml. The agent job also
// attaches node, pod and namespace target labels to every series; the per-node
// dashboard depends on the node label.
const (
	agentJob      = "xosprobe-agent"
	aggregatorJob = "xosprobe-aggregator"
)

// Label values of the contract.
var (
	checkValues    = []string{"dns", "tcp", "http", "service", "netpol-allow", "netpol-deny"}
	phaseValues    = []string{"connect", "first_byte", "total", "dns", "resolve_system", "resolve_direct", "resolve_short"}
	quantileValues = []string{"0.5", "0.9", "0.99"}
	osValues       = []string{"linux", "windows"}
)

// deltaThresholdSeconds is only the colour step of the delta panels; the
// alert's threshold lives in rules.yaml and is drawn from the recorded series.
const deltaThresholdSeconds = 0.015

// datasource is the reference every panel and query uses: the datasource
// template variable, so one JSON serves every Grafana.
func datasource() common.DataSourceRef {
	return common.DataSourceRef{Type: cog.ToPtr("prometheus"), Uid: cog.ToPtr("${datasource}")}
}

// datasourceVariable is the "datasource" template variable (type prometheus).
func datasourceVariable() *dashboard.DatasourceVariableBuilder {
	return dashboard.NewDatasourceVariableBuilder("datasource").
		Label("Data source").
		Type("prometheus")
}

// option is a template variable option.
func option(text, value string) dashboard.VariableOption {
	return dashboard.VariableOption{
		Text:  dashboard.StringOrArrayOfString{String: cog.ToPtr(text)},
		Value: dashboard.StringOrArrayOfString{String: cog.ToPtr(value)},
	}
}

// allOption is the option Grafana selects for "All".
func allOption() dashboard.VariableOption { return option("All", "$__all") }

// customVariable is a fixed list of label values. With all, it is
// multi-valued with an "All" of ".*", so queries use it as name=~"$var".
func customVariable(name, label string, values []string, all bool, def string) *dashboard.CustomVariableBuilder {
	v := dashboard.NewCustomVariableBuilder(name).
		Label(label).
		Values(dashboard.StringOrMap{String: cog.ToPtr(strings.Join(values, ","))})
	if all {
		v = v.Multi(true).IncludeAll(true).AllValue(".*").Current(allOption())
	} else {
		v = v.Current(option(def, def))
	}
	return v
}

// labelValuesVariable is a query variable over label_values(selector, label).
func labelValuesVariable(name, label, selector, labelName string, all bool) *dashboard.QueryVariableBuilder {
	v := dashboard.NewQueryVariableBuilder(name).
		Label(label).
		Datasource(datasource()).
		Query(dashboard.StringOrMap{String: cog.ToPtr(fmt.Sprintf("label_values(%s, %s)", selector, labelName))}).
		Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
		Sort(dashboard.VariableSortAlphabeticalAsc)
	if all {
		v = v.Multi(true).IncludeAll(true).AllValue(".*").Current(allOption())
	}
	return v
}

// query is one PromQL target of a panel.
type query struct {
	expr   string
	legend string
	// instant queries feed tables and "now" stats; others are range queries.
	instant bool
}

// rangeQ is a range query with a legend.
func rangeQ(expr, legend string) query { return query{expr: expr, legend: legend} }

// instantQ is an instant query in table format.
func instantQ(expr string) query { return query{expr: expr, instant: true} }

// targets builds the panel's queries with reference IDs A, B, ... (tables
// name their value columns "Value #A", ... after them).
func targets(qs []query) []cog.Builder[variants.Dataquery] {
	out := make([]cog.Builder[variants.Dataquery], 0, len(qs))
	for i, q := range qs {
		b := prometheus.NewDataqueryBuilder().
			Datasource(datasource()).
			RefId(string(rune('A' + i))).
			Expr(q.expr)
		if q.instant {
			b = b.Instant().Format(prometheus.PromQueryFormatTable)
		} else {
			b = b.Range().LegendFormat(q.legend)
			if q.legend == "" {
				b = b.LegendFormat("__auto")
			}
		}
		out = append(out, b)
	}
	return out
}

// thresholds returns absolute thresholds: base colour, then (value, colour) pairs.
func thresholds(base string, steps ...any) *dashboard.ThresholdsConfigBuilder {
	c := thresholdsConfig(base, steps...)
	return dashboard.NewThresholdsConfigBuilder().Mode(c.Mode).Steps(c.Steps)
}

// thresholdsConfig is thresholds as a value, for field overrides.
func thresholdsConfig(base string, steps ...any) dashboard.ThresholdsConfig {
	ts := []dashboard.Threshold{{Value: nil, Color: base}}
	for i := 0; i+1 < len(steps); i += 2 {
		ts = append(ts, dashboard.Threshold{Value: cog.ToPtr(toFloat(steps[i])), Color: steps[i+1].(string)})
	}
	return dashboard.ThresholdsConfig{Mode: dashboard.ThresholdsModeAbsolute, Steps: ts}
}

func toFloat(v any) float64 {
	switch x := v.(type) {
	case int:
		return float64(x)
	case float64:
		return x
	}
	panic(fmt.Sprintf("threshold value %v is not a number", v))
}

// valueText maps exact values to text and colour, e.g. 1 -> "significant".
func valueText(pairs ...string) []dashboard.ValueMapping {
	opts := map[string]dashboard.ValueMappingResult{}
	for i := 0; i+2 < len(pairs)+1; i += 3 {
		opts[pairs[i]] = dashboard.ValueMappingResult{
			Text: cog.ToPtr(pairs[i+1]), Color: cog.ToPtr(pairs[i+2]), Index: cog.ToPtr(int32(i / 3)),
		}
	}
	return []dashboard.ValueMapping{{ValueMap: &dashboard.ValueMap{Type: dashboard.MappingTypeValueToText, Options: opts}}}
}

// legendTable is a table legend with the given reductions (mean, max, lastNotNull).
func legendTable(calcs ...string) *common.VizLegendOptionsBuilder {
	return common.NewVizLegendOptionsBuilder().
		DisplayMode(common.LegendDisplayModeTable).
		Placement(common.LegendPlacementBottom).
		ShowLegend(true).
		Calcs(calcs)
}

// timeSeries is a time series panel, half the width by default.
func timeSeries(title, desc, unit string, qs ...query) *timeseries.PanelBuilder {
	return timeseries.NewPanelBuilder().
		Title(title).
		Description(desc).
		Datasource(datasource()).
		Targets(targets(qs)).
		Unit(unit).
		Span(12).
		Height(8).
		LineWidth(1).
		FillOpacity(10).
		ShowPoints(common.VisibilityModeNever).
		Legend(legendTable("mean", "max", "lastNotNull")).
		Tooltip(common.NewVizTooltipOptionsBuilder().Mode(common.TooltipDisplayModeMulti).Sort(common.SortOrderDescending))
}

// statPanel is a stat panel reducing each series to its last value.
func statPanel(title, desc, unit string, qs ...query) *stat.PanelBuilder {
	return stat.NewPanelBuilder().
		Title(title).
		Description(desc).
		Datasource(datasource()).
		Targets(targets(qs)).
		Unit(unit).
		Span(4).
		Height(4).
		GraphMode(common.BigValueGraphModeArea).
		ColorMode(common.BigValueColorModeValue).
		TextMode(common.BigValueTextModeValueAndName).
		ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"}).Values(false))
}

// tablePanel is a table of instant queries merged on their labels: one row
// per label set, one value column per query, renamed to columns[i] and
// ordered after the label columns in labelOrder.
func tablePanel(title, desc string, labelOrder, columns []string, qs ...query) *table.PanelBuilder {
	rename := map[string]any{}
	index := map[string]any{}
	for i, l := range labelOrder {
		index[l] = i
	}
	for i, c := range columns {
		name := "Value"
		if len(qs) > 1 {
			name = "Value #" + string(rune('A'+i))
		}
		rename[name] = c
		index[name] = len(labelOrder) + i
	}
	p := table.NewPanelBuilder().
		Title(title).
		Description(desc).
		Datasource(datasource()).
		Targets(targets(qs)).
		Span(12).
		Height(8)
	if len(qs) > 1 {
		p = p.WithTransformation(dashboard.DataTransformerConfig{Id: "merge", Options: map[string]any{}})
	}
	return p.WithTransformation(dashboard.DataTransformerConfig{Id: "organize", Options: map[string]any{
		"excludeByName": map[string]any{"Time": true, "__name__": true, "job": true, "instance": true, "endpoint": true, "container": true},
		"indexByName":   index,
		"renameByName":  rename,
	}})
}

// colorBackground is the override property that colours a table cell by
// thresholds or value mappings.
func colorBackground() dashboard.DynamicConfigValue {
	return dashboard.DynamicConfigValue{Id: "custom.cellOptions", Value: map[string]any{"type": "color-background"}}
}

// stateTimeline is a state timeline panel for 0/1/2 style states.
func stateTimeline(title, desc string, qs ...query) *statetimeline.PanelBuilder {
	return statetimeline.NewPanelBuilder().
		Title(title).
		Description(desc).
		Datasource(datasource()).
		Targets(targets(qs)).
		Span(24).
		Height(8).
		ShowValue(common.VisibilityModeNever).
		MergeValues(true).
		RowHeight(0.8)
}

// row starts a dashboard row.
func row(title string) *dashboard.RowBuilder { return dashboard.NewRowBuilder(title) }

// sel renders a selector with the given matchers, skipping empty ones.
func sel(metric string, matchers ...string) string {
	var ms []string
	for _, m := range matchers {
		if m != "" {
			ms = append(ms, m)
		}
	}
	if len(ms) == 0 {
		return metric
	}
	return metric + "{" + strings.Join(ms, ", ") + "}"
}

// histQuantile is the q-quantile of a histogram metric grouped by labels.
// It prefers the native histogram and falls back to the classic buckets, so
// it works whether or not Prometheus ingests native histograms (Prometheus 3
// with native histograms on keeps no _bucket series unless
// always_scrape_classic_histograms is set).
func histQuantile(q, metric string, by []string, matchers ...string) string {
	native := "sum"
	if len(by) > 0 {
		native = "sum by (" + strings.Join(by, ", ") + ")"
	}
	classic := "sum by (" + strings.Join(append([]string{"le"}, by...), ", ") + ")"
	return fmt.Sprintf("histogram_quantile(%s, %s (rate(%s[$__rate_interval])))\nor\nhistogram_quantile(%s, %s (rate(%s[$__rate_interval])))",
		q, native, sel(metric, matchers...), q, classic, sel(metric+"_bucket", matchers...))
}

// by renders a "max by (...)" style aggregation.
func by(op string, labels []string, expr string) string {
	return fmt.Sprintf("%s by (%s) (%s)", op, strings.Join(labels, ", "), expr)
}

// Label sets of the aggregator's computed metrics.
var (
	cppq = []string{"check", "phase", "pair", "quantile"}
	cpp  = []string{"check", "phase", "pair"}
)

// newDashboard starts a dashboard with the settings all three share: the
// xosprobe tag, links to the other xosprobe dashboards, the last 6 hours,
// refreshed every minute, with a shared crosshair.
func newDashboard(uid, title, desc string) *dashboard.DashboardBuilder {
	return dashboard.NewDashboardBuilder(title).
		Uid(uid).
		Description(desc).
		Tags([]string{"xosprobe"}).
		Editable().
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		Time("now-6h", "now").
		Refresh("1m").
		Timezone(common.TimeZoneBrowser).
		Link(dashboard.NewDashboardLinkBuilder("xosprobe").
			Type(dashboard.DashboardLinkTypeDashboards).
			Tags([]string{"xosprobe"}).
			AsDropdown(true).
			IncludeVars(false).
			KeepTime(true))
}

// dashedRed styles a reference series (the alert threshold) as a dashed red
// line without fill.
func dashedRed() []dashboard.DynamicConfigValue {
	return []dashboard.DynamicConfigValue{
		{Id: "color", Value: map[string]any{"mode": "fixed", "fixedColor": "red"}},
		{Id: "custom.lineStyle", Value: map[string]any{"fill": "dash", "dash": []int{10, 10}}},
		{Id: "custom.fillOpacity", Value: 0},
	}
}

// fixedColor colours the matched series.
func fixedColor(c string) []dashboard.DynamicConfigValue {
	return []dashboard.DynamicConfigValue{{Id: "color", Value: map[string]any{"mode": "fixed", "fixedColor": c}}}
}

// sortDesc sorts a table by a column, largest first.
func sortDesc(column string) []cog.Builder[common.TableSortByFieldState] {
	return []cog.Builder[common.TableSortByFieldState]{
		common.NewTableSortByFieldStateBuilder().DisplayName(column).Desc(true),
	}
}

// logScale is a base-10 logarithmic axis, for values spanning decades.
func logScale() *common.ScaleDistributionConfigBuilder {
	return common.NewScaleDistributionConfigBuilder().Type(common.ScaleDistributionLog).Log(10)
}
