package netpol

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Text renders the answer for humans. The first word is ALLOW, DENY or UNKNOWN,
// so scripts can cut it. An UNKNOWN caused by unmodelled policy kinds is
// followed by those objects and by what the modelled policies alone decide;
// then come each direction's deciding layer, policies and rules.
//
//	DENY TCP/5432 from pod shop/web-0 (10.1.0.5) to pod shop/db-0 (10.1.0.9)
//	egress of shop/web-0: unrestricted: no policy selects the pod for egress
//	ingress of shop/db-0: denied: 1 policy selects the pod for ingress and no rule allows this traffic
//	  shop/default-deny: no ingress rules (isolates the pod)
func (a *Answer) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s/%s from %s to %s\n", a.Verdict, a.Protocol, portLabel(a.PortName, a.Port), a.Source, a.Destination)
	if len(a.Unmodelled) > 0 {
		fmt.Fprintf(&b, "unknown: %s of kinds this evaluator does not model %s to this traffic:\n",
			plural(len(a.Unmodelled), "policy object"), map[bool]string{true: "applies", false: "apply"}[len(a.Unmodelled) == 1])
		for _, f := range a.Unmodelled {
			b.WriteString("  " + f.String() + "\n")
		}
		fmt.Fprintf(&b, "modelled policies alone: %s\n", a.Modelled)
	}
	if a.Egress == nil {
		b.WriteString("egress: not evaluated: the source is outside the cluster, no policy restricts it\n")
	} else {
		writeDirection(&b, a.Egress)
	}
	writeDirection(&b, a.Ingress)
	for _, f := range a.NotEnforcing {
		b.WriteString("ignored: " + f.String() + "\n")
	}
	for _, n := range a.Notes {
		b.WriteString("note: " + n + "\n")
	}
	return b.String()
}

// WriteText writes Text to w.
func (a *Answer) WriteText(w io.Writer) error {
	_, err := io.WriteString(w, a.Text())
	return err
}

// WriteJSON writes the answer as one indented JSON object.
func (a *Answer) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(a)
}

func portLabel(name string, num int32) string {
	if name != "" {
		return name + "(" + strconv.Itoa(int(num)) + ")"
	}
	return strconv.Itoa(int(num))
}

func writeDirection(b *strings.Builder, d *DirectionResult) {
	fmt.Fprintf(b, "%s of %s: ", d.Direction, d.Pod)
	peers := "from"
	if d.Direction == Egress {
		peers = "to"
	}
	switch {
	case d.Verdict == Unknown:
		fmt.Fprintf(b, "unknown: the outcome depends on what the objects do not show\n")
		for _, u := range d.Uncertain {
			b.WriteString("  ? " + u + "\n")
		}
	case d.DecidedBy == LayerAdmin || d.DecidedBy == LayerBaseline:
		fmt.Fprintf(b, "%s by the %s tier\n", map[bool]string{true: "allowed", false: "denied"}[d.Allowed],
			strings.ToLower(strings.TrimSuffix(string(d.DecidedBy), "Tier")))
	case d.Unrestricted() && len(d.Cluster) == 0:
		fmt.Fprintf(b, "unrestricted: no policy selects the pod for %s\n", d.Direction)
	case d.Unrestricted():
		fmt.Fprintf(b, "allowed: no rule decides, so the default applies\n")
	case d.Allowed:
		fmt.Fprintf(b, "allowed by %s\n", plural(len(d.Matches), "rule"))
	default:
		verb := "selects"
		if len(d.Selecting) > 1 {
			verb = "select"
		}
		fmt.Fprintf(b, "denied: %s %s the pod for %s and no rule allows this traffic\n",
			plural(len(d.Selecting), "policy"), verb, d.Direction)
	}
	for _, c := range d.Cluster {
		fmt.Fprintf(b, "  %s tier: %s", strings.ToLower(strings.TrimSuffix(string(c.Tier), "Tier")), c.Policy)
		if c.Priority != nil {
			fmt.Fprintf(b, " (priority %d)", *c.Priority)
		}
		fmt.Fprintf(b, " %s rule %s: %s, %s[%d] %s, %s", c.Direction, ruleLabel(c), c.Action, peers, c.Peer, c.PeerText, c.PortText)
		if c.Uncertain != "" {
			b.WriteString(" (may match: " + c.Uncertain + ")")
		}
		b.WriteString("\n")
	}
	for _, m := range d.Matches {
		fmt.Fprintf(b, "  %s: %s rule %d, ", m.Policy, m.Direction, m.Rule)
		if m.Peer < 0 {
			b.WriteString(m.PeerText)
		} else {
			fmt.Fprintf(b, "%s[%d] %s", peers, m.Peer, m.PeerText)
		}
		if m.Port < 0 {
			b.WriteString(", " + m.PortText + "\n")
		} else {
			fmt.Fprintf(b, ", ports[%d] %s\n", m.Port, m.PortText)
		}
	}
	if d.Allowed && len(d.Matches) > 0 {
		return
	}
	for _, s := range d.Selecting {
		if s.Rules == 0 {
			fmt.Fprintf(b, "  %s: no %s rules (isolates the pod)\n", s.Policy, d.Direction)
			continue
		}
		if len(s.Misses) == 0 {
			continue
		}
		fmt.Fprintf(b, "  %s: %s, none matches\n", s.Policy, plural(s.Rules, string(d.Direction)+" rule"))
		for _, m := range s.Misses {
			why := m.Peers
			if why == "" {
				why = m.Ports
			}
			fmt.Fprintf(b, "    rule %d: %s\n", m.Rule, why)
		}
	}
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	if strings.HasSuffix(noun, "y") {
		return strconv.Itoa(n) + " " + strings.TrimSuffix(noun, "y") + "ies"
	}
	return strconv.Itoa(n) + " " + noun + "s"
}
