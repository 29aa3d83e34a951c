//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/xosprobe/xosprobe/test/e2e/cluster"
)

// Prometheus runs the way a cluster runs it: a pod (on a Linux node) in its
// own namespace, scraping the agents and the aggregator at their pod IPs
// through the nodes' routing and kube-router's policies, and discovering them
// with Kubernetes service discovery (role pod) against the real apiserver,
// as the ServiceAccount "prometheus" with a Role to list and watch pods in
// the xosprobe namespace (what manifests/prometheus/prometheus.yaml says it
// needs). Its configuration and rules are the shipped files with the edits
// of derivePrometheusFiles, each listed there with its reason.
const (
	promNS   = "monitoring"
	promName = "prometheus"
	promPort = 9090
	// deltaAlert is the alert the latency ground truth drives.
	deltaAlert = "XosprobeCrossOSDeltaHigh"
	// e2eScrapeInterval is the scrape and rule evaluation interval, the
	// agents' e2e --interval.
	e2eScrapeInterval = "2s"
	// e2eDeltaAlertFor replaces the delta alert's for: 10m.
	e2eDeltaAlertFor = "10s"
)

// derivePrometheusFiles returns the shipped scrape config and rule file with
// the e2e's edits, and the list of edits. An empty kubeconfig leaves service
// discovery in-cluster (Prometheus in a pod a real kubelet runs). Every edit is made here, on the
// parsed shipped files, so the e2e runs the shipped relabelling, expressions
// and thresholds, and fails if a key it edits disappears.
func derivePrometheusFiles(config, rules []byte, kubeconfig string) (cfgOut, rulesOut []byte, edits []string, err error) {
	var cfg map[string]any
	if err := yaml.Unmarshal(config, &cfg); err != nil {
		return nil, nil, nil, fmt.Errorf("prometheus.yaml: %w", err)
	}
	// 1. Intervals: the shipped 15 s would make the test wait minutes for
	// each rate() and alert; 2 s is the pace of the e2e's agents.
	global, ok := cfg["global"].(map[string]any)
	if !ok {
		return nil, nil, nil, fmt.Errorf("prometheus.yaml: no global section")
	}
	for _, k := range []string{"scrape_interval", "evaluation_interval"} {
		old, ok := global[k]
		if !ok {
			return nil, nil, nil, fmt.Errorf("prometheus.yaml: no global.%s", k)
		}
		global[k] = e2eScrapeInterval
		edits = append(edits, fmt.Sprintf("prometheus.yaml global.%s %v -> %s (the e2e agents probe every %s; the test cannot wait minutes per rate window)", k, old, e2eScrapeInterval, e2eInterval))
	}
	// 2. The SD's credentials: in a cluster Prometheus reads its
	// ServiceAccount token from the kubelet's mount at a fixed path, which
	// pods sharing the host's file system cannot each own. A kubeconfig with
	// a token of the same ServiceAccount, addressing the apiserver through
	// the kubernetes Service VIP as in-cluster clients do, stands in for it.
	jobs, _ := cfg["scrape_configs"].([]any)
	nsd := 0
	for _, j := range jobs {
		job, _ := j.(map[string]any)
		sds, _ := job["kubernetes_sd_configs"].([]any)
		for _, s := range sds {
			sd, ok := s.(map[string]any)
			if !ok {
				return nil, nil, nil, fmt.Errorf("prometheus.yaml: job %v: malformed kubernetes_sd_configs", job["job_name"])
			}
			if _, ok := sd["api_server"]; ok {
				return nil, nil, nil, fmt.Errorf("prometheus.yaml: job %v sets api_server; the e2e expects in-cluster discovery", job["job_name"])
			}
			nsd++
			if kubeconfig == "" {
				continue // a pod a real kubelet runs: in-cluster, as shipped
			}
			sd["kubeconfig_file"] = kubeconfig
			edits = append(edits, fmt.Sprintf("prometheus.yaml job %v kubernetes_sd_configs: + kubeconfig_file (the ServiceAccount token the kubelet would mount at a fixed path, as a kubeconfig for the kubernetes Service VIP)", job["job_name"]))
		}
	}
	if nsd == 0 {
		return nil, nil, nil, fmt.Errorf("prometheus.yaml: no kubernetes_sd_configs")
	}
	if cfgOut, err = yaml.Marshal(cfg); err != nil {
		return nil, nil, nil, err
	}

	var rf map[string]any
	if err := yaml.Unmarshal(rules, &rf); err != nil {
		return nil, nil, nil, fmt.Errorf("rules.yaml: %w", err)
	}
	// 3. The delta alert's for: 10m: the test holds D for under a minute.
	// Its expression and the threshold stay as shipped.
	found := false
	groups, _ := rf["groups"].([]any)
	for _, g := range groups {
		group, _ := g.(map[string]any)
		rs, _ := group["rules"].([]any)
		for _, r := range rs {
			rule, _ := r.(map[string]any)
			if rule["alert"] != deltaAlert {
				continue
			}
			old, ok := rule["for"]
			if !ok {
				return nil, nil, nil, fmt.Errorf("rules.yaml: %s has no for:", deltaAlert)
			}
			rule["for"] = e2eDeltaAlertFor
			found = true
			edits = append(edits, fmt.Sprintf("rules.yaml %s for: %v -> %s (the test holds each delay for under a minute)", deltaAlert, old, e2eDeltaAlertFor))
		}
	}
	if !found {
		return nil, nil, nil, fmt.Errorf("rules.yaml: no alert %s", deltaAlert)
	}
	if rulesOut, err = yaml.Marshal(rf); err != nil {
		return nil, nil, nil, err
	}
	return cfgOut, rulesOut, edits, nil
}

// promServer is the Prometheus pod and its HTTP API.
type promServer struct {
	pod  *cluster.Pod
	proc *cluster.Process
	ctx  context.Context
}

// startPrometheus creates the Prometheus pod on node with its ServiceAccount
// and Role, derives its files from manifests/prometheus and starts it.
func startPrometheus(t *testing.T, ctx context.Context, c *cluster.Cluster, node *cluster.Node, bin string) *promServer {
	t.Helper()
	manifests, _ := filepath.Abs("../../manifests/prometheus")
	shippedCfg, err := os.ReadFile(filepath.Join(manifests, "prometheus.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	shippedRules, err := os.ReadFile(filepath.Join(manifests, "rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	kc, err := c.ServiceAccountKubeconfig(ctx, promNS, promName)
	if err != nil {
		t.Fatal(err)
	}
	// RBAC a cluster operator gives Prometheus: list/watch pods where the
	// shipped SD looks (namespaces: [xosprobe]).
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "prometheus-xosprobe-sd", Namespace: probeNS},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}}},
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "prometheus-xosprobe-sd", Namespace: probeNS},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: promNS, Name: promName}},
	}
	if _, err := c.Client.RbacV1().Roles(probeNS).Create(ctx, role, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	if _, err := c.Client.RbacV1().RoleBindings(probeNS).Create(ctx, binding, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	cfg, rules, edits, err := derivePrometheusFiles(shippedCfg, shippedRules, kc)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(c.WorkDir(), "prometheus")
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	// rule_files names rules.yaml relative to the config file: keep them side by side.
	for name, b := range map[string][]byte{"prometheus.yaml": cfg, "rules.yaml": rules} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("Prometheus: the shipped manifests/prometheus files with %d edits:\n  %s", len(edits), strings.Join(edits, "\n  "))

	pod, err := c.CreatePod(ctx, node, cluster.PodSpec{
		Namespace: promNS, Name: promName, ServiceAccount: promName,
		Labels: map[string]string{"app.kubernetes.io/name": "prometheus"},
		Ports:  []corev1.ContainerPort{{Name: "web", ContainerPort: promPort, Protocol: corev1.ProtocolTCP}},
	})
	if err != nil {
		t.Fatal(err)
	}
	proc, err := c.Exec(ctx, pod, cluster.ExecSpec{Args: []string{bin,
		"--config.file=" + filepath.Join(dir, "prometheus.yaml"),
		"--storage.tsdb.path=" + filepath.Join(dir, "data"),
		"--web.listen-address=:" + strconv.Itoa(promPort),
	}})
	if err != nil {
		t.Fatal(err)
	}
	p := &promServer{pod: pod, proc: proc, ctx: ctx}
	eventually(t, time.Minute, "Prometheus ready", func() error {
		if exited, err := proc.Exited(); exited {
			t.Fatalf("prometheus exited (%v):\n%s", err, proc.LogTail(3000))
		}
		_, err := podGet(ctx, pod, p.url("/-/ready", nil))
		return err
	})
	return p
}

func (p *promServer) url(path string, q url.Values) string {
	u := fmt.Sprintf("http://127.0.0.1:%d%s", promPort, path)
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

// api GETs an /api/v1 endpoint and decodes its data field into out.
func (p *promServer) api(path string, q url.Values, out any) error {
	body, err := podGet(p.ctx, p.pod, p.url("/api/v1/"+path, q))
	if err != nil {
		return err
	}
	var env struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &env); err != nil {
		return fmt.Errorf("%s: %w: %.300s", path, err, body)
	}
	if env.Status != "success" {
		return fmt.Errorf("%s: %s", path, env.Error)
	}
	return json.Unmarshal(env.Data, out)
}

// promSeries is one series of an instant vector or a range matrix.
type promSeries struct {
	Metric map[string]string `json:"metric"`
	Value  []any             `json:"value"`  // instant: [time, "value"]
	Values [][]any           `json:"values"` // range
}

func (s promSeries) float() float64 {
	if len(s.Value) == 2 {
		if v, ok := s.Value[1].(string); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// query evaluates an instant query now.
func (p *promServer) query(q string) ([]promSeries, error) {
	var d struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := p.api("query", url.Values{"query": {q}}, &d); err != nil {
		return nil, err
	}
	if d.ResultType != "vector" {
		// scalar or string: one value
		return []promSeries{{}}, nil
	}
	var ss []promSeries
	return ss, json.Unmarshal(d.Result, &ss)
}

// queryRange evaluates q over [from, to] and returns the series with at
// least one point.
func (p *promServer) queryRange(q string, from, to time.Time, step time.Duration) ([]promSeries, error) {
	var d struct {
		Result []promSeries `json:"result"`
	}
	err := p.api("query_range", url.Values{"query": {q}, "start": {unix(from)}, "end": {unix(to)}, "step": {step.String()}}, &d)
	return d.Result, err
}

func unix(t time.Time) string { return strconv.FormatFloat(float64(t.UnixNano())/1e9, 'f', 3, 64) }

// promAlert is one entry of /api/v1/alerts: a pending or firing alert.
type promAlert struct {
	Labels map[string]string `json:"labels"`
	State  string            `json:"state"`
}

func (a promAlert) String() string {
	var ks []string
	for k, v := range a.Labels {
		if k != "alertname" && k != "severity" {
			ks = append(ks, k+"="+v)
		}
	}
	sort.Strings(ks)
	return fmt.Sprintf("%s{%s} %s", a.Labels["alertname"], strings.Join(ks, ","), a.State)
}

// alerts returns the active (pending or firing) alerts.
func (p *promServer) alerts() ([]promAlert, error) {
	var d struct {
		Alerts []promAlert `json:"alerts"`
	}
	return d.Alerts, p.api("alerts", nil, &d)
}

// promTarget is one active scrape target.
type promTarget struct {
	Labels     map[string]string `json:"labels"`
	ScrapePool string            `json:"scrapePool"`
	Health     string            `json:"health"`
	LastError  string            `json:"lastError"`
}

func (p *promServer) targets() ([]promTarget, error) {
	var d struct {
		Active []promTarget `json:"activeTargets"`
	}
	return d.Active, p.api("targets", url.Values{"state": {"active"}}, &d)
}

// rulesHealth returns the number of rules loaded and the names of those
// whose last evaluation failed.
func (p *promServer) rulesHealth() (int, []string, error) {
	var d struct {
		Groups []struct {
			Rules []struct {
				Name      string `json:"name"`
				Health    string `json:"health"`
				LastError string `json:"lastError"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := p.api("rules", nil, &d); err != nil {
		return 0, nil, err
	}
	n := 0
	var bad []string
	for _, g := range d.Groups {
		for _, r := range g.Rules {
			n++
			if r.Health != "ok" {
				bad = append(bad, fmt.Sprintf("%s (%s: %s)", r.Name, r.Health, r.LastError))
			}
		}
	}
	return n, bad, nil
}

// dashboardCoverage runs every query of dashboards/queries.txt over
// [from, to] and returns those that never returned data and are not listed
// in emptyOK (the e2e's own list: queries that stay empty in this cluster,
// with the reason), and entries of emptyOK that are not dashboard queries.
func dashboardCoverage(p *promServer, queriesFile, emptyOKFile string, from, to time.Time) (n, withData int, empty, listedEmpty, stale []string, err error) {
	qb, err := os.ReadFile(queriesFile)
	if err != nil {
		return 0, 0, nil, nil, nil, err
	}
	allowed, err := readEmptyOK(emptyOKFile)
	if err != nil {
		return 0, 0, nil, nil, nil, err
	}
	seen := map[string]bool{}
	for _, q := range strings.Split(string(qb), "\n") {
		if strings.TrimSpace(q) == "" {
			continue
		}
		n++
		seen[q] = true
		ss, err := p.queryRange(q, from, to, 5*time.Second)
		if err != nil {
			return 0, 0, nil, nil, nil, fmt.Errorf("query %s: %w", q, err)
		}
		switch {
		case len(ss) > 0:
			withData++
		case allowed[q] != "":
			listedEmpty = append(listedEmpty, q+"  # "+allowed[q])
		default:
			empty = append(empty, q)
		}
	}
	for q := range allowed {
		if !seen[q] {
			stale = append(stale, q)
		}
	}
	return n, withData, empty, listedEmpty, stale, nil
}

// readEmptyOK reads a file of "QUERY<tab># REASON" lines (the format of
// test/prometheus/empty-ok.txt).
func readEmptyOK(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		q, why, ok := strings.Cut(line, "\t# ")
		if !ok || why == "" {
			return nil, fmt.Errorf("%s: line without a reason: %q", path, line)
		}
		out[q] = why
	}
	return out, nil
}
