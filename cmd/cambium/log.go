package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/cambiumdb/cambium/engine"
)

func logCommand(g *globals) *command {
	var (
		limit          int
		remoteVersions bool
	)
	return &command{
		name:    "log",
		args:    "NAME",
		summary: "list a volume's local commits, or the versions its remote keeps, newest first",
		doc: `Lists the commits the data directory stores for the volume NAME, newest first:
the version each made and its parent, when, how many pages it changed, the
page count after it, and whether it is in the remote. A commit pulled from
the remote covers every version one push rolled together, so its parent may
be more than one version back.

With --remote-versions it lists instead the versions the remote keeps, with
their times: what can still be restored (export --version or --at, or the
URI's version= or at=) after garbage collection (cambium gc). When older
commits were collected, the oldest is read from a checkpoint and its parent
shows as 0. The remote is --remote, CAMBIUM_REMOTE, or the one the volume
replicates with; no data directory is needed. (The flag is not --remote,
which names the remote's URL for every command.)`,
		minArgs: 1, maxArgs: 1,
		flags: func(fs *flag.FlagSet) {
			fs.IntVar(&limit, "limit", 0, "list only the newest `N` commits (0: all)")
			fs.BoolVar(&remoteVersions, "remote-versions", false, "list the versions the remote keeps, with their times (what can still be restored)")
		},
		run: func(ctx context.Context, args []string) error {
			if limit < 0 {
				return usagef("--limit %d: want 0 or more", limit)
			}
			return runLog(ctx, g, args[0], limit, remoteVersions)
		},
	}
}

type logEntry struct {
	Version      uint64 `json:"version"`
	Parent       uint64 `json:"parent"`
	Time         string `json:"time"`
	PagesChanged int    `json:"pages_changed"`
	PageCount    uint32 `json:"page_count"`
	Pushed       bool   `json:"pushed"` // in the remote: every remote version is
}

func runLog(ctx context.Context, g *globals, name string, limit int, fromRemote bool) error {
	var s *session
	var err error
	if fromRemote {
		s, err = g.openAttached(ctx, name, reading, nil)
	} else {
		s, err = g.open(name, existing)
	}
	if err != nil {
		return err
	}
	defer s.Close()
	var (
		commits []engine.CommitInfo
		pushed  = func(engine.CommitInfo) string { return "yes" }
	)
	if fromRemote {
		if commits, err = s.v.RemoteLog(ctx); err != nil {
			return err
		}
		if len(commits) == 0 && !exists(s.v) {
			return fmt.Errorf("no volume %q in %s", name, s.url)
		}
	} else {
		if commits, err = s.v.Log(); err != nil {
			return err
		}
		rs := s.v.Replication()
		pushed = func(c engine.CommitInfo) string {
			switch {
			case rs.Remote == "":
				return "-"
			case c.Version <= rs.Pushed:
				return "yes"
			}
			return "no"
		}
	}
	slices.Reverse(commits)
	if limit > 0 && len(commits) > limit {
		commits = commits[:limit]
	}
	list := make([]logEntry, len(commits))
	for i, c := range commits {
		list[i] = logEntry{Version: uint64(c.Version), Parent: uint64(c.Parent), Time: c.Time.UTC().Format(time.RFC3339Nano),
			PagesChanged: c.PagesChanged, PageCount: c.PageCount, Pushed: pushed(c) == "yes"}
	}
	return g.emit(list, func(w io.Writer) {
		if fromRemote && len(commits) == 0 {
			fmt.Fprintf(w, "%s keeps no version of %s\n", s.url, name)
			return
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprint(tw, "VERSION\tPARENT\tTIME (UTC)\tCHANGED\tPAGES")
		if !fromRemote {
			fmt.Fprint(tw, "\tPUSHED")
		}
		fmt.Fprintln(tw)
		for _, c := range commits {
			fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s", c.Version, c.Parent, c.Time.UTC().Format("2006-01-02 15:04:05.000"),
				count(c.PagesChanged), count(c.PageCount))
			if !fromRemote {
				fmt.Fprintf(tw, "\t%s", pushed(c))
			}
			fmt.Fprintln(tw)
		}
		tw.Flush()
	})
}
