package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cambiumdb/cambium/remote"
)

// gcKillEnv tells a child process of TestGC_KillDuringCollection what to
// collect and when to kill itself.
const gcKillEnv = "CAMBIUM_GCKILL_CHILD"

// gcKillPoint is where a child kills itself: at the n-th request (n drawn
// from 1..most) that matches.
type gcKillPoint struct {
	name  string
	most  int
	match func(remote.Request) bool
}

var gcKillPoints = []gcKillPoint{
	// Compaction uploading the newest version's pages.
	{"compact", 1, func(r remote.Request) bool { return r.Op == remote.OpPut && strings.Contains(r.Key, "/s/") }},
	// Writing the newest version's checkpoint, or the base's.
	{"checkpoint", 2, func(r remote.Request) bool { return r.Op == remote.OpPut && strings.Contains(r.Key, "/k/") }},
	// Deleting commits, rollups, checkpoints, segments.
	{"delete", 10, func(r remote.Request) bool { return r.Op == remote.OpDelete }},
	// Any request.
	{"any", 80, func(remote.Request) bool { return true }},
}

// TestGC_KillDuringCollection: a collection killed with SIGKILL at a
// random request (while compaction uploads segments, when it writes a
// checkpoint, while it deletes, anywhere) leaves a valid remote: a cold
// replica reads every retained version exactly, a replica pulled before
// reads its newest version; a collection run again finishes the job, and
// the remote holds what a finished collection leaves.
func TestGC_KillDuringCollection(t *testing.T) {
	if os.Getenv(gcKillEnv) != "" {
		return
	}
	rounds := 8
	if testing.Short() {
		rounds = 6
	}
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(modelSeed(), 0x6b))
	rem := newFileRemote(t)
	root := strings.TrimPrefix(rem.url, "file://")
	dir := t.TempDir()
	// Pushes after a collection cannot write the rollups whose halves it
	// deleted: quiet.
	quiet := Options{Logger: slog.New(&warnRecorder{})}
	e := openTestEngine(t, dir, quiet)
	t.Cleanup(func() { e.Close() })
	w := newVolWriter(t, attach(t, e, "doc", rem.url, rem.store), 8, 4096)
	w.commit(-1, allPages(32)...)
	mustPush(t, w.v)
	reader := newReplica(t, rem)
	var oldest Version
	kills := map[string]int{}
	for round := range rounds {
		// Many small pushes: the newest version is scattered, and
		// compaction pays.
		for range 8 + rng.IntN(8) {
			w.step()
			mustPush(t, w.v)
		}
		mustPull(t, reader)
		log, err := w.v.Log()
		if err != nil {
			t.Fatal(err)
		}
		// A window that collects some commits.
		from := sort.Search(len(log), func(i int) bool { return log[i].Version > oldest })
		b := from + rng.IntN(len(log)-from)
		now := time.Now()
		opts := GCOptions{Retain: now.Sub(log[b].Time), MinAge: -1, Now: now}
		base := log[b].Version
		at := gcKillPoints[round%len(gcKillPoints)]
		n := 1 + rng.IntN(at.most)

		e.Close()
		if gcKillChild(t, dir, root, opts, at.name, n) {
			kills[at.name]++
		}
		e = openTestEngine(t, dir, quiet)
		w.v = attach(t, e, "doc", rem.url, rem.store)

		checkRetained(t, rem, w, log, base)
		checkHead(t, reader, w.cur)
		res, err := w.v.GC(ctx, opts)
		if err != nil {
			t.Fatalf("round %d: collection after a kill at %s request %d: %v", round, at.name, n, err)
		}
		if res.OldestVersion != base {
			t.Fatalf("round %d: oldest version %d, want %d", round, res.OldestVersion, base)
		}
		checkLayout(t, rem.store, "doc", base)
		checkRetained(t, rem, w, log, base)
		oldest = base
	}
	t.Logf("kills: %v", kills)
	if kills["compact"] == 0 || kills["delete"] == 0 {
		t.Fatalf("kills %v: none during compaction, or none while deleting; the test proves nothing", kills)
	}
}

// gcKillChild runs a collection with opts in a child process on data
// directory dir and the file remote at root, the child killing itself at
// the n-th request of kill point at; it reports whether the child was
// killed (it may finish first).
func gcKillChild(t *testing.T, dir, root string, opts GCOptions, at string, n int) bool {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestGC_KillChild$", "-test.count=1")
	spec := []string{dir, root, strconv.FormatInt(int64(opts.Retain), 10), strconv.FormatInt(opts.Now.UnixNano(), 10), at, strconv.Itoa(n)}
	cmd.Env = append(os.Environ(), gcKillEnv+"="+strings.Join(spec, "|"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return false
	case errors.As(err, &exit):
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			return true
		}
	}
	t.Fatalf("child collecting until %s request %d: %v\n%s", at, n, err, out.String())
	return false
}

// TestGC_KillChild runs in a child process of TestGC_KillDuringCollection.
func TestGC_KillChild(t *testing.T) {
	spec := os.Getenv(gcKillEnv)
	if spec == "" {
		return
	}
	parts := strings.Split(spec, "|")
	dir, root, at := parts[0], parts[1], parts[4]
	retain, _ := strconv.ParseInt(parts[2], 10, 64)
	now, _ := strconv.ParseInt(parts[3], 10, 64)
	n, _ := strconv.Atoi(parts[5])
	i := 0
	for i < len(gcKillPoints) && gcKillPoints[i].name != at {
		i++
	}
	match, seen := gcKillPoints[i].match, 0
	fs, err := remote.NewFileStore(root)
	if err != nil {
		t.Fatal(err)
	}
	killer := remote.NewFaultStore(fs, remote.ScheduleFunc(func(r remote.Request) remote.Action {
		if match(r) {
			if seen++; seen == n {
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
				select {}
			}
		}
		return remote.Action{}
	}))
	e := openTestEngine(t, dir, Options{})
	v := attach(t, e, "doc", "file://"+root, killer)
	res, err := v.GC(context.Background(), GCOptions{Retain: time.Duration(retain), MinAge: -1, Now: time.Unix(0, now)})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("collected without reaching %s request %d: %+v\n", at, n, res)
}
