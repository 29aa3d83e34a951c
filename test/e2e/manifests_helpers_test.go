package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"
)

// manifestObject is one document of manifests/base, in kustomization order.
type manifestObject struct {
	File string
	Obj  *unstructured.Unstructured
}

func (m manifestObject) String() string {
	o := m.Obj
	if ns := o.GetNamespace(); ns != "" {
		return fmt.Sprintf("%s %s/%s (%s)", o.GetKind(), ns, o.GetName(), m.File)
	}
	return fmt.Sprintf("%s %s (%s)", o.GetKind(), o.GetName(), m.File)
}

var docSep = regexp.MustCompile(`(?m)^---[ \t]*$`)

// loadManifests reads the resources of dir/kustomization.yaml in its order.
// The images transformer of the kustomization is irrelevant here: nothing
// pulls an image, the harness runs bin/xosprobe.
func loadManifests(dir string) ([]manifestObject, error) {
	b, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		return nil, err
	}
	var k struct {
		Resources []string `json:"resources"`
	}
	if err := yaml.Unmarshal(b, &k); err != nil {
		return nil, fmt.Errorf("kustomization.yaml: %w", err)
	}
	if len(k.Resources) == 0 {
		return nil, fmt.Errorf("kustomization.yaml lists no resources")
	}
	var out []manifestObject
	for _, f := range k.Resources {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return nil, err
		}
		for i, doc := range docSep.Split(string(b), -1) {
			var m map[string]any
			if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
				return nil, fmt.Errorf("%s document %d: %w", f, i, err)
			}
			if len(m) == 0 {
				continue
			}
			out = append(out, manifestObject{File: f, Obj: &unstructured.Unstructured{Object: m}})
		}
	}
	return out, nil
}

// applier creates manifest objects through the dynamic client, collecting
// the apiserver's warnings (Pod Security admission warns on workload
// templates it would reject).
type applier struct {
	dyn    dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper

	mu       sync.Mutex
	warnings []string
}

func (a *applier) HandleWarningHeader(code int, agent, text string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.warnings = append(a.warnings, text)
}

func (a *applier) takeWarnings() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	w := a.warnings
	a.warnings = nil
	return w
}

func newApplier(cfg *rest.Config) (*applier, error) {
	a := &applier{}
	cfg = rest.CopyConfig(cfg)
	cfg.WarningHandler = a
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	a.mapper = restmapper.NewDeferredDiscoveryRESTMapper(memCache{dc})
	if a.dyn, err = dynamic.NewForConfig(cfg); err != nil {
		return nil, err
	}
	return a, nil
}

// create creates o, with server-side dry run (DryRun: All) when dryRun.
func (a *applier) create(ctx context.Context, o *unstructured.Unstructured, dryRun bool) error {
	gvk := o.GroupVersionKind()
	m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return fmt.Errorf("no API for %s: %w", gvk, err)
	}
	opts := metav1.CreateOptions{FieldValidation: "Strict"}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	var ri dynamic.ResourceInterface = a.dyn.Resource(m.Resource)
	if m.Scope.Name() == "namespace" {
		ri = a.dyn.Resource(m.Resource).Namespace(o.GetNamespace())
	}
	_, err = ri.Create(ctx, o.DeepCopy(), opts)
	return err
}

// memCache is the smallest discovery.CachedDiscoveryInterface: no cache.
type memCache struct{ discovery.DiscoveryInterface }

func (memCache) Fresh() bool { return true }
func (memCache) Invalidate() {}

// podTemplate finds the pod template of the DaemonSet or Deployment name.
func podTemplate(objs []manifestObject, kind, name string) (*appsv1.DaemonSetSpec, *appsv1.DeploymentSpec, error) {
	for _, m := range objs {
		if m.Obj.GetKind() != kind || m.Obj.GetName() != name {
			continue
		}
		switch kind {
		case "DaemonSet":
			var ds appsv1.DaemonSet
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(m.Obj.Object, &ds); err != nil {
				return nil, nil, err
			}
			return &ds.Spec, nil, nil
		case "Deployment":
			var d appsv1.Deployment
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(m.Obj.Object, &d); err != nil {
				return nil, nil, err
			}
			return nil, &d.Spec, nil
		}
	}
	return nil, nil, fmt.Errorf("no %s %s in the manifests", kind, name)
}

// setFlag replaces --name=... (or --name ...) in args, or appends it.
func setFlag(args []string, name, value string) []string {
	out := make([]string, 0, len(args)+1)
	done := false
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case strings.HasPrefix(a, "--"+name+"="):
		case a == "--"+name && i+1 < len(args):
			i++
		default:
			out = append(out, a)
			continue
		}
		if !done {
			out = append(out, "--"+name+"="+value)
			done = true
		}
	}
	if !done {
		out = append(out, "--"+name+"="+value)
	}
	return out
}

// flagValue returns the value of --name=VALUE in args.
func flagValue(args []string, name string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// sample is one line of Prometheus text exposition.
type sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

var labelRE = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)

// parseMetrics parses the text format (no exemplars, no timestamps needed).
func parseMetrics(text string) []sample {
	var out []sample
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, rest := line, ""
		labels := map[string]string{}
		if i := strings.IndexByte(line, '{'); i >= 0 {
			j := strings.LastIndexByte(line, '}')
			if j < i {
				continue
			}
			name, rest = line[:i], strings.TrimSpace(line[j+1:])
			for _, m := range labelRE.FindAllStringSubmatch(line[i+1:j], -1) {
				labels[m[1]] = m[2]
			}
		} else {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			name, rest = f[0], f[1]
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		out = append(out, sample{Name: name, Labels: labels, Value: v})
	}
	return out
}

// sumMetric sums the samples of name whose labels include want.
func sumMetric(ss []sample, name string, want map[string]string) (float64, int) {
	var sum float64
	n := 0
	for _, s := range ss {
		if s.Name == name && hasLabels(s.Labels, want) {
			sum += s.Value
			n++
		}
	}
	return sum, n
}

// hasLabels reports whether labels include every pair of want.
func hasLabels(labels, want map[string]string) bool {
	for k, v := range want {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// matrixDoc is the part of the aggregator's /matrix the test reads.
type matrixDoc struct {
	Window string `json:"window"`
	Pairs  []struct {
		Pair   string `json:"pair"`
		SrcOS  string `json:"srcOS"`
		DstOS  string `json:"dstOS"`
		Checks map[string]struct {
			Samples     int64   `json:"samples"`
			SuccessRate float64 `json:"successRate"`
			Phases      map[string]struct {
				Samples  int64   `json:"samples"`
				P50      float64 `json:"p50"`
				P90      float64 `json:"p90"`
				P99      float64 `json:"p99"`
				DeltaP50 *struct {
					Seconds     float64 `json:"seconds"`
					Significant bool    `json:"significant"`
				} `json:"deltaP50"`
			} `json:"phases"`
		} `json:"checks"`
	} `json:"pairs"`
	Cells []struct {
		Src     string `json:"src"`
		SrcOS   string `json:"srcOS"`
		Dst     string `json:"dst"`
		DstOS   string `json:"dstOS"`
		Check   string `json:"check"`
		Outcome string `json:"outcome"`
	} `json:"cells"`
}
