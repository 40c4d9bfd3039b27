package node

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/perund/perund/contacts"
	"github.com/perund/perund/keys"
	"github.com/perund/perund/store"
)

// docTimeout bounds each read or write of a document (session metadata,
// contacts, session records).
const docTimeout = 10 * time.Second

// The node's documents (store.Docs): with the file backend these are
// today's files in the data dir, with PostgreSQL rows of its docs table.
//
//	<address>/session.json    the user's session metadata (sessionMeta)
//	<address>/contacts.yaml   the user's contacts
//	sessions/<address>.json   the user's open session (sessionRecord)
const sessionsDir = "sessions/"

func userDocKey(addr common.Address, name string) string {
	return strings.ToLower(addr.Hex()) + "/" + name
}

func sessionRecordKey(addr common.Address) string {
	return sessionsDir + strings.ToLower(addr.Hex()) + ".json"
}

// docStorage keeps a contact book in one of the node's documents.
type docStorage struct {
	docs store.Docs
	key  string
}

var _ contacts.Storage = docStorage{}

// Read returns the document.
func (d docStorage) Read() ([]byte, bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), docTimeout)
	defer cancel()
	return d.docs.Get(ctx, d.key) //nolint:wrapcheck // contacts names the book
}

// Write replaces the document.
func (d docStorage) Write(b []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), docTimeout)
	defer cancel()
	return d.docs.Put(ctx, d.key, b) //nolint:wrapcheck // contacts names the book
}

// sessionRecord is what the node keeps of an open session, so that a
// restarted node, or a standby that took over, can bring it back with the
// same id: the token only as its SHA-256 hash.
type sessionRecord struct {
	ID           string    `json:"id"`
	Address      string    `json:"address"`
	TokenHash    string    `json:"tokenHash"`
	ManualAccept bool      `json:"manualAccept"`
	OpenedAt     time.Time `json:"openedAt"`
}

// hashToken is the stored form of a session token.
func hashToken(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// tokenMatches compares a presented token with a stored hash in constant
// time.
func tokenMatches(token, hash string) bool {
	return subtle.ConstantTimeCompare([]byte(hashToken(token)), []byte(hash)) == 1
}

// saveRecord stores the record of s (a failure is logged: the session
// works, it only does not come back after a restart).
func (n *Node) saveRecord(s *Session) {
	s.mu.Lock()
	rec := sessionRecord{ID: s.id, Address: s.addr.Hex(), TokenHash: s.tokenHash, ManualAccept: s.manual, OpenedAt: time.Now().UTC()}
	s.mu.Unlock()
	b, err := json.Marshal(rec)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), docTimeout)
		defer cancel()
		err = n.docs.Put(ctx, sessionRecordKey(s.addr), b)
	}
	if err != nil {
		n.log.Warn("store the session's record", "address", s.addr.Hex(), "err", err)
	}
}

// forgetRecord removes the record of addr's session (session_close).
func (n *Node) forgetRecord(addr common.Address) {
	ctx, cancel := context.WithTimeout(context.Background(), docTimeout)
	defer cancel()
	if err := n.docs.Delete(ctx, sessionRecordKey(addr)); err != nil {
		n.log.Warn("remove the session's record", "address", addr.Hex(), "err", err)
	}
}

// records lists the stored session records.
func (n *Node) records(ctx context.Context) ([]sessionRecord, error) {
	ctx, cancel := context.WithTimeout(ctx, docTimeout)
	defer cancel()
	docs, err := n.docs.List(ctx, sessionsDir)
	if err != nil {
		return nil, fmt.Errorf("list session records: %w", err)
	}
	out := make([]sessionRecord, 0, len(docs))
	for _, d := range docs {
		var r sessionRecord
		if err := json.Unmarshal(d.Value, &r); err != nil || !common.IsHexAddress(r.Address) {
			n.log.Warn("unreadable session record skipped", "key", d.Key, "err", err)
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

// resumeError explains a session_resume of a session this process does
// not run: a recorded one whose key the node could not unlock by itself
// (no password file) needs a new login.
func (n *Node) resumeError(id, token string) error {
	ctx, cancel := context.WithTimeout(context.Background(), docTimeout)
	defer cancel()
	recs, err := n.records(ctx)
	if err == nil {
		for _, r := range recs {
			if r.ID == id && tokenMatches(token, r.TokenHash) {
				return fmt.Errorf("resume session: the node restarted (or another node took over) and cannot unlock the key of %s without its password: log in again with session_open: %w", r.Address, ErrUnauthorized)
			}
		}
	}
	return fmt.Errorf("resume session: unknown session or wrong token: %w", ErrUnauthorized)
}

// RestoreSessions brings back the sessions that were open when the node
// (or the active node of a cluster) stopped, for the accounts whose
// password is in a file of sessions.passwordDir: each comes back with its
// id and token, so that its clients resume it. It returns how many came
// back; sessions of other accounts stay recorded until their user logs in
// again. Without sessions.passwordDir it does nothing.
func (n *Node) RestoreSessions(ctx context.Context) (int, error) {
	dir := n.cfg.Sessions.PasswordDir
	if dir == "" {
		return 0, nil
	}
	recs, err := n.records(ctx)
	if err != nil {
		return 0, err
	}
	var logins []Login
	for _, r := range recs {
		addr := common.HexToAddress(r.Address)
		pw, err := os.ReadFile(filepath.Join(dir, strings.ToLower(addr.Hex())))
		if errors.Is(err, fs.ErrNotExist) {
			n.log.Info("session not restored: no password file; the user logs in again", "address", addr.Hex())
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("config key sessions.passwordDir: %w", err)
		}
		rec := r
		logins = append(logins, Login{Account: addr, Password: strings.TrimRight(string(pw), "\r\n"), ManualAccept: r.ManualAccept, record: &rec})
	}
	if len(logins) == 0 {
		return 0, nil
	}
	if _, err := n.OpenSessions(ctx, logins); err != nil {
		return 0, fmt.Errorf("restore sessions: %w", err)
	}
	return len(logins), nil
}

// knownUser tells whether addr ever had a session on this node (its
// session metadata exists; with the file backend, its directory).
func (n *Node) knownUser(ctx context.Context, addr common.Address) bool {
	if _, err := os.Stat(n.sessionDir(addr)); err == nil {
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, docTimeout)
	defer cancel()
	_, ok, err := n.docs.Get(ctx, userDocKey(addr, metaName))
	return err == nil && ok
}

// metaName is the document of a user's session metadata.
const metaName = "session.json"

// loadMeta reads the session's metadata; a missing document is written
// empty, which marks the user as known to the node (knownUser).
func (s *Session) loadMeta() error {
	s.meta = sessionMeta{Channels: map[string]*channelMeta{}}
	ctx, cancel := context.WithTimeout(context.Background(), docTimeout)
	defer cancel()
	data, ok, err := s.n.docs.Get(ctx, userDocKey(s.addr, metaName))
	if err != nil {
		return fmt.Errorf("read session metadata: %w", err)
	}
	if !ok {
		return s.saveMetaLocked()
	}
	if err := json.Unmarshal(data, &s.meta); err != nil {
		return fmt.Errorf("parse session metadata: %w", err)
	}
	if s.meta.Channels == nil {
		s.meta.Channels = map[string]*channelMeta{}
	}
	return nil
}

// saveMetaLocked writes the metadata durably; s.mu must be held (or the
// session not yet shared).
func (s *Session) saveMetaLocked() error {
	data, err := json.MarshalIndent(&s.meta, "", "  ")
	if err != nil {
		return fmt.Errorf("encode session metadata: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), docTimeout)
	defer cancel()
	if err := s.n.docs.Put(ctx, userDocKey(s.addr, metaName), data); err != nil {
		return fmt.Errorf("write session metadata: %w", err)
	}
	return nil
}

// keystoreDir holds copies of the keystore's encrypted key files in the
// PostgreSQL store's documents, so that a standby on another machine can
// unlock the users' keys with their passwords.
const keystoreDir = "keystore/"

// sharedKeys tells whether key files are shared through the store (only
// PostgreSQL: with files, the keystore directory is the one copy).
func (n *Node) sharedKeys() bool { return n.cfg.Store.URL != "" }

// pullKeys copies the key files in the store that the keystore lacks into
// it (the keystore directory is never changed otherwise).
func (n *Node) pullKeys(ctx context.Context) error {
	if !n.sharedKeys() {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, docTimeout)
	defer cancel()
	docs, err := n.docs.List(ctx, keystoreDir)
	if err != nil {
		return fmt.Errorf("read the shared key files: %w", err)
	}
	for _, d := range docs {
		added, err := n.keys.AddFile(keys.File{Name: strings.TrimPrefix(d.Key, keystoreDir), Data: d.Value})
		if err != nil {
			n.log.Warn("shared key file skipped", "key", d.Key, "err", err)
			continue
		}
		if added {
			n.log.Info("key file copied from the store into the keystore", "file", strings.TrimPrefix(d.Key, keystoreDir))
		}
	}
	return nil
}

// pushKey copies addr's key file into the store if it is not there.
func (n *Node) pushKey(ctx context.Context, addr common.Address) error {
	if !n.sharedKeys() {
		return nil
	}
	f, err := n.keys.FileOf(addr)
	if err != nil {
		return fmt.Errorf("share the key file of %s: %w", addr.Hex(), err)
	}
	ctx, cancel := context.WithTimeout(ctx, docTimeout)
	defer cancel()
	if _, ok, err := n.docs.Get(ctx, keystoreDir+f.Name); err != nil || ok {
		return err //nolint:wrapcheck // nil, or the store's error naming the key
	}
	if err := n.docs.Put(ctx, keystoreDir+f.Name, f.Data); err != nil {
		return fmt.Errorf("share the key file of %s: %w", addr.Hex(), err)
	}
	return nil
}
