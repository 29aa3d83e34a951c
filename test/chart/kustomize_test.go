package chart

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// The values manifests/ is rendered with: the kustomize install creates its
// namespace and carries no Helm labels.
var kustomizeValues = []string{"namespace.create=true", "helmLabels=false"}

// operatorValues renders the prometheus-operator objects as
// manifests/prometheus-operator ships them.
var operatorValues = append([]string{"prometheusOperator.enabled=true"}, kustomizeValues...)

// helmOnlyLabels are what helmLabels=true adds to every object's labels.
var helmOnlyLabels = []string{"app.kubernetes.io/instance", "app.kubernetes.io/managed-by", "app.kubernetes.io/version", "helm.sh/chart"}

const generatedHeader = "# Rendered from charts/xosprobe/templates/%s by `make manifests`; edit the chart, not this file.\n"

func generatedFiles(t *testing.T) map[string][]doc {
	t.Helper()
	files := map[string][]doc{}
	for _, d := range render(t, kustomizeValues...) {
		path := filepath.Join("manifests", "base", d.Source)
		files[path] = append(files[path], d)
	}
	operatorFiles := map[any]string{"PodMonitor": "podmonitors.yaml", "PrometheusRule": "prometheusrule.yaml"}
	for _, d := range render(t, operatorValues...) {
		if name, ok := operatorFiles[d.Obj["kind"]]; ok {
			path := filepath.Join("manifests", "prometheus-operator", name)
			files[path] = append(files[path], d)
		}
	}
	return files
}

func fileText(docs []doc) string {
	var b strings.Builder
	b.WriteString(strings.Replace(generatedHeader, "%s", docs[0].Source, 1))
	for i, d := range docs {
		if i > 0 {
			b.WriteString("---\n")
		}
		b.WriteString(strings.TrimRight(d.Text, "\n") + "\n")
	}
	return b.String()
}

// manifests/base and manifests/prometheus-operator are the chart rendered:
// one source of truth for both installs.
func TestKustomizeManifestsAreRenderedFromTheChart(t *testing.T) {
	files := generatedFiles(t)
	for _, path := range keys(files) {
		want := fileText(files[path])
		full := filepath.Join(repoRoot, path)
		if *update {
			if err := os.WriteFile(full, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, err := os.ReadFile(full)
		if err != nil {
			t.Errorf("%s: %v (render it: make manifests)", path, err)
			continue
		}
		if string(got) != want {
			t.Errorf("%s differs from the chart's rendering: run make manifests (and edit the chart, not the file)", path)
		}
	}
	// Every resource of the kustomizations is a rendered file: none is
	// maintained by hand beside the chart.
	for _, dir := range []string{"manifests/base", "manifests/prometheus-operator"} {
		var k struct {
			Resources []string `json:"resources"`
		}
		b, err := os.ReadFile(filepath.Join(repoRoot, dir, "kustomization.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(b, &k); err != nil {
			t.Fatal(err)
		}
		for _, r := range k.Resources {
			if _, ok := files[filepath.Join(dir, r)]; !ok {
				t.Errorf("%s/kustomization.yaml lists %s, which the chart does not render", dir, r)
			}
		}
	}
}

// kustomize builds a kustomization directory as `kubectl kustomize` does.
func kustomize(t *testing.T, dir string) map[string]map[string]any {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), filepath.Join(repoRoot, dir))
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	out := map[string]map[string]any{}
	for _, r := range rm.Resources() {
		m, err := r.Map()
		if err != nil {
			t.Fatal(err)
		}
		out[objKey(m)] = m
	}
	return out
}

// roundTrip normalizes an object the way both sides are compared: through
// JSON, so numbers and empty maps read alike.
func roundTrip(t *testing.T, o map[string]any) map[string]any {
	t.Helper()
	b, err := yaml.Marshal(o)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := yaml.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// `kubectl kustomize manifests/` and the chart agree object by object: with
// the kustomize values exactly, and with the chart's defaults apart from
// what those values change (the Namespace, which Helm users create with
// --create-namespace, and the Helm labels).
func TestChartDefaultsAgreeWithKustomize(t *testing.T) {
	for _, tc := range []struct{ dir string }{{"manifests"}, {"manifests/prometheus-operator"}} {
		t.Run(tc.dir, func(t *testing.T) {
			kust := kustomize(t, tc.dir)
			values := kustomizeValues
			if tc.dir == "manifests/prometheus-operator" {
				values = operatorValues
			}
			chart := byKey(render(t, values...))
			if tc.dir == "manifests/prometheus-operator" {
				for k, o := range chart {
					if o["kind"] != "PodMonitor" && o["kind"] != "PrometheusRule" {
						delete(chart, k)
					}
				}
			}
			if !reflect.DeepEqual(keys(kust), keys(chart)) {
				t.Fatalf("objects differ:\nkustomize %v\nchart     %v", keys(kust), keys(chart))
			}
			for _, k := range keys(kust) {
				if a, b := roundTrip(t, kust[k]), roundTrip(t, chart[k]); !reflect.DeepEqual(a, b) {
					ay, _ := yaml.Marshal(a)
					by, _ := yaml.Marshal(b)
					t.Errorf("%s differs:\n--- kustomize\n%s\n--- chart\n%s", k, ay, by)
				}
			}
		})
	}

	t.Run("defaults", func(t *testing.T) {
		kust := kustomize(t, "manifests")
		defaults := byKey(render(t))
		for _, k := range keys(kust) {
			want := roundTrip(t, kust[k])
			if want["kind"] == "Namespace" {
				if _, ok := defaults[k]; ok {
					t.Errorf("%s rendered by default: helm install --create-namespace would fail on it", k)
				}
				continue
			}
			got, ok := defaults[k]
			if !ok {
				t.Errorf("%s: not rendered with the chart's defaults", k)
				continue
			}
			got = roundTrip(t, got)
			labels, _ := get(got, "metadata", "labels").(map[string]any)
			for _, l := range helmOnlyLabels {
				if labels[l] == nil {
					t.Errorf("%s: no %s label with the chart's defaults", k, l)
				}
				delete(labels, l)
			}
			if !reflect.DeepEqual(want, got) {
				wy, _ := yaml.Marshal(want)
				gy, _ := yaml.Marshal(got)
				t.Errorf("%s differs beyond the Helm labels:\n--- kustomize\n%s\n--- chart defaults\n%s", k, wy, gy)
			}
		}
		if len(defaults) != len(kust)-1 {
			t.Errorf("the chart's defaults render %d objects, kustomize %d (with the Namespace): %v", len(defaults), len(kust), keys(defaults))
		}
	})
}

// The chart carries copies of files it cannot reach outside its directory:
// the alert rules and the dashboards. They stay equal to their sources.
func TestChartFilesAreCopiesOfTheirSources(t *testing.T) {
	copies := map[string]string{"files/rules.yaml": "manifests/prometheus/rules.yaml"}
	dashboards, err := filepath.Glob(filepath.Join(repoRoot, "dashboards", "*.json"))
	if err != nil || len(dashboards) == 0 {
		t.Fatalf("no dashboards/*.json (%v)", err)
	}
	for _, d := range dashboards {
		copies[filepath.Join("dashboards", filepath.Base(d))] = filepath.Join("dashboards", filepath.Base(d))
	}
	for dst, src := range copies {
		want, err := os.ReadFile(filepath.Join(repoRoot, src))
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(chartDir, dst)
		if *update {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != string(want) {
			t.Errorf("charts/xosprobe/%s is not a copy of %s: run make manifests", dst, src)
		}
	}
	extra, _ := filepath.Glob(filepath.Join(chartDir, "dashboards", "*.json"))
	if len(extra) != len(dashboards) {
		t.Errorf("charts/xosprobe/dashboards has %d dashboards, dashboards/ %d", len(extra), len(dashboards))
	}
}

// The overlays still patch the rendered base as they say they do.
func TestOverlaysApplyToTheRenderedBase(t *testing.T) {
	for build, version := range map[string]string{"ltsc2019": "10.0.17763", "ltsc2022": "10.0.20348", "ltsc2025": "10.0.26100"} {
		objs := kustomize(t, "manifests/overlays/"+build)
		ds := objs["DaemonSet xosprobe/xosprobe-agent-windows"]
		if v := get(ds, "spec", "template", "spec", "nodeSelector", "node.kubernetes.io/windows-build"); v != version {
			t.Errorf("%s: windows-build selector %v", build, v)
		}
		if ref, _ := image(ds); ref != "ghcr.io/xosprobe/xosprobe:dev-windows-"+build {
			t.Errorf("%s: image %s", build, ref)
		}
	}
	objs := kustomize(t, "manifests/overlays/ebpf")
	if v := get(objs["Namespace <nil>/xosprobe"], "metadata", "labels", "pod-security.kubernetes.io/enforce"); v != "privileged" {
		t.Errorf("ebpf: namespace Pod Security %v", v)
	}
	ds := objs["DaemonSet xosprobe/xosprobe-agent-linux"]
	caps := get(containers(ds)[0], "securityContext", "capabilities", "add")
	if fmt.Sprint(caps) != "[BPF NET_ADMIN]" || fmt.Sprint(get(ds, "spec", "template", "spec", "securityContext", "runAsUser")) != "0" {
		t.Errorf("ebpf: capabilities %v, securityContext %v", caps, get(ds, "spec", "template", "spec", "securityContext"))
	}
}
