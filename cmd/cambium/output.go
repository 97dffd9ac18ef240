package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/cambiumdb/cambium/engine"
	"github.com/cambiumdb/cambium/remote"
)

// emit prints a result: v as one line of JSON with --json, else what text
// writes.
func (g *globals) emit(v any, text func(w io.Writer)) error {
	if g.json {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(g.stdout, "%s\n", b)
		return err
	}
	text(g.stdout)
	return nil
}

// bar returns a progress bar on standard error, shown only when it is a
// terminal. max < 0 makes a spinner (unknown total). bytes counts bytes
// rather than items.
func (g *globals) bar(max int64, desc string, bytes bool) *progressbar.ProgressBar {
	opts := []progressbar.Option{
		progressbar.OptionSetWriter(g.stderr),
		progressbar.OptionSetVisibility(g.tty),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100 * time.Millisecond),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSetPredictTime(max > 0),
		progressbar.OptionSpinnerType(14),
	}
	if bytes {
		opts = append(opts, progressbar.OptionShowBytes(true))
	} else {
		opts = append(opts, progressbar.OptionShowCount(), progressbar.OptionSetItsString("pages"), progressbar.OptionShowIts())
	}
	return progressbar.NewOptions64(max, opts...)
}

// stageBars shows a progress bar per stage of a long command (verify's
// pages then frames; gc's list, read, compact, delete), each replacing the
// one before; a stage with no known total is a spinner. units names what
// a stage counts ("pages" if it is not named).
type stageBars struct {
	g      *globals
	prefix string
	units  map[string]string

	stage string
	total int64
	bar   *progressbar.ProgressBar
}

// set shows done of total for stage.
func (b *stageBars) set(stage string, done, total int64) {
	if b.bar == nil || stage != b.stage || total != b.total {
		b.Finish()
		b.stage, b.total = stage, total
		b.bar = b.g.bar(cmp.Or(max(total, 0), -1), b.prefix+" "+stage, false)
		if u, ok := b.units[stage]; ok {
			progressbar.OptionSetItsString(u)(b.bar)
		}
	}
	b.bar.Set64(done)
}

// Finish clears the bar of the last stage.
func (b *stageBars) Finish() {
	if b.bar != nil {
		b.bar.Finish()
	}
}

// progressStore moves a progress bar by the payload bytes of the requests
// of one direction that pass through it.
type progressStore struct {
	remote.Store
	bar    *progressbar.ProgressBar
	writes bool // count writes (Put, Create), else reads (Get, GetRange)
	n      atomic.Int64
}

func (p *progressStore) add(n int) {
	p.n.Add(int64(n))
	p.bar.Add(n)
}

func (p *progressStore) Get(ctx context.Context, key string) ([]byte, error) {
	b, err := p.Store.Get(ctx, key)
	if !p.writes {
		p.add(len(b))
	}
	return b, err
}

func (p *progressStore) GetRange(ctx context.Context, key string, off, n int64) ([]byte, error) {
	b, err := p.Store.GetRange(ctx, key, off, n)
	if !p.writes {
		p.add(len(b))
	}
	return b, err
}

func (p *progressStore) Put(ctx context.Context, key string, data []byte) error {
	err := p.Store.Put(ctx, key, data)
	if p.writes && err == nil {
		p.add(len(data))
	}
	return err
}

func (p *progressStore) Create(ctx context.Context, key string, data []byte) error {
	err := p.Store.Create(ctx, key, data)
	if p.writes && err == nil {
		p.add(len(data))
	}
	return err
}

// state names a volume's replication state as PRAGMA cambium_status does:
// local-only, synced, ahead, behind or diverged; remote-only for a volume
// the data directory does not have. remoteVersion is the newest remote
// version known (from the remote itself when it was asked).
func state(local bool, head engine.Version, rs engine.ReplicationState, remoteVersion engine.Version) string {
	switch {
	case !local:
		return "remote-only"
	case rs.Remote == "":
		return "local-only"
	case rs.Diverged:
		return "diverged"
	case head > rs.Pushed:
		return "ahead"
	case remoteVersion > head:
		return "behind"
	}
	return "synced"
}

// duration formats a duration for people without its zero units: 24h,
// 1h30m, 15m, 0s.
func duration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// size formats a byte count for people: 20.5 MB, 3.1 kB, 512 B.
func size(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	f, u := float64(n), 0
	for f >= unit && u < 5 {
		f /= unit
		u++
	}
	return fmt.Sprintf("%.1f %cB", f, "kMGTPE"[u-1])
}

// count formats an integer with thousands separators: 20,000.
func count[T ~int | ~int64 | ~uint32 | ~uint64](n T) string {
	s := fmt.Sprint(n)
	sign, digits := "", s
	if strings.HasPrefix(s, "-") {
		sign, digits = "-", s[1:]
	}
	var b strings.Builder
	b.WriteString(sign)
	for i, c := range digits {
		if i > 0 && (len(digits)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// plural returns "1 page" or "2 pages".
func plural[T ~int | ~int64 | ~uint32 | ~uint64](n T, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return count(n) + " " + many
}

// percent formats part/whole: 0.3%.
func percent(part, whole int64) string {
	if whole <= 0 {
		return "-"
	}
	p := 100 * float64(part) / float64(whole)
	if p < 10 {
		return fmt.Sprintf("%.1f%%", p)
	}
	return fmt.Sprintf("%.0f%%", p)
}
