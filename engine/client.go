package engine

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/cambiumdb/cambium/engine/internal/wire"
)

// A client is an Engine in a process that found the data directory owned
// by another (see share.go): its Volumes, Snapshots and Txns are the
// owner's, reached through the socket, with a cache of the page images
// this process read at the newest version it knows, which are the same in
// every later version until a commit changes them. When the owner goes
// away, the first client to ask for the directory's lock takes it and
// serves the others (its Engine then runs on that one, inner); what a
// client held of the old owner fails with ErrOwnerLost.

// joinTimeout bounds how long Open and a takeover wait for an owner that
// holds the lock to answer on its socket (it may be opening its store).
const joinTimeout = 10 * time.Second

// openShared opens the directory as its owner, or joins the process that
// owns it.
func openShared(opts Options, dir string) (*Engine, error) {
	owner, sess, err := ownOrJoin(opts, dir)
	if err != nil {
		return nil, err
	}
	if owner != nil {
		return owner, nil
	}
	locks, err := openWriteLocks(dir)
	if err != nil {
		sess.close()
		return nil, err
	}
	c := &client{dir: dir, opts: opts, sess: sess, volumes: map[string]*Volume{}, stop: make(chan struct{}), writeLocks: locks}
	e := &Engine{opts: opts, dir: dir, cl: c}
	c.outer = e
	go c.idle()
	return e, nil
}

// ownOrJoin takes the directory's lock and opens it, or connects to the
// process that holds it.
func ownOrJoin(opts Options, dir string) (*Engine, *session, error) {
	deadline := time.Now().Add(cmpOr(opts.testingKnobs.joinTimeout, joinTimeout))
	for {
		lock, err := lockDir(dir)
		if err == nil {
			e, err := openOwned(opts, dir, lock)
			return e, nil, err
		}
		if errors.Is(err, fs.ErrPermission) && !opts.Exclusive {
			// Most likely another user's directory: its owner, if one
			// runs, says why it refuses this process.
			s, derr := dialOwner(dir)
			if derr == nil {
				return nil, s, nil
			}
			var oe *ownerError
			if errors.As(derr, &oe) {
				return nil, nil, fmt.Errorf("join the owner of %s: %w", dir, derr)
			}
			if fi, serr := os.Stat(filepath.Join(dir, lockFileName)); serr == nil {
				if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Getuid() {
					return nil, nil, fmt.Errorf("%w: the data directory belongs to user %d and this process runs as user %d: each user needs a data directory of their own", err, st.Uid, os.Getuid())
				}
			}
			return nil, nil, err
		}
		if !errors.Is(err, ErrDirLocked) || opts.Exclusive || lockHolder(dir) == os.Getpid() && !opts.testingKnobs.joinOwn {
			return nil, nil, err
		}
		s, derr := dialOwner(dir)
		if derr == nil {
			return nil, s, nil
		}
		var oe *ownerError
		if errors.As(derr, &oe) {
			return nil, nil, fmt.Errorf("%w; joining it failed: %w", err, derr)
		}
		if time.Now().After(deadline) {
			return nil, nil, fmt.Errorf("%w, which does not serve it (it may be an older Cambium, or opened the directory for itself alone); tried for %s to connect to %s: %w",
				err, cmpOr(opts.testingKnobs.joinTimeout, joinTimeout), filepath.Join(dir, socketName), derr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// lockHolder returns the process ID the lock file names, 0 if none.
func lockHolder(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, lockFileName))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// session is this process's standing with an owner: the handles of what
// it holds there, and the connections it calls through. Each call takes
// a connection of its own, sends, and reads the answer itself, so a call
// costs the owner's work and one trip each way; the owner runs the calls
// of different connections at the same time.
type session struct {
	dir   string
	id    uint64 // the owner's name for this process's session
	seq   *seqFile
	owner int // the owner's process ID
	dead  atomic.Bool

	mu struct {
		sync.Mutex
		free []*conn // connections not in use
		all  map[*conn]struct{}
		err  error // why the session ended
		// releases are the snapshot handles to release with the next
		// call: a release needs no answer, nor a write of its own.
		releases []uint64
	}
}

// release queues the release of snapshot handle h for the next call (or
// the idle flush: client.idle).
func (s *session) release(h uint64) {
	s.mu.Lock()
	s.mu.releases = append(s.mu.releases, h)
	s.mu.Unlock()
}

func (s *session) takeReleases() []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.mu.releases
	s.mu.releases = nil
	return r
}

// flushReleases sends the queued releases now.
func (s *session) flushReleases() {
	rel := s.takeReleases()
	if len(rel) == 0 {
		return
	}
	last := rel[len(rel)-1]
	c, err := s.get()
	if err != nil {
		return
	}
	if err := c.sendAfter(rel[:len(rel)-1], 0, wire.OpRelease, func(e *wire.Encoder) { e.Uint(last) }); err != nil {
		s.fail(err)
		return
	}
	s.put(c)
}

// conn is one connection of a session.
type conn struct {
	c       *net.UnixConn
	r       *bufio.Reader
	buf     []byte
	out     []byte
	scratch []byte
}

func dialConn(dir string) (*conn, error) {
	addr, done, err := sockAddr(dir)
	if err != nil {
		return nil, err
	}
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: addr, Net: "unix"})
	done()
	if err != nil {
		return nil, err
	}
	return &conn{c: c, r: bufio.NewReaderSize(c, 64<<10)}, nil
}

// hello joins session id (0: a new one) on c, and returns its ID and the
// answer's other fields.
func (c *conn) hello(id uint64) (sid uint64, owner int, err error) {
	body, err := c.call(1, wire.OpHello, func(e *wire.Encoder) {
		e.Uint(wire.Protocol)
		e.Uint(uint64(os.Getpid()))
		e.Uint(id)
	}, nil)
	if err != nil {
		return 0, 0, err
	}
	d := wire.NewDecoder(body)
	d.Uint()
	owner = int(d.Uint())
	name := d.String()
	sid = d.Uint()
	if err := d.Err(); err != nil || name != seqName {
		return 0, 0, fmt.Errorf("hello from the owner: %v, sequence file %q", err, name)
	}
	return sid, owner, nil
}

// call sends a call and reads its answer; the error is an *ownerError for
// a failed answer, else the connection's.
func (c *conn) call(id uint32, kind byte, fields func(*wire.Encoder), progress func([]byte)) ([]byte, error) {
	return c.callAfter(nil, id, kind, fields, progress)
}

// callAfter is call, with releases sent before it (sendAfter).
func (c *conn) callAfter(rel []uint64, id uint32, kind byte, fields func(*wire.Encoder), progress func([]byte)) ([]byte, error) {
	if err := c.sendAfter(rel, id, kind, fields); err != nil {
		return nil, err
	}
	for {
		f, err := wire.ReadFrame(c.r, &c.buf)
		if err != nil {
			return nil, err
		}
		switch f.Kind {
		case wire.Progress:
			if progress != nil {
				progress(f.Body)
			}
			continue
		case wire.Done:
			return f.Body, nil
		case wire.Failed:
			d := wire.NewDecoder(f.Body)
			mask, msg := d.Uint(), d.String()
			if err := d.Err(); err != nil {
				return nil, fmt.Errorf("the owner's answer: %w", err)
			}
			return nil, &ownerError{mask: mask, msg: msg}
		}
		return nil, fmt.Errorf("%w: an answer of kind 0x%02x", wire.ErrMalformed, f.Kind)
	}
}

// sendAfter sends the releases of the snapshot handles rel, then a call,
// in one write.
func (c *conn) sendAfter(rel []uint64, id uint32, kind byte, fields func(*wire.Encoder)) error {
	var out []byte
	for _, h := range rel {
		e := wire.Start(c.scratch, 0, wire.OpRelease)
		e.Uint(h)
		b, _ := e.Finish()
		out = append(out, b...)
		c.scratch = b[:0]
	}
	e := wire.Start(c.out, id, kind)
	if fields != nil {
		fields(&e)
	}
	b, err := e.Finish()
	if err != nil {
		return err
	}
	c.out = b[:0]
	if out != nil {
		b = append(out, b...)
	}
	_, err = c.c.Write(b)
	return err
}

func dialOwner(dir string) (*session, error) {
	c, err := dialConn(dir)
	if err != nil {
		return nil, err
	}
	id, owner, err := c.hello(0)
	if err != nil {
		c.c.Close()
		return nil, err
	}
	s := &session{dir: dir, id: id, owner: owner}
	s.mu.all = map[*conn]struct{}{c: {}}
	s.mu.free = []*conn{c}
	if s.seq, err = openSeq(dir, false); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// get returns a connection for one call: a free one, or a new one that
// joins the session.
func (s *session) get() (*conn, error) {
	s.mu.Lock()
	if s.mu.err != nil {
		s.mu.Unlock()
		return nil, s.mu.err
	}
	if n := len(s.mu.free); n > 0 {
		c := s.mu.free[n-1]
		s.mu.free = s.mu.free[:n-1]
		s.mu.Unlock()
		return c, nil
	}
	s.mu.Unlock()
	c, err := dialConn(s.dir)
	if err == nil {
		if _, _, err = c.hello(s.id); err != nil {
			c.c.Close()
		}
	}
	if err != nil {
		s.fail(err)
		return nil, s.lost()
	}
	s.mu.Lock()
	if s.mu.err != nil {
		s.mu.Unlock()
		c.c.Close()
		return nil, s.lost()
	}
	s.mu.all[c] = struct{}{}
	s.mu.Unlock()
	return c, nil
}

func (s *session) put(c *conn) {
	s.mu.Lock()
	if s.mu.err != nil {
		s.mu.Unlock()
		c.c.Close()
		return
	}
	s.mu.free = append(s.mu.free, c)
	s.mu.Unlock()
}

// fail ends the session: every later call fails with ErrOwnerLost, and
// its connections close (the owner then releases what it held).
func (s *session) fail(err error) {
	s.mu.Lock()
	if s.mu.err == nil {
		s.mu.err = fmt.Errorf("%w (process %d): %v", ErrOwnerLost, s.owner, err)
	}
	all := s.mu.all
	s.mu.all, s.mu.free = map[*conn]struct{}{}, nil
	s.mu.Unlock()
	s.dead.Store(true)
	for c := range all {
		c.c.Close()
	}
}

func (s *session) close() {
	s.fail(ErrClosed)
	if s.seq != nil {
		s.seq.close()
		s.seq = nil
	}
}

func (s *session) lost() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.err != nil {
		return s.mu.err
	}
	return ErrOwnerLost
}

// readImage reads page p through the snapshot or transaction handle h
// (kind OpRead or OpReadTxn).
func (s *session) readImage(kind byte, h uint64, p PageNo) ([]byte, error) {
	body, err := s.call(kind, func(e *wire.Encoder) {
		e.Uint(h)
		e.Uint(uint64(p))
	}, nil)
	if err != nil {
		return nil, err
	}
	d := wire.NewDecoder(body)
	img := d.Bytes()
	return img, d.Err()
}

// call sends a call and waits for its answer's body; progress, if set,
// gets the body of each progress answer. The body is the caller's.
func (s *session) call(kind byte, fields func(*wire.Encoder), progress func([]byte)) ([]byte, error) {
	c, err := s.get()
	if err != nil {
		return nil, err
	}
	body, err := c.callAfter(s.takeReleases(), 1, kind, fields, progress)
	var oe *ownerError
	if err != nil && !errors.As(err, &oe) {
		s.fail(err)
		return nil, s.lost()
	}
	body = bytes.Clone(body)
	s.put(c)
	return body, err
}

// client is the state of an Engine that joined an owner.
type client struct {
	outer *Engine
	dir   string
	opts  Options
	stop  chan struct{}

	// cached counts the bytes of every volume's cached images.
	cached atomic.Int64
	// writeLocks are the volumes' write locks across processes.
	writeLocks *writeLocks

	mu      sync.Mutex // guards the fields below
	sess    *session
	inner   *Engine // this process's own Engine, once it took over
	volumes map[string]*Volume
	closed  bool
}

// connect returns the live session, or the Engine this process opened when
// it took the directory over. An owner that went away is replaced here:
// by this process, if it gets the lock first, else by the one that did.
func (c *client) connect() (*session, *Engine, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, nil, ErrClosed
	}
	if c.inner != nil {
		return nil, c.inner, nil
	}
	if c.sess != nil && !c.sess.dead.Load() {
		return c.sess, nil, nil
	}
	if c.sess != nil {
		c.sess.close()
		c.sess = nil
	}
	owner, s, err := ownOrJoin(c.opts, c.dir)
	if err != nil {
		return nil, nil, fmt.Errorf("the owner of %s went away, and taking it over failed: %w", c.dir, err)
	}
	if owner != nil {
		c.opts.Logger.Info("cambium: took over the data directory", "dir", c.dir)
		c.inner = owner
		return nil, owner, nil
	}
	c.sess = s
	return s, nil, nil
}

func (c *client) close() error {
	close(c.stop)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	c.writeLocks.close()
	if c.sess != nil {
		c.sess.close()
		c.sess = nil
	}
	if c.inner != nil {
		return c.inner.Close()
	}
	return nil
}

// volume returns the client's Volume called name.
func (c *client) volume(name string) *Volume {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.volumes[name]; ok {
		return v
	}
	v := &Volume{e: c.outer, name: name}
	v.cv = &clientVolume{c: c, v: v, name: name, cache: map[PageNo][]byte{}}
	c.volumes[name] = v
	return v
}

// idle releases the pins that volumes keep at their newest version once
// nothing has used them for a while: a pin held holds back the owner's
// pruning.
func (c *client) idle() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		c.mu.Lock()
		vols := make([]*Volume, 0, len(c.volumes))
		for _, v := range c.volumes {
			vols = append(vols, v)
		}
		c.mu.Unlock()
		for _, v := range vols {
			v.cv.dropIdle(2 * time.Second)
		}
		c.mu.Lock()
		s := c.sess
		c.mu.Unlock()
		if s != nil {
			s.flushReleases()
		}
	}
}

// admin runs an admin call in the owner (share.go), the result decoded
// into res if not nil.
func (c *client) admin(name, vol string, args any, res any, progress func([]byte)) error {
	s, _, err := c.connect()
	if err != nil {
		return err
	}
	if s == nil {
		return errTookOver
	}
	a, err := json.Marshal(args)
	if err != nil {
		return err
	}
	body, err := s.call(wire.OpAdmin, func(e *wire.Encoder) {
		e.String(name)
		e.String(vol)
		e.Bytes(a)
	}, progress)
	if err != nil {
		return err
	}
	d := wire.NewDecoder(body)
	out := d.Bytes()
	if err := d.Err(); err != nil {
		return err
	}
	if res == nil {
		return nil
	}
	return json.Unmarshal(out, res)
}

// errTookOver tells a client method to run on this process's own Engine:
// it took the directory over since it looked.
var errTookOver = errors.New("engine: this process took the data directory over")

// clientPin is an owner's snapshot held for this process.
type clientPin struct {
	sess   *session
	handle uint64
	refs   atomic.Int32
}

func (p *clientPin) unref() {
	if p.refs.Add(-1) == 0 && !p.sess.dead.Load() {
		p.sess.release(p.handle)
	}
}

// clientVolume is a client's view of a volume: its newest version known
// and the images read at it.
type clientVolume struct {
	c    *client
	v    *Volume
	name string

	mu      sync.Mutex // guards the fields below; a leaf
	sess    *session   // the session the fields below come from
	known   Version
	count   uint32
	size    uint32
	lineage uint64
	seq     uint64     // the owner's counter when cur was pinned
	cur     *clientPin // a pin at known, kept for the next snapshot
	lastUse time.Time
	cache   map[PageNo][]byte
	bytes   int64
}

// local returns this process's own Volume, if it took the directory over.
func (cv *clientVolume) local() (*Volume, *session, error) {
	s, inner, err := cv.c.connect()
	if err != nil {
		return nil, nil, err
	}
	if inner != nil {
		v, err := inner.Volume(cv.name)
		return v, nil, err
	}
	return nil, s, nil
}

func (cv *clientVolume) dropIdle(after time.Duration) {
	cv.mu.Lock()
	cur := cv.cur
	if cur == nil || time.Since(cv.lastUse) < after {
		cv.mu.Unlock()
		return
	}
	cv.cur = nil
	cv.mu.Unlock()
	cur.unref()
}

// pinAnswer is a pin's answer (package wire).
type pinAnswer struct {
	handle       uint64
	version      Version
	count, size  uint32
	lineage, seq uint64
	unknown      bool
	shrink       int64
	pages        *roaring.Bitmap
}

func decodePin(body []byte) (pinAnswer, error) {
	d := wire.NewDecoder(body)
	a := pinAnswer{handle: d.Uint(), version: Version(d.Uint()), count: d.Uint32(), size: d.Uint32(), lineage: d.Uint(), seq: d.Uint()}
	a.unknown = d.Uint() != 0
	a.shrink = int64(d.Uint()) - 1
	pages := d.Bytes()
	if err := d.Err(); err != nil {
		return a, err
	}
	if len(pages) > 0 {
		a.pages = roaring.New()
		if err := a.pages.UnmarshalBinary(pages); err != nil {
			return a, fmt.Errorf("%w: changed pages: %v", wire.ErrMalformed, err)
		}
	}
	return a, nil
}

// snapshot pins the newest version: without asking the owner when no head
// has moved since the volume's last pin.
func (cv *clientVolume) snapshot() (*Snapshot, error) {
	for {
		s, err := cv.trySnapshot()
		if !lostOwner(err) {
			return s, err
		}
		// The owner went away before answering: the next try takes
		// over, or asks the process that did.
	}
}

func (cv *clientVolume) trySnapshot() (*Snapshot, error) {
	lv, s, err := cv.local()
	if err != nil {
		return nil, err
	}
	if lv != nil {
		return lv.Snapshot(), nil
	}
	cv.mu.Lock()
	if cv.sess == s && cv.cur != nil && s.seq.load() == cv.seq {
		cv.cur.refs.Add(1)
		cv.lastUse = time.Now()
		snap := &Snapshot{v: cv.v, st: &state{version: cv.known, pageCount: cv.count, pageSize: cv.size}, cp: cv.cur}
		cv.mu.Unlock()
		return snap, nil
	}
	known := cv.known
	if cv.sess != s {
		known = 0
	}
	cv.mu.Unlock()
	body, err := s.call(wire.OpPin, func(e *wire.Encoder) {
		e.String(cv.name)
		e.Uint(uint64(known))
	}, nil)
	if err != nil {
		return nil, err
	}
	a, err := decodePin(body)
	if err != nil {
		return nil, err
	}
	return cv.applyPin(s, known, a), nil
}

// applyPin takes a pin the owner answered, for a caller that knew version
// known: it becomes the volume's newest unless a newer one came meanwhile,
// and the cached images it changed go.
func (cv *clientVolume) applyPin(s *session, known Version, a pinAnswer) *Snapshot {
	p := &clientPin{sess: s, handle: a.handle}
	p.refs.Store(1)
	snap := &Snapshot{v: cv.v, st: &state{version: a.version, pageCount: a.count, pageSize: a.size}, cp: p}
	cv.mu.Lock()
	if cv.sess != s {
		cv.forgetLocked()
		cv.sess, cv.known = s, 0
		if cv.cur != nil {
			old := cv.cur
			cv.cur = nil
			defer old.unref()
		}
	}
	if a.lineage == cv.lineage && (a.version < cv.known || (a.version == cv.known && cv.cur != nil && a.seq <= cv.seq)) {
		cv.mu.Unlock()
		return snap
	}
	switch {
	case a.unknown || a.size != cv.size || a.lineage != cv.lineage:
		cv.forgetLocked()
	default:
		if a.pages != nil {
			for pg := range roaring.Values(a.pages) {
				cv.dropLocked(PageNo(pg))
			}
		}
		if a.shrink >= 0 {
			for pg := range cv.cache {
				if int64(pg) > a.shrink {
					cv.dropLocked(pg)
				}
			}
		}
	}
	old := cv.cur
	cv.known, cv.count, cv.size, cv.lineage, cv.seq = a.version, a.count, a.size, a.lineage, a.seq
	p.refs.Add(1)
	cv.cur = p
	cv.lastUse = time.Now()
	cv.mu.Unlock()
	if old != nil {
		old.unref()
	}
	return snap
}

func (cv *clientVolume) forgetLocked() {
	clear(cv.cache)
	cv.c.cached.Add(-cv.bytes)
	cv.bytes = 0
}

func (cv *clientVolume) dropLocked(p PageNo) {
	if img, ok := cv.cache[p]; ok {
		cv.bytes -= int64(len(img))
		cv.c.cached.Add(-int64(len(img)))
		delete(cv.cache, p)
	}
}

// readPage reads page p at snapshot s: from the cache when s is the newest
// version known, else from the owner.
func (cv *clientVolume) readPage(s *Snapshot, p PageNo, dst []byte) ([]byte, error) {
	cv.v.stats.pageReads.Add(1)
	cv.mu.Lock()
	newest := cv.sess == s.cp.sess && cv.known == s.st.version
	if newest {
		if img, ok := cv.cache[p]; ok {
			dst = append(dst, img...)
			cv.mu.Unlock()
			cv.v.stats.cacheHits.Add(1)
			return dst, nil
		}
	}
	cv.mu.Unlock()
	img, err := s.cp.sess.readImage(wire.OpRead, s.cp.handle, p)
	if err != nil {
		return nil, err
	}
	if newest {
		cv.mu.Lock()
		if cv.sess == s.cp.sess && cv.known == s.st.version {
			if _, ok := cv.cache[p]; !ok {
				cv.cacheLocked(p, img)
				cv.trimLocked()
			}
		}
		cv.mu.Unlock()
	}
	return append(dst, img...), nil
}

// snapshotAt pins version n for a read-only view.
func (cv *clientVolume) snapshotAt(n Version) (*Snapshot, error) {
	lv, s, err := cv.local()
	if err != nil || lv != nil {
		if err != nil {
			return nil, err
		}
		return lv.SnapshotAt(lv.e.bgCtx, n)
	}
	body, err := s.call(wire.OpPinAt, func(e *wire.Encoder) {
		e.String(cv.name)
		e.Uint(uint64(n))
	}, nil)
	if err != nil {
		return nil, err
	}
	d := wire.NewDecoder(body)
	h, ver, count, size := d.Uint(), Version(d.Uint()), d.Uint32(), d.Uint32()
	if err := d.Err(); err != nil {
		return nil, err
	}
	p := &clientPin{sess: s, handle: h}
	p.refs.Store(1)
	return &Snapshot{v: cv.v, st: &state{version: ver, pageCount: count, pageSize: size}, cp: p}, nil
}

// admin runs an admin call on this volume.
func (cv *clientVolume) admin(name string, args, res any, progress func([]byte)) error {
	return cv.c.admin(name, cv.name, args, res, progress)
}

// clientTxn is the part of a client's Txn that the owner holds.
type clientTxn struct {
	sess   *session
	handle uint64
	base   *Snapshot // the caller's
	// sent holds the pages staged in the owner, whose images this process
	// no longer has.
	sent *roaring.Bitmap
}

// stageLimit is how many bytes of pages a client's transaction gathers
// before it hands them to the owner.
const stageLimit = 4 << 20

func (cv *clientVolume) begin(base *Snapshot) (*Txn, error) {
	if base.cp == nil || base.v != cv.v {
		return nil, fmt.Errorf("begin on %q with a snapshot of %q", cv.name, base.v.name)
	}
	s := base.cp.sess
	if s.dead.Load() {
		return nil, fmt.Errorf("begin write on %q: %w", cv.name, s.lost())
	}
	// The volume's write lock, in this process (its writer) and across
	// processes (writelock.go), with no round trip.
	v := cv.v
	if !v.writer.TryLock() {
		return nil, fmt.Errorf("begin write on %q: %w", cv.name, ErrBusy)
	}
	if ok, err := cv.c.writeLocks.lock(cv.name); !ok || err != nil {
		v.writer.Unlock()
		if err == nil {
			err = ErrBusy
		}
		return nil, fmt.Errorf("begin write on %q: %w", cv.name, err)
	}
	v.writing.Store(true)
	st := base.st
	t := &Txn{
		v: v, base: st, version: st.version + 1,
		pageSize: st.pageSize, pageCount: st.pageCount, minCount: st.pageCount,
		staged: map[PageNo][]byte{}, spilled: roaring.New(), spilledAll: roaring.New(),
		ct: &clientTxn{sess: s, base: base, sent: roaring.New()},
	}
	// With the lock held, no head can move: if none has since the base
	// was pinned, the base is the head, and the owner hears of the
	// transaction only when it commits. Else the owner checks now, and
	// says ErrSnapshotStale if the base is not the head.
	cv.mu.Lock()
	head := cv.sess == s && cv.known == st.version && s.seq.load() == cv.seq
	cv.mu.Unlock()
	if !head {
		if err := t.beginRemote(); err != nil {
			t.releaseHeld()
			return nil, err
		}
	}
	return t, nil
}

// beginRemote begins the transaction in the owner, if it has not yet.
func (t *Txn) beginRemote() error {
	ct := t.ct
	if ct.handle != 0 {
		return nil
	}
	body, err := ct.sess.call(wire.OpBegin, func(e *wire.Encoder) {
		e.String(t.v.name)
		e.Uint(ct.base.cp.handle)
	}, nil)
	if err != nil {
		return err
	}
	d := wire.NewDecoder(body)
	h := d.Uint()
	if err := d.Err(); err != nil {
		return err
	}
	ct.handle = h
	return nil
}

// releaseHeld releases the volume's write lock a client's transaction
// held.
func (t *Txn) releaseHeld() {
	v := t.v
	v.writing.Store(false)
	v.cv.c.writeLocks.unlock(v.name)
	v.writer.Unlock()
}

// stage hands the transaction's gathered pages to the owner, after
// cutting it to trunc pages if trunc > 0 (the count plus one).
func (t *Txn) stageRemote(trunc uint64) error {
	if err := t.beginRemote(); err != nil {
		return err
	}
	ct := t.ct
	pages := make([]PageNo, 0, len(t.staged))
	for p := range t.staged {
		pages = append(pages, p)
	}
	_, err := ct.sess.call(wire.OpStage, func(e *wire.Encoder) {
		e.Uint(ct.handle)
		e.Uint(trunc)
		e.Uint(uint64(len(pages)))
		for _, p := range pages {
			e.Uint(uint64(p))
			e.Bytes(t.staged[p])
		}
	}, nil)
	if err != nil {
		return err
	}
	for _, p := range pages {
		ct.sent.Add(uint32(p))
		pageBufs.put(t.staged[p])
		delete(t.staged, p)
	}
	t.stagedBytes = 0
	return nil
}

func (t *Txn) truncateRemote(n uint32) error {
	for p, data := range t.staged {
		if uint32(p) > n {
			delete(t.staged, p)
			t.stagedBytes -= int64(len(data))
			pageBufs.put(data)
		}
	}
	if err := t.stageRemote(uint64(n) + 1); err != nil {
		return err
	}
	if n < ^uint32(0) {
		t.ct.sent.RemoveRange(uint64(n)+1, 1<<32)
	}
	t.pageCount = n
	t.minCount = min(t.minCount, n)
	return nil
}

func (t *Txn) setPageSizeRemote(size int, length int64) error {
	if err := t.stageRemote(0); err != nil {
		return err
	}
	ct := t.ct
	if err := t.beginRemote(); err != nil {
		return err
	}
	body, err := ct.sess.call(wire.OpPageSize, func(e *wire.Encoder) {
		e.Uint(ct.handle)
		e.Uint(uint64(size))
		e.Uint(uint64(length))
	}, nil)
	if err != nil {
		return err
	}
	d := wire.NewDecoder(body)
	n := d.Uint32()
	if err := d.Err(); err != nil {
		return err
	}
	t.pageSize, t.pageCount, t.minCount = uint32(size), n, 0
	ct.sent.Clear()
	ct.sent.AddRange(1, uint64(n)+1)
	return nil
}

func (t *Txn) readPageRemote(p PageNo, dst []byte) ([]byte, error) {
	ct := t.ct
	if !ct.sent.Contains(uint32(p)) {
		if uint32(p) > t.minCount {
			return appendZeros(dst, int(t.pageSize)), nil
		}
		return ct.base.ReadPage(p, dst)
	}
	img, err := ct.sess.readImage(wire.OpReadTxn, ct.handle, p)
	if err != nil {
		return nil, err
	}
	return append(dst, img...), nil
}

func (t *Txn) commitRemote(dur Durability) (*Snapshot, error) {
	defer t.releaseHeld() // after the owner published the commit, or not
	ct := t.ct
	cv := t.v.cv
	t.done = true
	cv.mu.Lock()
	known := cv.known
	if cv.sess != ct.sess {
		known = 0
	}
	cv.dropUnchangedLocked(t)
	cv.mu.Unlock()
	body, err := ct.sess.call(wire.OpCommit, func(e *wire.Encoder) {
		e.Uint(ct.handle)
		e.String(t.v.name)
		e.Uint(ct.base.cp.handle)
		e.Uint(uint64(dur))
		e.Uint(uint64(len(t.staged)))
		for p, img := range t.staged {
			e.Uint(uint64(p))
			e.Bytes(img)
		}
		e.Uint(uint64(known))
	}, nil)
	if err != nil {
		t.dropStaged()
		return nil, fmt.Errorf("commit %q: %w", t.v.name, err)
	}
	a, err := decodePin(body)
	if err != nil {
		t.dropStaged()
		return nil, err
	}
	t.v.stats.commits.Add(1)
	snap := cv.applyPin(ct.sess, known, a)
	cv.keep(snap, t.staged)
	t.dropStaged()
	return snap, nil
}

// dropUnchangedLocked leaves out of t's commit the pages it staged equal
// to their cached image at its base, as the owner's Commit would (which
// would read the base to compare, where the owner's own cache seldom has
// a joined process's pages); the owner stores the others as they are.
func (cv *clientVolume) dropUnchangedLocked(t *Txn) {
	if cv.sess != t.ct.sess || cv.known != t.base.version || t.pageSize != t.base.pageSize {
		return
	}
	for p, data := range t.staged {
		if uint32(p) > t.minCount || uint32(p) > t.base.pageCount {
			continue
		}
		if img, ok := cv.cache[p]; ok && bytes.Equal(img, data) {
			delete(t.staged, p)
			t.stagedBytes -= int64(len(data))
			pageBufs.put(data)
		}
	}
}

// keep caches the images a commit of this process wrote, which are the
// newest, if s, the version the commit made, is still the newest known.
func (cv *clientVolume) keep(s *Snapshot, images map[PageNo][]byte) {
	cv.mu.Lock()
	defer cv.mu.Unlock()
	if cv.sess != s.cp.sess || cv.known != s.st.version || cv.size != s.st.pageSize {
		return
	}
	for p, img := range images {
		if uint32(p) <= s.st.pageCount {
			cv.dropLocked(p)
			cv.cacheLocked(p, bytes.Clone(img))
		}
	}
	cv.trimLocked()
}

// cacheLocked caches img, which is the caller's no more, as page p's at
// the newest version known.
func (cv *clientVolume) cacheLocked(p PageNo, img []byte) {
	cv.cache[p] = img
	cv.bytes += int64(len(img))
	cv.c.cached.Add(int64(len(img)))
}

// trimLocked keeps the process's cached images within Options.CacheBytes,
// every volume together: this volume gives up images, in the map's order,
// which is as good as random.
func (cv *clientVolume) trimLocked() {
	for q := range cv.cache {
		if cv.c.cached.Load() <= cv.c.opts.CacheBytes {
			break
		}
		cv.dropLocked(q)
	}
}

func (t *Txn) rollbackRemote() {
	t.done = true
	t.dropStaged()
	defer t.releaseHeld()
	if t.ct.handle == 0 {
		return // the owner never heard of it
	}
	// Waited for: the volume's write lock is free when it returns, for
	// this process's next transaction as for any other's.
	if !t.ct.sess.dead.Load() {
		t.ct.sess.call(wire.OpRollback, func(e *wire.Encoder) { e.Uint(t.ct.handle) }, nil)
	}
}

func (t *Txn) discardRemote() error {
	t.dropStaged()
	ct := t.ct
	if ct.handle == 0 {
		ct.sent.Clear()
		t.pageSize, t.pageCount, t.minCount = t.base.pageSize, t.base.pageCount, t.base.pageCount
		return nil
	}
	if _, err := ct.sess.call(wire.OpDiscard, func(e *wire.Encoder) { e.Uint(ct.handle) }, nil); err != nil {
		return err
	}
	ct.sent.Clear()
	t.pageSize, t.pageCount, t.minCount = t.base.pageSize, t.base.pageCount, t.base.pageCount
	return nil
}

// local returns this process's own Engine, if it took the directory over.
func (c *client) local() *Engine {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.inner
}

// clientCall runs a Volume method of a client: in the owner, as the admin
// call name with args, or as local on this process's own Volume once it
// took the directory over.
func clientCall[T any](v *Volume, name string, args any, progress func([]byte), local func(*Volume) (T, error)) (T, error) {
	var res T
	for {
		lv, _, err := v.cv.local()
		if err != nil {
			return res, err
		}
		if lv != nil {
			return local(lv)
		}
		err = v.cv.admin(name, args, &res, progress)
		if !errors.Is(err, errTookOver) && !lostOwner(err) {
			return res, err
		}
	}
}

// clientEngineCall is clientCall for an Engine method.
func clientEngineCall[T any](e *Engine, name string, local func(*Engine) (T, error)) (T, error) {
	var res T
	for {
		_, inner, err := e.cl.connect()
		if err != nil {
			return res, err
		}
		if inner != nil {
			return local(inner)
		}
		err = e.cl.admin(name, "", nil, &res, nil)
		if !errors.Is(err, errTookOver) && !lostOwner(err) {
			return res, err
		}
	}
}

// lineageNow returns the volume's lineage as of its newest pin.
func (cv *clientVolume) lineageNow() uint64 {
	if lv, _, err := cv.local(); err == nil && lv != nil {
		return lv.Lineage()
	}
	cv.mu.Lock()
	pinned := cv.sess != nil
	l := cv.lineage
	cv.mu.Unlock()
	if !pinned {
		if s, err := cv.snapshot(); err == nil {
			s.Release()
			cv.mu.Lock()
			l = cv.lineage
			cv.mu.Unlock()
		}
	}
	return l
}

// lostOwner reports whether err says the owner went away before it
// answered: a call that began no transaction is then tried again.
func lostOwner(err error) bool {
	var oe *ownerError
	return errors.Is(err, ErrOwnerLost) && !errors.As(err, &oe)
}

func cmpOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}
