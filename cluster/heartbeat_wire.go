package cluster

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// A heartbeat on the wire (UDP), sealed with AES-GCM under the gossip
// key (the memberlist keyring's primary key; every key of the keyring is
// tried on receipt, so a key rotation does not stop them):
//
//	version (1) | nonce (12) | sealed payload
//
// and the payload, before sealing:
//
//	seq (8, big endian) | from | to | n (1) | n × (name | age in ms (2)) | extensions
//
// where extensions are zero or more of type (1) | length (1) | value,
// skipped when their type is unknown. Releases before the extensions read
// up to the reports and ignore what follows, so a heartbeat that carries
// some is still a valid heartbeat to them; one without any (from such a
// release) carries no versions, which means "unknown", never "stale".
// Extension 1 (extOwnerVersions) is the sender's owner versions
// (viewcheck.go, Meta.OwnerVersion): sender (8) | receiver (8), the
// version of the sender's own Meta and that of its copy of the
// receiver's. Extension 2 (extPathFailing, empty) says the sender's data
// path fails (Meta.DataPathFailing, from its first bad round): the peers
// learn of a shared gateway's death within a heartbeat interval, where
// gossip may take rounds on a loaded host (vip/datapath). A change of
// their meaning takes a new type.
//
// where each name is one length byte and the bytes. seq is the sender's
// wall clock in nanoseconds when its process started, counted up by one
// per heartbeat, so that a restarted sender continues above its previous
// process; a receiver accepts from each sender only sequences above the
// last it accepted (liveness.accept), and only heartbeats addressed to
// itself (to), so that a recorded heartbeat cannot be replayed to it or
// to another member. A replay can at worst keep a crashed member counted
// until memberlist declares it dead, as without heartbeats: heartbeats
// only ever take members out of the view.
const (
	heartbeatVersion = 1
	// extOwnerVersions is the extension carrying ownerVersions.
	extOwnerVersions = 1
	// extPathFailing is the extension saying the sender's data path fails.
	extPathFailing = 2
	// maxReports bounds the reports in one heartbeat (a cluster of
	// appliance hosts has a handful of members).
	maxReports = 64
)

// heartbeatAAD binds the sealed payload to its purpose: a gossip packet
// sealed with the same key cannot pass for a heartbeat.
var heartbeatAAD = []byte("edgelb heartbeat v1")

type heartbeat struct {
	Seq      uint64
	From, To string
	Reports  []report
	// Versions, nil when the sender sends none (an older release, or it
	// has no copy of the receiver's Meta yet).
	Versions *ownerVersions
	// PathFailing: the sender's data path fails (extPathFailing).
	PathFailing bool
}

// ownerVersions are the owner versions one heartbeat carries
// (viewcheck.go).
type ownerVersions struct {
	// Sender is the OwnerVersion of the sender's own Meta; Receiver that
	// of the sender's copy of the receiver's.
	Sender, Receiver uint64
}

func (h heartbeat) marshal() ([]byte, error) {
	b := binary.BigEndian.AppendUint64(nil, h.Seq)
	var err error
	if b, err = appendName(b, h.From); err != nil {
		return nil, err
	}
	if b, err = appendName(b, h.To); err != nil {
		return nil, err
	}
	reports := h.Reports
	if len(reports) > maxReports {
		reports = reports[:maxReports]
	}
	b = append(b, byte(len(reports)))
	for _, r := range reports {
		if b, err = appendName(b, r.Name); err != nil {
			return nil, err
		}
		ms := min(r.Age.Milliseconds(), 0xffff)
		b = binary.BigEndian.AppendUint16(b, uint16(max(ms, 0)))
	}
	if d := h.Versions; d != nil {
		b = append(b, extOwnerVersions, 16)
		b = binary.BigEndian.AppendUint64(b, d.Sender)
		b = binary.BigEndian.AppendUint64(b, d.Receiver)
	}
	if h.PathFailing {
		b = append(b, extPathFailing, 0)
	}
	return b, nil
}

func appendName(b []byte, s string) ([]byte, error) {
	if len(s) > 255 {
		return nil, fmt.Errorf("member name %q is longer than 255 bytes", s[:32]+"...")
	}
	return append(append(b, byte(len(s))), s...), nil
}

var errShortHeartbeat = errors.New("heartbeat too short")

func unmarshalHeartbeat(b []byte) (heartbeat, error) {
	var h heartbeat
	if len(b) < 8 {
		return h, errShortHeartbeat
	}
	h.Seq, b = binary.BigEndian.Uint64(b), b[8:]
	var ok bool
	if h.From, b, ok = readName(b); !ok {
		return h, errShortHeartbeat
	}
	if h.To, b, ok = readName(b); !ok {
		return h, errShortHeartbeat
	}
	if len(b) < 1 {
		return h, errShortHeartbeat
	}
	n := int(b[0])
	b = b[1:]
	for range n {
		var r report
		if r.Name, b, ok = readName(b); !ok || len(b) < 2 {
			return h, errShortHeartbeat
		}
		r.Age = time.Duration(binary.BigEndian.Uint16(b)) * time.Millisecond
		b = b[2:]
		h.Reports = append(h.Reports, r)
	}
	// Extensions. One cut short ends them: the heartbeat still counts,
	// without what it would have carried.
	for len(b) >= 2 && len(b) >= 2+int(b[1]) {
		typ, val := b[0], b[2:2+int(b[1])]
		b = b[2+int(b[1]):]
		switch {
		case typ == extOwnerVersions && len(val) == 16:
			h.Versions = &ownerVersions{Sender: binary.BigEndian.Uint64(val), Receiver: binary.BigEndian.Uint64(val[8:])}
		case typ == extPathFailing:
			h.PathFailing = true
		}
	}
	return h, nil
}

func readName(b []byte) (string, []byte, bool) {
	if len(b) < 1 || len(b) < 1+int(b[0]) {
		return "", nil, false
	}
	n := int(b[0])
	return string(b[1 : 1+n]), b[1+n:], true
}

// sealer seals and opens heartbeats with the gossip keys.
type sealer struct {
	// keys returns the keyring's keys, the primary first.
	keys func() [][]byte
}

func gcm(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func (s sealer) seal(h heartbeat) ([]byte, error) {
	keys := s.keys()
	if len(keys) == 0 {
		return nil, errors.New("no gossip key")
	}
	aead, err := gcm(keys[0])
	if err != nil {
		return nil, err
	}
	plain, err := h.marshal()
	if err != nil {
		return nil, err
	}
	out := make([]byte, 1+aead.NonceSize(), 1+aead.NonceSize()+len(plain)+aead.Overhead())
	out[0] = heartbeatVersion
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, err
	}
	return aead.Seal(out, out[1:1+aead.NonceSize()], plain, heartbeatAAD), nil
}

var errHeartbeatAuth = errors.New("heartbeat not sealed with a gossip key")

func (s sealer) open(b []byte) (heartbeat, error) {
	if len(b) < 1 || b[0] != heartbeatVersion {
		return heartbeat{}, fmt.Errorf("unknown heartbeat version")
	}
	for _, k := range s.keys() {
		aead, err := gcm(k)
		if err != nil || len(b) < 1+aead.NonceSize()+aead.Overhead() {
			continue
		}
		plain, err := aead.Open(nil, b[1:1+aead.NonceSize()], b[1+aead.NonceSize():], heartbeatAAD)
		if err != nil {
			continue
		}
		return unmarshalHeartbeat(plain)
	}
	return heartbeat{}, errHeartbeatAuth
}
