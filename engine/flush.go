package engine

import "fmt"

// Flush writes everything the store holds in memory (recent commits live in
// Pebble's memtable, and in the commit log) to its sorted table files, and
// waits until it is done. Commits are durable without it; it is for tools
// and tests that want every page in a table file, where each block carries
// a checksum that reads verify.
func (e *Engine) Flush() error {
	if e.cl != nil {
		_, err := clientEngineCall(e, "flush", func(l *Engine) (struct{}, error) { return struct{}{}, l.Flush() })
		return err
	}
	e.mu.Lock()
	closed := e.mu.closed
	e.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if err := e.settle(); err != nil {
		return err
	}
	if err := e.db.Flush(); err != nil {
		return fmt.Errorf("flush %s: %w", e.dir, err)
	}
	return nil
}
