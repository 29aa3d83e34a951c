package kernelrtt

import (
	"fmt"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"
)

// sioTCPInfo is SIO_TCP_INFO = _WSAIORW(IOC_VENDOR, 39) from mstcpip.h.
const sioTCPInfo = 0xD8000027

// tcpInfoV0 mirrors TCP_INFO_v0 (Windows 10 1703 / Server 2016 and later).
// Go's natural alignment reproduces the C layout (88 bytes).
type tcpInfoV0 struct {
	State             int32
	Mss               uint32
	ConnectionTimeMs  uint64
	TimestampsEnabled uint8
	RttUs             uint32
	MinRttUs          uint32
	BytesInFlight     uint32
	Cwnd              uint32
	SndWnd            uint32
	RcvWnd            uint32
	RcvBuf            uint32
	BytesOut          uint64
	BytesIn           uint64
	BytesReordered    uint32
	BytesRetrans      uint32
	FastRetrans       uint32
	DupAcksIn         uint32
	TimeoutEpisodes   uint32
	SynRetrans        uint8
}

func readFD(fd uintptr) Sample {
	version := uint32(0)
	var info tcpInfoV0
	var returned uint32
	err := windows.WSAIoctl(windows.Handle(fd), sioTCPInfo,
		(*byte)(unsafe.Pointer(&version)), uint32(unsafe.Sizeof(version)),
		(*byte)(unsafe.Pointer(&info)), uint32(unsafe.Sizeof(info)),
		&returned, nil, 0)
	if err == windows.WSAEOPNOTSUPP || err == windows.WSAEINVAL {
		return Sample{Unavailable: "SIO_TCP_INFO v0 not supported by this Windows (needs Server 2016 / Windows 10 1703 or later; Wine lacks it)"}
	}
	if err != nil {
		return Sample{Unavailable: "WSAIoctl SIO_TCP_INFO: " + err.Error()}
	}
	if returned < uint32(unsafe.Offsetof(info.MinRttUs)) {
		return Sample{Unavailable: fmt.Sprintf("SIO_TCP_INFO returned %d bytes, too short for RttUs", returned)}
	}
	if info.RttUs == 0 {
		return Sample{Unavailable: "SIO_TCP_INFO has no RTT sample yet"}
	}
	return Sample{RTT: time.Duration(info.RttUs) * time.Microsecond, Source: SourceSIOTCPInfo}
}
