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

// access says how a command opens its volume.
type access int

const (
	// existing: the data directory, which must hold the volume.
	existing access = iota
	// creating: the data directory, made one if need be; the volume may
	// be new (commands that write).
	creating
	// reading: the data directory if it is one, else, with --remote, a
	// scratch engine that reads the volume from the remote alone; the
	// volume need not exist.
	reading
)

// session is the volume a command works on, with the engine that holds it
// and, once attached, the URL of its remote. The command closes it.
type session struct {
	g    *globals
	e    *engine.Engine
	v    *engine.Volume
	url  string // the remote attached, "" before attach
	done func()
}

// open opens volume name as a says. The name is checked before a data
// directory is made for it; reading makes none, and checks it once the
// engine is open. The volume prunes its local history to the retention
// window (see retainConfig), as the VFS's volumes do.
func (g *globals) open(name string, a access) (*session, error) {
	var (
		e    *engine.Engine
		done func()
		err  error
	)
	// A bad name is the first thing said, whatever else is wrong.
	if err := engine.ValidateName(name); err != nil {
		return nil, err
	}
	retain, err := g.retainConfig()
	if err != nil {
		return nil, err
	}
	if a == reading {
		e, done, err = g.openForRead(name)
	} else {
		e, err = g.openEngine(a == creating)
		done = func() { closeEngine(e) }
	}
	if err != nil {
		return nil, err
	}
	v, err := e.Volume(name)
	if err == nil && a == existing && !exists(v) {
		err = fmt.Errorf("no volume %q in %s", name, g.dir)
	}
	if err != nil {
		done()
		return nil, err
	}
	v.SetRetain(retain.GCOptions().Retain)
	return &session{g: g, e: e, v: v, done: done}, nil
}

// Close closes the engine, and removes a scratch engine's directory.
func (s *session) Close() { s.done() }

// attach attaches the volume to its remote (see remoteFor), wrapping the
// store with w when w is not nil, and sets s.url. A volume with no remote
// is a usage error.
func (s *session) attach(ctx context.Context, w func(remote.Store) remote.Store) error {
	url := s.g.remoteFor(s.v)
	if url == "" {
		return usagef("%q has no remote: pass --remote URL or set CAMBIUM_REMOTE", s.v.Name())
	}
	st, err := s.g.openStore(ctx, url)
	if err != nil {
		return err
	}
	if w != nil {
		st = w(st)
	}
	if err := s.v.Attach(url, st); err != nil {
		return err
	}
	s.url = url
	return nil
}

// openAttached opens volume name as a says and attaches it to its remote
// (see attach); the command closes the session.
func (g *globals) openAttached(ctx context.Context, name string, a access, w func(remote.Store) remote.Store) (*session, error) {
	s, err := g.open(name, a)
	if err != nil {
		return nil, err
	}
	if err := s.attach(ctx, w); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

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
	budget, err := g.budget()
	if err != nil {
		return nil, err
	}
	return engine.Open(engine.Options{Dir: g.dir, Logger: g.logger, CacheBudget: budget})
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

// absPath makes a file argument absolute, for messages and renames.
func absPath(p string) (string, error) {
	a, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("%s: %w", p, err)
	}
	return a, nil
}
