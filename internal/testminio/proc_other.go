//go:build !linux

package testminio

import "os/exec"

// setDeathSignal does nothing: only Linux can tie a child's life to its
// parent's. A test binary killed outright leaves its server running.
func setDeathSignal(*exec.Cmd) {}
