package consensus

import (
	"context"
	"sync"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Transport carries raft messages between members. Send may block (a TCP
// connection, a slow peer): the Node calls it from one goroutine per peer,
// never from its Ready loop, and treats an error as the message lost,
// which raft tolerates. The owner hands each message received to
// Node.Deliver with the sender's name; the transport must authenticate
// the sender (memberlist's keyring does), as raft trusts what it is told.
type Transport interface {
	Send(to string, msg []byte) error
}

// sendQueue bounds the messages waiting for one peer: past it they are
// dropped and raft is told the peer is unreachable, so that a dead peer
// never holds up the others or the Ready loop.
const sendQueue = 256

// sender delivers the messages for one peer, in order.
type sender struct {
	q chan *pb.Message
}

// senders owns the per-peer goroutines of one Run.
type senders struct {
	n      *Node
	rn     raft.Node
	ctx    context.Context
	wg     sync.WaitGroup
	byPeer map[uint64]*sender
}

func (s *senders) send(msgs []*pb.Message) {
	for _, m := range msgs {
		to := m.GetTo()
		p, ok := s.byPeer[to]
		if !ok {
			p = &sender{q: make(chan *pb.Message, sendQueue)}
			s.byPeer[to] = p
			s.wg.Add(1)
			go s.loop(to, p)
		}
		select {
		case p.q <- m:
		default:
			s.failed(m)
		}
	}
}

func (s *senders) loop(to uint64, p *sender) {
	defer s.wg.Done()
	for {
		select {
		case <-s.ctx.Done():
			return
		case m := <-p.q:
			name, ok := s.n.nameOf(to)
			if !ok {
				s.n.log.Debug("dropping a raft message to a member of unknown name", "id", to)
				s.failed(m)
				continue
			}
			b, err := proto.Marshal(m)
			if err == nil {
				err = s.n.opts.Transport.Send(name, b)
			}
			if err != nil {
				s.n.log.Debug("sending a raft message", "node", name, "err", err)
				s.failed(m)
				continue
			}
			if m.GetType() == pb.MsgSnap {
				s.rn.ReportSnapshot(to, raft.SnapshotFinish)
			}
		}
	}
}

// failed tells raft a message did not leave, so that it probes the peer
// again instead of streaming to it (and retries a snapshot).
func (s *senders) failed(m *pb.Message) {
	s.rn.ReportUnreachable(m.GetTo())
	if m.GetType() == pb.MsgSnap {
		s.rn.ReportSnapshot(m.GetTo(), raft.SnapshotFailure)
	}
}

func (s *senders) wait() { s.wg.Wait() }
