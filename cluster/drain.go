package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
)

// ErrNoMember is AskDrain's error for a name that is not a live member.
var ErrNoMember = errors.New("no such live member")

// drainMsgPrefix marks a message that asks its recipient to drain or
// undrain itself.
const drainMsgPrefix = 'm'

type drainMsg struct {
	From  string `json:"from"`
	To    string `json:"to"`
	Drain bool   `json:"drain"`
}

// AskDrain drains (on) or undrains the member name: this one at once,
// another by a message over the encrypted gossip transport (TCP), which
// that member acts on as if its own API had been asked. It returns once
// the message is delivered; the member's metadata then shows the change.
// With Insecure it asks no other member (ErrInsecure): none would obey.
func (c *Cluster) AskDrain(name string, on bool) error {
	if name == c.opts.Name {
		if on {
			c.Drain()
		} else {
			c.Undrain()
		}
		return nil
	}
	if c.opts.Insecure {
		return fmt.Errorf("asking %s: %w", name, ErrInsecure)
	}
	ml := c.ml.Load()
	if ml == nil {
		return fmt.Errorf("%w: gossip is not running", ErrNoMember)
	}
	n, ok := c.view.get(name)
	if !ok {
		return fmt.Errorf("%w: %q", ErrNoMember, name)
	}
	msg, err := json.Marshal(drainMsg{From: c.opts.Name, To: name, Drain: on})
	if err != nil {
		return err
	}
	if err := ml.SendReliable(n.node(), append([]byte{drainMsgPrefix}, msg...)); err != nil {
		return fmt.Errorf("asking %s: %w", name, err)
	}
	return nil
}

// drainMsg acts on a peer's AskDrain.
func (c *Cluster) drainMsg(b []byte) {
	var m drainMsg
	if err := json.Unmarshal(b[1:], &m); err != nil || m.To != c.opts.Name {
		c.log.Debug("ignoring a drain message", "err", err, "to", m.To)
		return
	}
	if c.opts.Insecure {
		c.refuse(refusedDrain, m.From)
		return
	}
	c.log.Info("asked by a peer", "from", m.From, "drain", m.Drain)
	if m.Drain {
		c.Drain()
	} else {
		c.Undrain()
	}
}
