package main

import (
	"encoding/xml"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/xosprobe/xosprobe/probe"
)

// JUnit XML, the report format CI systems gate on: one test case per step
// (its destination as the class), a failure for a failed step, skipped for a
// skipped or inconclusive one (it proves nothing either way).
type junitSuite struct {
	XMLName  xml.Name    `xml:"testsuite"`
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Skipped  int         `xml:"skipped,attr"`
	Time     string      `xml:"time,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Class   string        `xml:"classname,attr"`
	Name    string        `xml:"name,attr"`
	Time    string        `xml:"time,attr"`
	Failure *junitMessage `xml:"failure,omitempty"`
	Skipped *junitMessage `xml:"skipped,omitempty"`
	Out     string        `xml:"system-out,omitempty"`
}

type junitMessage struct {
	Message string `xml:"message,attr"`
	Text    string `xml:",chardata"`
}

func writeJUnit(path string, rep checkReport) error {
	suite := junitSuite{Name: "xosprobe check on " + rep.OS}
	var total float64
	for _, s := range rep.Steps {
		class := s.To
		if class == "" && rep.Target != nil {
			class = rep.Target.Target
		}
		if class == "" {
			class = "xosprobe"
		}
		c := junitCase{Class: class, Name: string(s.Check)}
		if r := s.Result; r != nil {
			took := runTime(*r)
			c.Time = fmt.Sprintf("%.6f", took.Seconds())
			total += took.Seconds()
			c.Out = timings(r.Phases)
			if s.Runs > 1 {
				c.Out = fmt.Sprintf("%d/%d runs passed; min/p50/max ms: %s", s.Passed, s.Runs, spreads(s.Stats))
			}
		}
		switch s.Status {
		case "fail":
			suite.Failures++
			detail := s.Why
			if s.Result != nil {
				detail = strings.TrimSpace(s.Result.Detail + "\n" + s.Why)
			}
			c.Failure = &junitMessage{Message: failureMessage(s), Text: detail}
		case "skipped", "inconclusive":
			suite.Skipped++
			c.Skipped = &junitMessage{Message: s.Status + ": " + s.Why}
		}
		suite.Cases = append(suite.Cases, c)
	}
	suite.Tests = len(suite.Cases)
	suite.Time = fmt.Sprintf("%.6f", total)
	out, err := xml.MarshalIndent(suite, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append([]byte(xml.Header), append(out, '\n')...), 0o644); err != nil {
		return fmt.Errorf("--junit: %w", err)
	}
	return nil
}

// runTime is a run's duration: its total phase, else its phases' sum.
func runTime(r probe.Result) time.Duration {
	if d, ok := r.Phase(probe.PhaseTotal); ok {
		return d
	}
	var sum time.Duration
	for _, p := range r.Phases {
		sum += p.Duration
	}
	return sum
}

func failureMessage(s checkStep) string {
	if s.Result != nil {
		return string(s.Result.Outcome)
	}
	return "failed"
}
