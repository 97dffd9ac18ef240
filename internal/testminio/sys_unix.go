//go:build unix

package testminio

import (
	"os"
	"syscall"
)

// terminateSignal asks the server to shut down cleanly.
var terminateSignal os.Signal = syscall.SIGTERM

// lockFile takes an exclusive lock on the file at path, waiting for other
// processes that hold it, and returns the function that releases it.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}
