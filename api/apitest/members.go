package apitest

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/edgelb/edgelb/api"
)

// Members is an api.MemberSet whose answers tests set: Add and Remove
// return Err when it is set, and otherwise change Names, refusing a
// member added twice, an unknown one and the last one.
type Members struct {
	mu    sync.Mutex
	Names []string
	Cont  api.Contact
	Err   error
	// Forced records the force flag of the last change asked for.
	Forced bool
}

var _ api.MemberSet = (*Members)(nil)

func (m *Members) Configured() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.Names)
}

func (m *Members) Contact() api.Contact {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.Cont
}

// SetContact changes what Contact answers, safely while a server runs.
func (m *Members) SetContact(c api.Contact) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.Cont = c
}

func (m *Members) Add(ctx context.Context, addr string, force bool) (api.MemberChange, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.Forced = force
	if m.Err != nil {
		return api.MemberChange{}, m.Err
	}
	if slices.Contains(m.Names, addr) {
		return api.MemberChange{}, fmt.Errorf("%w: %s", api.ErrMemberExists, addr)
	}
	m.Names = append(m.Names, addr)
	slices.Sort(m.Names)
	return api.MemberChange{Member: addr, Members: slices.Clone(m.Names)}, nil
}

func (m *Members) Remove(ctx context.Context, name string, force bool) (api.MemberChange, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.Forced = force
	if m.Err != nil {
		return api.MemberChange{}, m.Err
	}
	if !slices.Contains(m.Names, name) {
		return api.MemberChange{}, fmt.Errorf("%w: %q is not a configured member", api.ErrNotFound, name)
	}
	if len(m.Names) == 1 {
		return api.MemberChange{}, &api.RefusedError{Reason: name + " is the last configured member"}
	}
	m.Names = slices.DeleteFunc(m.Names, func(n string) bool { return n == name })
	return api.MemberChange{Member: name, Members: slices.Clone(m.Names)}, nil
}
