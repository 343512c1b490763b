package consensus

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/edgelb/edgelb/cluster"
	bolt "go.etcd.io/bbolt"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// FileName is the file, in Options.Dir, that holds the log.
const FileName = "consensus.db"

var (
	bucketMeta    = []byte("meta")
	bucketEntries = []byte("entries")
	keyHardState  = []byte("hardstate")
	keySnapshot   = []byte("snapshot")
)

// store keeps raft's durable state in a bbolt file: the HardState, the
// log entries after the last snapshot (keyed by big-endian index, so a
// cursor walks them in order) and the snapshot, whose metadata carries
// the ConfState. Every write is one bbolt transaction, fsynced on commit,
// so a crash leaves either all of a Ready's state or none of it.
type store struct {
	db *bolt.DB
}

// loaded is what a store held when it was opened.
type loaded struct {
	hard    *pb.HardState
	snap    *pb.Snapshot
	entries []*pb.Entry
}

func (l loaded) empty() bool {
	return raft.IsEmptyHardState(l.hard) && raft.IsEmptySnap(l.snap) && len(l.entries) == 0
}

func openStore(dir string) (*store, loaded, error) {
	path := filepath.Join(dir, FileName)
	// The timeout turns a second process on the same directory into an
	// error instead of a hang on bbolt's file lock.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, loaded{}, fmt.Errorf("opening the consensus log %s: %w", path, err)
	}
	s := &store{db: db}
	var l loaded
	err = db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		ents, err := tx.CreateBucketIfNotExists(bucketEntries)
		if err != nil {
			return err
		}
		if b := meta.Get(keyHardState); b != nil {
			l.hard = &pb.HardState{}
			if err := proto.Unmarshal(b, l.hard); err != nil {
				return fmt.Errorf("decoding the hard state: %w", err)
			}
		}
		if b := meta.Get(keySnapshot); b != nil {
			l.snap = &pb.Snapshot{}
			if err := proto.Unmarshal(b, l.snap); err != nil {
				return fmt.Errorf("decoding the snapshot: %w", err)
			}
		}
		return ents.ForEach(func(k, v []byte) error {
			e := &pb.Entry{}
			if err := proto.Unmarshal(v, e); err != nil {
				return fmt.Errorf("decoding log entry %d: %w", binary.BigEndian.Uint64(k), err)
			}
			l.entries = append(l.entries, e)
			return nil
		})
	})
	if err != nil {
		db.Close()
		return nil, loaded{}, fmt.Errorf("reading the consensus log %s: %w", path, err)
	}
	return s, l, nil
}

func indexKey(i uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, i)
}

// save persists what a Ready asks to be made durable before its messages
// are sent: the snapshot (dropping the entries it covers), the entries
// (replacing any conflicting tail) and the HardState.
func (s *store) save(hard *pb.HardState, ents []*pb.Entry, snap *pb.Snapshot) error {
	hasSnap := !raft.IsEmptySnap(snap)
	if raft.IsEmptyHardState(hard) && len(ents) == 0 && !hasSnap {
		return nil
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		meta, bents := tx.Bucket(bucketMeta), tx.Bucket(bucketEntries)
		if hasSnap {
			if err := putSnapshot(meta, bents, snap, snap.GetMetadata().GetIndex()); err != nil {
				return err
			}
		}
		if len(ents) > 0 {
			// Entries from the first index on replace what the log held
			// there: raft sends a conflicting tail again from the point
			// where it differs.
			if err := deleteFrom(bents, ents[0].GetIndex()); err != nil {
				return err
			}
			for _, e := range ents {
				b, err := proto.Marshal(e)
				if err != nil {
					return err
				}
				if err := bents.Put(indexKey(e.GetIndex()), b); err != nil {
					return err
				}
			}
		}
		if !raft.IsEmptyHardState(hard) {
			b, err := proto.Marshal(hard)
			if err != nil {
				return err
			}
			if err := meta.Put(keyHardState, b); err != nil {
				return err
			}
		}
		return nil
	})
}

// compact stores a snapshot made here and drops the entries up to
// compactIndex.
func (s *store) compact(snap *pb.Snapshot, compactIndex uint64) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		return putSnapshot(tx.Bucket(bucketMeta), tx.Bucket(bucketEntries), snap, compactIndex)
	})
}

func putSnapshot(meta, ents *bolt.Bucket, snap *pb.Snapshot, upTo uint64) error {
	b, err := proto.Marshal(snap)
	if err != nil {
		return err
	}
	if err := meta.Put(keySnapshot, b); err != nil {
		return err
	}
	var keys [][]byte
	c := ents.Cursor()
	for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) <= upTo; k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	return deleteKeys(ents, keys)
}

func deleteFrom(ents *bolt.Bucket, from uint64) error {
	var keys [][]byte
	c := ents.Cursor()
	for k, _ := c.Seek(indexKey(from)); k != nil; k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	return deleteKeys(ents, keys)
}

// deleteKeys deletes after the walk: deleting under a moving cursor can
// make bbolt's Next skip a key.
func deleteKeys(b *bolt.Bucket, keys [][]byte) error {
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

func (s *store) close() error { return s.db.Close() }

// ReadHistory returns the committed versions kept in the log in dir,
// oldest first, without running a member: the snapshot's, then those of
// the committed entries after it. `edgelb cleanup` reads it, with edgelb
// stopped (the log file is locked while a member runs). keep bounds the
// versions as Options.History does; 0 means cluster.DefaultHistory.
func ReadHistory(dir string, keep int) ([]cluster.Doc, error) {
	if _, err := os.Stat(filepath.Join(dir, FileName)); err != nil {
		return nil, err
	}
	if keep <= 0 {
		keep = cluster.DefaultHistory
	}
	st, l, err := openStore(dir)
	if err != nil {
		return nil, err
	}
	defer st.close()
	var f fsm
	if err := f.restore(l.snap.GetData()); err != nil {
		return nil, err
	}
	for _, e := range l.entries {
		if e.GetIndex() <= l.snap.GetMetadata().GetIndex() || e.GetIndex() > l.hard.GetCommit() ||
			e.GetType() != pb.EntryNormal || len(e.GetData()) == 0 {
			continue
		}
		var o op
		if json.Unmarshal(e.GetData(), &o) != nil {
			continue // every replica skips it alike
		}
		_, _ = f.apply(o, keep) // a stale proposal changes nothing
	}
	return f.History, nil
}
