package engine

import (
	"bufio"
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
	c := &client{dir: dir, opts: opts, sess: sess, volumes: map[string]*Volume{}, stop: make(chan struct{})}
	e := &Engine{opts: opts, dir: dir, cl: c}
	c.outer = e
	go c.idle()
	return e, nil
}

// ownOrJoin takes the directory's lock and opens it, or connects to the
// process that holds it.
func ownOrJoin(opts Options, dir string) (*Engine, *session, error) {
	deadline := time.Now().Add(joinTimeout)
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
		if !errors.Is(err, ErrDirLocked) || opts.Exclusive || lockHolder(dir) == os.Getpid() {
			return nil, nil, err
		}
		s, derr := dialOwner(dir)
		if derr == nil {
			return nil, s, nil
		}
		var oe *ownerError
		if errors.As(derr, &oe) || time.Now().After(deadline) {
			return nil, nil, fmt.Errorf("%w: %s does not answer on %s: %w", err, "it", filepath.Join(dir, socketName), derr)
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

// session is one connection to an owner.
type session struct {
	c     *net.UnixConn
	seq   *seqFile
	owner int // the owner's process ID
	wmu   sync.Mutex
	dead  atomic.Bool

	mu struct {
		sync.Mutex
		calls map[uint32]*pending
		next  uint32
		err   error // why the connection ended
	}
}

// pending is a call waiting for its answer.
type pending struct {
	done     chan wire.Frame // the done or failed answer, its body a copy
	progress func([]byte)
}

func dialOwner(dir string) (*session, error) {
	addr, done, err := sockAddr(dir)
	if err != nil {
		return nil, err
	}
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: addr, Net: "unix"})
	done()
	if err != nil {
		return nil, err
	}
	s := &session{c: c}
	s.mu.calls = map[uint32]*pending{}
	go s.read()
	body, err := s.call(wire.OpHello, func(e *wire.Encoder) {
		e.Uint(wire.Protocol)
		e.Uint(uint64(os.Getpid()))
	}, nil)
	if err != nil {
		s.close()
		return nil, err
	}
	d := wire.NewDecoder(body)
	d.Uint()
	s.owner = int(d.Uint())
	name := d.String()
	if err := d.Err(); err != nil || name != seqName {
		s.close()
		return nil, fmt.Errorf("hello from the owner: %v, sequence file %q", err, name)
	}
	if s.seq, err = openSeq(dir, false); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// read delivers answers to their calls until the connection ends.
func (s *session) read() {
	r := bufio.NewReaderSize(s.c, 64<<10)
	var buf []byte
	for {
		f, err := wire.ReadFrame(r, &buf)
		if err != nil {
			s.fail(err)
			return
		}
		s.mu.Lock()
		p := s.mu.calls[f.Call]
		if f.Kind != wire.Progress {
			delete(s.mu.calls, f.Call)
		}
		s.mu.Unlock()
		if p == nil {
			continue
		}
		f.Body = append([]byte(nil), f.Body...)
		if f.Kind == wire.Progress {
			if p.progress != nil {
				p.progress(f.Body)
			}
			continue
		}
		p.done <- f
	}
}

// fail ends the session: every call waiting, and every later one, fails
// with ErrOwnerLost.
func (s *session) fail(err error) {
	s.mu.Lock()
	if s.mu.err == nil {
		s.mu.err = fmt.Errorf("%w (process %d): %v", ErrOwnerLost, s.owner, err)
	}
	calls := s.mu.calls
	s.mu.calls = map[uint32]*pending{}
	s.mu.Unlock()
	s.dead.Store(true)
	for _, p := range calls {
		p.done <- wire.Frame{Kind: 0}
	}
}

func (s *session) close() {
	s.c.Close()
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

// call sends a call and waits for its answer's body; progress, if set,
// gets the body of each progress answer.
func (s *session) call(kind byte, fields func(*wire.Encoder), progress func([]byte)) ([]byte, error) {
	p := &pending{done: make(chan wire.Frame, 1), progress: progress}
	s.mu.Lock()
	if s.mu.err != nil {
		s.mu.Unlock()
		return nil, s.mu.err
	}
	s.mu.next++
	if s.mu.next == 0 {
		s.mu.next = 1
	}
	id := s.mu.next
	s.mu.calls[id] = p
	s.mu.Unlock()
	if err := s.send(id, kind, fields); err != nil {
		return nil, err
	}
	f := <-p.done
	switch f.Kind {
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
	return nil, s.lost()
}

// send writes one frame; call 0 wants no answer.
func (s *session) send(call uint32, kind byte, fields func(*wire.Encoder)) error {
	e := wire.Start(make([]byte, 0, 128), call, kind)
	if fields != nil {
		fields(&e)
	}
	b, err := e.Finish()
	if err != nil {
		return err
	}
	s.wmu.Lock()
	_, err = s.c.Write(b)
	s.wmu.Unlock()
	if err != nil {
		s.fail(err)
		return s.lost()
	}
	return nil
}

// client is the state of an Engine that joined an owner.
type client struct {
	outer *Engine
	dir   string
	opts  Options
	stop  chan struct{}

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
		p.sess.send(0, wire.OpRelease, func(e *wire.Encoder) { e.Uint(p.handle) })
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
		if _, err := a.pages.FromUnsafeBytes(pages); err != nil {
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
	cv.bytes = 0
}

func (cv *clientVolume) dropLocked(p PageNo) {
	if img, ok := cv.cache[p]; ok {
		cv.bytes -= int64(len(img))
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
	body, err := s.cp.sess.call(wire.OpRead, func(e *wire.Encoder) {
		e.Uint(s.cp.handle)
		e.Uint(uint64(p))
	}, nil)
	if err != nil {
		return nil, err
	}
	d := wire.NewDecoder(body)
	img := d.Bytes()
	if err := d.Err(); err != nil {
		return nil, err
	}
	if newest {
		cv.mu.Lock()
		if cv.sess == s.cp.sess && cv.known == s.st.version {
			if _, ok := cv.cache[p]; !ok {
				cv.cache[p] = img
				cv.bytes += int64(len(img))
				for q, b := range cv.cache {
					if cv.bytes <= cv.c.opts.CacheBytes {
						break
					}
					cv.bytes -= int64(len(b))
					delete(cv.cache, q)
				}
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
	body, err := s.call(wire.OpBegin, func(e *wire.Encoder) {
		e.String(cv.name)
		e.Uint(base.cp.handle)
	}, nil)
	if err != nil {
		return nil, err
	}
	d := wire.NewDecoder(body)
	h := d.Uint()
	if err := d.Err(); err != nil {
		return nil, err
	}
	st := base.st
	return &Txn{
		v: cv.v, base: st, version: st.version + 1,
		pageSize: st.pageSize, pageCount: st.pageCount, minCount: st.pageCount,
		staged: map[PageNo][]byte{},
		ct:     &clientTxn{sess: s, handle: h, base: base, sent: roaring.New()},
	}, nil
}

// stage hands the transaction's gathered pages to the owner, after
// cutting it to trunc pages if trunc > 0 (the count plus one).
func (t *Txn) stageRemote(trunc uint64) error {
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
	body, err := ct.sess.call(wire.OpReadTxn, func(e *wire.Encoder) {
		e.Uint(ct.handle)
		e.Uint(uint64(p))
	}, nil)
	if err != nil {
		return nil, err
	}
	d := wire.NewDecoder(body)
	img := d.Bytes()
	if err := d.Err(); err != nil {
		return nil, err
	}
	return append(dst, img...), nil
}

func (t *Txn) commitRemote(dur Durability) (*Snapshot, error) {
	ct := t.ct
	cv := t.v.cv
	t.done = true
	cv.mu.Lock()
	known := cv.known
	if cv.sess != ct.sess {
		known = 0
	}
	cv.mu.Unlock()
	body, err := ct.sess.call(wire.OpCommit, func(e *wire.Encoder) {
		e.Uint(ct.handle)
		e.Uint(uint64(dur))
		e.Uint(uint64(len(t.staged)))
		for p, img := range t.staged {
			e.Uint(uint64(p))
			e.Bytes(img)
		}
		e.Uint(uint64(known))
	}, nil)
	t.dropStaged()
	if err != nil {
		return nil, fmt.Errorf("commit %q: %w", t.v.name, err)
	}
	a, err := decodePin(body)
	if err != nil {
		return nil, err
	}
	t.v.stats.commits.Add(1)
	return cv.applyPin(ct.sess, known, a), nil
}

func (t *Txn) rollbackRemote() {
	t.done = true
	t.dropStaged()
	if !t.ct.sess.dead.Load() {
		t.ct.sess.send(0, wire.OpRollback, func(e *wire.Encoder) { e.Uint(t.ct.handle) })
	}
}

func (t *Txn) discardRemote() error {
	t.dropStaged()
	ct := t.ct
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
