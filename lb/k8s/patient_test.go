package k8s

import (
	"errors"
	"fmt"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// The informers' list and watch keep trying while the API server cannot
// be reached or answers 429/5xx, and hand any other answer to the
// reflector at once; closing stop ends the wait.
func TestRetryWhileTheAPIServerIsAway(t *testing.T) {
	refused := fmt.Errorf("dial tcp 10.0.0.1:6443: %w", syscall.ECONNREFUSED)
	gr := schema.GroupResource{Resource: "services"}
	for _, c := range []struct {
		name  string
		errs  []error // returned by the successive calls, then success
		calls int
		err   error
	}{
		{"answers at once", nil, 1, nil},
		{"refused, then back", []error{refused, refused, refused}, 4, nil},
		{"unavailable, then back", []error{apierrors.NewServiceUnavailable("starting"), apierrors.NewTooManyRequests("busy", 1)}, 3, nil},
		{"forbidden is final", []error{apierrors.NewForbidden(gr, "", errors.New("rbac"))}, 1, apierrors.NewForbidden(gr, "", errors.New("rbac"))},
		{"gone is final: the reflector lists again", []error{apierrors.NewResourceExpired("too old")}, 1, apierrors.NewResourceExpired("too old")},
	} {
		calls := 0
		v, err := retry(make(chan struct{}), time.Millisecond, func() (int, error) {
			calls++
			if calls <= len(c.errs) {
				return 0, c.errs[calls-1]
			}
			return 42, nil
		})
		if calls != c.calls || (err == nil) != (c.err == nil) || (err == nil && v != 42) {
			t.Errorf("%s: %d calls, %v, %v; want %d calls, error %v", c.name, calls, v, err, c.calls, c.err)
		}
	}
	stop := make(chan struct{})
	close(stop)
	calls := 0
	if _, err := retry(stop, time.Hour, func() (int, error) { calls++; return 0, refused }); !errors.Is(err, syscall.ECONNREFUSED) || calls != 1 {
		t.Errorf("after stop: %d calls, %v; want 1 call and the error", calls, err)
	}
}
