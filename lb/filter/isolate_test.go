package filter_test

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/edgelb/edgelb/lb"
	"github.com/edgelb/edgelb/lb/filter"
	"github.com/edgelb/edgelb/lb/filter/filtertest"
)

// refuseService makes the fake kernel refuse every change that adds an
// allowed range of the virtual services on vip, the way the kernel would
// refuse a set element it cannot take.
func refuseService(k *filtertest.Fake, vip string) {
	bad := netip.MustParseAddr(vip)
	k.Refuse = func(c filter.Changes) error {
		for _, a := range c.AddAllowed {
			if a.Key.VIP == bad {
				return fmt.Errorf("adding %s: no space left on device", a.Key)
			}
		}
		return nil
	}
}

// A Service whose ranges the kernel refuses costs that Service only: its
// ports are closed (every packet dropped), it is reported, and every other
// Service's rules are programmed; the pass itself succeeds, so the host
// stays healthy.
func TestRefusedServiceFailsClosedAlone(t *testing.T) {
	k := filtertest.New()
	refuseService(k, "192.0.2.66")
	f := newFilter(k)
	d := &lb.Desired{}
	for i := range 20 {
		d.Services = append(d.Services, vs(fmt.Sprintf("192.0.2.%d", i+1), 80, lb.TCP, fmt.Sprintf("s%d", i), "10.0.0.0/8"))
	}
	d.Services = append(d.Services,
		vs("192.0.2.66", 80, lb.TCP, "bad", "10.0.0.0/8", "172.16.0.0/12"),
		vs("192.0.2.66", 443, lb.TCP, "bad", "10.0.0.0/8", "172.16.0.0/12"),
		vs("192.0.2.99", 80, lb.TCP, "open"))
	d.Services[len(d.Services)-1].SourceRanges = nil

	if err := f.SyncOnce(d); err != nil {
		t.Fatalf("one refused Service failed the whole pass (the host would be unhealthy): %v", err)
	}
	bad := lb.Source{Namespace: "ns", Name: "bad"}
	for _, s := range d.Services {
		switch s.Source.Name {
		case "bad":
			if !k.State.Closed[s.Key] {
				t.Errorf("%s of the refused Service is not closed", s.Key)
			}
		case "open":
			if k.State.Restricted[s.Key] || k.State.Closed[s.Key] {
				t.Errorf("the unfiltered %s was touched", s.Key)
			}
		default:
			a := filter.Allowed{Key: s.Key, Range: netip.MustParsePrefix("10.0.0.0/8")}
			if !k.State.Restricted[s.Key] || !k.State.Allowed[a] || k.State.Closed[s.Key] {
				t.Errorf("%s of a good Service is not programmed", s.Key)
			}
		}
	}
	failed := f.Failed()
	if len(failed) != 1 || failed[bad] == nil {
		t.Fatalf("Failed() = %v, want only %v", failed, bad)
	}
	if f.LastError() != nil {
		t.Errorf("LastError = %v: a Service's failure is not the host's", f.LastError())
	}

	// The refusal ends: the next pass opens the Service to its ranges and
	// forgets the failure.
	k.Refuse = nil
	if err := f.SyncOnce(d); err != nil {
		t.Fatal(err)
	}
	if c := filter.Diff(k.State, filter.Want(d)); !c.Empty() {
		t.Errorf("after the refusal ended the table differs: %+v", c)
	}
	if len(f.Failed()) != 0 {
		t.Errorf("Failed() = %v after recovery", f.Failed())
	}
}

// What no Service can fix alone is the host's: a table that cannot be
// created, or a Service that cannot even be closed.
func TestHostWideFailures(t *testing.T) {
	d := &lb.Desired{Services: []lb.VirtualService{
		vs("192.0.2.1", 80, lb.TCP, "a", "10.0.0.0/8"),
		vs("192.0.2.2", 80, lb.TCP, "b", "10.0.0.0/8"),
	}}
	t.Run("no table", func(t *testing.T) {
		k := filtertest.New()
		k.Fail = func(m string) error {
			if m == "Apply" || m == "Ensure" {
				return errors.New("netlink: operation not supported")
			}
			return nil
		}
		if err := newFilter(k).SyncOnce(d); err == nil {
			t.Fatal("a table that cannot be created is not the host's failure")
		}
	})
	t.Run("cannot close", func(t *testing.T) {
		k := filtertest.New()
		k.Refuse = func(c filter.Changes) error {
			if len(c.AddRestricted)+len(c.AddClosed) > 0 {
				return errors.New("no space left on device")
			}
			return nil
		}
		f := newFilter(k)
		if err := f.SyncOnce(d); err == nil {
			t.Fatal("Services that cannot be closed left the host healthy")
		}
	})
}

// A restriction the kernel refuses to lift stays as it was (the safe
// side), is no Service's failure and not the host's, and the other
// changes of the pass go in.
func TestRefusedLiftStaysRestricted(t *testing.T) {
	k := filtertest.New()
	f := newFilter(k)
	d := &lb.Desired{Services: []lb.VirtualService{
		vs("192.0.2.1", 80, lb.TCP, "a", "10.0.0.0/8"),
		vs("192.0.2.2", 80, lb.TCP, "b", "10.0.0.0/8"),
	}}
	if err := f.SyncOnce(d); err != nil {
		t.Fatal(err)
	}
	b := d.Services[1].Key
	k.Refuse = func(c filter.Changes) error {
		for _, key := range c.DelRestricted {
			if key == b {
				return errors.New("device or resource busy")
			}
		}
		return nil
	}
	d2 := &lb.Desired{Services: []lb.VirtualService{vs("192.0.2.1", 80, lb.TCP, "a", "172.16.0.0/12"), d.Services[1]}}
	d2.Services[1].SourceRanges = nil
	if err := f.SyncOnce(d2); err != nil {
		t.Fatalf("a refused lift failed the pass: %v", err)
	}
	if len(f.Failed()) != 0 {
		t.Errorf("Failed() = %v: b has no ranges, nothing of it is closed", f.Failed())
	}
	if !k.State.Restricted[b] || k.State.Closed[b] {
		t.Errorf("b's restriction: restricted %v closed %v, want it left as it was", k.State.Restricted[b], k.State.Closed[b])
	}
	if !k.State.Allowed[filter.Allowed{Key: d2.Services[0].Key, Range: netip.MustParsePrefix("172.16.0.0/12")}] {
		t.Error("a's new range is not programmed")
	}
}
