package netpol

import (
	"errors"
	"net/netip"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

type polSpec struct{ ns, name, spec string }

// TestSemantics has one case per clause of the v1 NetworkPolicy semantics. The
// cluster is world(); each case adds policies and asks one question.
func TestSemantics(t *testing.T) {
	const denyIngressA = `{podSelector: {}, policyTypes: [Ingress]}`
	cases := []struct {
		name     string
		policies []polSpec
		q        QueryArgs
		want     Verdict
		egress   string // state() of the egress side
		ingress  string
		matches  []string // nil: not checked; checked in order otherwise
	}{
		{
			name: "no policies: both directions unrestricted",
			q:    QueryArgs{From: "a/y", To: "a/x", Port: "80"},
			want: Allow, egress: "unrestricted", ingress: "unrestricted",
		},
		{
			name:     "policy selects pods in its own namespace only",
			policies: []polSpec{{"b", "deny", denyIngressA}},
			q:        QueryArgs{From: "a/y", To: "a/x", Port: "80"},
			want:     Allow, egress: "unrestricted", ingress: "unrestricted",
		},
		{
			name:     "empty podSelector selects every pod in the namespace",
			policies: []polSpec{{"a", "deny", denyIngressA}},
			q:        QueryArgs{From: "b/x", To: "a/x", Port: "80"},
			want:     Deny, egress: "unrestricted", ingress: "denied",
		},
		{
			name:     "podSelector matchLabels selects only matching pods",
			policies: []polSpec{{"a", "deny-y", `{podSelector: {matchLabels: {app: "y"}}, policyTypes: [Ingress]}`}},
			q:        QueryArgs{From: "a/y", To: "a/x", Port: "80"},
			want:     Allow, egress: "unrestricted", ingress: "unrestricted",
		},
		{
			name: "policies are a union: one isolating, one allowing",
			policies: []polSpec{
				{"a", "deny", denyIngressA},
				{"a", "allow-y", `{podSelector: {matchLabels: {app: x}}, ingress: [{from: [{podSelector: {matchLabels: {app: "y"}}}]}]}`},
			},
			q:    QueryArgs{From: "a/y", To: "a/x", Port: "80"},
			want: Allow, egress: "unrestricted", ingress: "allowed",
			matches: []string{"a/allow-y ingress rule 0 peer 0 port -1"},
		},
		{
			name: "rules are a union: the second rule allows",
			policies: []polSpec{{"a", "two", `{podSelector: {}, ingress: [
				{from: [{podSelector: {matchLabels: {app: nobody}}}]},
				{from: [{podSelector: {matchLabels: {app: "y"}}}], ports: [{port: 80}]}]}`}},
			q:    QueryArgs{From: "a/y", To: "a/x", Port: "80"},
			want: Allow, egress: "unrestricted", ingress: "allowed",
			matches: []string{"a/two ingress rule 1 peer 0 port 0"},
		},
		{
			name:     "every matching rule is reported",
			policies: []polSpec{{"a", "p", `{podSelector: {}, ingress: [{}, {ports: [{port: 80}]}]}`}, {"a", "q", `{podSelector: {}, ingress: [{}]}`}},
			q:        QueryArgs{From: "a/y", To: "a/x", Port: "80"},
			want:     Allow, egress: "unrestricted", ingress: "allowed",
			matches: []string{"a/p ingress rule 0 peer -1 port -1", "a/p ingress rule 1 peer -1 port 0", "a/q ingress rule 0 peer -1 port -1"},
		},
		{
			name:     "policyTypes omitted, no rules: Ingress only, denies all ingress",
			policies: []polSpec{{"a", "p", `{podSelector: {}}`}},
			q:        QueryArgs{From: "a/x", To: "a/y", Port: "8080"},
			want:     Deny, egress: "unrestricted", ingress: "denied",
		},
		{
			name:     "policyTypes omitted with egress rules: Egress applies too",
			policies: []polSpec{{"a", "p", `{podSelector: {matchLabels: {app: x}}, egress: [{to: [{podSelector: {matchLabels: {app: nobody}}}]}]}`}},
			q:        QueryArgs{From: "a/x", To: "b/z", Port: "80"},
			want:     Deny, egress: "denied", ingress: "unrestricted",
		},
		{
			name:     "policyTypes omitted with empty egress list: Egress does not apply",
			policies: []polSpec{{"a", "p", `{podSelector: {matchLabels: {app: x}}, egress: [], ingress: [{}]}`}},
			q:        QueryArgs{From: "a/x", To: "b/z", Port: "80"},
			want:     Allow, egress: "unrestricted", ingress: "unrestricted",
		},
		{
			name:     "policyTypes [Egress] ignores ingress rules and isolates egress",
			policies: []polSpec{{"a", "p", `{podSelector: {}, policyTypes: [Egress], ingress: [{}]}`}},
			q:        QueryArgs{From: "a/x", To: "a/y", Port: "8080"},
			want:     Deny, egress: "denied", ingress: "unrestricted",
		},
		{
			name:     "policyTypes [Ingress] ignores egress rules",
			policies: []polSpec{{"a", "p", `{podSelector: {}, policyTypes: [Ingress], ingress: [{}], egress: [{to: [{ipBlock: {cidr: 192.0.2.0/24}}]}]}`}},
			q:        QueryArgs{From: "a/x", To: "b/z", Port: "80"},
			want:     Allow, egress: "unrestricted", ingress: "unrestricted",
		},
		{
			name: "egress allows but ingress denies: DENY",
			policies: []polSpec{
				{"a", "egress-all", `{podSelector: {}, policyTypes: [Egress], egress: [{}]}`},
				{"b", "deny", `{podSelector: {}}`},
			},
			q:    QueryArgs{From: "a/x", To: "b/z", Port: "80"},
			want: Deny, egress: "allowed", ingress: "denied",
		},
		{
			name: "ingress allows but egress denies: DENY",
			policies: []polSpec{
				{"a", "no-egress", `{podSelector: {}, policyTypes: [Egress]}`},
				{"b", "ingress-all", `{podSelector: {}, ingress: [{}]}`},
			},
			q:    QueryArgs{From: "a/x", To: "b/z", Port: "80"},
			want: Deny, egress: "denied", ingress: "allowed",
		},
		{
			name:     "external source: selector peers never match an IP",
			policies: []polSpec{{"a", "p", `{podSelector: {}, ingress: [{from: [{namespaceSelector: {}}, {podSelector: {}}]}]}`}},
			q:        QueryArgs{FromIP: "192.0.2.10", To: "a/x", Port: "80"},
			want:     Deny, egress: "", ingress: "denied",
		},
		{
			name:     "external source matched by ipBlock",
			policies: []polSpec{{"a", "p", `{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 192.0.2.0/24}}]}]}`}},
			q:        QueryArgs{FromIP: "192.0.2.10", To: "a/x", Port: "80"},
			want:     Allow, egress: "", ingress: "allowed",
			matches: []string{"a/p ingress rule 0 peer 0 port -1"},
		},
		{
			name:     "external source: egress is not evaluated even when the namespace isolates egress",
			policies: []polSpec{{"a", "p", `{podSelector: {}, policyTypes: [Egress]}`}},
			q:        QueryArgs{FromIP: "192.0.2.10", To: "a/x", Port: "80"},
			want:     Allow, egress: "", ingress: "unrestricted",
		},
		{
			name:     "podSelector alone means the policy's namespace",
			policies: []polSpec{{"a", "p", `{podSelector: {}, ingress: [{from: [{podSelector: {matchLabels: {app: x}}}]}]}`}},
			q:        QueryArgs{From: "b/x", To: "a/y", Port: "8080"},
			want:     Deny, egress: "unrestricted", ingress: "denied",
		},
		{
			name:     "namespaceSelector alone means every pod of matching namespaces",
			policies: []polSpec{{"a", "p", `{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {team: b}}}]}]}`}},
			q:        QueryArgs{From: "b/z", To: "a/x", Port: "80"},
			want:     Allow, egress: "unrestricted", ingress: "allowed",
		},
		{
			name:     "namespaceSelector alone excludes other namespaces, including the policy's",
			policies: []polSpec{{"a", "p", `{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {team: b}}}]}]}`}},
			q:        QueryArgs{From: "a/y", To: "a/x", Port: "80"},
			want:     Deny, egress: "unrestricted", ingress: "denied",
		},
		{
			name:     "namespaceSelector and podSelector in one peer: AND (both match)",
			policies: []polSpec{{"a", "p", `{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {team: b}}, podSelector: {matchLabels: {app: x}}}]}]}`}},
			q:        QueryArgs{From: "b/x", To: "a/x", Port: "80"},
			want:     Allow, egress: "unrestricted", ingress: "allowed",
		},
		{
			name:     "namespaceSelector and podSelector in one peer: AND (pod does not match)",
			policies: []polSpec{{"a", "p", `{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {team: b}}, podSelector: {matchLabels: {app: x}}}]}]}`}},
			q:        QueryArgs{From: "b/z", To: "a/x", Port: "80"},
			want:     Deny, egress: "unrestricted", ingress: "denied",
		},
		{
			name:     "namespaceSelector and podSelector in separate peers: OR",
			policies: []polSpec{{"a", "p", `{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {team: b}}}, {podSelector: {matchLabels: {app: "y"}}}]}]}`}},
			q:        QueryArgs{From: "a/y", To: "a/x", Port: "80"},
			want:     Allow, egress: "unrestricted", ingress: "allowed",
			matches: []string{"a/p ingress rule 0 peer 1 port -1"},
		},
		{
			name:     "empty namespaceSelector selects all namespaces",
			policies: []polSpec{{"a", "p", `{podSelector: {}, ingress: [{from: [{namespaceSelector: {}}]}]}`}},
			q:        QueryArgs{From: "c/w", To: "a/x", Port: "80"},
			want:     Allow, egress: "unrestricted", ingress: "allowed",
		},
		{
			name:     "empty podSelector peer selects all pods of the policy's namespace",
			policies: []polSpec{{"a", "p", `{podSelector: {}, ingress: [{from: [{podSelector: {}}]}]}`}},
			q:        QueryArgs{From: "a/y", To: "a/x", Port: "80"},
			want:     Allow, egress: "unrestricted", ingress: "allowed",
		},
		{
			name:     "empty podSelector peer does not reach other namespaces",
			policies: []polSpec{{"a", "p", `{podSelector: {}, ingress: [{from: [{podSelector: {}}]}]}`}},
			q:        QueryArgs{From: "b/x", To: "a/x", Port: "80"},
			want:     Deny, egress: "unrestricted", ingress: "denied",
		},
		{
			name:     "namespaces carry the kubernetes.io/metadata.name label",
			policies: []polSpec{{"a", "p", `{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: c}}}]}]}`}},
			q:        QueryArgs{From: "c/w", To: "a/x", Port: "80"},
			want:     Allow, egress: "unrestricted", ingress: "allowed",
		},
		{
			name:     "matchExpressions In",
			policies: []polSpec{{"a", "p", `{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchExpressions: [{key: env, operator: In, values: [dev, test]}]}}]}]}`}},
			q:        QueryArgs{From: "b/z", To: "a/x", Port: "80"},
			want:     Allow, egress: "unrestricted", ingress: "allowed",
		},
		{
			name:     "matchExpressions NotIn matches a pod without the key",
			policies: []polSpec{{"a", "p", `{podSelector: {}, ingress: [{from: [{podSelector: {matchExpressions: [{key: tier, operator: NotIn, values: [front]}]}}]}]}`}},
			q:        QueryArgs{From: "a/x", To: "a/y", Port: "8080"},
			want:     Allow, egress: "unrestricted", ingress: "allowed",
		},
		{
			name:     "matchExpressions NotIn excludes the listed value",
			policies: []polSpec{{"a", "p", `{podSelector: {}, ingress: [{from: [{podSelector: {matchExpressions: [{key: tier, operator: NotIn, values: [front]}]}}]}]}`}},
			q:        QueryArgs{From: "a/y", To: "a/x", Port: "80"},
			want:     Deny, egress: "unrestricted", ingress: "denied",
		},
		{
			name:     "matchExpressions Exists",
			policies: []polSpec{{"a", "p", `{podSelector: {}, ingress: [{from: [{podSelector: {matchExpressions: [{key: tier, operator: Exists}]}}]}]}`}},
			q:        QueryArgs{From: "a/y", To: "a/x", Port: "80"},
			want:     Allow, egress: "unrestricted", ingress: "allowed",
		},
		{
			name:     "matchExpressions DoesNotExist",
			policies: []polSpec{{"a", "p", `{podSelector: {}, ingress: [{from: [{podSelector: {matchExpressions: [{key: tier, operator: DoesNotExist}]}}]}]}`}},
			q:        QueryArgs{From: "a/y", To: "a/x", Port: "80"},
			want:     Deny, egress: "unrestricted", ingress: "denied",
		},
		{
			name:     "matchLabels and matchExpressions are ANDed",
			policies: []polSpec{{"a", "p", `{podSelector: {matchLabels: {app: x}, matchExpressions: [{key: tier, operator: Exists}]}, policyTypes: [Ingress]}`}},
			q:        QueryArgs{From: "a/y", To: "a/x", Port: "80"},
			want:     Allow, egress: "unrestricted", ingress: "unrestricted",
		},
		{
			name:     "ipBlock matches pod IPs",
			policies: []polSpec{{"a", "p", `{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.1.0/24}}]}]}`}},
			q:        QueryArgs{From: "b/x", To: "a/x", Port: "80"},
			want:     Allow, egress: "unrestricted", ingress: "allowed",
		},
		{
			name:     "ipBlock except carves out addresses",
			policies: []polSpec{{"a", "p", `{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.1.0/24, except: [10.0.1.1/32]}}]}]}`}},
			q:        QueryArgs{From: "b/x", To: "a/x", Port: "80"},
			want:     Deny, egress: "unrestricted", ingress: "denied",
		},
		{
			name:     "ipBlock except leaves the rest of the block",
			policies: []polSpec{{"a", "p", `{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.1.0/24, except: [10.0.1.1/32]}}]}]}`}},
			q:        QueryArgs{From: "b/z", To: "a/x", Port: "80"},
			want:     Allow, egress: "unrestricted", ingress: "allowed",
		},
		{
			name:     "ipBlock except applies to external sources",
			policies: []polSpec{{"a", "p", `{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 192.0.2.0/24, except: [192.0.2.0/28]}}]}]}`}},
			q:        QueryArgs{FromIP: "192.0.2.5", To: "a/x", Port: "80"},
			want:     Deny, egress: "", ingress: "denied",
		},
		{
			name:     "egress ipBlock matches the destination pod's IP",
			policies: []polSpec{{"a", "p", `{podSelector: {}, policyTypes: [Egress], egress: [{to: [{ipBlock: {cidr: 10.0.1.2/32}}]}]}`}},
			q:        QueryArgs{From: "a/x", To: "b/z", Port: "80"},
			want:     Allow, egress: "allowed", ingress: "unrestricted",
		},
		{
			name:     "IPv6 ipBlock matches an IPv6 external source",
			policies: []polSpec{{"b", "p", `{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: "2001:db8::/32"}}]}]}`}},
			q:        QueryArgs{FromIP: "2001:db8::7", To: "b/z", Port: "80"},
			want:     Allow, egress: "", ingress: "allowed",
		},
		{
			name:     "dual-stack destination: the address of the source's family is matched",
			policies: []polSpec{{"a", "p", `{podSelector: {}, policyTypes: [Egress], egress: [{to: [{ipBlock: {cidr: "fd00::/64"}}]}]}`}},
			q:        QueryArgs{From: "a/x", To: "b/z", Port: "80"},
			want:     Deny, egress: "denied", ingress: "unrestricted",
		},
		{
			name:     "named port resolves on the destination (ingress)",
			policies: []polSpec{{"a", "p", `{podSelector: {}, ingress: [{ports: [{port: http}]}]}`}},
			q:        QueryArgs{From: "a/y", To: "a/x", Port: "80"},
			want:     Allow, egress: "unrestricted", ingress: "allowed",
			matches: []string{"a/p ingress rule 0 peer -1 port 0"},
		},
		{
			name:     "named port does not match another number",
			policies: []polSpec{{"a", "p", `{podSelector: {}, ingress: [{ports: [{port: http}]}]}`}},
			q:        QueryArgs{From: "a/x", To: "a/x", Port: "8080"},
			want:     Deny, egress: "unrestricted", ingress: "denied",
		},
		{
			name:     "named port in egress resolves on the destination, not the source",
			policies: []polSpec{{"a", "p", `{podSelector: {matchLabels: {app: "y"}}, policyTypes: [Egress], egress: [{ports: [{port: http}]}]}`}},
			q:        QueryArgs{From: "a/y", To: "a/x", Port: "80"},
			want:     Allow, egress: "allowed", ingress: "unrestricted",
		},
		{
			name:     "named port in egress: the source's own port of that name does not count",
			policies: []polSpec{{"a", "p", `{podSelector: {matchLabels: {app: "y"}}, policyTypes: [Egress], egress: [{ports: [{port: http}]}]}`}},
			q:        QueryArgs{From: "a/y", To: "a/x", Port: "8080"},
			want:     Deny, egress: "denied", ingress: "unrestricted",
		},
		{
			name:     "named port on a destination without that port never matches",
			policies: []polSpec{{"a", "p", `{podSelector: {matchLabels: {app: "y"}}, policyTypes: [Egress], egress: [{ports: [{port: http}]}]}`}},
			q:        QueryArgs{From: "a/y", To: "b/x", Port: "80"},
			want:     Deny, egress: "denied", ingress: "unrestricted",
		},
		{
			name:     "named port matches name and protocol",
			policies: []polSpec{{"a", "p", `{podSelector: {}, ingress: [{ports: [{port: dns, protocol: UDP}]}]}`}},
			q:        QueryArgs{From: "a/y", To: "a/x", Port: "53/udp"},
			want:     Allow, egress: "unrestricted", ingress: "allowed",
		},
		{
			name:     "named port defaults to TCP, so a UDP container port does not match",
			policies: []polSpec{{"a", "p", `{podSelector: {}, ingress: [{ports: [{port: dns}]}]}`}},
			q:        QueryArgs{From: "a/y", To: "a/x", Port: "53/udp"},
			want:     Deny, egress: "unrestricted", ingress: "denied",
		},
		{
			name:     "query by port name resolves on the destination",
			policies: []polSpec{{"a", "p", `{podSelector: {}, ingress: [{ports: [{port: 80}]}]}`}},
			q:        QueryArgs{From: "a/y", To: "a/x", Port: "HTTP/tcp"},
			want:     Allow, egress: "unrestricted", ingress: "allowed",
		},
		{
			name:     "endPort range includes its first port",
			policies: []polSpec{{"a", "p", `{podSelector: {}, ingress: [{ports: [{port: 8000, endPort: 9000}]}]}`}},
			q:        QueryArgs{From: "a/x", To: "a/y", Port: "8000"},
			want:     Allow, egress: "unrestricted", ingress: "allowed",
		},
		{
			name:     "endPort range includes its last port",
			policies: []polSpec{{"a", "p", `{podSelector: {}, ingress: [{ports: [{port: 8000, endPort: 9000}]}]}`}},
			q:        QueryArgs{From: "a/x", To: "a/y", Port: "9000"},
			want:     Allow, egress: "unrestricted", ingress: "allowed",
		},
		{
			name:     "endPort range excludes the next port",
			policies: []polSpec{{"a", "p", `{podSelector: {}, ingress: [{ports: [{port: 8000, endPort: 9000}]}]}`}},
			q:        QueryArgs{From: "a/x", To: "a/y", Port: "9001"},
			want:     Deny, egress: "unrestricted", ingress: "denied",
		},
		{
			name:     "protocol defaults to TCP: UDP on the same port is denied",
			policies: []polSpec{{"a", "p", `{podSelector: {}, ingress: [{ports: [{port: 53}]}]}`}},
			q:        QueryArgs{From: "a/y", To: "a/x", Port: "53/UDP"},
			want:     Deny, egress: "unrestricted", ingress: "denied",
		},
		{
			name:     "UDP rule allows UDP",
			policies: []polSpec{{"a", "p", `{podSelector: {}, ingress: [{ports: [{port: 53, protocol: UDP}]}]}`}},
			q:        QueryArgs{From: "a/y", To: "a/x", Port: "53/udp"},
			want:     Allow, egress: "unrestricted", ingress: "allowed",
		},
		{
			name:     "UDP rule does not allow TCP",
			policies: []polSpec{{"a", "p", `{podSelector: {}, ingress: [{ports: [{port: 53, protocol: UDP}]}]}`}},
			q:        QueryArgs{From: "a/y", To: "a/x", Port: "53"},
			want:     Deny, egress: "unrestricted", ingress: "denied",
		},
		{
			name:     "SCTP rule by name",
			policies: []polSpec{{"a", "p", `{podSelector: {}, ingress: [{ports: [{port: assoc, protocol: SCTP}]}]}`}},
			q:        QueryArgs{From: "a/y", To: "a/x", Port: "9000/sctp"},
			want:     Allow, egress: "unrestricted", ingress: "allowed",
		},
		{
			name:     "protocol without port allows every port of that protocol",
			policies: []polSpec{{"a", "p", `{podSelector: {}, ingress: [{ports: [{protocol: UDP}]}]}`}},
			q:        QueryArgs{From: "a/y", To: "a/x", Port: "12345/udp"},
			want:     Allow, egress: "unrestricted", ingress: "allowed",
		},
		{
			name:     "port entry without port or protocol allows every TCP port only",
			policies: []polSpec{{"a", "p", `{podSelector: {}, ingress: [{ports: [{}]}]}`}},
			q:        QueryArgs{From: "a/y", To: "a/x", Port: "12345/udp"},
			want:     Deny, egress: "unrestricted", ingress: "denied",
		},
		{
			name:     "rule with ports and no peers allows every source on those ports",
			policies: []polSpec{{"a", "p", `{podSelector: {}, ingress: [{ports: [{port: 80}]}]}`}},
			q:        QueryArgs{FromIP: "198.51.100.1", To: "a/x", Port: "80"},
			want:     Allow, egress: "", ingress: "allowed",
		},
		{
			name:     "rule with peers and no ports allows every port",
			policies: []polSpec{{"a", "p", `{podSelector: {}, ingress: [{from: [{podSelector: {}}]}]}`}},
			q:        QueryArgs{From: "a/y", To: "a/x", Port: "9000/sctp"},
			want:     Allow, egress: "unrestricted", ingress: "allowed",
		},
		{
			name:     "empty rule allows everything",
			policies: []polSpec{{"a", "p", `{podSelector: {}, policyTypes: [Ingress, Egress], ingress: [{}], egress: [{}]}`}},
			q:        QueryArgs{From: "a/y", To: "a/x", Port: "9000/sctp"},
			want:     Allow, egress: "allowed", ingress: "allowed",
			matches: []string{"a/p ingress rule 0 peer -1 port -1"},
		},
		{
			name:     "empty ingress list with Ingress type denies all ingress",
			policies: []polSpec{{"a", "p", `{podSelector: {}, policyTypes: [Ingress], ingress: []}`}},
			q:        QueryArgs{From: "a/y", To: "a/x", Port: "80"},
			want:     Deny, egress: "unrestricted", ingress: "denied",
		},
		{
			name:     "absent ingress with Ingress type denies all ingress",
			policies: []polSpec{{"a", "p", `{podSelector: {}, policyTypes: [Ingress]}`}},
			q:        QueryArgs{From: "a/y", To: "a/x", Port: "80"},
			want:     Deny, egress: "unrestricted", ingress: "denied",
		},
		{
			name:     "absent egress with Egress type denies all egress",
			policies: []polSpec{{"a", "p", `{podSelector: {}, policyTypes: [Egress]}`}},
			q:        QueryArgs{From: "a/y", To: "b/x", Port: "80"},
			want:     Deny, egress: "denied", ingress: "unrestricted",
		},
		{
			name:     "empty from list allows all sources",
			policies: []polSpec{{"a", "p", `{podSelector: {}, ingress: [{from: [], ports: [{port: 80}]}]}`}},
			q:        QueryArgs{From: "c/w", To: "a/x", Port: "80"},
			want:     Allow, egress: "unrestricted", ingress: "allowed",
		},
		{
			name:     "policy namespace defaults to default",
			policies: []polSpec{{"", "p", `{podSelector: {}}`}},
			q:        QueryArgs{From: "a/y", To: "a/x", Port: "80"},
			want:     Allow, egress: "unrestricted", ingress: "unrestricted",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			nss, pods := world()
			var nps []*networkingv1.NetworkPolicy
			for _, p := range tc.policies {
				nps = append(nps, pol(t, p.ns, p.name, p.spec))
			}
			var orig []*networkingv1.NetworkPolicy
			for _, np := range nps {
				orig = append(orig, np.DeepCopy())
			}
			e, err := New(nss, pods, nps)
			require.NoError(t, err)
			q, err := ParseQuery(tc.q)
			require.NoError(t, err)
			a, err := e.Evaluate(q)
			require.NoError(t, err)
			assert.Equal(t, tc.want, a.Verdict, a.Text())
			assert.Equal(t, tc.egress, state(a.Egress), "egress\n%s", a.Text())
			assert.Equal(t, tc.ingress, state(a.Ingress), "ingress\n%s", a.Text())
			if tc.matches != nil {
				var got []string
				if a.Ingress.Allowed && !a.Ingress.Unrestricted() {
					got = shorts(a.Ingress.Matches)
				}
				if got == nil && a.Egress != nil {
					got = shorts(a.Egress.Matches)
				}
				assert.Equal(t, tc.matches, got)
			}
			// New must not modify its inputs: informer caches are shared.
			for i, np := range nps {
				assert.Equal(t, orig[i], np, "New modified its input")
			}
		})
	}
}

func TestExplanationNamesDecidingPolicies(t *testing.T) {
	nss, pods := world()
	e, err := New(nss, pods, []*networkingv1.NetworkPolicy{
		pol(t, "a", "isolate", `{podSelector: {}, policyTypes: [Ingress, Egress]}`),
		pol(t, "a", "web", `{podSelector: {matchLabels: {app: x}}, ingress: [{from: [{podSelector: {matchLabels: {app: "y"}}}], ports: [{port: 80}]}]}`),
	})
	require.NoError(t, err)

	a, err := e.Evaluate(Query{From: PodRef{"a", "y"}, To: PodRef{"a", "x"}, Port: Port{Number: 80}})
	require.NoError(t, err)
	assert.Equal(t, Deny, a.Verdict, "a/y's egress is isolated")
	assert.Equal(t, []SelectingPolicy{{Policy: PolicyRef{"a", "isolate"}, Rules: 0}}, a.Egress.Selecting)
	assert.Empty(t, a.Egress.Matches)
	assert.Equal(t, []SelectingPolicy{
		{Policy: PolicyRef{"a", "isolate"}, Rules: 0},
		{Policy: PolicyRef{"a", "web"}, Rules: 1},
	}, a.Ingress.Selecting)
	require.Len(t, a.Ingress.Matches, 1)
	m := a.Ingress.Matches[0]
	assert.Equal(t, RuleMatch{
		Policy: PolicyRef{"a", "web"}, Direction: Ingress, Rule: 0, Peer: 0, Port: 0,
		PeerText: "podSelector {app=y} (policy namespace)", PortText: "TCP/80",
	}, m)
}

func TestEvaluateErrors(t *testing.T) {
	nss, pods := world()
	e, err := New(nss, pods, nil)
	require.NoError(t, err)
	cases := []struct {
		name string
		q    Query
		want string
	}{
		{"unknown destination", Query{From: PodRef{"a", "x"}, To: PodRef{"a", "nope"}, Port: Port{Number: 80}}, "destination unknown pod a/nope"},
		{"unknown source", Query{From: PodRef{"zz", "x"}, To: PodRef{"a", "x"}, Port: Port{Number: 80}}, "source unknown pod zz/x"},
		{"no source", Query{To: PodRef{"a", "x"}, Port: Port{Number: 80}}, "no source"},
		{"both sources", Query{From: PodRef{"a", "y"}, FromIP: netip.MustParseAddr("192.0.2.1"), To: PodRef{"a", "x"}, Port: Port{Number: 80}}, "both"},
		{"unknown port name", Query{From: PodRef{"a", "y"}, To: PodRef{"a", "x"}, Port: Port{Name: "grpc"}}, `no container port named "grpc" with protocol TCP`},
		{"port name with the wrong protocol", Query{From: PodRef{"a", "y"}, To: PodRef{"a", "x"}, Port: Port{Name: "dns"}}, `no container port named "dns" with protocol TCP`},
		{"port out of range", Query{From: PodRef{"a", "y"}, To: PodRef{"a", "x"}, Port: Port{Number: 70000}}, "out of range"},
		{"bad protocol", Query{From: PodRef{"a", "y"}, To: PodRef{"a", "x"}, Port: Port{Number: 80}, Protocol: "ICMP"}, "unsupported protocol"},
		{"external IP that is a pod", Query{FromIP: netip.MustParseAddr("10.0.1.2"), To: PodRef{"a", "x"}, Port: Port{Number: 80}}, "belongs to pod b/z"},
		{"external IPv6 that is a pod", Query{FromIP: netip.MustParseAddr("fd00::2"), To: PodRef{"a", "x"}, Port: Port{Number: 80}}, "belongs to pod b/z"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.Evaluate(tc.q)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	_, err = e.Evaluate(Query{From: PodRef{"a", "x"}, To: PodRef{"a", "nope"}, Port: Port{Number: 80}})
	require.ErrorIs(t, err, ErrUnknownPod)
}

func TestNewRejectsInvalidObjects(t *testing.T) {
	nss, pods := world()
	cases := []struct {
		name string
		np   *networkingv1.NetworkPolicy
		want string
	}{
		{"malformed selector", pol(t, "a", "bad", `{podSelector: {matchExpressions: [{key: app, operator: Exists, values: [x]}]}}`),
			"NetworkPolicy a/bad: spec.podSelector.matchExpressions[0].values: Forbidden"},
		{"unknown operator", pol(t, "a", "bad", `{podSelector: {matchExpressions: [{key: app, operator: Equals, values: [x]}]}}`),
			`spec.podSelector.matchExpressions[0].operator: Invalid value: "Equals"`},
		{"invalid label key", pol(t, "a", "bad", `{podSelector: {matchLabels: {"-bad": x}}}`),
			"spec.podSelector.matchLabels"},
		{"invalid CIDR", pol(t, "a", "bad", `{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: nonsense}}]}]}`),
			`spec.ingress[0].from[0].ipBlock.cidr: Invalid value: "nonsense"`},
		{"missing CIDR", pol(t, "a", "bad", `{podSelector: {}, egress: [{to: [{ipBlock: {cidr: ""}}]}]}`),
			"spec.egress[0].to[0].ipBlock.cidr: Required value"},
		{"except of the other family", pol(t, "a", "bad", `{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: ["fd00::/64"]}}]}]}`),
			"must be a strict subset"},
		{"except equal to cidr", pol(t, "a", "bad", `{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.0.0.0/8]}}]}]}`),
			"must be a strict subset"},
		{"unknown protocol", pol(t, "a", "bad", `{podSelector: {}, ingress: [{ports: [{protocol: ICMP}]}]}`),
			`spec.ingress[0].ports[0].protocol: Unsupported value: "ICMP"`},
		{"port zero", pol(t, "a", "bad", `{podSelector: {}, ingress: [{ports: [{port: 0}]}]}`),
			"spec.ingress[0].ports[0].port: Invalid value: 0"},
		{"endPort without port", pol(t, "a", "bad", `{podSelector: {}, ingress: [{ports: [{endPort: 90}]}]}`),
			"may not be specified when `port` is not specified"},
		{"too many policyTypes", pol(t, "a", "bad", `{podSelector: {}, policyTypes: [Ingress, Egress, Ingress]}`),
			"may not specify more than two policyTypes"},
		{"empty peer", pol(t, "a", "bad", `{podSelector: {}, egress: [{to: [{}]}]}`),
			"spec.egress[0].to[0]: Required value: must specify a peer"},
		{"ipBlock with namespaceSelector", pol(t, "a", "bad", `{podSelector: {}, egress: [{to: [{namespaceSelector: {}, ipBlock: {cidr: 10.0.0.0/8}}]}]}`),
			"may not specify both ipBlock and another peer"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(nss, pods, []*networkingv1.NetworkPolicy{tc.np})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			var oe *ObjectError
			require.ErrorAs(t, err, &oe)
			assert.Equal(t, "NetworkPolicy", oe.Kind)
		})
	}
}

// New accepts the legacy IP and CIDR forms the API server still stores for objects
// created before strict validation, with the API's reading of them.
func TestNewAcceptsLegacyForms(t *testing.T) {
	nss, pods := world()
	pods = append(pods, mkPod("c", "old", nil, []string{"010.000.002.009"}))
	e, err := New(nss, pods, []*networkingv1.NetworkPolicy{
		pol(t, "a", "p", `{podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.2.1/24}}]}]}`),
	})
	require.NoError(t, err)
	a, err := e.Evaluate(Query{From: PodRef{"c", "old"}, To: PodRef{"a", "x"}, Port: Port{Number: 80}})
	require.NoError(t, err)
	assert.Equal(t, Allow, a.Verdict, "10.0.2.1/24 means 10.0.2.0/24, and 010.000.002.009 is 10.0.2.9")
	assert.Equal(t, "10.0.2.9", a.Source.IP.String())
}

func TestNamespaceMissingFromCache(t *testing.T) {
	// An informer may deliver a pod before its namespace: the namespace is
	// assumed to carry only the label the API server always sets.
	e, err := New(nil, []*corev1.Pod{
		mkPod("late", "p", nil, []string{"10.9.0.1"}),
		mkPod("a", "x", nil, []string{"10.9.0.2"}),
	}, []*networkingv1.NetworkPolicy{
		pol(t, "a", "p", `{podSelector: {}, ingress: [{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: late}}}]}]}`),
	})
	require.NoError(t, err)
	a, err := e.Evaluate(Query{From: PodRef{"late", "p"}, To: PodRef{"a", "x"}, Port: Port{Number: 1}})
	require.NoError(t, err)
	assert.Equal(t, Allow, a.Verdict)
}

func TestSidecarNamedPorts(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	p := mkPod("a", "s", nil, []string{"10.0.5.1"})
	p.Spec.InitContainers = []corev1.Container{
		{Name: "proxy", RestartPolicy: &always, Ports: []corev1.ContainerPort{{Name: "proxy", ContainerPort: 15001}}},
		{Name: "init", Ports: []corev1.ContainerPort{{Name: "setup", ContainerPort: 9999}}},
	}
	nss, pods := world()
	e, err := New(nss, append(pods, p), []*networkingv1.NetworkPolicy{
		pol(t, "a", "p", `{podSelector: {}, ingress: [{ports: [{port: proxy}, {port: setup}]}]}`),
	})
	require.NoError(t, err)
	a, err := e.Evaluate(Query{From: PodRef{"a", "x"}, To: PodRef{"a", "s"}, Port: Port{Name: "proxy"}})
	require.NoError(t, err)
	assert.Equal(t, Allow, a.Verdict)
	assert.Equal(t, int32(15001), a.Port)
	_, err = e.Evaluate(Query{From: PodRef{"a", "x"}, To: PodRef{"a", "s"}, Port: Port{Name: "setup"}})
	require.Error(t, err, "a run-to-completion init container serves no traffic")
	a, err = e.Evaluate(Query{From: PodRef{"a", "x"}, To: PodRef{"a", "s"}, Port: Port{Number: 9999}})
	require.NoError(t, err)
	assert.Equal(t, Deny, a.Verdict)
}

func TestNotes(t *testing.T) {
	nss, pods := world()
	host := mkPod("a", "host", nil, []string{"192.168.0.10"})
	host.Spec.HostNetwork = true
	pending := mkPod("a", "pending", nil, nil)
	e, err := New(nss, append(pods, host, pending), nil)
	require.NoError(t, err)

	a, err := e.Evaluate(Query{From: PodRef{"a", "pending"}, To: PodRef{"a", "host"}, Port: Port{Number: 80}})
	require.NoError(t, err)
	assert.Len(t, a.Notes, 2)
	assert.Contains(t, a.Notes[0], "host network")
	assert.Contains(t, a.Notes[1], "has no IP")

	// The node's address is not a pod's identity: querying it as external is fine.
	_, err = e.Evaluate(Query{FromIP: netip.MustParseAddr("192.168.0.10"), To: PodRef{"a", "x"}, Port: Port{Number: 80}})
	assert.NoError(t, err)
}

type sliceLister struct {
	nss  []*corev1.Namespace
	pods []*corev1.Pod
	nps  []*networkingv1.NetworkPolicy
	ci   ClusterInputs
	err  error
}

func (l sliceLister) ListClusterInputs() (ClusterInputs, error) { return l.ci, nil }

func (l sliceLister) ListNamespaces() ([]*corev1.Namespace, error) { return l.nss, nil }
func (l sliceLister) ListPods() ([]*corev1.Pod, error)             { return l.pods, l.err }
func (l sliceLister) ListNetworkPolicies() ([]*networkingv1.NetworkPolicy, error) {
	return l.nps, nil
}

func TestFromLister(t *testing.T) {
	nss, pods := world()
	e, err := FromLister(sliceLister{nss: nss, pods: pods, nps: []*networkingv1.NetworkPolicy{pol(t, "a", "deny", `{podSelector: {}}`)}})
	require.NoError(t, err)
	a, err := e.Evaluate(Query{From: PodRef{"b", "x"}, To: PodRef{"a", "x"}, Port: Port{Number: 80}})
	require.NoError(t, err)
	assert.Equal(t, Deny, a.Verdict)
	assert.Len(t, e.Pods(), len(pods))

	_, err = FromLister(sliceLister{err: errors.New("cache not synced")})
	assert.ErrorContains(t, err, "list pods: cache not synced")
}

func TestConcurrentQueries(t *testing.T) {
	nss, pods := world()
	e, err := New(nss, pods, []*networkingv1.NetworkPolicy{
		pol(t, "a", "p", `{podSelector: {}, policyTypes: [Ingress, Egress], ingress: [{from: [{namespaceSelector: {matchLabels: {team: b}}}]}], egress: [{ports: [{port: http}]}]}`),
	})
	require.NoError(t, err)
	refs := e.Pods()
	want := map[[2]PodRef]Verdict{}
	for _, s := range refs {
		for _, d := range refs {
			a, err := e.Evaluate(Query{From: s, To: d, Port: Port{Number: 80}})
			require.NoError(t, err)
			want[[2]PodRef{s, d}] = a.Verdict
		}
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				s, d := refs[(i+g)%len(refs)], refs[(i*7+g)%len(refs)]
				a, err := e.Evaluate(Query{From: s, To: d, Port: Port{Number: 80}})
				if !assert.NoError(t, err) || !assert.Equal(t, want[[2]PodRef{s, d}], a.Verdict) {
					return
				}
			}
		}()
	}
	wg.Wait()
}
