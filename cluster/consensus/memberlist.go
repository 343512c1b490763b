package consensus

import (
	"errors"
	"fmt"

	"github.com/hashicorp/memberlist"
)

// MsgPrefix is the first byte of a raft message on memberlist's user
// channel (cluster's own messages use 'd' and 'm').
const MsgPrefix = 'r'

// maxPacket is the largest frame sent as a UDP packet: it leaves room in
// memberlist's default 1400-byte UDP buffer for its headers, the
// encryption and a compound message.
const maxPacket = 1000

// Memberlist carries raft messages over memberlist's user channel,
// encrypted and authenticated with the gossip keyring when one is set, so
// raft needs no listener, certificate or key of its own. A small message
// (heartbeats, votes, acknowledgements: most of them) goes as one UDP
// packet (SendBestEffort), a larger one over TCP (SendReliable, a
// connection per message); raft tolerates the loss and reordering of
// either. A frame is MsgPrefix, the sender's name (one length byte, then the
// name), then the message: memberlist's NotifyMsg does not say who sent
// a message, and the keyring vouches that the sender is a member.
//
// The daemon's cluster delegate offers every message to Handle before
// its own prefixes (cluster.Options.Messages).
type Memberlist struct {
	// Self is this member's name, written in every frame.
	Self string
	// List is the running memberlist; the peer is looked up at each
	// send, as its address may change.
	List *memberlist.Memberlist
	// SendFrame, when set, replaces List: it sends a frame to the member
	// named to, over TCP when reliable, else as one packet. The daemon's
	// members are named by gossip address (cluster.Cluster.SendTo).
	SendFrame func(to string, frame []byte, reliable bool) error
}

var _ Transport = (*Memberlist)(nil)

// Send sends msg to the member named to.
func (t *Memberlist) Send(to string, msg []byte) error {
	if len(t.Self) > 255 {
		return fmt.Errorf("member name %q is longer than 255 bytes", t.Self)
	}
	frame := make([]byte, 0, 2+len(t.Self)+len(msg))
	frame = append(frame, MsgPrefix, byte(len(t.Self)))
	frame = append(frame, t.Self...)
	frame = append(frame, msg...)
	if t.SendFrame != nil {
		return t.SendFrame(to, frame, len(frame) > maxPacket)
	}
	for _, m := range t.List.Members() {
		if m.Name == to {
			if len(frame) <= maxPacket {
				return t.List.SendBestEffort(m, frame)
			}
			return t.List.SendReliable(m, frame)
		}
	}
	return fmt.Errorf("member %q is not in the memberlist", to)
}

// Handle delivers a frame received by memberlist's NotifyMsg to n; it
// reports whether the frame was a raft message. memberlist reuses b
// after NotifyMsg returns, and Deliver decodes it before returning.
func Handle(n *Node, b []byte) bool {
	if len(b) == 0 || b[0] != MsgPrefix {
		return false
	}
	from, msg, err := parseFrame(b)
	if err != nil {
		n.log.Debug("decoding a raft frame", "err", err)
		return true
	}
	n.Deliver(from, msg)
	return true
}

func parseFrame(b []byte) (from string, msg []byte, err error) {
	if len(b) < 2 || len(b) < 2+int(b[1]) {
		return "", nil, errors.New("short raft frame")
	}
	l := int(b[1])
	return string(b[2 : 2+l]), b[2+l:], nil
}
