// Package wire is the versioned format agents use to send probe results to the
// aggregator: the one type both sides share.
//
// A batch is binary, not JSON: the aggregator must decode and merge at least
// 500,000 results a second on one core, and a batch repeats the same few
// strings (check, phase, node, outcome) thousands of times. So every string is
// sent once in a table and results refer to it by index; numbers are varints.
//
//	batch   = magic "XOSP" | version uvarint | id str | agent (pod, node, os) str×3 |
//	          sent varint(unix ns) | count uvarint, str×count (table; entry 0 is "") |
//	          n uvarint | result×n
//	result  = check, dstPod, dstNode, dstOS, outcome  uvarint×5 (table indexes) |
//	          start varint (ns before sent) | phases uvarint, (phase idx, ns)×phases |
//	          rtt ns uvarint (0: none) | rttSource, expected, observed uvarint×3
//	str     = len uvarint | bytes
//
// Decode checks every length, index and limit and names the field at fault, so
// a malformed or hostile batch is rejected with a clear error and never panics.
package wire

import (
	"time"
)

// Version is the format version this package writes and reads.
const Version = 1

// ContentType is the HTTP media type of an encoded batch.
const ContentType = "application/vnd.xosprobe.batch.v1"

// Limits a decoder enforces. Agents split larger batches.
const (
	MaxResults   = 65536
	MaxStrings   = 8192
	MaxStringLen = 253 // a DNS name, the longest string a result carries
	MaxPhases    = 8
	MaxIDLen     = 128
)

// Agent identifies the sender: the source side of every result in a batch.
type Agent struct {
	Pod  string
	Node string
	OS   string
}

// Batch is what one POST carries.
type Batch struct {
	// ID is unique per batch and kept on retries, so the aggregator counts a
	// retried batch once.
	ID      string
	Agent   Agent
	Sent    time.Time
	Results []Result
}

// Phase is one timed phase of a result.
type Phase struct {
	Name     string
	Duration time.Duration
}

// Result is one probe run as the aggregator needs it.
type Result struct {
	Check   string
	DstPod  string
	DstNode string
	DstOS   string
	Outcome string
	Start   time.Time
	Phases  []Phase
	// KernelRTT is 0 when the source could not read it; RTTSource says from where.
	KernelRTT time.Duration
	RTTSource string
	Expected  string // NetworkPolicy verdicts, netpol checks only
	Observed  string
}
