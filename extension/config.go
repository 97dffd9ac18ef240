package extension

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// Config is a database's Cambium settings. Each is read from the URI
// parameter first, then from the environment variable.
type Config struct {
	// Dir is the local data directory (dir= / CAMBIUM_DIR; default
	// $XDG_DATA_HOME/cambium, else ~/.local/share/cambium).
	Dir string
}

// Settings Cambium reads, and URI parameters SQLite itself uses, which
// ParseConfig lets pass, as it does any parameter starting with '_' (the
// convention drivers use for their own, like ncruces's _pragma and
// _txlock). Any other URI parameter is an error, so that a typo ("dri=")
// is not silently ignored.
var (
	cambiumParams = []string{"dir", "remote", "sync", "version"}
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
	for _, s := range []struct{ param, env string }{{"remote", "CAMBIUM_REMOTE"}, {"sync", "CAMBIUM_SYNC"}, {"version", ""}} {
		var v, from string
		if s.env != "" {
			v, from = get(s.param, s.env)
		} else if vs, ok := params[s.param]; ok {
			v, from = vs[0], "URI parameter "+s.param
		}
		if v != "" && !(s.param == "sync" && v == "manual") {
			return Config{}, fmt.Errorf("%w: %s=%q: replication and time travel are not in this build yet (local volumes only)", ErrConfig, from, v)
		}
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
