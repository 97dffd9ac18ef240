package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/cambiumdb/cambium/engine"
	"github.com/cambiumdb/cambium/remote"
)

// openEngine opens the data directory. create says whether a directory
// that was never a data directory may become one (commands that write); a
// command that only reads refuses it, so that a mistyped --dir is not
// turned into an empty store.
func (g *globals) openEngine(create bool) (*engine.Engine, error) {
	if g.dir == "" {
		return nil, usagef("no data directory: pass --dir or set CAMBIUM_DIR (there is no home directory for the default)")
	}
	if !create {
		ok, err := engine.IsDataDir(g.dir)
		if err != nil {
			return nil, fmt.Errorf("data directory %s: %w", g.dir, err)
		}
		if !ok {
			return nil, fmt.Errorf("%s is not a Cambium data directory (pass --dir or set CAMBIUM_DIR)", g.dir)
		}
	}
	return engine.Open(engine.Options{Dir: g.dir, Logger: g.logger})
}

// openScratch opens an engine in a new temporary directory, for commands
// that read a volume from the remote alone; done removes it.
func (g *globals) openScratch() (e *engine.Engine, done func(), err error) {
	dir, err := os.MkdirTemp("", "cambium-scratch-")
	if err != nil {
		return nil, nil, err
	}
	e, err = engine.Open(engine.Options{Dir: dir, Logger: g.logger})
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	return e, func() { closeEngine(e); os.RemoveAll(dir) }, nil
}

// openForRead opens the data directory to read volume name, or, when there
// is no data directory but a remote is set, a scratch engine to read the
// volume from the remote.
func (g *globals) openForRead(name string) (e *engine.Engine, done func(), err error) {
	if g.dir != "" {
		if ok, _ := engine.IsDataDir(g.dir); ok {
			e, err := g.openEngine(false)
			if err != nil {
				return nil, nil, err
			}
			return e, func() { closeEngine(e) }, nil
		}
	}
	if g.remote == "" {
		if g.dir == "" {
			return nil, nil, usagef("no data directory: pass --dir or set CAMBIUM_DIR")
		}
		return nil, nil, fmt.Errorf("no volume %q: %s is not a Cambium data directory (pass --dir, or --remote to read from an object store)", name, g.dir)
	}
	return g.openScratch()
}

// closeEngine closes e. A store that failed badly (Pebble treats on-disk
// corruption as fatal) may fail again closing; the command has reported
// what matters by then.
func closeEngine(e *engine.Engine) {
	defer func() {
		if r := recover(); r != nil {
			slog.Debug("cambium: closing the engine failed", "panic", r)
		}
	}()
	if err := e.Close(); err != nil {
		slog.Warn("cambium: closing the engine failed", "err", err)
	}
}

// volume opens volume name, validating the name first.
func volume(e *engine.Engine, name string) (*engine.Volume, error) {
	if err := engine.ValidateName(name); err != nil {
		return nil, err
	}
	return e.Volume(name)
}

// exists reports whether the volume has ever been committed to locally.
func exists(v *engine.Volume) bool {
	head, _, _ := v.Head()
	return head > 0 || v.Replication().Pushed > 0
}

// openStore opens the object store at url.
func (g *globals) openStore(ctx context.Context, url string) (remote.Store, error) {
	s, err := remote.Open(ctx, url)
	if err != nil {
		if errors.Is(err, remote.ErrInvalidURL) {
			return nil, fmt.Errorf("--remote: %w", err)
		}
		return nil, err
	}
	g.stores = append(g.stores, s)
	return s, nil
}

// remoteFor returns the remote URL for volume v: --remote (or
// CAMBIUM_REMOTE), else the remote the volume replicates with.
func (g *globals) remoteFor(v *engine.Volume) string {
	if g.remote != "" {
		return g.remote
	}
	return v.Replication().Remote
}

// attach attaches v to its remote (see remoteFor), wrapping the store with
// w when w is not nil. It returns the URL; with no remote it returns
// engine.ErrNoRemote.
func (g *globals) attach(ctx context.Context, v *engine.Volume, w func(remote.Store) remote.Store) (string, error) {
	url := g.remoteFor(v)
	if url == "" {
		return "", usagef("%q has no remote: pass --remote URL or set CAMBIUM_REMOTE", v.Name())
	}
	s, err := g.openStore(ctx, url)
	if err != nil {
		return "", err
	}
	if w != nil {
		s = w(s)
	}
	if err := v.Attach(url, s); err != nil {
		return "", err
	}
	return url, nil
}

// absPath makes a file argument absolute, for messages and renames.
func absPath(p string) (string, error) {
	a, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("%s: %w", p, err)
	}
	return a, nil
}

// openVolume opens the data directory and volume name in it, which must
// exist unless create.
func (g *globals) openVolume(name string, create bool) (*engine.Engine, *engine.Volume, error) {
	if err := engine.ValidateName(name); err != nil {
		return nil, nil, err
	}
	e, err := g.openEngine(create)
	if err != nil {
		return nil, nil, err
	}
	v, err := e.Volume(name)
	if err == nil && !create && !exists(v) {
		err = fmt.Errorf("no volume %q in %s", name, g.dir)
	}
	if err != nil {
		closeEngine(e)
		return nil, nil, err
	}
	return e, v, nil
}
