package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func sampleBatch(n int) *Batch {
	sent := time.Unix(1_790_000_000, 123456789)
	b := &Batch{ID: "xosprobe-agent-abcde/42", Agent: Agent{Pod: "xosprobe-agent-abcde", Node: "win-1", OS: "windows"}, Sent: sent}
	for i := range n {
		r := Result{
			Check: []string{"tcp", "http", "dns", "netpol-deny"}[i%4], DstPod: fmt.Sprintf("agent-%d", i%7),
			DstNode: fmt.Sprintf("node-%d", i%7), DstOS: []string{"linux", "windows"}[i%2],
			Outcome: "success", Start: sent.Add(-time.Duration(i) * time.Millisecond),
			Phases:    []Phase{{"connect", 412 * time.Microsecond}, {"total", time.Duration(i+1) * time.Millisecond}},
			KernelRTT: 57 * time.Microsecond, RTTSource: "tcp_info",
		}
		if r.Check == "netpol-deny" {
			r.Phases, r.KernelRTT, r.RTTSource = nil, 0, ""
			r.Expected, r.Observed, r.Outcome = "deny", "allow", "policy_not_enforced"
		}
		b.Results = append(b.Results, r)
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 13, 1000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			in := sampleBatch(n)
			data, err := Encode(nil, in)
			require.NoError(t, err)
			out, err := Decode(data)
			require.NoError(t, err)
			assert.Equal(t, in.ID, out.ID)
			assert.Equal(t, in.Agent, out.Agent)
			assert.True(t, in.Sent.Equal(out.Sent))
			require.Len(t, out.Results, n)
			for i := range in.Results {
				a, b := in.Results[i], out.Results[i]
				assert.True(t, a.Start.Equal(b.Start), "result %d start", i)
				a.Start, b.Start = time.Time{}, time.Time{}
				if len(a.Phases) == 0 {
					a.Phases = b.Phases // nil and empty are the same on the wire
				}
				assert.Equal(t, a, b, "result %d", i)
			}
		})
	}
}

func TestEncodeRejects(t *testing.T) {
	long := strings.Repeat("x", MaxStringLen+1)
	cases := map[string]func(*Batch){
		"empty id":       func(b *Batch) { b.ID = "" },
		"long id":        func(b *Batch) { b.ID = strings.Repeat("i", MaxIDLen+1) },
		"long string":    func(b *Batch) { b.Results[0].DstNode = long },
		"too many phase": func(b *Batch) { b.Results[0].Phases = make([]Phase, MaxPhases+1) },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			b := sampleBatch(3)
			mutate(b)
			_, err := Encode(nil, b)
			assert.Error(t, err)
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	good, err := Encode(nil, sampleBatch(5))
	require.NoError(t, err)
	header := func(version uint64) []byte { return binary.AppendUvarint([]byte("XOSP"), version) }

	cases := []struct {
		name, want string
		data       []byte
	}{
		{"empty", "bad magic", nil},
		{"json", "bad magic", []byte(`{"id":"x","results":[]}`)},
		{"future version", "version 2 not supported", header(2)},
		{"trailing bytes", "trailing bytes", append(append([]byte{}, good...), 0)},
		{"huge result count", "result count", append(binary.AppendUvarint(appendString(appendString(appendString(appendString(header(1), "id"), ""), ""), ""), 0), 0, 0xff, 0xff, 0xff, 0x0f)},
		{"huge table", "string table size", append(appendString(appendString(appendString(appendString(header(1), "id"), ""), ""), ""), 0, 0xff, 0xff, 0x03)},
		{"string longer than data", "truncated", appendString(header(1), "id")[:len(header(1))+2]},
		{"empty id", "id: empty", appendString(header(1), "")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Decode(tc.data)
			require.Error(t, err)
			assert.Nil(t, b)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	var ve *VersionError
	_, err = Decode(header(2))
	require.ErrorAs(t, err, &ve)
	assert.EqualValues(t, 2, ve.Got)
	_, err = Decode([]byte("nope"))
	assert.ErrorIs(t, err, ErrNotABatch)
}

// Every truncation of a valid batch is an error, never a panic or a partial batch.
func TestDecodeEveryTruncation(t *testing.T) {
	data, err := Encode(nil, sampleBatch(4))
	require.NoError(t, err)
	for i := range len(data) {
		_, err := Decode(data[:i])
		require.Error(t, err, "prefix of %d bytes", i)
	}
}

func TestDecodeIndexOutOfRange(t *testing.T) {
	b := &Batch{ID: "x", Sent: time.Unix(0, 0), Results: []Result{{Check: "tcp", Start: time.Unix(0, 0)}}}
	data, err := Encode(nil, b)
	require.NoError(t, err)
	// The table holds "" and "tcp"; point the check at index 9.
	i := len(data) - 11 // the result is 11 bytes; its first byte is the check index
	require.EqualValues(t, 1, data[i])
	data[i] = 9
	_, err = Decode(data)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "result 0 check")
	assert.Contains(t, err.Error(), "out of range")
}

func FuzzDecode(f *testing.F) {
	for _, n := range []int{0, 1, 4} {
		data, err := Encode(nil, sampleBatch(n))
		require.NoError(f, err)
		f.Add(data)
	}
	f.Add([]byte("XOSP\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := Decode(data)
		if err != nil {
			if b != nil {
				t.Fatal("error with a batch")
			}
			return
		}
		// Whatever decodes must re-encode and decode to the same thing.
		again, err := Encode(nil, b)
		if err != nil {
			if errors.Is(err, ErrNotABatch) {
				t.Fatal(err)
			}
			return // e.g. a duplicate-laden table: valid to read, refused to write at the limits
		}
		b2, err := Decode(again)
		if err != nil {
			t.Fatalf("re-encoded batch does not decode: %v", err)
		}
		if len(b2.Results) != len(b.Results) || b2.ID != b.ID {
			t.Fatal("round trip changed the batch")
		}
	})
}

func BenchmarkDecode(b *testing.B) {
	data, err := Encode(nil, sampleBatch(1000))
	require.NoError(b, err)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(data); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1000, "ns/result")
}

func BenchmarkEncode(b *testing.B) {
	batch := sampleBatch(1000)
	buf := make([]byte, 0, 64<<10)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = Encode(buf[:0], batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1000, "ns/result")
}
