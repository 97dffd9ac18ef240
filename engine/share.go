package engine

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/cambiumdb/cambium/engine/internal/wire"
	"github.com/cambiumdb/cambium/remote"
)

// Several processes, one data directory. Pebble is one process's store, so
// the process that holds the directory's lock (the owner) serves the
// others (clients) over a Unix socket in the directory, cambium.sock,
// which only the directory's user may connect to: its mode is 0600 and the
// owner checks each connection's user (SO_PEERCRED). The messages are
// package wire's; client.go is the other end.
//
// A client's snapshots and transactions are the owner's, held for it under
// handles of its connection: a client that dies drops its connection, and
// the owner releases what it held and rolls back its transaction. Every
// move of any volume's head adds one to a counter the owner keeps in the
// shared file cambium.seq, before any reader can see the new head, so a
// client whose counter has not moved knows its newest pin is still every
// volume's head and begins a read transaction without asking.

const (
	socketName = "cambium.sock"
	seqName    = "cambium.seq"
)

// sockAddr returns the address of the directory's socket. A Unix socket
// address holds at most 107 bytes: a longer path is reached through the
// directory's file descriptor (/proc/self/fd/N/cambium.sock), which the
// caller keeps open while it binds or connects, and closes after.
func sockAddr(dir string) (addr string, closer func(), err error) {
	path := filepath.Join(dir, socketName)
	if len(path) < 100 {
		return path, func() {}, nil
	}
	f, err := os.Open(dir)
	if err != nil {
		return "", nil, err
	}
	return "/proc/self/fd/" + strconv.Itoa(int(f.Fd())) + "/" + socketName, func() { f.Close() }, nil
}

// seqFile is the shared counter of head moves, mapped from cambium.seq.
type seqFile struct {
	f *os.File
	m []byte
}

func openSeq(dir string, write bool) (*seqFile, error) {
	flag, prot := os.O_RDONLY, syscall.PROT_READ
	if write {
		flag, prot = os.O_RDWR|os.O_CREATE, syscall.PROT_READ|syscall.PROT_WRITE
	}
	f, err := os.OpenFile(filepath.Join(dir, seqName), flag, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", seqName, err)
	}
	if write {
		if fi, err := f.Stat(); err == nil && fi.Size() < 4096 {
			if err := f.Truncate(4096); err != nil {
				f.Close()
				return nil, fmt.Errorf("size %s: %w", seqName, err)
			}
		}
	}
	m, err := syscall.Mmap(int(f.Fd()), 0, 8, prot, syscall.MAP_SHARED)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("map %s: %w", seqName, err)
	}
	return &seqFile{f: f, m: m}, nil
}

func (s *seqFile) ptr() *uint64 { return (*uint64)(unsafe.Pointer(&s.m[0])) }
func (s *seqFile) load() uint64 { return atomic.LoadUint64(s.ptr()) }
func (s *seqFile) bump() uint64 { return atomic.AddUint64(s.ptr(), 1) }
func (s *seqFile) close()       { syscall.Munmap(s.m); s.f.Close() }

// server is the owner's end of the socket.
type server struct {
	e *Engine
	// ctx is the admin calls' context, cancelled when the server closes.
	ctx    context.Context
	cancel context.CancelFunc
	ln     *net.UnixListener
	seq    *seqFile
	wg     sync.WaitGroup

	mu struct {
		sync.Mutex
		conns       map[*serverConn]struct{}
		sessions    map[uint64]*serverSession
		lastSession uint64
		closed      bool
	}
}

// serve starts serving the directory's socket: a socket left by an owner
// that died is replaced (this process holds the lock, so no other serves).
func (e *Engine) serve() error {
	seq, err := openSeq(e.dir, true)
	if err != nil {
		return err
	}
	// Every pin a client holds from an earlier owner is gone.
	seq.bump()
	addr, done, err := sockAddr(e.dir)
	if err != nil {
		seq.close()
		return err
	}
	defer done()
	os.Remove(filepath.Join(e.dir, socketName))
	old := syscall.Umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: addr, Net: "unix"})
	syscall.Umask(old)
	if err != nil {
		seq.close()
		return fmt.Errorf("serve the data directory to other processes: %w", err)
	}
	ln.SetUnlinkOnClose(false)
	s := &server{e: e, ln: ln, seq: seq}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.mu.conns = map[*serverConn]struct{}{}
	s.mu.sessions = map[uint64]*serverSession{}
	e.srv = s
	s.wg.Go(s.accept)
	return nil
}

func (s *server) accept() {
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			return
		}
		sc := &serverConn{s: s, c: c}
		s.mu.Lock()
		if s.mu.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.mu.conns[sc] = struct{}{}
		s.mu.Unlock()
		s.wg.Go(sc.run)
	}
}

// close stops serving: clients see their connection end and one of them
// takes the directory over once this process has released its lock.
func (s *server) close() {
	s.cancel()
	s.mu.Lock()
	s.mu.closed = true
	for sc := range s.mu.conns {
		sc.c.Close()
	}
	s.mu.Unlock()
	s.ln.Close()
	s.wg.Wait()
	os.Remove(filepath.Join(s.e.dir, socketName))
	s.seq.close()
}

// peerUser returns the user ID of the process at the other end of c.
func peerUser(c *net.UnixConn) (int, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *syscall.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if cerr != nil {
		return 0, cerr
	}
	return int(cred.Uid), nil
}

// serverSession is what one client process holds: its snapshots and its
// write transactions, under handles, whichever of its connections made
// them. A process uses several connections, each for one call at a
// time; when the last closes (the process ended, or lost its owner), the
// session's snapshots are released and its transactions rolled back.
type serverSession struct {
	id    uint64
	mu    sync.Mutex // guards the fields below
	conns int
	next  uint64
	snaps map[uint64]*Snapshot
	txns  map[uint64]*serverTxn
}

// serverConn is one connection of a client process. Its calls come one at
// a time (the client waits for each answer), so it runs each in turn.
type serverConn struct {
	s   *server
	c   *net.UnixConn
	ss  *serverSession // from the hello on
	wmu sync.Mutex     // serialises the frames of an answer and its progress
}

// serverTxn is a client's write transaction; its client uses it from one
// goroutine, one call at a time, and mu keeps a dying session's rollback
// from racing the call in progress.
type serverTxn struct {
	mu  sync.Mutex
	txn *Txn
}

func (sc *serverConn) run() {
	defer func() {
		sc.c.Close()
		if ss := sc.ss; ss != nil {
			sc.s.leave(ss)
		}
		sc.s.mu.Lock()
		delete(sc.s.mu.conns, sc)
		sc.s.mu.Unlock()
	}()
	r := bufio.NewReaderSize(sc.c, 64<<10)
	var buf []byte
	if uid, err := peerUser(sc.c); err != nil || uid != os.Getuid() {
		msg := fmt.Sprintf("process of user %d refused: the data directory %s is served to its own user (%d) only", uid, sc.s.e.dir, os.Getuid())
		if err != nil {
			msg = fmt.Sprintf("cannot tell the connecting process's user: %v", err)
		}
		// The refusal answers the client's first call, its hello: an
		// answer to no call would be dropped, and the client would see
		// only the connection end.
		var call uint32
		sc.c.SetReadDeadline(time.Now().Add(joinTimeout))
		if f, err := wire.ReadFrame(r, &buf); err == nil {
			call = f.Call
		}
		sc.answerErr(call, errors.New(msg))
		return
	}
	for {
		f, err := wire.ReadFrame(r, &buf)
		if err != nil {
			return
		}
		if sc.ss == nil {
			if f.Kind != wire.OpHello || !sc.hello(f) {
				if f.Kind != wire.OpHello {
					sc.answerErr(f.Call, fmt.Errorf("%w: call 0x%02x before hello", wire.ErrMalformed, f.Kind))
				}
				return
			}
			continue
		}
		sc.handle(f.Call, f.Kind, f.Body)
	}
}

// leave ends a connection's share of its session; the last one out
// releases what the session held.
func (s *server) leave(ss *serverSession) {
	s.mu.Lock()
	ss.mu.Lock()
	ss.conns--
	last := ss.conns == 0
	if last {
		delete(s.mu.sessions, ss.id)
	}
	snaps, txns := ss.snaps, ss.txns
	if last {
		ss.snaps, ss.txns = nil, nil
	}
	ss.mu.Unlock()
	s.mu.Unlock()
	if !last {
		return
	}
	for _, t := range txns {
		t.mu.Lock()
		t.txn.Rollback()
		t.mu.Unlock()
	}
	for _, snap := range snaps {
		snap.Release()
	}
}

func (sc *serverConn) hello(f wire.Frame) bool {
	d := wire.NewDecoder(f.Body)
	proto := d.Uint()
	d.Uint() // the client's process ID
	id := d.Uint()
	if err := d.Err(); err != nil {
		sc.answerErr(f.Call, err)
		return false
	}
	if proto != wire.Protocol {
		sc.answerErr(f.Call, fmt.Errorf("protocol %d, this owner speaks %d: every process on a data directory must run the same version of Cambium", proto, wire.Protocol))
		return false
	}
	s := sc.s
	s.mu.Lock()
	ss := s.mu.sessions[id]
	if id == 0 {
		s.mu.lastSession++
		ss = &serverSession{id: s.mu.lastSession, snaps: map[uint64]*Snapshot{}, txns: map[uint64]*serverTxn{}}
		s.mu.sessions[ss.id] = ss
	}
	if ss != nil {
		ss.mu.Lock()
		ss.conns++
		ss.mu.Unlock()
	}
	s.mu.Unlock()
	if ss == nil {
		sc.answerErr(f.Call, fmt.Errorf("%w: session %d has ended", ErrOwnerLost, id))
		return false
	}
	sc.ss = ss
	e := sc.answer(f.Call, wire.Done)
	e.Uint(wire.Protocol)
	e.Uint(uint64(os.Getpid()))
	e.String(seqName)
	e.Uint(ss.id)
	sc.send(e)
	return true
}

// answer starts an answer frame.
func (sc *serverConn) answer(call uint32, kind byte) wire.Encoder {
	return wire.Start(make([]byte, 0, 64), call, kind)
}

func (sc *serverConn) send(e wire.Encoder) {
	b, err := e.Finish()
	if err != nil {
		return
	}
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	sc.c.Write(b)
}

func (sc *serverConn) answerErr(call uint32, err error) {
	e := sc.answer(call, wire.Failed)
	e.Uint(errorMask(err))
	e.String(err.Error())
	sc.send(e)
}

func (sc *serverConn) add(s *Snapshot) uint64 {
	sc.ss.mu.Lock()
	defer sc.ss.mu.Unlock()
	sc.ss.next++
	if sc.ss.snaps == nil { // the connection ended meanwhile
		s.Release()
		return 0
	}
	sc.ss.snaps[sc.ss.next] = s
	return sc.ss.next
}

func (sc *serverConn) snap(h uint64) (*Snapshot, error) {
	sc.ss.mu.Lock()
	defer sc.ss.mu.Unlock()
	if s, ok := sc.ss.snaps[h]; ok {
		return s, nil
	}
	return nil, fmt.Errorf("no snapshot %d on this connection", h)
}

func (sc *serverConn) txn(h uint64) (*serverTxn, error) {
	sc.ss.mu.Lock()
	defer sc.ss.mu.Unlock()
	if t, ok := sc.ss.txns[h]; ok {
		return t, nil
	}
	return nil, fmt.Errorf("%w: no transaction %d on this connection", ErrTxnDone, h)
}

// handle runs one call and answers it (unless the call wants no answer).
func (sc *serverConn) handle(call uint32, kind byte, body []byte) {
	e := sc.answer(call, wire.Done)
	err := sc.dispatch(call, kind, wire.NewDecoder(body), &e)
	if call == 0 {
		return
	}
	if err != nil {
		sc.answerErr(call, err)
		return
	}
	sc.send(e)
}

// volume reads a volume name field and returns the volume; the body's
// later fields are the caller's to read, and to check with d.Err.
func (sc *serverConn) volume(d *wire.Decoder) (*Volume, error) {
	name := d.String()
	if err := d.Partial(); err != nil {
		return nil, err
	}
	return sc.s.e.Volume(name)
}

func (sc *serverConn) dispatch(call uint32, kind byte, d *wire.Decoder, out *wire.Encoder) error {
	e := sc.s.e
	switch kind {
	case wire.OpPin:
		v, err := sc.volume(d)
		known := Version(d.Uint())
		if err == nil {
			err = d.Err()
		}
		if err != nil {
			return err
		}
		sc.pin(v, known, nil, out)
		return nil
	case wire.OpPinAt:
		v, err := sc.volume(d)
		n := Version(d.Uint())
		if err == nil {
			err = d.Err()
		}
		if err != nil {
			return err
		}
		s, err := v.SnapshotAt(context.Background(), n)
		if err != nil {
			return err
		}
		out.Uint(sc.add(s))
		out.Uint(uint64(s.Version()))
		out.Uint(uint64(s.PageCount()))
		out.Uint(uint64(s.PageSize()))
		return nil
	case wire.OpRelease:
		h := d.Uint()
		if d.Err() != nil {
			return d.Err()
		}
		sc.ss.mu.Lock()
		s := sc.ss.snaps[h]
		delete(sc.ss.snaps, h)
		sc.ss.mu.Unlock()
		if s != nil {
			s.Release()
		}
		return nil
	case wire.OpRead:
		h, p := d.Uint(), d.Uint32()
		if err := d.Err(); err != nil {
			return err
		}
		s, err := sc.snap(h)
		if err != nil {
			return err
		}
		img, err := s.ReadPage(PageNo(p), nil)
		if err != nil {
			return err
		}
		out.Bytes(img)
		return nil
	case wire.OpBegin:
		v, err := sc.volume(d)
		h := d.Uint()
		if err == nil {
			err = d.Err()
		}
		if err != nil {
			return err
		}
		th, err := sc.begin(v, h)
		if err != nil {
			return err
		}
		out.Uint(th)
		return nil
	case wire.OpStage, wire.OpReadTxn, wire.OpPageSize, wire.OpCommit, wire.OpDiscard, wire.OpRollback:
		return sc.txnCall(kind, d, out)
	case wire.OpAdmin:
		name, vol, args := d.String(), d.String(), d.Bytes()
		if err := d.Err(); err != nil {
			return err
		}
		progress := func(p any) {
			b, err := json.Marshal(p)
			if err != nil || call == 0 {
				return
			}
			pe := sc.answer(call, wire.Progress)
			pe.Bytes(b)
			sc.send(pe)
		}
		res, err := e.admin(sc.s.ctx, name, vol, args, progress)
		if err != nil {
			return err
		}
		b, err := json.Marshal(res)
		if err != nil {
			return err
		}
		out.Bytes(b)
		return nil
	}
	return fmt.Errorf("%w: unknown call kind 0x%02x", wire.ErrMalformed, kind)
}

// pin pins v's head for the client (or takes s, a snapshot a commit made)
// and writes the pin answer: what changed after known.
func (sc *serverConn) pin(v *Volume, known Version, s *Snapshot, out *wire.Encoder) {
	// The counter is read before the head: a move after it changes the
	// counter, so the client asks again before it trusts this pin to be
	// the head. A commit's snapshot was taken before: unless it is still
	// the head after the counter was read, the client must ask (0).
	seq := sc.s.seq.load()
	if s == nil {
		s = v.Snapshot()
	} else if v.head.Load().version != s.Version() {
		seq = 0
	}
	ch := v.changesSince(known, s.Version())
	out.Uint(sc.add(s))
	out.Uint(uint64(s.Version()))
	out.Uint(uint64(s.PageCount()))
	out.Uint(uint64(s.PageSize()))
	out.Uint(v.Lineage())
	out.Uint(seq)
	if ch.unknown {
		out.Uint(1)
	} else {
		out.Uint(0)
	}
	out.Uint(uint64(ch.shrink + 1))
	var pages []byte
	if ch.pages != nil {
		pages, _ = ch.pages.ToBytes()
	}
	out.Bytes(pages)
}

// begin begins v's write transaction on the session's snapshot h, for a
// client that holds the volume's write lock in cambium.writers (see
// writelock.go), and returns its handle.
func (sc *serverConn) begin(v *Volume, h uint64) (uint64, error) {
	s, err := sc.snap(h)
	if err != nil {
		return 0, err
	}
	t, err := v.begin(s, v.takeWriterHeld)
	if err != nil {
		return 0, err
	}
	sc.ss.mu.Lock()
	defer sc.ss.mu.Unlock()
	if sc.ss.txns == nil {
		t.Rollback()
		return 0, ErrClosed
	}
	sc.ss.next++
	sc.ss.txns[sc.ss.next] = &serverTxn{txn: t}
	return sc.ss.next, nil
}

func (sc *serverConn) txnCall(kind byte, d *wire.Decoder, out *wire.Encoder) error {
	th := d.Uint()
	if kind == wire.OpCommit {
		// A commit names the volume and its base, for a transaction
		// that has not begun in the owner yet (th 0).
		v, err := sc.volume(d)
		h := d.Uint()
		if err != nil {
			return err
		}
		if th == 0 {
			if th, err = sc.begin(v, h); err != nil {
				return err
			}
		}
	}
	st, err := sc.txn(th)
	if err != nil {
		return err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	t := st.txn
	switch kind {
	case wire.OpStage:
		trunc := d.Uint()
		if trunc > 0 {
			if err := t.Truncate(uint32(min(trunc-1, 1<<32-1))); err != nil {
				return err
			}
		}
		return stagePages(t, d)
	case wire.OpReadTxn:
		p := d.Uint32()
		if err := d.Err(); err != nil {
			return err
		}
		img, err := t.ReadPage(PageNo(p), nil)
		if err != nil {
			return err
		}
		out.Bytes(img)
		return nil
	case wire.OpPageSize:
		size, length := d.Uint(), d.Uint()
		if err := d.Err(); err != nil {
			return err
		}
		if err := t.SetPageSize(int(min(size, 1<<20)), int64(min(length, 1<<62))); err != nil {
			return err
		}
		out.Uint(uint64(t.PageCount()))
		return nil
	case wire.OpDiscard:
		if err := d.Err(); err != nil {
			return err
		}
		return t.Discard()
	case wire.OpRollback:
		sc.dropTxn(t)
		return t.Rollback()
	case wire.OpCommit:
		dur := Durability(d.Uint())
		if err := stagePagesN(t, d); err != nil {
			t.Rollback()
			sc.dropTxn(t)
			return err
		}
		known := Version(d.Uint())
		if err := d.Err(); err != nil {
			t.Rollback()
			sc.dropTxn(t)
			return err
		}
		if dur != Durable {
			dur = Buffered
		}
		// The client left out the pages equal to its cached base
		// (clientVolume.dropUnchangedLocked).
		t.compared = true
		s, err := t.Commit(dur)
		sc.dropTxn(t)
		if err != nil {
			t.Rollback()
			return err
		}
		sc.pin(t.v, known, s, out)
		return nil
	}
	return nil
}

func (sc *serverConn) dropTxn(t *Txn) {
	sc.ss.mu.Lock()
	defer sc.ss.mu.Unlock()
	for h, st := range sc.ss.txns {
		if st.txn == t {
			delete(sc.ss.txns, h)
		}
	}
}

// stagePages reads a count of pages, then each page and its image, and
// stages them; the body must end there.
func stagePages(t *Txn, d *wire.Decoder) error {
	if err := stagePagesN(t, d); err != nil {
		return err
	}
	return d.Err()
}

func stagePagesN(t *Txn, d *wire.Decoder) error {
	n := d.Uint()
	for i := uint64(0); i < n && d.Partial() == nil; i++ {
		p, img := d.Uint32(), d.Bytes()
		if d.Partial() != nil {
			break
		}
		if err := t.WritePage(PageNo(p), img); err != nil {
			return err
		}
	}
	return nil
}

// change is one move of a volume's head, as a client's page cache needs to
// know it: the pages it changed (nil: not known, forget every page), and
// the page count it cut the volume to, if it shrank it.
type change struct {
	version Version
	pages   *roaring.Bitmap
	shrink  int64 // -1 if the move did not shrink the volume
}

// maxChanges bounds the moves a volume remembers for clients; a client
// further behind forgets its cached pages of the volume.
const maxChanges = 1024

// movedLocked records a move of the head to version, and tells clients
// that a head moved. The caller holds v.mu.
func (v *Volume) movedLocked(c change) {
	if n := len(v.mu.changes); n > 0 && c.version <= v.mu.changes[n-1].version {
		// A reset: the versions after c.version are others now.
		v.mu.changes, v.mu.changesFrom = v.mu.changes[:0], c.version
		c.pages = nil
	}
	if len(v.mu.changes) == maxChanges {
		// The older half goes at once, so that a commit copies no list.
		half := maxChanges / 2
		v.mu.changesFrom = v.mu.changes[half-1].version
		v.mu.changes = append(v.mu.changes[:0], v.mu.changes[half:]...)
	}
	v.mu.changes = append(v.mu.changes, c)
	if s := v.e.srv; s != nil {
		s.seq.bump()
	}
}

// changes is what changed in a volume between two versions.
type changes struct {
	unknown bool
	shrink  int64
	pages   *roaring.Bitmap
}

// changesSince returns what changed after version from, through to.
func (v *Volume) changesSince(from, to Version) changes {
	v.mu.Lock()
	defer v.mu.Unlock()
	if from >= to {
		return changes{shrink: -1}
	}
	if from < v.mu.changesFrom || len(v.mu.changes) == 0 || v.mu.changes[0].version > from+1 {
		return changes{unknown: true, shrink: -1}
	}
	out := changes{shrink: -1, pages: roaring.New()}
	for _, c := range v.mu.changes {
		if c.version <= from || c.version > to {
			continue
		}
		if c.pages == nil {
			return changes{unknown: true, shrink: -1}
		}
		out.pages.Or(c.pages)
		if c.shrink >= 0 && (out.shrink < 0 || c.shrink < out.shrink) {
			out.shrink = c.shrink
		}
	}
	return out
}

// wireErrors are the sentinel errors a failed answer carries across, by
// their bit in its code.
var wireErrors = []error{
	ErrDirLocked, ErrBusy, ErrSnapshotStale, ErrInvalidName, ErrPageSize, ErrCorrupt,
	ErrTxnDone, ErrClosed, ErrDiverged, ErrRemoteCorrupt, ErrNoRemote, ErrRemoteMismatch,
	ErrAhead, ErrVersion, ErrCollected, ErrOptions,
	remote.ErrNotFound, remote.ErrInvalidURL, remote.ErrInjected,
	context.Canceled, context.DeadlineExceeded, wire.ErrMalformed, ErrOwnerLost,
}

func errorMask(err error) uint64 {
	var m uint64
	for i, s := range wireErrors {
		if errors.Is(err, s) {
			m |= 1 << i
		}
	}
	return m
}

// ownerError is an error the owner answered with: its message, and the
// sentinels it wraps.
type ownerError struct {
	mask uint64
	msg  string
}

func (e *ownerError) Error() string { return e.msg }

func (e *ownerError) Is(target error) bool {
	for i, s := range wireErrors {
		if e.mask&(1<<i) != 0 && s == target {
			return true
		}
	}
	return false
}
