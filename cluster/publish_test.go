package cluster

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// droppingPublisher is memberlist as a refutation leaves it: the first
// updates of the metadata are dropped (their incarnation is older than
// the refutation's), the state keeps what the refutation carried.
type droppingPublisher struct {
	drop    int
	updates int
	node    memberlist.Node
	meta    func() []byte
}

func (p *droppingPublisher) UpdateNode(time.Duration) error {
	p.updates++
	if p.updates > p.drop {
		p.node.Meta = p.meta()
	}
	return nil
}

func (p *droppingPublisher) LocalNode() *memberlist.Node { return &p.node }

// An update memberlist dropped is made again until its state holds the
// current metadata: otherwise every push/pull would send the old one and
// the peers' copies would stay behind what the heartbeats say.
func TestPublishMetaAgainWhenDropped(t *testing.T) {
	current := []byte("v2")
	p := &droppingPublisher{drop: 2, node: memberlist.Node{Meta: []byte("v1")}}
	p.meta = func() []byte { return current }
	publishMeta(context.Background(), p, p.meta, time.Millisecond)
	if string(p.node.Meta) != "v2" || p.updates != 3 {
		t.Errorf("memberlist's state %q after %d updates, want v2 after 3", p.node.Meta, p.updates)
	}
	// Taken at once: one update.
	p.updates, p.drop, current = 0, 0, []byte("v3")
	publishMeta(context.Background(), p, p.meta, time.Millisecond)
	if string(p.node.Meta) != "v3" || p.updates != 1 {
		t.Errorf("memberlist's state %q after %d updates, want v3 after 1", p.node.Meta, p.updates)
	}
	// A stopped member stops trying.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p.updates, p.drop, current = 0, 1000, []byte("v4")
	publishMeta(ctx, p, p.meta, time.Millisecond)
	if p.updates != 1 {
		t.Errorf("%d updates after the end, want 1", p.updates)
	}
}
