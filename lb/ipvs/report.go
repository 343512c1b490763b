package ipvs

import (
	"errors"
	"time"
)

// HealthSource is the source under which the Dataplane reports its health
// to Options.Reporter.
const HealthSource = "dataplane"

// Reporter receives the dataplane's health; *cluster.Cluster implements
// it.
//
// Concurrency: SetHealth is called from the goroutine that runs the
// passes (Run, or the caller of SyncOnce), one call at a time and in the
// order the health changed. It must not block — record the value and
// return — or the passes stop with it; it must not call back into the
// Dataplane's pass (SyncOnce, Run). The read-only methods (Status,
// Healthy) may be called from it.
type Reporter interface {
	// SetHealth reports the dataplane's health under HealthSource; err
	// nil means the table is programmed.
	SetHealth(source string, err error)
}

// errNotSynced is the dataplane's health before its first pass.
var errNotSynced = errors.New("not synced yet")

// reportHealth tells Options.Reporter the dataplane's health if it differs
// from what it was last told (healthy or not, and the error's text), or
// if it was told nothing yet. Called by the pass only.
func (d *Dataplane) reportHealth() {
	if d.o.Reporter == nil {
		return
	}
	if err := d.Healthy(); d.reported.Changed(err) {
		d.o.Reporter.SetHealth(HealthSource, err)
	}
}

// syncDone hands the result of a pass to Options.OnSync.
func (d *Dataplane) syncDone(took time.Duration, err error) {
	if d.o.OnSync != nil {
		d.o.OnSync(took, err)
	}
}
