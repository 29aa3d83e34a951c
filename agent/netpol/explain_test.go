package netpol

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func shop(t *testing.T) *Evaluator {
	t.Helper()
	s, err := LoadFile("testdata/shop.yaml")
	require.NoError(t, err)
	e, err := s.Evaluator()
	require.NoError(t, err)
	return e
}

func TestExplainText(t *testing.T) {
	e := shop(t)
	cases := []struct {
		name string
		args QueryArgs
		want string
	}{
		{
			name: "allowed both ways",
			args: QueryArgs{From: "shop/web-0", To: "shop/db-0", Port: "5432"},
			want: `ALLOW TCP/5432 from pod shop/web-0 (10.244.1.5) to pod shop/db-0 (10.244.2.9)
egress of shop/web-0: allowed by 1 rule
  shop/web-egress: egress rule 0, to[0] podSelector {app=db} (policy namespace), ports[0] TCP/postgres
ingress of shop/db-0: allowed by 1 rule
  shop/db-ingress: ingress rule 0, from[0] podSelector {app=web} (policy namespace), ports[0] TCP/5432
`,
		},
		{
			name: "unrestricted source, named port",
			args: QueryArgs{From: "monitoring/prometheus-0", To: "shop/web-0", Port: "http"},
			want: `ALLOW TCP/http(80) from pod monitoring/prometheus-0 (10.244.3.7) to pod shop/web-0 (10.244.1.5)
egress of monitoring/prometheus-0: unrestricted: no policy selects the pod for egress
ingress of shop/web-0: allowed by 1 rule
  shop/web-ingress: ingress rule 0, from[0] namespaceSelector {team=ops}, ports[0] TCP/http
`,
		},
		{
			name: "denied on ingress",
			args: QueryArgs{From: "monitoring/prometheus-0", To: "shop/db-0", Port: "5432"},
			want: `DENY TCP/5432 from pod monitoring/prometheus-0 (10.244.3.7) to pod shop/db-0 (10.244.2.9)
egress of monitoring/prometheus-0: unrestricted: no policy selects the pod for egress
ingress of shop/db-0: denied: 2 policies select the pod for ingress and no rule allows this traffic
  shop/db-ingress: 1 ingress rule, none matches
    rule 0: no peer matches: from[0] podSelector {app=web} (policy namespace)
  shop/default-deny: no ingress rules (isolates the pod)
`,
		},
		{
			name: "external source through ipBlock",
			args: QueryArgs{FromIP: "203.0.113.7", To: "shop/web-0", Port: "80"},
			want: `ALLOW TCP/80 from ip 203.0.113.7 to pod shop/web-0 (10.244.1.5)
egress: not evaluated: the source is outside the cluster, no policy restricts it
ingress of shop/web-0: allowed by 1 rule
  shop/web-ingress: ingress rule 1, from[0] ipBlock 203.0.113.0/24 except 203.0.113.128/25, ports[0] TCP/80
`,
		},
		{
			name: "denied both ways",
			args: QueryArgs{From: "shop/db-0", To: "shop/web-0", Port: "80/tcp"},
			want: `DENY TCP/80 from pod shop/db-0 (10.244.2.9) to pod shop/web-0 (10.244.1.5)
egress of shop/db-0: denied: 1 policy selects the pod for egress and no rule allows this traffic
  shop/default-deny: no egress rules (isolates the pod)
ingress of shop/web-0: denied: 2 policies select the pod for ingress and no rule allows this traffic
  shop/default-deny: no ingress rules (isolates the pod)
  shop/web-ingress: 2 ingress rules, none matches
    rule 0: no peer matches: from[0] namespaceSelector {team=ops}
    rule 1: no peer matches: from[0] ipBlock 203.0.113.0/24 except 203.0.113.128/25
`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			q, err := ParseQuery(tc.args)
			require.NoError(t, err)
			a, err := e.Evaluate(q)
			require.NoError(t, err)
			assert.Equal(t, tc.want, a.Text())
			assert.True(t, strings.HasPrefix(a.Text(), string(a.Verdict)+" "))
			var buf bytes.Buffer
			require.NoError(t, a.WriteText(&buf))
			assert.Equal(t, tc.want, buf.String())
		})
	}
}

func TestExplainJSON(t *testing.T) {
	e := shop(t)
	a, err := e.Evaluate(Query{FromIP: mustAddr(t, "198.51.100.1"), To: PodRef{"shop", "web-0"}, Port: Port{Number: 80}})
	require.NoError(t, err)
	var buf bytes.Buffer
	require.NoError(t, a.WriteJSON(&buf))

	var got map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &got))
	assert.Equal(t, "DENY", got["verdict"])
	assert.Equal(t, map[string]any{"ip": "198.51.100.1"}, got["source"], "an external source has no pod")
	assert.NotContains(t, got, "egress", "an external source has no egress side")
	ing := got["ingress"].(map[string]any)
	assert.Equal(t, false, ing["allowed"])
	assert.Len(t, ing["selecting"], 2)
	assert.Equal(t, []any{}, ing["matches"], "matches is an empty list, not null")

	// The JSON decodes back into the same Answer.
	var back Answer
	require.NoError(t, json.Unmarshal(buf.Bytes(), &back))
	assert.Equal(t, *a, back)
}
