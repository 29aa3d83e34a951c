package kernelrtt

import (
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
)

// The Go mirror must match TCP_INFO_v0 from mstcpip.h byte for byte.
func TestTCPInfoV0Layout(t *testing.T) {
	var info tcpInfoV0
	assert.EqualValues(t, 88, unsafe.Sizeof(info))
	assert.EqualValues(t, 16, unsafe.Offsetof(info.TimestampsEnabled))
	assert.EqualValues(t, 20, unsafe.Offsetof(info.RttUs))
	assert.EqualValues(t, 48, unsafe.Offsetof(info.BytesOut))
	assert.EqualValues(t, 84, unsafe.Offsetof(info.SynRetrans))
}
