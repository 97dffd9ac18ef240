package extension

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cambiumdb/cambium/engine"
)

// Config is a database's Cambium settings. Each is read from the URI
// parameter first, then from the environment variable. The zero Config
// means the defaults (but for Dir, which ParseConfig fills in).
//
// Retain and NoWarm are also settings of the volume itself, which every
// file of the volume in the process shares (engine.Volume.SetRetain and
// SetWarm): when several files open one volume with different settings,
// the last to open sets them.
type Config struct {
	// Dir is the local data directory (dir= / CAMBIUM_DIR; default
	// $XDG_DATA_HOME/cambium, else ~/.local/share/cambium).
	Dir string
	// Remote is the object store URL the volume replicates with (remote= /
	// CAMBIUM_REMOTE): file:///path, s3://bucket/prefix, mem://name; ""
	// for a local-only volume.
	Remote string
	// Sync is the interval of background replication (sync= /
	// CAMBIUM_SYNC): "manual" (0, the default) or a duration such as
	// "5s"; a writer pushes and a reader pulls every Sync.
	Sync time.Duration
	// Version, when HasVersion, opens the volume read-only at that version
	// (version=N, URI only): time travel.
	Version    uint64
	HasVersion bool
	// At, when not zero, opens the volume read-only at the newest version
	// committed at or before it (at=TIMESTAMP in RFC 3339, URI only):
	// restore by time.
	At time.Time
	// Retain, when HasRetain, is how long past versions stay restorable
	// in the remote (retain= / CAMBIUM_RETAIN): a duration, 0 for the
	// newest version only, or engine.RetainForever; else
	// engine.DefaultRetain. PRAGMA cambium_gc and the background
	// collection of sync= keep it, and the data directory prunes the
	// volume's local history (its commit records) to the same window.
	Retain    time.Duration
	HasRetain bool
	// MinAge is the age under which the garbage collector deletes no
	// remote object (min_age= / CAMBIUM_MIN_AGE), so that it never takes
	// the segments of a push in flight; 0 means engine.DefaultMinAge.
	MinAge time.Duration
	// NoWarm turns off rewarming (warm=off / CAMBIUM_WARM=off; on by
	// default): after a pull, the pages this replica had stored and the
	// pull changed are fetched again in the background, so that its
	// readers find them local (engine.Volume.SetWarm).
	NoWarm bool
	// CacheBudget bounds the disk of the page images the data directory
	// stores, every volume together, with the stubs and location records
	// kept for them (cache_budget= / CAMBIUM_CACHE_BUDGET:
	// a size such as 512MiB or 20GiB, or plain bytes; engine.Options
	// CacheBudget): past it, pages safe in the remote are evicted, least
	// recently read first, and fetched again when read. 0, the default,
	// means unbounded. It is a setting of the data directory's engine,
	// which every file of the process on that directory shares: the first
	// open sets it, and a later open that asks for another is an error.
	CacheBudget int64
}

// GCOptions returns the garbage collection the settings ask for: the
// retention window and minimum age, defaults filled in.
func (c Config) GCOptions() engine.GCOptions {
	o := engine.GCOptions{Retain: engine.DefaultRetain, MinAge: c.MinAge}
	if c.HasRetain {
		o.Retain = c.Retain
	}
	return o
}

// MinSync is the shortest background replication interval.
const MinSync = 100 * time.Millisecond

// MinMinAge is the shortest min_age a setting may ask for: an object
// younger than that may belong to a push still uploading on another
// machine. (Tests that collect younger objects call engine.Volume.GC.)
const MinMinAge = time.Minute

// ParseRetain parses a retention window as retain=, CAMBIUM_RETAIN and
// cambium gc --retain take it: a duration of zero or more (24h, 90m; 0s
// keeps the newest version only) or forever (engine.RetainForever).
func ParseRetain(s string) (time.Duration, error) {
	if s == "forever" {
		return engine.RetainForever, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, errors.New("want a duration in h, m or s, such as 24h, 90m or 0s (the newest version only), or forever")
	}
	return d, nil
}

// ParseMinAge parses the garbage collector's minimum object age as
// min_age=, CAMBIUM_MIN_AGE and cambium gc --min-age take it: a duration
// of at least MinMinAge.
func ParseMinAge(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil || d < MinMinAge {
		return 0, fmt.Errorf("want a duration of at least %gm, such as 15m or 1h (a younger object may belong to a push still uploading)", MinMinAge.Minutes())
	}
	return d, nil
}

// ParseWarm parses the rewarm setting as warm=, CAMBIUM_WARM and cambium
// pull --warm take it: on or off (also true or false, 1 or 0), in any
// case.
func ParseWarm(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "on", "true", "1":
		return true, nil
	case "off", "false", "0":
		return false, nil
	}
	return false, errors.New("want on or off (or true, false, 1, 0)")
}

// ParseSize parses a size in bytes as cache_budget=, CAMBIUM_CACHE_BUDGET
// and --cache-budget take it: a positive whole number of bytes, or one
// followed by a unit, KiB, MiB, GiB or TiB (powers of 1024) or KB, MB, GB
// or TB (powers of 1000), such as 512MiB or 20GiB.
func ParseSize(s string) (int64, error) {
	bad := errors.New("want a size such as 512MiB, 20GiB or 1000000 (bytes), more than 0")
	num := strings.TrimRightFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	unit := s[len(num):]
	var mult int64
	switch unit {
	case "", "B":
		mult = 1
	case "KiB":
		mult = 1 << 10
	case "MiB":
		mult = 1 << 20
	case "GiB":
		mult = 1 << 30
	case "TiB":
		mult = 1 << 40
	case "KB":
		mult = 1e3
	case "MB":
		mult = 1e6
	case "GB":
		mult = 1e9
	case "TB":
		mult = 1e12
	default:
		return 0, bad
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || num[0] == '+' || n > (1<<62)/mult {
		return 0, bad
	}
	return n * mult, nil
}

// Settings Cambium reads, and URI parameters SQLite itself uses, which
// ParseConfig lets pass, as it does any parameter starting with '_' (the
// convention drivers use for their own, like ncruces's _pragma and
// _txlock). Any other URI parameter is an error, so that a typo ("dri=")
// is not silently ignored.
var (
	cambiumParams = []string{"dir", "remote", "sync", "retain", "min_age", "warm", "cache_budget", "version", "at"}
	sqliteParams  = []string{"vfs", "mode", "cache", "psow", "nolock", "immutable", "modeof"}
)

// ParseConfig reads the settings from URI parameters (param returns a
// parameter's value and whether it is present) and the environment (env
// returns a variable's value, "" if unset).
func ParseConfig(params map[string][]string, env func(string) string) (Config, error) {
	var names []string
	for k := range params {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if !slices.Contains(cambiumParams, k) && !slices.Contains(sqliteParams, k) && !strings.HasPrefix(k, "_") {
			return Config{}, fmt.Errorf("%w: unknown URI parameter %q (Cambium reads %s; SQLite reads %s; drivers' own start with '_')",
				ErrConfig, k, strings.Join(cambiumParams, ", "), strings.Join(sqliteParams, ", "))
		}
		if vs := params[k]; len(vs) > 1 && slices.Contains(cambiumParams, k) {
			return Config{}, fmt.Errorf("%w: URI parameter %q given %d times", ErrConfig, k, len(vs))
		}
	}
	get := func(param, envName string) (string, string) {
		if vs, ok := params[param]; ok && len(vs) > 0 {
			return vs[0], "URI parameter " + param
		}
		return env(envName), "environment variable " + envName
	}

	var c Config
	dir, from := get("dir", "CAMBIUM_DIR")
	switch {
	case dir == "":
		d, err := defaultDir(env)
		if err != nil {
			return Config{}, err
		}
		c.Dir = d
	case strings.ContainsRune(dir, 0):
		return Config{}, fmt.Errorf("%w: %s: %q contains a NUL byte", ErrConfig, from, dir)
	default:
		c.Dir = filepath.Clean(dir)
	}
	if v, from := get("remote", "CAMBIUM_REMOTE"); v != "" {
		if !strings.Contains(v, "://") || strings.ContainsAny(v, "\x00\n") {
			return Config{}, fmt.Errorf("%w: %s=%q: want file:///absolute/path, s3://bucket/prefix or mem://name", ErrConfig, from, v)
		}
		c.Remote = v
	}
	if v, from := get("sync", "CAMBIUM_SYNC"); v != "" && v != "manual" {
		d, err := time.ParseDuration(v)
		if err != nil || d < MinSync {
			return Config{}, fmt.Errorf("%w: %s=%q: want manual or an interval of at least %s, such as 5s or 1m", ErrConfig, from, v, MinSync)
		}
		if c.Remote == "" {
			return Config{}, fmt.Errorf("%w: %s=%q needs a remote (remote= or CAMBIUM_REMOTE) to sync with", ErrConfig, from, v)
		}
		c.Sync = d
	}
	if v, from := get("retain", "CAMBIUM_RETAIN"); v != "" {
		d, err := ParseRetain(v)
		if err != nil {
			return Config{}, fmt.Errorf("%w: %s=%q: %v", ErrConfig, from, v, err)
		}
		c.Retain, c.HasRetain = d, true
	}
	if v, from := get("min_age", "CAMBIUM_MIN_AGE"); v != "" {
		d, err := ParseMinAge(v)
		if err != nil {
			return Config{}, fmt.Errorf("%w: %s=%q: %v", ErrConfig, from, v, err)
		}
		c.MinAge = d
	}
	if v, from := get("warm", "CAMBIUM_WARM"); v != "" {
		on, err := ParseWarm(v)
		if err != nil {
			return Config{}, fmt.Errorf("%w: %s=%q: %v", ErrConfig, from, v, err)
		}
		c.NoWarm = !on
	}
	if v, from := get("cache_budget", "CAMBIUM_CACHE_BUDGET"); v != "" {
		n, err := ParseSize(v)
		if err != nil {
			return Config{}, fmt.Errorf("%w: %s=%q: %v", ErrConfig, from, v, err)
		}
		c.CacheBudget = n
	}
	if vs, ok := params["version"]; ok {
		n, err := strconv.ParseUint(vs[0], 10, 64)
		if err != nil {
			return Config{}, fmt.Errorf("%w: URI parameter version=%q: want a version number (0, 1, 2, ...)", ErrConfig, vs[0])
		}
		c.Version, c.HasVersion = n, true
	}
	if vs, ok := params["at"]; ok {
		at, err := time.Parse(time.RFC3339Nano, vs[0])
		switch {
		case err != nil:
			return Config{}, fmt.Errorf("%w: URI parameter at=%q: want a time in RFC 3339, such as 2026-12-04T18:00:00Z", ErrConfig, vs[0])
		case c.HasVersion:
			return Config{}, fmt.Errorf("%w: URI parameters version= and at= both choose the version to open; pass one", ErrConfig)
		}
		c.At = at
	}
	return c, nil
}

func defaultDir(env func(string) string) (string, error) {
	if x := env("XDG_DATA_HOME"); x != "" && filepath.IsAbs(x) {
		return filepath.Join(x, "cambium"), nil
	}
	home := env("HOME")
	if home == "" {
		h, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("%w: no dir= or CAMBIUM_DIR, and no home directory for the default: %v", ErrConfig, err)
		}
		home = h
	}
	return filepath.Join(home, ".local", "share", "cambium"), nil
}
