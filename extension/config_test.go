package extension

import (
	"cmp"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cambiumdb/cambium/engine"
)

// parse runs ParseConfig on URI parameters given as "k=v" and an
// environment given as "K=V".
func parse(uri, env []string) (Config, error) {
	params := map[string][]string{"dir": {"/tmp/cambium-config-test"}}
	for _, kv := range uri {
		k, v, _ := strings.Cut(kv, "=")
		params[k] = append(params[k], v)
	}
	return ParseConfig(params, func(name string) string {
		for _, kv := range env {
			if k, v, _ := strings.Cut(kv, "="); k == name {
				return v
			}
		}
		return ""
	})
}

// badConfig is settings ParseConfig refuses with ErrConfig, in an error
// that says each of want.
type badConfig struct {
	name     string
	uri, env []string
	want     []string
}

func checkBadConfigs(t *testing.T, cases []badConfig) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := parse(c.uri, c.env)
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("got %v, want ErrConfig", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q lacks %q", err, w)
				}
			}
		})
	}
}

// TestParseConfig_Retention: retain= and min_age= (and their variables)
// take what they say they take, the URI first, and refuse anything else
// with an error naming the setting, the value and what is accepted.
func TestParseConfig_Retention(t *testing.T) {
	for _, c := range []struct {
		name     string
		uri, env []string
		retain   time.Duration
		minAge   time.Duration
	}{
		{"Defaults", nil, nil, engine.DefaultRetain, engine.DefaultMinAge},
		{"Hours", []string{"retain=48h"}, nil, 48 * time.Hour, engine.DefaultMinAge},
		{"Minutes", []string{"retain=90m", "min_age=1m"}, nil, 90 * time.Minute, time.Minute},
		{"Zero", []string{"retain=0s"}, nil, 0, engine.DefaultMinAge},
		{"Forever", []string{"retain=forever"}, nil, engine.RetainForever, engine.DefaultMinAge},
		{"Env", nil, []string{"CAMBIUM_RETAIN=1h", "CAMBIUM_MIN_AGE=30m"}, time.Hour, 30 * time.Minute},
		{"URIBeforeEnv", []string{"retain=2h", "min_age=2h"}, []string{"CAMBIUM_RETAIN=forever", "CAMBIUM_MIN_AGE=1x"}, 2 * time.Hour, 2 * time.Hour},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := parse(c.uri, c.env)
			if err != nil {
				t.Fatal(err)
			}
			o := cfg.GCOptions()
			if o.Retain != c.retain {
				t.Errorf("retain %v, want %v", o.Retain, c.retain)
			}
			// The engine reads MinAge 0 as its default.
			if got := cmp.Or(o.MinAge, engine.DefaultMinAge); got != c.minAge {
				t.Errorf("min age %v, want %v", got, c.minAge)
			}
		})
	}
	checkBadConfigs(t, []badConfig{
		{"RetainDays", []string{"retain=7d"}, nil, []string{`URI parameter retain="7d"`, "24h", "forever"}},
		{"RetainNegative", []string{"retain=-1h"}, nil, []string{`retain="-1h"`, "want a duration"}},
		{"RetainNoUnit", []string{"retain=24"}, nil, []string{`retain="24"`}},
		{"RetainForeverCase", []string{"retain=Forever"}, nil, []string{`retain="Forever"`}},
		{"RetainEnv", nil, []string{"CAMBIUM_RETAIN=always"}, []string{`environment variable CAMBIUM_RETAIN="always"`, "forever"}},
		{"RetainTwice", []string{"retain=1h", "retain=2h"}, nil, []string{`"retain" given 2 times`}},
		{"MinAgeTooShort", []string{"min_age=30s"}, nil, []string{`URI parameter min_age="30s"`, "at least 1m", "push"}},
		{"MinAgeZero", []string{"min_age=0s"}, nil, []string{`min_age="0s"`, "at least 1m"}},
		{"MinAgeNegative", []string{"min_age=-20m"}, nil, []string{`min_age="-20m"`}},
		{"MinAgeForever", []string{"min_age=forever"}, nil, []string{`min_age="forever"`}},
		{"MinAgeEnv", nil, []string{"CAMBIUM_MIN_AGE=5"}, []string{`environment variable CAMBIUM_MIN_AGE="5"`}},
	})
}

// A Config made in code, not parsed, keeps the default window: its zero
// Retain is not "the newest version only".
func TestConfig_GCOptions(t *testing.T) {
	if o := (Config{}).GCOptions(); o.Retain != engine.DefaultRetain || o.MinAge != 0 {
		t.Fatalf("zero Config: %+v", o)
	}
	if o := (Config{Retain: 0, HasRetain: true, MinAge: time.Hour}).GCOptions(); o.Retain != 0 || o.MinAge != time.Hour {
		t.Fatalf("retain=0s, min_age=1h: %+v", o)
	}
}

// TestParseConfig_Warm: warm= and CAMBIUM_WARM take on or off (true,
// false, 1, 0, in any case), the URI first, on by default; anything else
// is an error naming the setting, the value and what is accepted.
func TestParseConfig_Warm(t *testing.T) {
	for _, c := range []struct {
		name     string
		uri, env []string
		warm     bool
	}{
		{"Default", nil, nil, true},
		{"Off", []string{"warm=off"}, nil, false},
		{"On", []string{"warm=on"}, nil, true},
		{"FalseUpper", []string{"warm=FALSE"}, nil, false},
		{"True", []string{"warm=True"}, nil, true},
		{"Zero", []string{"warm=0"}, nil, false},
		{"One", []string{"warm=1"}, nil, true},
		{"EnvOff", nil, []string{"CAMBIUM_WARM=Off"}, false},
		{"URIBeforeEnv", []string{"warm=on"}, []string{"CAMBIUM_WARM=off"}, true},
		{"URIBeforeBadEnv", []string{"warm=off"}, []string{"CAMBIUM_WARM=lukewarm"}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := parse(c.uri, c.env)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.NoWarm == c.warm {
				t.Errorf("NoWarm %v, want warm %v", cfg.NoWarm, c.warm)
			}
		})
	}
	checkBadConfigs(t, []badConfig{
		{"Yes", []string{"warm=yes"}, nil, []string{`URI parameter warm="yes"`, "want on or off"}},
		{"Two", []string{"warm=2"}, nil, []string{`URI parameter warm="2"`, "want on or off"}},
		{"Padded", []string{"warm= on"}, nil, []string{`URI parameter warm=" on"`}},
		{"Env", nil, []string{"CAMBIUM_WARM=lukewarm"}, []string{`environment variable CAMBIUM_WARM="lukewarm"`, "want on or off"}},
		{"Twice", []string{"warm=on", "warm=off"}, nil, []string{`"warm" given 2 times`}},
	})
}

// TestParseConfig_CacheBudget: cache_budget= (and CAMBIUM_CACHE_BUDGET)
// take sizes with binary or decimal units, or plain bytes; absent is
// unbounded; anything else is a clear error.
func TestParseConfig_CacheBudget(t *testing.T) {
	for _, c := range []struct {
		name     string
		uri, env []string
		want     int64
	}{
		{"Absent", nil, nil, 0},
		{"MiB", []string{"cache_budget=512MiB"}, nil, 512 << 20},
		{"GiB", []string{"cache_budget=20GiB"}, nil, 20 << 30},
		{"KiB", []string{"cache_budget=64KiB"}, nil, 64 << 10},
		{"MB", []string{"cache_budget=100MB"}, nil, 100e6},
		{"Bytes", []string{"cache_budget=1000000"}, nil, 1000000},
		{"BytesUnit", []string{"cache_budget=4096B"}, nil, 4096},
		{"Env", nil, []string{"CAMBIUM_CACHE_BUDGET=1GiB"}, 1 << 30},
		{"URIBeforeEnv", []string{"cache_budget=2GiB"}, []string{"CAMBIUM_CACHE_BUDGET=1x"}, 2 << 30},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := parse(c.uri, c.env)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.CacheBudget != c.want {
				t.Fatalf("budget %d, want %d", cfg.CacheBudget, c.want)
			}
		})
	}
	checkBadConfigs(t, []badConfig{
		{"Zero", []string{"cache_budget=0"}, nil, []string{`URI parameter cache_budget="0"`, "512MiB"}},
		{"Negative", []string{"cache_budget=-1GiB"}, nil, []string{`cache_budget="-1GiB"`}},
		{"LowerCase", []string{"cache_budget=512mib"}, nil, []string{`cache_budget="512mib"`}},
		{"Space", []string{"cache_budget=512 MiB"}, nil, []string{`cache_budget="512 MiB"`}},
		{"Fraction", []string{"cache_budget=1.5GiB"}, nil, []string{`cache_budget="1.5GiB"`}},
		{"NoNumber", []string{"cache_budget=GiB"}, nil, []string{`cache_budget="GiB"`}},
		{"Huge", []string{"cache_budget=9000000TiB"}, nil, []string{`cache_budget="9000000TiB"`}},
		{"EnvWords", nil, []string{"CAMBIUM_CACHE_BUDGET=lots"}, []string{`environment variable CAMBIUM_CACHE_BUDGET="lots"`}},
		{"Twice", []string{"cache_budget=1GiB", "cache_budget=2GiB"}, nil, []string{`"cache_budget" given 2 times`}},
	})
}
