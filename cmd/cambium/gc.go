package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/cambiumdb/cambium/engine"
	"github.com/cambiumdb/cambium/extension"
)

func gcCommand(g *globals) *command {
	var (
		minAge string
		dryRun bool
	)
	return &command{
		name:    "gc",
		args:    "NAME",
		summary: "collect the remote: delete what no version of the retention window needs",
		doc: `Collects the volume NAME's remote. Every version committed within the
retention window (--retain, else CAMBIUM_RETAIN, else 24h; 0s keeps the newest
version only, forever keeps them all) stays restorable, and so does the version
in force when the window starts. The collector writes a checkpoint (a full page
map) of that oldest kept version, rewrites the newest version's pages densely
when they are scattered over many segments (compaction, done only where the data
directory has the remote's newest version), then deletes the older commits,
rollups and checkpoints and every segment no kept version reads, except objects
younger than --min-age (else CAMBIUM_MIN_AGE, else 15m; at least 1m): those may
belong to a push still uploading from another machine, and are counted as kept.
It is safe while a writer pushes and while another collector runs; a collection
cut short leaves a valid remote, and the next one finishes the job.

--dry-run reports what a collection would delete and rewrite, and changes
nothing. The remote is --remote, CAMBIUM_REMOTE, or the one the volume
replicates with. A writer opened with sync=INTERVAL collects in the background,
and PRAGMA cambium_gc collects from SQL; cambium log --remote-versions lists
what can still be restored. The data directory keeps the volume's local history
(its commit records) for the same window; every command takes that from
CAMBIUM_RETAIN.`,
		minArgs: 1, maxArgs: 1,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&g.retain, "retain", "", "keep every version of the last `DUR` restorable, such as 24h, 90m or 0s, or forever (CAMBIUM_RETAIN; default 24h)")
			fs.StringVar(&minAge, "min-age", "", "delete no object younger than `DUR`, at least 1m (CAMBIUM_MIN_AGE; default 15m)")
			fs.BoolVar(&dryRun, "dry-run", false, "report what a collection would do, and change nothing")
		},
		run: func(ctx context.Context, args []string) error {
			cfg, err := g.retainConfig()
			if err != nil {
				return err
			}
			if cfg.MinAge, _, err = setting("min-age", minAge, "CAMBIUM_MIN_AGE", extension.ParseMinAge); err != nil {
				return err
			}
			opts := cfg.GCOptions()
			opts.DryRun = dryRun
			return runGC(ctx, g, args[0], opts)
		},
	}
}

type gcResult struct {
	Volume string `json:"volume"`
	Remote string `json:"remote"`
	Retain string `json:"retain"`  // the window kept: a duration or forever
	MinAge string `json:"min_age"` // the age under which nothing was deleted
	engine.GCResult
}

func runGC(ctx context.Context, g *globals, name string, opts engine.GCOptions) error {
	s, err := g.openAttached(ctx, name, existing, nil)
	if err != nil {
		return err
	}
	defer s.Close()
	bars := &stageBars{g: g, prefix: "gc", units: map[string]string{"list": "objects", "read": "commits", "delete": "objects"}}
	opts.Progress = func(p engine.GCProgress) { bars.set(p.Phase, int64(p.Done), int64(p.Total)) }
	r, err := s.v.GC(ctx, opts)
	bars.Finish()
	if err != nil {
		return err
	}
	res := gcResult{Volume: name, Remote: s.url, Retain: "forever", MinAge: duration(cmp.Or(opts.MinAge, engine.DefaultMinAge)), GCResult: r}
	if opts.Retain != engine.RetainForever {
		res.Retain = duration(opts.Retain)
	}
	return g.emit(res, func(w io.Writer) {
		if r.NewestVersion == 0 {
			fmt.Fprintf(w, "%s: nothing to collect in %s: %s\n", name, s.url, r.Note)
			return
		}
		would := ""
		if r.DryRun {
			would = "would have "
			fmt.Fprintf(w, "dry run of gc of %s in %s: nothing was changed\n", name, s.url)
		} else {
			fmt.Fprintf(w, "collected %s in %s\n", name, s.url)
		}
		fmt.Fprintf(w, "  %sdeleted %s (%s)", would, plural(r.DeletedObjects, "object", "objects"), size(r.DeletedBytes))
		if r.KeptYoung > 0 {
			fmt.Fprintf(w, "; kept %s younger than %s (--min-age)", plural(r.KeptYoung, "unneeded object", "unneeded objects"), res.MinAge)
		}
		fmt.Fprintln(w)
		if r.PendingObjects > 0 {
			fmt.Fprintf(w, "  %s no kept version reads (%s), to be deleted by a collection at least %s from now\n",
				plural(r.PendingObjects, "object", "objects"), size(r.PendingBytes), res.MinAge)
		}
		if r.Compacted {
			fmt.Fprintf(w, "  %scompacted version %d: %s rewritten\n", would, r.NewestVersion, plural(r.PagesRewritten, "page", "pages"))
		}
		if r.PreImagesRewritten > 0 {
			fmt.Fprintf(w, "  %srewrote the images at version %d of the %s changed since\n", would, r.OldestVersion, plural(r.PreImagesRewritten, "page", "pages"))
		}
		if r.BytesRewritten > 0 {
			fmt.Fprintf(w, "  %suploaded %s of dense segments\n", would, size(r.BytesRewritten))
		}
		fmt.Fprintf(w, "  restorable: from version %d, committed at %s, to version %d (retain %s)\n",
			r.OldestVersion, r.OldestTime.UTC().Format(time.RFC3339), r.NewestVersion, res.Retain)
		fmt.Fprintf(w, "  remote: %s, %s", plural(r.RemoteObjects, "object", "objects"), size(r.RemoteBytes))
		if r.DryRun {
			fmt.Fprint(w, " after the collection")
		}
		fmt.Fprintf(w, "; %s\n", plural(r.Requests, "request", "requests"))
		if r.Note != "" {
			fmt.Fprintf(w, "  note: %s\n", r.Note)
		}
	})
}
