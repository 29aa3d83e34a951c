package main

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
)

// Query is one PromQL expression of a dashboard and where it sits.
type Query struct {
	File  string // dashboard file
	Where string // panel title and query refId, or the template variable
	Expr  string // as in the dashboard, template variables unsubstituted
}

func (q Query) String() string { return fmt.Sprintf("%s %s", q.File, q.Where) }

// labelValuesRE matches a Grafana label_values(selector, label) variable
// query; the selector is PromQL, the call around it is not.
var labelValuesRE = regexp.MustCompile(`(?s)^\s*label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$`)

// queriesOf lists the PromQL of every panel target (rows' nested panels
// included) and of every query template variable, in layout order.
func queriesOf(file string, d dashboard.Dashboard) []Query {
	var out []Query
	addPanel := func(p dashboard.Panel) {
		title := ""
		if p.Title != nil {
			title = *p.Title
		}
		for _, t := range p.Targets {
			var pq *prometheus.Dataquery
			switch v := t.(type) {
			case prometheus.Dataquery:
				pq = &v
			case *prometheus.Dataquery:
				pq = v
			default:
				continue
			}
			ref := ""
			if pq.RefId != nil {
				ref = *pq.RefId
			}
			out = append(out, Query{File: file, Where: fmt.Sprintf("panel %q query %s", title, ref), Expr: pq.Expr})
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" || v.Query == nil || v.Query.String == nil {
			continue
		}
		expr := *v.Query.String
		if m := labelValuesRE.FindStringSubmatch(expr); m != nil {
			expr = m[1]
		}
		out = append(out, Query{File: file, Where: fmt.Sprintf("variable %q", v.Name), Expr: expr})
	}
	for _, p := range d.Panels {
		switch {
		case p.Panel != nil:
			addPanel(*p.Panel)
		case p.RowPanel != nil:
			for _, np := range p.RowPanel.Panels {
				addPanel(np)
			}
		}
	}
	return out
}

// SampleValues are what template variables stand for when a query is run
// outside Grafana: intervals become one minute (one hour for the range),
// multi-value variables match everything, the quantile is p90.
var SampleValues = map[string]string{
	"__rate_interval": "1m",
	"__interval":      "1m",
	"__range":         "1h",
	"node":            ".*",
	"src_os":          ".*",
	"os":              ".*",
	"check":           ".*",
	"phase":           ".*",
	"quantile":        "0.9",
}

// variableRE matches $name and ${name}. A name that is all digits is a
// regexp group reference of label_replace, not a variable.
var variableRE = regexp.MustCompile(`\$\{([a-zA-Z0-9_]+)\}|\$([a-zA-Z0-9_]+)`)

// substitute replaces the template variables of expr with SampleValues. An
// unknown variable is an error: the query would not run in Grafana either.
func substitute(expr string) (string, error) {
	var unknown []string
	s := variableRE.ReplaceAllStringFunc(expr, func(m string) string {
		name := strings.Trim(m, "${}")
		if strings.Trim(name, "0123456789") == "" {
			return m
		}
		v, ok := SampleValues[name]
		if !ok {
			unknown = append(unknown, m)
			return m
		}
		return v
	})
	if len(unknown) > 0 {
		return "", fmt.Errorf("unknown template variables %v in %q", unknown, expr)
	}
	return s, nil
}
