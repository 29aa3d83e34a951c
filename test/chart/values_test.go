package chart

import (
	"fmt"
	"strings"
	"testing"
)

// helm lint --strict passes with the defaults and with every optional part on.
func TestHelmLint(t *testing.T) {
	for _, sets := range [][]string{
		nil,
		{"agent.windows.perBuild=true", "prometheusOperator.enabled=true", "prometheusOperator.labels.release=kube-prometheus-stack",
			"dashboards.enabled=true", "namespace.create=true", "image.digests.linux=sha256:" + strings.Repeat("0", 64)},
	} {
		args := []string{"lint", "--strict", chartDir, "--namespace", releaseNS}
		for _, s := range sets {
			args = append(args, "--set", s)
		}
		if out, err := helm(t, args...); err != nil {
			t.Errorf("helm lint %v: %v\n%s", sets, err, out)
		}
	}
}

func containers(o map[string]any) []any {
	c, _ := get(o, "spec", "template", "spec", "containers").([]any)
	return c
}

func image(o map[string]any) (ref, policy string) {
	c := containers(o)[0].(map[string]any)
	return fmt.Sprint(c["image"]), fmt.Sprint(c["imagePullPolicy"])
}

func args(o map[string]any) []string {
	var out []string
	for _, a := range containers(o)[0].(map[string]any)["args"].([]any) {
		out = append(out, fmt.Sprint(a))
	}
	return out
}

func TestImagesAndPullPolicy(t *testing.T) {
	t.Run("a tag is pulled Always", func(t *testing.T) {
		docs := render(t)
		ref, policy := image(find(t, docs, "DaemonSet", "xosprobe-agent-linux"))
		if ref != "ghcr.io/xosprobe/xosprobe:dev-linux" || policy != "Always" {
			t.Errorf("linux agent: %s %s", ref, policy)
		}
		ref, policy = image(find(t, docs, "DaemonSet", "xosprobe-agent-windows"))
		if ref != "ghcr.io/xosprobe/xosprobe:dev-windows" || policy != "Always" {
			t.Errorf("windows agent: %s %s", ref, policy)
		}
		ref, _ = image(find(t, docs, "Deployment", "xosprobe-aggregator"))
		if ref != "ghcr.io/xosprobe/xosprobe:dev-linux" {
			t.Errorf("aggregator: %s", ref)
		}
	})
	t.Run("a digest pins the image, IfNotPresent", func(t *testing.T) {
		d := "sha256:" + strings.Repeat("ab", 32)
		docs := render(t, "image.registry=registry.example:5000", "image.repository=ops/xosprobe", "image.tag=1.2.3", "image.digests.linux="+d)
		ref, policy := image(find(t, docs, "DaemonSet", "xosprobe-agent-linux"))
		if ref != "registry.example:5000/ops/xosprobe@"+d || policy != "IfNotPresent" {
			t.Errorf("linux agent: %s %s", ref, policy)
		}
		ref, policy = image(find(t, docs, "DaemonSet", "xosprobe-agent-windows"))
		if ref != "registry.example:5000/ops/xosprobe:1.2.3-windows" || policy != "Always" {
			t.Errorf("windows agent (not pinned): %s %s", ref, policy)
		}
	})
	t.Run("an explicit policy wins", func(t *testing.T) {
		_, policy := image(find(t, render(t, "image.pullPolicy=IfNotPresent"), "DaemonSet", "xosprobe-agent-linux"))
		if policy != "IfNotPresent" {
			t.Errorf("policy %s", policy)
		}
	})
	t.Run("a malformed digest is refused", func(t *testing.T) {
		_, err := renderErr(t, "image.digests.linux=latest")
		if err == nil || !strings.Contains(err.Error(), "image.digests.linux") {
			t.Errorf("want an error naming image.digests.linux, got %v", err)
		}
	})
}

func TestWindowsBuilds(t *testing.T) {
	t.Run("one DaemonSet for every build by default", func(t *testing.T) {
		ds := find(t, render(t), "DaemonSet", "xosprobe-agent-windows")
		if get(ds, "spec", "template", "spec", "affinity") != nil {
			t.Errorf("affinity with every build enabled: %v", get(ds, "spec", "template", "spec", "affinity"))
		}
	})
	t.Run("a disabled build's nodes are excluded", func(t *testing.T) {
		ds := find(t, render(t, "agent.windows.builds.ltsc2019.enabled=false"), "DaemonSet", "xosprobe-agent-windows")
		values := get(ds, "spec", "template", "spec", "affinity", "nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution",
			"nodeSelectorTerms", 0, "matchExpressions", 0, "values")
		if fmt.Sprint(values) != "[10.0.20348 10.0.26100]" {
			t.Errorf("node affinity values %v, want the ltsc2022 and ltsc2025 builds", values)
		}
	})
	t.Run("perBuild: one DaemonSet per enabled build on its nodes with its image", func(t *testing.T) {
		docs := render(t, "agent.windows.perBuild=true", "agent.windows.builds.ltsc2025.enabled=false")
		for build, version := range map[string]string{"ltsc2019": "10.0.17763", "ltsc2022": "10.0.20348"} {
			ds := find(t, docs, "DaemonSet", "xosprobe-agent-windows-"+build)
			if v := get(ds, "spec", "template", "spec", "nodeSelector", "node.kubernetes.io/windows-build"); v != version {
				t.Errorf("%s: windows-build selector %v, want %s", build, v, version)
			}
			if ref, _ := image(ds); ref != "ghcr.io/xosprobe/xosprobe:dev-windows-"+build {
				t.Errorf("%s: image %s", build, ref)
			}
			if sel := get(ds, "spec", "selector", "matchLabels", "xosprobe.io/windows-build"); sel != build {
				t.Errorf("%s: selector label %v: the DaemonSets' selectors must not overlap", build, sel)
			}
		}
		for _, d := range docs {
			if name := get(d.Obj, "metadata", "name"); d.Obj["kind"] == "DaemonSet" && (name == "xosprobe-agent-windows" || name == "xosprobe-agent-windows-ltsc2025") {
				t.Errorf("%v rendered", name)
			}
		}
	})
	t.Run("no build enabled is an error", func(t *testing.T) {
		_, err := renderErr(t, "agent.windows.builds.ltsc2019.enabled=false", "agent.windows.builds.ltsc2022.enabled=false", "agent.windows.builds.ltsc2025.enabled=false")
		if err == nil || !strings.Contains(err.Error(), "no build enabled") {
			t.Errorf("want an error, got %v", err)
		}
	})
	t.Run("agents off per OS", func(t *testing.T) {
		for _, d := range render(t, "agent.windows.enabled=false", "agent.linux.enabled=false") {
			if d.Obj["kind"] == "DaemonSet" {
				t.Errorf("%s rendered", d.key())
			}
		}
	})
}

// Defaults a cluster owner accepts: no critical priority, no toleration of
// every taint, the Windows taint tolerated.
func TestSchedulingDefaults(t *testing.T) {
	docs := render(t)
	for _, name := range []string{"xosprobe-agent-linux", "xosprobe-agent-windows"} {
		spec := get(find(t, docs, "DaemonSet", name), "spec", "template", "spec").(map[string]any)
		if spec["priorityClassName"] != nil {
			t.Errorf("%s: priorityClassName %v by default", name, spec["priorityClassName"])
		}
		tols, _ := spec["tolerations"].([]any)
		for _, tol := range tols {
			if m := tol.(map[string]any); m["key"] == nil && m["operator"] == "Exists" {
				t.Errorf("%s tolerates every taint by default", name)
			}
		}
		if name == "xosprobe-agent-windows" && fmt.Sprint(tols) != "[map[effect:NoSchedule key:os operator:Equal value:windows]]" {
			t.Errorf("%s: tolerations %v, want os=windows:NoSchedule only", name, tols)
		}
		if name == "xosprobe-agent-linux" && len(tols) != 0 {
			t.Errorf("%s: tolerations %v, want none", name, tols)
		}
	}
	set := render(t, "agent.priorityClassName=xosprobe", "agent.tolerations[0].operator=Exists", "aggregator.priorityClassName=high")
	for _, name := range []string{"xosprobe-agent-linux", "xosprobe-agent-windows"} {
		spec := get(find(t, set, "DaemonSet", name), "spec", "template", "spec").(map[string]any)
		if spec["priorityClassName"] != "xosprobe" || !strings.Contains(fmt.Sprint(spec["tolerations"]), "map[operator:Exists]") {
			t.Errorf("%s: priority %v, tolerations %v", name, spec["priorityClassName"], spec["tolerations"])
		}
	}
	if p := get(find(t, set, "Deployment", "xosprobe-aggregator"), "spec", "template", "spec", "priorityClassName"); p != "high" {
		t.Errorf("aggregator priorityClassName %v", p)
	}
}

// The agent's RBAC: policies and the Namespace of its own namespace only.
func TestAgentRBACIsNamespaceScopedWherePossible(t *testing.T) {
	docs := render(t)
	cr := find(t, docs, "ClusterRole", "xosprobe-agent")
	for _, r := range cr["rules"].([]any) {
		rule := r.(map[string]any)
		res := fmt.Sprint(rule["resources"])
		if strings.Contains(res, "networkpolicies") && !strings.Contains(res, "cluster") && !strings.Contains(res, "global") {
			t.Errorf("ClusterRole grants namespaced policies cluster-wide: %v", rule)
		}
		if res == "[namespaces]" && fmt.Sprint(rule["resourceNames"]) != "["+releaseNS+"]" {
			t.Errorf("ClusterRole reads every Namespace: %v", rule)
		}
	}
	role := find(t, docs, "Role", "xosprobe-agent")
	if !strings.Contains(fmt.Sprint(role["rules"]), "resources:[networkpolicies]") {
		t.Errorf("the Role does not grant the namespace's NetworkPolicies: %v", role["rules"])
	}
}

// The cluster domain is one knob: every FQDN follows it.
func TestClusterDomain(t *testing.T) {
	docs := render(t, "clusterDomain=corp.internal")
	all := append(args(find(t, docs, "DaemonSet", "xosprobe-agent-linux")), args(find(t, docs, "DaemonSet", "xosprobe-agent-windows"))...)
	all = append(all, args(find(t, docs, "Deployment", "xosprobe-aggregator"))...)
	n := 0
	for _, a := range all {
		if strings.HasPrefix(a, "--cluster-domain=") && a != "--cluster-domain=corp.internal" {
			t.Errorf("%s ignores clusterDomain", a)
		}
		if strings.Contains(a, ".svc.") {
			n++
			if !strings.Contains(a, ".svc.corp.internal:") {
				t.Errorf("%s ignores clusterDomain", a)
			}
		}
	}
	if n != 3 || strings.Count(strings.Join(all, " "), "--cluster-domain=corp.internal") != 2 {
		t.Errorf("%d FQDN flags, want 3 (both agents' --aggregator-url, --peer-dns), and --cluster-domain on both agents: %v", n, all)
	}
}

func TestProbeAndAggregatorValues(t *testing.T) {
	docs := render(t, "probe.interval=30s", "probe.timeout=3s", "aggregator.replicas=3", "aggregator.deltaWindow=10m",
		"agent.extraArgs[0]=--policy-grace=5m", "aggregator.podDisruptionBudget.enabled=false")
	linux := strings.Join(args(find(t, docs, "DaemonSet", "xosprobe-agent-linux")), " ")
	for _, want := range []string{"--interval=30s", "--timeout=3s", "--policy-grace=5m"} {
		if !strings.Contains(linux, want) {
			t.Errorf("linux agent args %q lack %s", linux, want)
		}
	}
	agg := find(t, docs, "Deployment", "xosprobe-aggregator")
	if fmt.Sprint(get(agg, "spec", "replicas")) != "3" || !strings.Contains(strings.Join(args(agg), " "), "--delta-window=10m") {
		t.Errorf("aggregator: replicas %v, args %v", get(agg, "spec", "replicas"), args(agg))
	}
	for _, d := range docs {
		if d.Obj["kind"] == "PodDisruptionBudget" {
			t.Error("PodDisruptionBudget rendered with podDisruptionBudget.enabled=false")
		}
	}
}

// kube-prometheus-stack finds the PodMonitors and the PrometheusRule only by
// its selector labels; the dashboards carry the Grafana sidecar's label.
func TestPrometheusOperatorAndDashboards(t *testing.T) {
	docs := render(t, "prometheusOperator.enabled=true", "prometheusOperator.labels.release=kube-prometheus-stack",
		"dashboards.enabled=true", "dashboards.annotations.grafana_folder=xosprobe")
	for _, o := range []map[string]any{find(t, docs, "PodMonitor", "xosprobe-agent"), find(t, docs, "PodMonitor", "xosprobe-aggregator"),
		find(t, docs, "PrometheusRule", "xosprobe")} {
		if get(o, "metadata", "labels", "release") != "kube-prometheus-stack" {
			t.Errorf("%s: no release label", objKey(o))
		}
	}
	groups, _ := get(find(t, docs, "PrometheusRule", "xosprobe"), "spec", "groups").([]any)
	if len(groups) == 0 {
		t.Error("the PrometheusRule has no rule groups")
	}
	n := 0
	for _, d := range docs {
		if d.Obj["kind"] != "ConfigMap" {
			continue
		}
		n++
		if get(d.Obj, "metadata", "labels", "grafana_dashboard") != "1" || get(d.Obj, "metadata", "annotations", "grafana_folder") != "xosprobe" {
			t.Errorf("%s: labels %v annotations %v", d.key(), get(d.Obj, "metadata", "labels"), get(d.Obj, "metadata", "annotations"))
		}
		data, _ := d.Obj["data"].(map[string]any)
		for k, v := range data {
			if !strings.HasSuffix(k, ".json") || !strings.HasPrefix(strings.TrimSpace(fmt.Sprint(v)), "{") {
				t.Errorf("%s: key %s is not a dashboard JSON", d.key(), k)
			}
		}
	}
	if n != 3 {
		t.Errorf("%d dashboard ConfigMaps, want 3", n)
	}
	for _, d := range render(t) {
		if k := d.Obj["kind"]; k == "PodMonitor" || k == "PrometheusRule" || k == "ConfigMap" {
			t.Errorf("%s rendered by default", d.key())
		}
	}
}

// The alert opt-outs are declarations the shipped rules consult: none by
// default, a recording rule per declared fact otherwise.
func TestAlertDeclarations(t *testing.T) {
	groupNames := func(o map[string]any) []string {
		var out []string
		for _, g := range get(o, "spec", "groups").([]any) {
			out = append(out, fmt.Sprint(get(g, "name")))
		}
		return out
	}
	rule := find(t, render(t, "prometheusOperator.enabled=true"), "PrometheusRule", "xosprobe")
	for _, n := range groupNames(rule) {
		if n == "xosprobe-declarations" {
			t.Error("declarations rendered by default")
		}
	}
	rule = find(t, render(t, "prometheusOperator.enabled=true", "prometheusOperator.rules.networkPolicyNotEnforcedOn={Windows}",
		"prometheusOperator.rules.windowsShortNamesFail=false"), "PrometheusRule", "xosprobe")
	var declared []string
	for _, g := range get(rule, "spec", "groups").([]any) {
		if get(g, "name") != "xosprobe-declarations" {
			continue
		}
		for _, r := range get(g, "rules").([]any) {
			declared = append(declared, fmt.Sprintf("%v %v", get(r, "record"), get(r, "labels")))
		}
	}
	want := []string{"xosprobe:networkpolicy_unenforced_declared map[dst_os:windows]", "xosprobe:windows_short_names_accepted <nil>"}
	if fmt.Sprint(declared) != fmt.Sprint(want) {
		t.Errorf("declarations %v, want %v", declared, want)
	}
}
