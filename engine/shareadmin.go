package engine

import (
	"context"
	"encoding/json"
	"fmt"
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
