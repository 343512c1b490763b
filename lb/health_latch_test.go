package lb

import (
	"errors"
	"testing"
)

func TestHealthLatchReportsChangesOnly(t *testing.T) {
	var l HealthLatch
	for i, step := range []struct {
		err  error
		want bool
	}{
		{nil, true}, // the first report
		{nil, false},
		{errors.New("no IPVS"), true},
		{errors.New("no IPVS"), false},
		{errors.New("table unreadable"), true}, // another reason
		{nil, true},
	} {
		if got := l.Changed(step.err); got != step.want {
			t.Errorf("step %d (%v): Changed = %v, want %v", i, step.err, got, step.want)
		}
	}
}
