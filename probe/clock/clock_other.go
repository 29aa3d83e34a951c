//go:build !windows

package clock

func defaultClock() Clock { return Monotonic{} }
