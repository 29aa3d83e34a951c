package netpol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/network-policy-api/apis/v1alpha1"
	"sigs.k8s.io/network-policy-api/apis/v1alpha2"
	"sigs.k8s.io/network-policy-api/apis/v1beta1"
	"sigs.k8s.io/yaml"
)

// Snapshot is the content of an objects file after defaulting and validation.
type Snapshot struct {
	Namespaces []*corev1.Namespace
	// Pods include one synthesized from each workload's pod template (see
	// Load).
	Pods     []*corev1.Pod
	Policies []*networkingv1.NetworkPolicy
	// ClusterInputs holds the policy.networking.k8s.io policies (v1beta1
	// ClusterNetworkPolicies converted to v1alpha2), Nodes (nil when the input
	// has none) and the unmodelled policy objects.
	ClusterInputs
	// Skipped describes documents of kinds that do not affect policy
	// (Services, ConfigMaps, ...), so a whole `kubectl get -o yaml` dump loads.
	Skipped []string
}

// Evaluator indexes the snapshot.
func (s *Snapshot) Evaluator() (*Evaluator, error) {
	return Build(Inputs{Namespaces: s.Namespaces, Pods: s.Pods, NetworkPolicies: s.Policies, ClusterInputs: s.ClusterInputs})
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
	sn := l.snap
	if len(sn.Namespaces)+len(sn.Pods)+len(sn.Policies)+len(sn.ClusterNetworkPolicies)+len(sn.AdminNetworkPolicies)+
		len(sn.BaselineAdminNetworkPolicies)+len(sn.Foreign) == 0 {
		return nil, errors.New("no Namespace, Pod, workload or policy objects in the input")
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

	group, _, _ := strings.Cut(tm.APIVersion, "/")
	if !strings.Contains(tm.APIVersion, "/") {
		group = "" // the core group: "v1"
	}
	kind := strings.TrimSuffix(tm.Kind, "List")
	if tm.Kind == "List" {
		kind = "List"
	}
	if isPolicy, _ := ForeignKind(group, kind); isPolicy {
		if tm.Kind != kind {
			l.list(raw, loc, typeMeta{APIVersion: tm.APIVersion, Kind: kind})
			return
		}
		l.foreign(loc, group, tm)
		return
	}
	want := map[string][]string{
		"Namespace": {"v1"}, "Pod": {"v1"}, "Node": {"v1"}, "NetworkPolicy": {"networking.k8s.io/v1"}, "List": {"v1"},
		kindCNP:      {v1alpha2.GroupVersion.String(), v1beta1.GroupVersion.String()},
		kindANP:      {v1alpha1.GroupVersion.String()},
		kindBANP:     {v1alpha1.GroupVersion.String()},
		"Deployment": {"apps/v1"}, "DaemonSet": {"apps/v1"}, "StatefulSet": {"apps/v1"}, "ReplicaSet": {"apps/v1"},
		"Job": {"batch/v1"}, "CronJob": {"batch/v1"},
	}[kind]
	if want == nil {
		l.snap.Skipped = append(l.snap.Skipped, loc.where())
		return
	}
	if !slices.Contains(want, tm.APIVersion) {
		l.fail(loc, fmt.Errorf("apiVersion: Unsupported value: %q: %s must be %s", tm.APIVersion, tm.Kind, strings.Join(want, " or ")))
		return
	}
	if kind == "List" {
		l.list(raw, loc, typeMeta{})
		return
	}
	if tm.Kind != kind {
		l.list(raw, loc, typeMeta{APIVersion: tm.APIVersion, Kind: kind})
		return
	}

	switch tm.Kind {
	case "Deployment", "DaemonSet", "StatefulSet", "ReplicaSet", "Job", "CronJob":
		l.workload(raw, loc, tm.Kind)
	case "Node":
		var n corev1.Node
		if !l.decode(raw, &n, &loc, false) {
			return
		}
		if n.Name == "" {
			l.fail(loc, fieldErrors{field.Required(field.NewPath("metadata", "name"), "")})
			return
		}
		if l.unique(loc, "Node", "", n.Name) {
			l.snap.Nodes = append(l.snap.Nodes, &n)
		}
	case kindCNP:
		var p *v1alpha2.ClusterNetworkPolicy
		if tm.APIVersion == v1beta1.GroupVersion.String() {
			var b v1beta1.ClusterNetworkPolicy
			if !l.decode(raw, &b, &loc, false) {
				return
			}
			var err error
			if p, err = ClusterNetworkPolicyFromV1beta1(&b); err != nil {
				l.fail(loc, err)
				return
			}
		} else {
			p = &v1alpha2.ClusterNetworkPolicy{}
			if !l.decode(raw, p, &loc, false) {
				return
			}
		}
		if _, fe := compileCNP(p, true); len(fe) > 0 {
			l.fail(loc, fieldErrors(fe))
			return
		}
		if l.unique(loc, kindCNP, "", p.Name) {
			l.snap.ClusterNetworkPolicies = append(l.snap.ClusterNetworkPolicies, p)
		}
	case kindANP:
		var p v1alpha1.AdminNetworkPolicy
		if !l.decode(raw, &p, &loc, false) {
			return
		}
		if _, fe := compileANP(&p, true); len(fe) > 0 {
			l.fail(loc, fieldErrors(fe))
			return
		}
		if l.unique(loc, kindANP, "", p.Name) {
			l.snap.AdminNetworkPolicies = append(l.snap.AdminNetworkPolicies, &p)
		}
	case kindBANP:
		var p v1alpha1.BaselineAdminNetworkPolicy
		if !l.decode(raw, &p, &loc, false) {
			return
		}
		if _, fe := compileBANP(&p, true); len(fe) > 0 {
			l.fail(loc, fieldErrors(fe))
			return
		}
		if l.unique(loc, kindBANP, "", p.Name) {
			l.snap.BaselineAdminNetworkPolicies = append(l.snap.BaselineAdminNetworkPolicies, &p)
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

// list loads the items of a List (item empty: each item says what it is) or of
// a typed list (item gives their kind).
func (l *loader) list(raw []byte, loc DocError, item typeMeta) {
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
	for i, it := range list.Items {
		il := loc
		il.Item, il.Kind, il.Namespace, il.Name = i, "", "", ""
		l.object(it, il, item)
	}
}

// foreign records a policy object of a kind the evaluator does not model. Its
// content is not read: only that it exists and where.
func (l *loader) foreign(loc DocError, group string, tm typeMeta) {
	ns := tm.Metadata.Namespace
	if ns == "" && foreignNamespaced(group, tm.Kind) {
		ns = defaultNamespace
	}
	if tm.Metadata.Name == "" {
		l.fail(loc, fieldErrors{field.Required(field.NewPath("metadata", "name"), "")})
		return
	}
	if l.unique(loc, tm.Kind+"."+group, ns, tm.Metadata.Name) {
		l.snap.Foreign = append(l.snap.Foreign, ForeignPolicy{Group: group, Kind: tm.Kind, Namespace: ns, Name: tm.Metadata.Name})
	}
}

// foreignNamespaced reports the known namespaced foreign kinds, whose
// metadata.namespace defaults as kubectl defaults it. Other kinds are taken
// as written: without a namespace they count as cluster-scoped.
func foreignNamespaced(group, kind string) bool {
	switch group {
	case "projectcalico.org", "crd.projectcalico.org":
		return kind == "NetworkPolicy" || kind == "StagedNetworkPolicy" || kind == "StagedKubernetesNetworkPolicy"
	case "cilium.io":
		return kind == "CiliumNetworkPolicy"
	case "crd.antrea.io":
		return kind == "NetworkPolicy"
	}
	return false
}

// isWorkloadKind reports the kinds whose pod template becomes a pod, by the
// lower case name pod references use (NS/KIND/NAME).
func isWorkloadKind(lower string) bool {
	switch lower {
	case "deployment", "daemonset", "statefulset", "replicaset", "job", "cronjob":
		return true
	}
	return false
}

// workload synthesizes the pod a workload would create: the template's labels,
// containers and host networking, in the workload's namespace, named
// KIND/NAME (kind in lower case). It has no IP: ipBlock peers cannot match it.
func (l *loader) workload(raw []byte, loc DocError, kind string) {
	var obj interface {
		GetNamespace() string
		GetName() string
	}
	var tmpl func() *corev1.PodTemplateSpec
	switch kind {
	case "Deployment":
		o := &appsv1.Deployment{}
		obj, tmpl = o, func() *corev1.PodTemplateSpec { return &o.Spec.Template }
	case "DaemonSet":
		o := &appsv1.DaemonSet{}
		obj, tmpl = o, func() *corev1.PodTemplateSpec { return &o.Spec.Template }
	case "StatefulSet":
		o := &appsv1.StatefulSet{}
		obj, tmpl = o, func() *corev1.PodTemplateSpec { return &o.Spec.Template }
	case "ReplicaSet":
		o := &appsv1.ReplicaSet{}
		obj, tmpl = o, func() *corev1.PodTemplateSpec { return &o.Spec.Template }
	case "Job":
		o := &batchv1.Job{}
		obj, tmpl = o, func() *corev1.PodTemplateSpec { return &o.Spec.Template }
	case "CronJob":
		o := &batchv1.CronJob{}
		obj, tmpl = o, func() *corev1.PodTemplateSpec { return &o.Spec.JobTemplate.Spec.Template }
	}
	if !l.decode(raw, obj, &loc, true) {
		return
	}
	if obj.GetName() == "" {
		l.fail(loc, fieldErrors{field.Required(field.NewPath("metadata", "name"), "")})
		return
	}
	t := tmpl()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: nsOrDefault(obj.GetNamespace()), Name: strings.ToLower(kind) + "/" + obj.GetName(), Labels: t.Labels},
		Spec:       t.Spec,
		// Not running yet: no address is expected.
		Status: corev1.PodStatus{Phase: corev1.PodPending},
	}
	defaultPod(p)
	if _, fe := compilePod(p, true); len(fe) > 0 {
		for i := range fe {
			fe[i].Field = "spec.template." + fe[i].Field
		}
		l.fail(loc, fieldErrors(fe))
		return
	}
	if l.unique(loc, "Pod", p.Namespace, p.Name) {
		l.snap.Pods = append(l.snap.Pods, p)
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
