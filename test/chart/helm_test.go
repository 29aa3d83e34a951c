package chart

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "render manifests/base and manifests/prometheus-operator from the chart, and copy the chart's files")

const (
	chartDir   = "../../charts/xosprobe"
	repoRoot   = "../.."
	releaseNS  = "xosprobe"
	releaseArg = "xosprobe"
)

// helmBin is the helm binary this module's tool directive builds.
var helmBin string

// TestMain uses $HELM_BIN (make chart-test passes bin/helm) or builds helm
// as `make bin/helm` does, so both share the build cache.
func TestMain(m *testing.M) {
	flag.Parse()
	if helmBin = os.Getenv("HELM_BIN"); helmBin != "" {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "xosprobe-chart-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	helmBin = filepath.Join(dir, "helm")
	build := exec.Command("go", "build", "-trimpath", "-o", helmBin, "helm.sh/helm/v4/cmd/helm")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building helm:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// helm runs the helm binary with a private configuration and cache, so the
// test neither reads nor writes the user's.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command(helmBin, args...)
	cmd.Env = append(os.Environ(), "HELM_CONFIG_HOME="+home+"/config", "HELM_CACHE_HOME="+home+"/cache",
		"HELM_DATA_HOME="+home+"/data", "KUBECONFIG="+home+"/no-kubeconfig")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if err != nil {
		return out.String() + errOut.String(), fmt.Errorf("helm %s: %w\n%s", strings.Join(args, " "), err, errOut.String())
	}
	return out.String(), nil
}

// doc is one rendered object and the template it came from.
type doc struct {
	Source string // the template's file name, e.g. agent-linux.yaml
	Text   string // the document as rendered, comments included
	Obj    map[string]any
}

func (d doc) key() string { return objKey(d.Obj) }

func objKey(o map[string]any) string {
	md, _ := o["metadata"].(map[string]any)
	return fmt.Sprintf("%v %v/%v", o["kind"], md["namespace"], md["name"])
}

var sourceLine = regexp.MustCompile(`(?m)^# Source: xosprobe/templates/(\S+)\n`)

// render runs helm template with the given --set values and returns its
// documents in output order.
func render(t *testing.T, sets ...string) []doc {
	t.Helper()
	out, err := renderErr(t, sets...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func renderErr(t *testing.T, sets ...string) ([]doc, error) {
	t.Helper()
	args := []string{"template", releaseArg, chartDir, "--namespace", releaseNS}
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	out, err := helm(t, args...)
	if err != nil {
		return nil, err
	}
	var docs []doc
	for _, part := range strings.Split(out, "\n---\n") {
		part = strings.TrimPrefix(part, "---\n")
		m := sourceLine.FindStringSubmatchIndex(part)
		if m == nil {
			if strings.TrimSpace(part) != "" {
				t.Fatalf("helm template: a document without a # Source line:\n%s", part)
			}
			continue
		}
		var obj map[string]any
		if err := yaml.Unmarshal([]byte(part), &obj); err != nil {
			t.Fatalf("helm template: %s: %v\n%s", part[m[2]:m[3]], err, part)
		}
		if len(obj) == 0 {
			t.Fatalf("helm template: %s renders a document with no object:\n%s", part[m[2]:m[3]], part)
		}
		docs = append(docs, doc{Source: part[m[2]:m[3]], Text: part[:m[0]] + part[m[1]:], Obj: obj})
	}
	return docs, nil
}

func byKey(docs []doc) map[string]map[string]any {
	out := map[string]map[string]any{}
	for _, d := range docs {
		out[d.key()] = d.Obj
	}
	return out
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// find returns the rendered object of kind and name, failing without it.
func find(t *testing.T, docs []doc, kind, name string) map[string]any {
	t.Helper()
	for _, d := range docs {
		md, _ := d.Obj["metadata"].(map[string]any)
		if d.Obj["kind"] == kind && md["name"] == name {
			return d.Obj
		}
	}
	t.Fatalf("no %s %s rendered", kind, name)
	return nil
}

// get walks a rendered object by map keys and list indexes.
func get(o any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := o.(map[string]any)
			if !ok {
				return nil
			}
			o = m[k]
		case int:
			l, ok := o.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			o = l[k]
		}
	}
	return o
}
