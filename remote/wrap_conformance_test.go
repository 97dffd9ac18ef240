package remote_test

import (
	"testing"

	"github.com/cambiumdb/cambium/remote"
	"github.com/cambiumdb/cambium/remote/remotetest"
)

// Every wrapper is a Store and must keep the contract of the store it wraps.

func TestCountingStore_Conformance(t *testing.T) {
	remotetest.Run(t, func(testing.TB) remote.Store { return remote.NewCountingStore(remote.NewMemStore()) })
}

func TestLatencyStore_Conformance(t *testing.T) {
	remotetest.Run(t, func(tb testing.TB) remote.Store {
		s, err := remote.NewLatencyStore(remote.NewMemStore(), remote.LatencyOptions{BytesPerSecond: 1 << 40})
		if err != nil {
			tb.Fatal(err)
		}
		return s
	})
}

func TestFaultStore_Conformance(t *testing.T) {
	remotetest.Run(t, func(tb testing.TB) remote.Store {
		// A schedule that never fires must be invisible.
		return remote.NewFaultStore(remote.NewMemStore(), remote.Never)
	})
}
