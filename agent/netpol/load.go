package netpol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Snapshot is the content of an objects file after defaulting and validation.
type Snapshot struct {
	Namespaces []*corev1.Namespace
	Pods       []*corev1.Pod
	Policies   []*networkingv1.NetworkPolicy
	// Skipped describes documents of kinds that do not affect NetworkPolicy
	// (Services, Deployments, ...), so a whole `kubectl get -o yaml` dump loads.
	Skipped []string
}

// Evaluator indexes the snapshot.
func (s *Snapshot) Evaluator() (*Evaluator, error) {
	return New(s.Namespaces, s.Pods, s.Policies)
}

// DocError is a problem with one input document (or one item of a List document).
type DocError struct {
	Doc  int // 1-based, counting non-empty documents
	Line int // 1-based line the document starts on
	Item int // index in the List's items; -1 when the document is not a List
	Kind string
	// Namespace and Name are empty when the document could not be decoded.
	Namespace string
	Name      string
	Err       error
}

func (e *DocError) Error() string { return e.where() + ": " + e.Err.Error() }

// where is "document 3 (line 17) items[2] NetworkPolicy shop/deny-all".
func (e *DocError) where() string {
	var b strings.Builder
	fmt.Fprintf(&b, "document %d", e.Doc)
	if e.Line > 0 {
		fmt.Fprintf(&b, " (line %d)", e.Line)
	}
	if e.Item >= 0 {
		fmt.Fprintf(&b, " items[%d]", e.Item)
	}
	if e.Kind != "" || e.Name != "" {
		b.WriteString(" " + strings.TrimSpace(e.Kind+" "+joinName(e.Namespace, e.Name)))
	}
	return b.String()
}

func (e *DocError) Unwrap() error { return e.Err }

func joinName(ns, name string) string {
	if name == "" {
		name = "(unnamed)"
	}
	if ns == "" {
		return name
	}
	return ns + "/" + name
}

// fieldErrors renders a field.ErrorList one error after the other rather than in
// the aggregate's brackets.
type fieldErrors field.ErrorList

func (fe fieldErrors) Error() string {
	s := make([]string, len(fe))
	for i, e := range fe {
		s[i] = e.Error()
	}
	return strings.Join(s, "; ")
}

// LoadFile reads a file of objects; see Load.
func LoadFile(path string) (*Snapshot, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	s, err := Load(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// Load reads Namespaces, Pods and networking.k8s.io/v1 NetworkPolicies from YAML
// documents separated by `---`, or from a stream of JSON values; either may hold
// v1 List objects (kubectl's output) or typed lists. It decodes strictly, as the API
// server does with field validation Strict (unknown or duplicate fields are errors),
// applies the API's defaults (namespace "default", protocol TCP, policyTypes, the
// kubernetes.io/metadata.name namespace label) and validates what the evaluator
// relies on. Because ipBlock peers and namespaceSelectors depend on them, every
// referenced namespace must be defined and every pod must have status.podIP unless
// its phase says it is not running (Pending, Succeeded, Failed, Unknown).
//
// All problems are returned, joined, each a *DocError naming the document, the
// object and the field.
func Load(r io.Reader) (*Snapshot, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	docs, err := splitDocuments(data)
	if err != nil {
		return nil, err
	}
	l := &loader{snap: &Snapshot{}, seen: map[string]*DocError{}}
	for _, d := range docs {
		l.document(d)
	}
	if len(l.errs) == 0 {
		l.checkNamespaces()
	}
	if len(l.errs) > 0 {
		return nil, errors.Join(l.errs...)
	}
	if len(l.snap.Namespaces)+len(l.snap.Pods)+len(l.snap.Policies) == 0 {
		return nil, errors.New("no Namespace, Pod or NetworkPolicy objects in the input")
	}
	return l.snap, nil
}

type document struct {
	n    int
	line int
	json []byte
}

// splitDocuments cuts YAML at `---` lines (remembering where each document starts,
// for error messages) or a JSON stream at value boundaries. Documents holding only
// comments are dropped and not counted.
func splitDocuments(data []byte) ([]document, error) {
	trimmed := bytes.TrimLeft(data, " \t\r\n\ufeff")
	if len(trimmed) > 0 && (trimmed[0] == '{' || trimmed[0] == '[') {
		docs, err := splitJSON(data)
		if err == nil {
			return docs, nil
		}
		// Flow-style YAML also starts with a brace.
		if ydocs, yerr := splitYAML(data); yerr == nil {
			return ydocs, nil
		}
		return nil, err
	}
	return splitYAML(data)
}

func splitYAML(data []byte) ([]document, error) {
	var docs []document
	var cur bytes.Buffer
	start, n := 1, 0
	flush := func() error {
		defer cur.Reset()
		if cur.Len() == 0 {
			return nil
		}
		j, err := yaml.YAMLToJSONStrict(cur.Bytes())
		if t := bytes.TrimSpace(j); err == nil && (len(t) == 0 || string(t) == "null") {
			return nil // comments only
		}
		n++
		if err != nil {
			return &DocError{Doc: n, Line: start, Item: -1, Err: fileLines(err, start)}
		}
		docs = append(docs, document{n: n, line: start, json: j})
		return nil
	}
	var errs []error
	lines := bytes.SplitAfter(data, []byte("\n"))
	for i, ln := range lines {
		if isSeparator(ln) {
			if err := flush(); err != nil {
				errs = append(errs, err)
			}
			start = i + 2
			continue
		}
		if cur.Len() == 0 && len(bytes.TrimSpace(ln)) == 0 {
			start = i + 2 // report the first line with content
			continue
		}
		cur.Write(ln)
	}
	if err := flush(); err != nil {
		errs = append(errs, err)
	}
	return docs, errors.Join(errs...)
}

var yamlLine = regexp.MustCompile(`\bline (\d+)`)

// fileLines rewrites the YAML parser's document-relative "line N" into file lines,
// which is what an editor shows.
func fileLines(err error, start int) error {
	msg := yamlLine.ReplaceAllStringFunc(err.Error(), func(m string) string {
		n, _ := strconv.Atoi(strings.TrimPrefix(m, "line "))
		return "line " + strconv.Itoa(n+start-1)
	})
	return errors.New("invalid YAML: " + msg)
}

func isSeparator(line []byte) bool {
	if !bytes.HasPrefix(line, []byte("---")) {
		return false
	}
	rest := bytes.TrimSpace(line[3:])
	return len(rest) == 0 || rest[0] == '#'
}

func splitJSON(data []byte) ([]document, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	var docs []document
	for {
		off := dec.InputOffset()
		var raw json.RawMessage
		err := dec.Decode(&raw)
		if err == io.EOF {
			return docs, nil
		}
		line := 1 + bytes.Count(data[:off], []byte("\n"))
		if err != nil {
			return nil, &DocError{Doc: len(docs) + 1, Line: line, Item: -1, Err: fmt.Errorf("invalid JSON: %w", err)}
		}
		line += countLeadingNewlines(data[off:])
		if t := bytes.TrimSpace(raw); len(t) > 0 && t[0] == '[' {
			// A bare array of objects reads like a List.
			raw = append(append([]byte(`{"apiVersion":"v1","kind":"List","items":`), raw...), '}')
		}
		docs = append(docs, document{n: len(docs) + 1, line: line, json: raw})
	}
}

func countLeadingNewlines(b []byte) int {
	n := 0
	for _, c := range b {
		switch c {
		case '\n':
			n++
		case ' ', '\t', '\r':
		default:
			return n
		}
	}
	return n
}

type loader struct {
	snap *Snapshot
	errs []error
	// seen maps kind/namespace/name to where it was first defined.
	seen map[string]*DocError
}

type typeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	} `json:"metadata"`
}

func (l *loader) fail(loc DocError, err error) {
	loc.Err = err
	l.errs = append(l.errs, &loc)
}

func (l *loader) document(d document) {
	l.object(d.json, DocError{Doc: d.n, Line: d.line, Item: -1}, typeMeta{})
}

// object decodes one object; def supplies kind and apiVersion for the items of a
// typed list, which the API server sends without them.
func (l *loader) object(raw []byte, loc DocError, def typeMeta) {
	var tm typeMeta
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(raw, &tm); err != nil {
		l.fail(loc, fmt.Errorf("not a Kubernetes object: %w", err))
		return
	}
	if tm.Kind == "" {
		tm.Kind = def.Kind
	}
	if tm.APIVersion == "" {
		tm.APIVersion = def.APIVersion
	}
	loc.Kind, loc.Namespace, loc.Name = tm.Kind, tm.Metadata.Namespace, tm.Metadata.Name
	if tm.Kind == "" {
		l.fail(loc, errors.New("kind: Required value"))
		return
	}

	want := map[string]string{
		"Namespace": "v1", "Pod": "v1", "NetworkPolicy": "networking.k8s.io/v1",
		"List": "v1", "NamespaceList": "v1", "PodList": "v1", "NetworkPolicyList": "networking.k8s.io/v1",
	}[tm.Kind]
	if want == "" {
		l.snap.Skipped = append(l.snap.Skipped, loc.where())
		return
	}
	if tm.APIVersion != want {
		l.fail(loc, fmt.Errorf("apiVersion: Unsupported value: %q: %s must be %s", tm.APIVersion, tm.Kind, want))
		return
	}

	switch tm.Kind {
	case "List", "NamespaceList", "PodList", "NetworkPolicyList":
		if loc.Item >= 0 {
			l.fail(loc, errors.New("a List inside a List is not supported"))
			return
		}
		var list struct {
			Items []json.RawMessage `json:"items"`
		}
		if err := sigsjson.UnmarshalCaseSensitivePreserveInts(raw, &list); err != nil {
			l.fail(loc, fmt.Errorf("items: %w", err))
			return
		}
		item := typeMeta{}
		if tm.Kind != "List" {
			item.APIVersion, item.Kind = want, strings.TrimSuffix(tm.Kind, "List")
		}
		for i, it := range list.Items {
			il := loc
			il.Item, il.Kind, il.Namespace, il.Name = i, "", "", ""
			l.object(it, il, item)
		}
	case "Namespace":
		var ns corev1.Namespace
		if !l.decode(raw, &ns, &loc, false) {
			return
		}
		loc.Name = ns.Name
		if ns.Name == "" {
			l.fail(loc, fieldErrors{field.Required(field.NewPath("metadata", "name"), "")})
			return
		}
		if msgs := validation.IsDNS1123Label(ns.Name); len(msgs) > 0 {
			l.fail(loc, fieldErrors{field.Invalid(field.NewPath("metadata", "name"), ns.Name, strings.Join(msgs, "; "))})
			return
		}
		if ns.Labels == nil {
			ns.Labels = map[string]string{}
		}
		ns.Labels[corev1.LabelMetadataName] = ns.Name
		if l.unique(loc, "Namespace", "", ns.Name) {
			l.snap.Namespaces = append(l.snap.Namespaces, &ns)
		}
	case "Pod":
		var p corev1.Pod
		if !l.decode(raw, &p, &loc, true) {
			return
		}
		defaultPod(&p)
		loc.Namespace, loc.Name = p.Namespace, p.Name
		if _, fe := compilePod(&p, true); len(fe) > 0 {
			l.fail(loc, fieldErrors(fe))
			return
		}
		if l.unique(loc, "Pod", p.Namespace, p.Name) {
			l.snap.Pods = append(l.snap.Pods, &p)
		}
	case "NetworkPolicy":
		var np networkingv1.NetworkPolicy
		if !l.decode(raw, &np, &loc, true) {
			return
		}
		defaultPolicy(&np)
		loc.Namespace, loc.Name = np.Namespace, np.Name
		if _, fe := compilePolicy(&np, true); len(fe) > 0 {
			l.fail(loc, fieldErrors(fe))
			return
		}
		if l.unique(loc, "NetworkPolicy", np.Namespace, np.Name) {
			l.snap.Policies = append(l.snap.Policies, &np)
		}
	}
}

// decode is strict and case-sensitive like the API server: a misspelt field such as
// `podSelecter` would otherwise vanish and silently widen or narrow a policy.
func (l *loader) decode(raw []byte, into interface {
	GetNamespace() string
	GetName() string
}, loc *DocError, namespaced bool) bool {
	strictErrs, err := sigsjson.UnmarshalStrict(raw, into)
	loc.Namespace, loc.Name = into.GetNamespace(), into.GetName()
	if namespaced {
		loc.Namespace = nsOrDefault(loc.Namespace)
	}
	if err != nil {
		l.fail(*loc, err)
		return false
	}
	if len(strictErrs) > 0 {
		l.fail(*loc, errors.Join(strictErrs...))
		return false
	}
	return true
}

func (l *loader) unique(loc DocError, kind, ns, name string) bool {
	key := kind + "/" + ns + "/" + name
	if first, ok := l.seen[key]; ok {
		l.fail(loc, fmt.Errorf("duplicate %s %s (first in document %d)", kind, joinName(ns, name), first.Doc))
		return false
	}
	l.seen[key] = &loc
	return true
}

// checkNamespaces insists that the namespaces pods and policies live in are in the
// input: their labels decide namespaceSelector peers, so guessing would guess verdicts.
func (l *loader) checkNamespaces() {
	have := map[string]bool{}
	for _, n := range l.snap.Namespaces {
		have[n.Name] = true
	}
	missing := func(kind, ns, name string) {
		if have[ns] {
			return
		}
		loc := *l.seen[kind+"/"+ns+"/"+name]
		fe := field.NotFound(field.NewPath("metadata", "namespace"), ns)
		fe.Detail = "no Namespace " + ns + " in the input; add it (its labels decide namespaceSelector peers)"
		l.fail(loc, fieldErrors{fe})
	}
	for _, p := range l.snap.Pods {
		missing("Pod", p.Namespace, p.Name)
	}
	for _, np := range l.snap.Policies {
		missing("NetworkPolicy", np.Namespace, np.Name)
	}
}

func defaultPod(p *corev1.Pod) {
	p.Namespace = nsOrDefault(p.Namespace)
	for _, cs := range [][]corev1.Container{p.Spec.Containers, p.Spec.InitContainers} {
		for i := range cs {
			for j := range cs[i].Ports {
				if cs[i].Ports[j].Protocol == "" {
					cs[i].Ports[j].Protocol = corev1.ProtocolTCP
				}
			}
		}
	}
}

// defaultPolicy applies the API server's defaulting for networking/v1.
func defaultPolicy(np *networkingv1.NetworkPolicy) {
	np.Namespace = nsOrDefault(np.Namespace)
	if len(np.Spec.PolicyTypes) == 0 {
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
		if len(np.Spec.Egress) > 0 {
			np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
		}
	}
	tcp := corev1.ProtocolTCP
	for i := range np.Spec.Ingress {
		for j := range np.Spec.Ingress[i].Ports {
			if np.Spec.Ingress[i].Ports[j].Protocol == nil {
				np.Spec.Ingress[i].Ports[j].Protocol = &tcp
			}
		}
	}
	for i := range np.Spec.Egress {
		for j := range np.Spec.Egress[i].Ports {
			if np.Spec.Egress[i].Ports[j].Protocol == nil {
				np.Spec.Egress[i].Ports[j].Protocol = &tcp
			}
		}
	}
}
