package extension

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/cambiumdb/cambium/engine"
	"github.com/cambiumdb/cambium/remote"
)

// pragmaTimeout bounds a replication pragma, and the pull of a volume
// opened from its remote.
const pragmaTimeout = 10 * time.Minute

// stores shares one object store per remote URL in the process.
var stores struct {
	sync.Mutex
	open map[string]remote.Store
}

// RegisterRemote makes s the store that remote=url opens in this process,
// instead of the one remote.Open would make: for custom clients, and for
// wrapped stores (counting, latency) in benchmarks and tests. It must be
// called before a volume is opened with that URL.
func RegisterRemote(url string, s remote.Store) {
	stores.Lock()
	defer stores.Unlock()
	if stores.open == nil {
		stores.open = map[string]remote.Store{}
	}
	stores.open[url] = s
}

func storeFor(url string) (remote.Store, error) {
	stores.Lock()
	defer stores.Unlock()
	if s, ok := stores.open[url]; ok {
		return s, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := remote.Open(ctx, url)
	if err != nil {
		return nil, err
	}
	if stores.open == nil {
		stores.open = map[string]remote.Store{}
	}
	stores.open[url] = s
	return s, nil
}

func attach(vol *engine.Volume, url string) error {
	s, err := storeFor(url)
	if err != nil {
		return err
	}
	return vol.Attach(url, s)
}

// syncers runs one background replication loop per volume while any file
// that asked for it is open.
var syncers struct {
	sync.Mutex
	running map[*engine.Volume]*syncer
}

// syncer is a volume's background loop. Files that share it share its
// interval and its collection settings: those of the file that started
// it (a second file's different sync=, retain= or min_age= apply only
// once the first has closed and the loop restarts).
type syncer struct {
	refs int
	gc   engine.GCOptions
	// ctx is cancelled when the last file leaves: it stops the loop and
	// cuts a collection short (which is safe: the next one finishes the
	// job); a push in progress is let finish.
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

// gcEvery returns how often a writer that syncs every interval, with
// gc's min_age, collects its remote: after a push, once gcEvery has
// passed since its last collection (the first collection follows the
// first push, so that a short-lived writer collects too). A collection
// costs a LIST of every object of the volume (about three per push kept
// in the window) and may rewrite the newest version's pages (compaction),
// so it must not follow every push:
//   - garbage cannot be deleted before it is min_age old (15 minutes by
//     default), so collecting more often than that repeats the LIST for
//     little; collecting every min_age keeps garbage at most about twice
//     min_age old;
//   - at most once every 60 intervals, so that the LIST's requests stay a
//     small fraction of the requests syncing makes;
//   - and never more often than once a minute.
func gcEvery(interval time.Duration, gc engine.GCOptions) time.Duration {
	return max(time.Minute, cmp.Or(gc.MinAge, engine.DefaultMinAge), 60*interval)
}

// gcTimeout bounds a background collection; one cut short is finished by
// the next.
const gcTimeout = pragmaTimeout

// startSync starts (or joins) the volume's background loop: every
// interval, push if the volume has unpushed commits, else pull; after a
// push, collect the remote every gcEvery with gc's settings. It returns
// the function that leaves it; the last to leave stops it.
func startSync(vol *engine.Volume, interval time.Duration, gc engine.GCOptions) func() {
	syncers.Lock()
	defer syncers.Unlock()
	if syncers.running == nil {
		syncers.running = map[*engine.Volume]*syncer{}
	}
	s, ok := syncers.running[vol]
	if !ok {
		s = &syncer{gc: gc, done: make(chan struct{})}
		s.ctx, s.cancel = context.WithCancel(context.Background())
		syncers.running[vol] = s
		go s.loop(vol, interval)
	}
	s.refs++
	var once sync.Once
	return func() {
		once.Do(func() {
			syncers.Lock()
			s.refs--
			last := s.refs == 0
			if last {
				delete(syncers.running, vol)
			}
			syncers.Unlock()
			if last {
				s.cancel()
				<-s.done
			}
		})
	}
}

func (s *syncer) loop(vol *engine.Volume, interval time.Duration) {
	defer close(s.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	every := gcEvery(interval, s.gc)
	syncing := trouble{vol: vol, what: "sync", retry: "retrying every interval"}
	collecting := trouble{vol: vol, what: "garbage collection", retry: fmt.Sprintf("syncing goes on; retrying in %s", every)}
	var lastGC time.Time
	// One loop per volume runs across the processes that share the data
	// directory (engine.Volume.SyncTurn).
	holder := fmt.Sprintf("%d/%p", os.Getpid(), s)
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		if !vol.SyncTurn(holder, 3*interval) {
			// Another process's loop syncs the volume.
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), max(interval, time.Minute))
		var err error
		pushed := false
		st := vol.Replication()
		if head, _, _ := vol.Head(); head > st.Pushed {
			_, err = vol.Push(ctx)
			pushed = err == nil
		} else if !st.Diverged {
			_, err = vol.Pull(ctx)
		}
		cancel()
		syncing.note(err)
		// Only the writer collects: a reader never pushes.
		if pushed && time.Since(lastGC) >= every {
			ctx, cancel := context.WithTimeout(s.ctx, gcTimeout)
			_, err := vol.GC(ctx, s.gc)
			cancel()
			if s.ctx.Err() == nil {
				collecting.note(err)
			}
			lastGC = time.Now()
		}
	}
}

// trouble logs the first failure of a background task and its recovery,
// not every failure in between: a remote down for an hour logs twice.
type trouble struct {
	vol         *engine.Volume
	what, retry string
	failing     bool
}

func (t *trouble) note(err error) {
	switch {
	case errors.Is(err, engine.ErrBusy):
		// Another push or pull of the volume is running: not a failure.
	case err != nil && !t.failing:
		slog.Warn("cambium: background "+t.what+" failed; "+t.retry, "volume", t.vol.Name(), "err", err)
		t.failing = true
	case err == nil && t.failing:
		slog.Info("cambium: background "+t.what+" recovered", "volume", t.vol.Name())
		t.failing = false
	}
}

// replicate runs one replication pragma and renders its result.
func (f *File) replicate(name, value string) (string, error) {
	if value != "" {
		return "", withCode(fmt.Errorf("pragma %s takes no value", name), CodeError)
	}
	if f.remote == "" {
		return "", withCode(fmt.Errorf("pragma %s on %q: no remote: open it with remote=URL or set CAMBIUM_REMOTE", name, f.name), CodeError)
	}
	if f.fixed != nil {
		return "", withCode(fmt.Errorf("pragma %s on %q: opened read-only at version %d", name, f.name, f.fixed.Version()), CodeReadOnly)
	}
	ctx, cancel := context.WithTimeout(context.Background(), pragmaTimeout)
	defer cancel()
	var out any
	var err error
	switch name {
	case "cambium_push":
		out, err = f.vol.Push(ctx)
	case "cambium_pull":
		out, err = f.vol.Pull(ctx)
	case "cambium_fetch":
		out, err = f.vol.Poll(ctx)
	case "cambium_hydrate":
		out, err = f.vol.Hydrate(ctx)
	case "cambium_reset":
		out, err = f.vol.Reset(ctx)
	case "cambium_gc":
		out, err = f.vol.GC(ctx, f.gc)
	}
	if err != nil {
		return "", withCode(fmt.Errorf("pragma %s: %w", name, err), ErrorCode(err, CodeIOErr))
	}
	b, err := json.Marshal(out)
	return string(b), err
}
