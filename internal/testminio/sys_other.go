//go:build !unix

package testminio

import "os"

// terminateSignal is the only signal other systems can always deliver.
var terminateSignal os.Signal = os.Kill

// lockFile does not lock: without flock, concurrent installs from several
// test binaries are left to go install itself.
func lockFile(string) (unlock func(), err error) {
	return func() {}, nil
}
