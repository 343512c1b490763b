package labnet

import (
	"context"
	"testing"
	"time"
)

// The deadline ends the context once the process has run for its time,
// and says so; stopped before, it did not expire.
func TestRunningDeadline(t *testing.T) {
	ctx, stop := runningDeadline(context.Background(), 300*time.Millisecond)
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the deadline never ended the context")
	}
	if _, expired := stop(); !expired {
		t.Error("expired = false after the deadline ended the context")
	}
	ctx, stop = runningDeadline(context.Background(), time.Hour)
	if _, expired := stop(); expired || ctx.Err() == nil {
		t.Errorf("stopped at once: expired %v, context %v; want not expired, and the context ended", expired, ctx.Err())
	}
}
