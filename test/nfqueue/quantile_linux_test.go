package nfqueue

import (
	"testing"
	"time"
)

func TestQuantile(t *testing.T) {
	ds := []time.Duration{5, 1, 4, 2, 3, 10, 9, 8, 7, 6} // 1..10, unsorted
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0, 1}, {0.5, 6}, {0.9, 10}, {1, 10}} {
		if got := Quantile(ds, c.q); got != c.want {
			t.Errorf("Quantile(q=%v) = %v, want %v", c.q, got, c.want)
		}
	}
	if got := Median(ds[:5]); got != 3 {
		t.Errorf("Median of 1..5 = %v, want 3", got)
	}
	if got := Median(nil); got != 0 {
		t.Errorf("Median(nil) = %v, want 0", got)
	}
	if ds[0] != 5 {
		t.Error("Quantile sorted its input in place")
	}
}
