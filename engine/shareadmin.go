package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/cambiumdb/cambium/remote"
)

// The admin calls: every Engine and Volume method a client runs in the
// owner as a whole, by name, its arguments and result as JSON (package
// wire, call 0x0D). A client's progress callbacks get the owner's
// progress answers.

// headInfo is Volume.Head's result.
type headInfo struct {
	Version   Version
	PageCount uint32
	PageSize  int
}

// gcArgs are GCOptions without the callback.
type gcArgs struct {
	Retain, MinAge time.Duration
	DryRun         bool
	Now            time.Time
}

// verifyArgs are VerifyOptions without the callback.
type verifyArgs struct {
	Remote      bool
	MaxProblems int
}

// verifyProgress is one call of VerifyOptions.Progress.
type verifyProgress struct {
	Stage       string
	Done, Total int64
}

// versionAt is VersionAt's result.
type versionAt struct {
	Version Version
	Time    time.Time
}

// admin runs the admin call name on volume vol ("" for the engine's own
// calls) with JSON arguments args.
func (e *Engine) admin(ctx context.Context, name, vol string, args []byte, progress func(any)) (any, error) {
	switch name {
	case "volumes":
		return e.Volumes()
	case "budget":
		return e.Budget(), nil
	case "cached_bytes":
		return e.CachedBytes(ctx)
	case "flush":
		return nil, e.Flush()
	}
	v, err := e.Volume(vol)
	if err != nil {
		return nil, err
	}
	switch name {
	case "head":
		n, c, s := v.Head()
		return headInfo{n, c, s}, nil
	case "writing":
		return v.Writing(), nil
	case "stats":
		return v.Stats(), nil
	case "replication":
		return v.Replication(), nil
	case "remote_stats":
		return v.RemoteStats(), nil
	case "unpushed_bytes":
		return v.UnpushedBytes()
	case "set_retain":
		var d time.Duration
		if err := json.Unmarshal(args, &d); err != nil {
			return nil, err
		}
		v.SetRetain(d)
		return nil, nil
	case "set_warm":
		var on bool
		if err := json.Unmarshal(args, &on); err != nil {
			return nil, err
		}
		v.SetWarm(on)
		return nil, nil
	case "attach":
		var url string
		if err := json.Unmarshal(args, &url); err != nil {
			return nil, err
		}
		if r := v.attached.Load(); r != nil && r.url == url {
			return nil, nil
		}
		s, err := remote.Open(ctx, url)
		if err != nil {
			return nil, err
		}
		return nil, v.Attach(url, s)
	case "push":
		return v.Push(ctx)
	case "pull":
		return v.Pull(ctx)
	case "poll":
		return v.Poll(ctx)
	case "reset":
		return v.Reset(ctx)
	case "hydrate":
		return v.Hydrate(ctx)
	case "warmed":
		return nil, v.Warmed(ctx)
	case "log":
		return v.Log()
	case "remote_log":
		return v.RemoteLog(ctx)
	case "gc":
		var a gcArgs
		if err := json.Unmarshal(args, &a); err != nil {
			return nil, err
		}
		return v.GC(ctx, GCOptions{Retain: a.Retain, MinAge: a.MinAge, DryRun: a.DryRun, Now: a.Now,
			Progress: func(p GCProgress) { progress(p) }})
	case "verify":
		var a verifyArgs
		if err := json.Unmarshal(args, &a); err != nil {
			return nil, err
		}
		return v.Verify(ctx, VerifyOptions{Remote: a.Remote, MaxProblems: a.MaxProblems,
			Progress: func(stage string, done, total int64) { progress(verifyProgress{stage, done, total}) }})
	case "sync_turn":
		var a syncTurnArgs
		if err := json.Unmarshal(args, &a); err != nil {
			return nil, err
		}
		return v.SyncTurn(a.Holder, a.TTL), nil
	case "version_at":
		var t time.Time
		if err := json.Unmarshal(args, &t); err != nil {
			return nil, err
		}
		n, at, err := v.VersionAt(ctx, t)
		return versionAt{n, at}, err
	}
	return nil, fmt.Errorf("unknown admin call %q", name)
}

// syncTurnArgs are SyncTurn's arguments.
type syncTurnArgs struct {
	Holder string
	TTL    time.Duration
}

// syncLease is the background sync loop that has a volume's turn.
type syncLease struct {
	mu      sync.Mutex
	holder  string
	expires time.Time
}

// SyncTurn reports whether the background sync loop called holder (a name
// unique among every process on the data directory) is the one to sync
// the volume this round: one loop per volume runs, whichever process it
// is in, until it stops asking for ttl; then the next to ask takes over.
func (v *Volume) SyncTurn(holder string, ttl time.Duration) bool {
	if v.cv != nil {
		ok, _ := clientCall(v, "sync_turn", syncTurnArgs{holder, ttl}, nil, func(lv *Volume) (bool, error) { return lv.SyncTurn(holder, ttl), nil })
		return ok
	}
	l := &v.syncLease
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if l.holder != holder && now.Before(l.expires) {
		return false
	}
	l.holder, l.expires = holder, now.Add(ttl)
	return true
}
