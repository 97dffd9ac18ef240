package extension

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
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

type syncer struct {
	refs int
	stop chan struct{}
	done chan struct{}
}

// startSync starts (or joins) the volume's background loop: every
// interval, push if the volume has unpushed commits, else pull. It returns
// the function that leaves it; the last to leave stops it.
func startSync(vol *engine.Volume, interval time.Duration) func() {
	syncers.Lock()
	defer syncers.Unlock()
	if syncers.running == nil {
		syncers.running = map[*engine.Volume]*syncer{}
	}
	s, ok := syncers.running[vol]
	if !ok {
		s = &syncer{stop: make(chan struct{}), done: make(chan struct{})}
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
				close(s.stop)
				<-s.done
			}
		})
	}
}

func (s *syncer) loop(vol *engine.Volume, interval time.Duration) {
	defer close(s.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), max(interval, time.Minute))
		var err error
		st := vol.Replication()
		if head, _, _ := vol.Head(); head > st.Pushed {
			_, err = vol.Push(ctx)
		} else if !st.Diverged {
			_, err = vol.Pull(ctx)
		}
		cancel()
		switch {
		case err != nil && !errors.Is(err, engine.ErrBusy) && !failing:
			slog.Warn("cambium: background sync failed; retrying every interval", "volume", vol.Name(), "err", err)
			failing = true
		case err == nil && failing:
			slog.Info("cambium: background sync recovered", "volume", vol.Name())
			failing = false
		}
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
	}
	if err != nil {
		return "", withCode(fmt.Errorf("pragma %s: %w", name, err), ErrorCode(err, CodeIOErr))
	}
	b, err := json.Marshal(out)
	return string(b), err
}
