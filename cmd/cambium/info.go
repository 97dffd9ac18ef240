package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/cambiumdb/cambium/engine"
	"github.com/cambiumdb/cambium/extension"
)

func infoCommand(g *globals) *command {
	return &command{
		name:    "info",
		args:    "NAME",
		summary: "describe a volume: page size and count, versions, replication state",
		doc: `Describes the volume NAME: its page size, page count and size at the newest
version, its local commits, and its replication state: the remote it
follows, the newest version pushed there, and the newest remote version. With
--remote (or for a volume that replicates) the remote is asked for its newest
version, without changing anything locally.`,
		minArgs: 1, maxArgs: 1,
		run: func(ctx context.Context, args []string) error { return runInfo(ctx, g, args[0]) },
	}
}

type infoResult struct {
	Volume        string `json:"volume"`
	Dir           string `json:"dir"`
	PageSize      int    `json:"page_size"`
	PageCount     uint32 `json:"page_count"`
	Bytes         int64  `json:"bytes"`
	Version       uint64 `json:"version"`
	Commits       int    `json:"commits"`
	LastCommit    string `json:"last_commit,omitempty"`
	PushedVersion uint64 `json:"pushed_version"`
	Remote        string `json:"remote"`
	RemoteVersion uint64 `json:"remote_version"`
	RemoteObjects int    `json:"remote_objects"`
	RemoteBytes   int64  `json:"remote_bytes"`
	State         string `json:"state"`
	// The data directory's disk budget: the bytes of page images it
	// stores (every volume), its budget (0: unbounded), how far images
	// that may not be evicted take it over, and what of that this
	// volume's unpushed versions hold; Note says so in words.
	CachedBytes   int64  `json:"cached_bytes"`
	CacheBudget   int64  `json:"cache_budget"`
	OverBudget    int64  `json:"over_budget_bytes"`
	UnpushedBytes int64  `json:"unpushed_bytes"`
	Note          string `json:"note,omitempty"`
}

func runInfo(ctx context.Context, g *globals, name string) error {
	s, err := g.open(name, reading)
	if err != nil {
		return err
	}
	defer s.Close()
	head, pages, ps := s.v.Head()
	rs := s.v.Replication()
	local := exists(s.v)
	res := infoResult{Volume: name, Dir: s.e.Dir(), Version: uint64(head), PageCount: pages, PageSize: ps,
		Bytes: int64(pages) * int64(ps), PushedVersion: uint64(rs.Pushed), Remote: rs.Remote, RemoteVersion: uint64(rs.RemoteVersion)}
	if !local {
		res.Dir = ""
	}
	log, err := s.v.Log()
	if err != nil {
		return err
	}
	res.Commits = len(log)
	if len(log) > 0 {
		res.LastCommit = log[len(log)-1].Time.UTC().Format(time.RFC3339)
	}
	remoteVersion := rs.RemoteVersion
	if rs.Remote != "" && g.remote != "" && g.remote != rs.Remote {
		return fmt.Errorf("%q replicates with %s, not %s", name, rs.Remote, g.remote)
	}
	if url := g.remoteFor(s.v); url != "" {
		st, err := g.openStore(ctx, url)
		if err != nil {
			return err
		}
		rv, err := engine.StatRemoteVolume(ctx, st, name)
		if err != nil {
			return fmt.Errorf("ask %s: %w", url, err)
		}
		if rv.Err != nil {
			return fmt.Errorf("ask %s: %w", url, rv.Err)
		}
		res.RemoteObjects, res.RemoteBytes = rv.Objects, rv.Bytes
		if !local {
			if rv.Objects == 0 {
				return fmt.Errorf("no volume %q in %s or in %s", name, g.dir, url)
			}
			res.Version, res.PageCount, res.PageSize = uint64(rv.Version), rv.PageCount, rv.PageSize
			res.Bytes = int64(rv.PageCount) * int64(rv.PageSize)
			res.Commits = rv.Commits
			if !rv.Time.IsZero() {
				res.LastCommit = rv.Time.UTC().Format(time.RFC3339)
			}
		}
		res.Remote = url
		remoteVersion = max(remoteVersion, rv.Version)
		res.RemoteVersion = uint64(remoteVersion)
	} else if !local {
		return fmt.Errorf("no volume %q in %s", name, g.dir)
	}
	res.State = state(local, head, rs, remoteVersion)
	if local {
		if err := budgetInfo(ctx, s, &res); err != nil {
			return err
		}
	}
	return g.emit(res, func(w io.Writer) {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		row := func(k, f string, args ...any) { fmt.Fprintf(tw, "%s\t"+f+"\n", append([]any{k}, args...)...) }
		row("volume", "%s", res.Volume)
		if res.Dir != "" {
			row("data directory", "%s", res.Dir)
		}
		row("version", "%d", res.Version)
		row("page size", "%s bytes", count(res.PageSize))
		row("page count", "%s", count(res.PageCount))
		row("size", "%s", size(res.Bytes))
		if res.LastCommit != "" {
			row("commits", "%s (newest %s)", count(res.Commits), res.LastCommit)
		} else {
			row("commits", "%s", count(res.Commits))
		}
		row("state", "%s", res.State)
		if res.Remote != "" {
			row("remote", "%s", res.Remote)
			row("pushed version", "%d", res.PushedVersion)
			row("remote version", "%d", res.RemoteVersion)
			if res.RemoteObjects > 0 {
				row("remote objects", "%s (%s)", count(res.RemoteObjects), size(res.RemoteBytes))
			}
		}
		if res.Dir != "" {
			if res.CacheBudget > 0 {
				row("cached images", "%s of a %s budget (data directory)", size(res.CachedBytes), size(res.CacheBudget))
			} else {
				row("cached images", "%s (data directory; no budget)", size(res.CachedBytes))
			}
			if res.UnpushedBytes > 0 {
				row("unpushed images", "%s", size(res.UnpushedBytes))
			}
			if res.Note != "" {
				row("note", "%s", res.Note)
			}
		}
		tw.Flush()
	})
}

// budgetInfo fills in the data directory's disk budget. Over the budget,
// only what may not be evicted counts (images not pushed yet): this
// process evicts the rest as it runs.
func budgetInfo(ctx context.Context, s *session, res *infoResult) error {
	n, err := s.e.CachedBytes(ctx)
	if err != nil {
		return fmt.Errorf("count the data directory's page images: %w", err)
	}
	unpushed, err := s.v.UnpushedBytes()
	if err != nil {
		return err
	}
	res.CachedBytes, res.UnpushedBytes = n, unpushed
	res.CacheBudget = s.e.Budget().Budget
	if b := res.CacheBudget; b > 0 && n > b {
		if st := s.e.Budget(); st.OverBudget > 0 {
			res.OverBudget = st.OverBudget
		} else {
			res.OverBudget = min(n-b, unpushed)
		}
	}
	if res.OverBudget > 0 {
		res.Note = extension.OverBudgetNote(engine.BudgetStats{Budget: res.CacheBudget, OverBudget: res.OverBudget}, s.v)
	}
	return nil
}
