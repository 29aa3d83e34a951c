package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

var magic = [4]byte{'X', 'O', 'S', 'P'}

// Encode appends the encoding of b to dst and returns it.
func Encode(dst []byte, b *Batch) ([]byte, error) {
	if len(b.ID) == 0 || len(b.ID) > MaxIDLen {
		return nil, fmt.Errorf("batch id: length %d, want 1-%d", len(b.ID), MaxIDLen)
	}
	if len(b.Results) > MaxResults {
		return nil, fmt.Errorf("batch has %d results, limit %d", len(b.Results), MaxResults)
	}
	table := []string{""}
	index := map[string]uint64{"": 0}
	intern := func(s string) uint64 {
		if i, ok := index[s]; ok {
			return i
		}
		i := uint64(len(table))
		table = append(table, s)
		index[s] = i
		return i
	}
	// Results first, into a scratch buffer, so the table is complete before it is written.
	body := make([]byte, 0, 32*len(b.Results))
	sent := b.Sent.UnixNano()
	for i := range b.Results {
		r := &b.Results[i]
		if len(r.Phases) > MaxPhases {
			return nil, fmt.Errorf("result %d: %d phases, limit %d", i, len(r.Phases), MaxPhases)
		}
		for _, s := range []string{r.Check, r.DstPod, r.DstNode, r.DstOS, r.Outcome} {
			body = binary.AppendUvarint(body, intern(s))
		}
		body = binary.AppendVarint(body, sent-r.Start.UnixNano())
		body = binary.AppendUvarint(body, uint64(len(r.Phases)))
		for _, p := range r.Phases {
			body = binary.AppendUvarint(body, intern(p.Name))
			body = binary.AppendUvarint(body, uint64(max(p.Duration, 0)))
		}
		body = binary.AppendUvarint(body, uint64(max(r.KernelRTT, 0)))
		for _, s := range []string{r.RTTSource, r.Expected, r.Observed} {
			body = binary.AppendUvarint(body, intern(s))
		}
	}
	if len(table) > MaxStrings {
		return nil, fmt.Errorf("batch has %d distinct strings, limit %d", len(table), MaxStrings)
	}
	for _, s := range table {
		if len(s) > MaxStringLen {
			return nil, fmt.Errorf("string %.40q... is %d bytes, limit %d", s, len(s), MaxStringLen)
		}
	}
	dst = append(dst, magic[:]...)
	dst = binary.AppendUvarint(dst, Version)
	dst = appendString(dst, b.ID)
	dst = appendString(dst, b.Agent.Pod)
	dst = appendString(dst, b.Agent.Node)
	dst = appendString(dst, b.Agent.OS)
	dst = binary.AppendVarint(dst, sent)
	dst = binary.AppendUvarint(dst, uint64(len(table)-1)) // entry 0, "", is implied
	for _, s := range table[1:] {
		dst = appendString(dst, s)
	}
	dst = binary.AppendUvarint(dst, uint64(len(b.Results)))
	return append(dst, body...), nil
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// ErrNotABatch is returned for input that does not start with the magic bytes.
var ErrNotABatch = errors.New("not an xosprobe batch (bad magic)")

// VersionError is returned for a batch of a version this build cannot read.
type VersionError struct{ Got uint64 }

func (e *VersionError) Error() string {
	return fmt.Sprintf("batch format version %d not supported (this aggregator reads %d)", e.Got, Version)
}

// decoder reads from buf, remembering the first error and the field it was reading.
type decoder struct {
	buf []byte
	err error
}

func (d *decoder) fail(field string, format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...))
	}
}

func (d *decoder) uvarint(field string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.buf)
	if n <= 0 {
		d.fail(field, "truncated or overlong varint")
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *decoder) varint(field string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.buf)
	if n <= 0 {
		d.fail(field, "truncated or overlong varint")
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *decoder) str(field string, limit int) string {
	n := d.uvarint(field + " length")
	if d.err != nil {
		return ""
	}
	if n > uint64(limit) {
		d.fail(field, "%d bytes, limit %d", n, limit)
		return ""
	}
	if n > uint64(len(d.buf)) {
		d.fail(field, "truncated: want %d bytes, have %d", n, len(d.buf))
		return ""
	}
	s := string(d.buf[:n])
	d.buf = d.buf[n:]
	return s
}

// Decode parses one batch. Strings in the results share the batch's table,
// so decoding allocates per distinct string, not per result.
func Decode(data []byte) (*Batch, error) {
	if len(data) < len(magic) || [4]byte(data[:4]) != magic {
		return nil, ErrNotABatch
	}
	d := &decoder{buf: data[4:]}
	if v := d.uvarint("version"); d.err == nil && v != Version {
		return nil, &VersionError{Got: v}
	}
	b := &Batch{}
	b.ID = d.str("id", MaxIDLen)
	if d.err == nil && b.ID == "" {
		d.fail("id", "empty")
	}
	b.Agent.Pod = d.str("agent pod", MaxStringLen)
	b.Agent.Node = d.str("agent node", MaxStringLen)
	b.Agent.OS = d.str("agent os", MaxStringLen)
	sent := d.varint("sent")
	b.Sent = time.Unix(0, sent)

	count := d.uvarint("string table size")
	if d.err == nil && count >= MaxStrings {
		d.fail("string table size", "%d, limit %d", count, MaxStrings-1)
	}
	if d.err != nil {
		return nil, d.err
	}
	table := make([]string, 1, count+1)
	for i := uint64(0); i < count && d.err == nil; i++ {
		table = append(table, d.str(fmt.Sprintf("string %d", i+1), MaxStringLen))
	}
	n := d.uvarint("result count")
	if d.err == nil && n > MaxResults {
		d.fail("result count", "%d, limit %d", n, MaxResults)
	}
	// Each result takes at least 11 bytes: refuse counts the payload cannot hold
	// before allocating for them.
	if d.err == nil && n > uint64(len(d.buf))/11 {
		d.fail("result count", "%d results cannot fit in %d bytes", n, len(d.buf))
	}
	if d.err != nil {
		return nil, d.err
	}
	ref := func(i uint64, field string) string {
		idx := d.uvarint(field)
		if d.err == nil && idx >= uint64(len(table)) {
			d.fail(fmt.Sprintf("result %d %s", i, field), "string index %d out of range (table has %d)", idx, len(table))
			return ""
		}
		return table[idx]
	}
	b.Results = make([]Result, n)
	phases := make([]Phase, 0, n*3) // one backing array for all results' phases
	for i := uint64(0); i < n && d.err == nil; i++ {
		r := &b.Results[i]
		r.Check = ref(i, "check")
		r.DstPod = ref(i, "dst pod")
		r.DstNode = ref(i, "dst node")
		r.DstOS = ref(i, "dst os")
		r.Outcome = ref(i, "outcome")
		r.Start = time.Unix(0, sent-d.varint("start"))
		np := d.uvarint("phase count")
		if d.err == nil && np > MaxPhases {
			d.fail(fmt.Sprintf("result %d phase count", i), "%d, limit %d", np, MaxPhases)
		}
		first := len(phases)
		for j := uint64(0); j < np && d.err == nil; j++ {
			name := ref(i, "phase name")
			ns := d.uvarint("phase duration")
			if d.err == nil && ns > uint64(time.Hour) {
				d.fail(fmt.Sprintf("result %d phase %s", i, name), "duration %d ns is over an hour", ns)
			}
			phases = append(phases, Phase{Name: name, Duration: time.Duration(ns)})
		}
		r.Phases = phases[first:len(phases):len(phases)]
		rtt := d.uvarint("kernel rtt")
		if d.err == nil && rtt > uint64(time.Hour) {
			d.fail(fmt.Sprintf("result %d kernel rtt", i), "%d ns is over an hour", rtt)
		}
		r.KernelRTT = time.Duration(rtt)
		r.RTTSource = ref(i, "rtt source")
		r.Expected = ref(i, "expected")
		r.Observed = ref(i, "observed")
		if d.err == nil && r.Check == "" {
			d.fail(fmt.Sprintf("result %d check", i), "empty")
		}
	}
	if d.err == nil && len(d.buf) != 0 {
		d.fail("batch", "%d trailing bytes", len(d.buf))
	}
	if d.err != nil {
		return nil, d.err
	}
	return b, nil
}
