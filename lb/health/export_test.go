package health

import (
	"context"
	"time"
)

// CheckDue runs one round of what Run probes: targets without a result and
// those whose interval has passed. It returns the time to the next one.
func (c *Checker) CheckDue(ctx context.Context) time.Duration { return c.check(ctx, dueNow) }
