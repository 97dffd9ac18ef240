//go:build !cgo

package main

import (
	"fmt"
	"os"
)

// Without cgo there is no extension to build; this keeps the package (and
// go build ./... with CGO_ENABLED=0) well-formed.
func main() {
	fmt.Fprintln(os.Stderr, "libcambium needs cgo: build it with CGO_ENABLED=1 go build -buildmode=c-shared (make extension)")
	os.Exit(2)
}
