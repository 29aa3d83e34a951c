package netpol

import (
	"bytes"
	"encoding/json"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
)

// FuzzLoad feeds arbitrary bytes to the loader; whatever loads must evaluate and
// render without panicking. Run with: go test -fuzz FuzzLoad ./agent/netpol/
func FuzzLoad(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.yaml")
	bad, _ := filepath.Glob("testdata/bad/*.yaml")
	js, _ := filepath.Glob("testdata/*.json")
	for _, p := range append(append(seeds, bad...), js...) {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Load(bytes.NewReader(data))
		if err != nil {
			_ = err.Error()
			return
		}
		e, err := s.Evaluator()
		if err != nil {
			t.Fatalf("a loaded snapshot must index: %v", err)
		}
		sweep(t, e, 6)
	})
}

// FuzzPolicy decodes arbitrary JSON into a NetworkPolicy and a label set without
// any validation, as an informer could hand over objects from a newer or buggy API
// server, and checks that New either rejects them or evaluates them without panics.
func FuzzPolicy(f *testing.F) {
	f.Add([]byte(`{"metadata":{"name":"p","namespace":"a"},"spec":{"podSelector":{},"ingress":[{}]}}`), []byte(`{"app":"x"}`))
	f.Add([]byte(`{"metadata":{"namespace":"a"},"spec":{"podSelector":{"matchExpressions":[{"key":"app","operator":"In"}]}}}`), []byte(`{}`))
	f.Add([]byte(`{"spec":{"podSelector":{},"policyTypes":["Egress"],"egress":[{"to":[{"ipBlock":{"cidr":"10.0.0.0/8","except":["10.1.0.0/16","x"]}}],"ports":[{"port":"http","endPort":3},{"protocol":"UDP"}]}]}}`), []byte(`{"tier":"front"}`))
	f.Add([]byte(`{"metadata":{"namespace":"b"},"spec":{"ingress":[{"from":[{"namespaceSelector":{"matchLabels":{"team":"a"}},"podSelector":{}},{"ipBlock":{"cidr":"::/0"}}],"ports":[{"port":0},{"port":65536},{"port":80,"endPort":79}]}]}}`), []byte(`{"":""}`))
	f.Fuzz(func(t *testing.T, policyJSON, labelsJSON []byte) {
		var np networkingv1.NetworkPolicy
		if json.Unmarshal(policyJSON, &np) != nil {
			return
		}
		var l map[string]string
		_ = json.Unmarshal(labelsJSON, &l)
		nss, pods := world()
		pods[0].Labels = l
		nss[1].Labels = l
		e, err := New(nss, pods, []*networkingv1.NetworkPolicy{&np})
		if err != nil {
			_ = err.Error()
			return
		}
		sweep(t, e, 10)
	})
}

// sweep evaluates up to n pods against each other and an external address on a
// few ports, rendering every answer.
func sweep(t *testing.T, e *Evaluator, n int) {
	refs := e.Pods()
	if len(refs) > n {
		refs = refs[:n]
	}
	ports := []Port{{Number: 80}, {Number: 53}, {Name: "http"}}
	for _, dst := range refs {
		for _, p := range ports {
			queries := []Query{{FromIP: netip.MustParseAddr("192.0.2.1"), To: dst, Port: p}}
			for _, src := range refs {
				queries = append(queries, Query{From: src, To: dst, Port: p}, Query{From: src, To: dst, Port: p, Protocol: "UDP"})
			}
			for _, q := range queries {
				a, err := e.Evaluate(q)
				if err != nil {
					continue
				}
				switch {
				case a.Modelled != Allow && a.Modelled != Deny && a.Modelled != Unknown:
					t.Fatalf("modelled verdict %q", a.Modelled)
				case len(a.Unmodelled) > 0 && a.Verdict != Unknown:
					t.Fatalf("verdict %q despite unmodelled policies %v", a.Verdict, a.Unmodelled)
				case len(a.Unmodelled) == 0 && a.Verdict != a.Modelled:
					t.Fatalf("verdict %q, modelled %q, and nothing unmodelled", a.Verdict, a.Modelled)
				}
				if v, err := e.Verdict(q); err != nil || v != a.Verdict {
					t.Fatalf("Verdict %q (%v) disagrees with Evaluate %q", v, err, a.Verdict)
				}
				_ = a.Text()
				if err := a.WriteJSON(io.Discard); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}
