package segment

import (
	"fmt"
	"strconv"
)

// PageNo is a page number. The first page of a database is 1, as in
// SQLite; 0 is never a valid page.
type PageNo uint32

// String returns the page number in decimal.
func (p PageNo) String() string { return strconv.FormatUint(uint64(p), 10) }

// ParsePageNo parses a decimal page number, refusing 0.
func ParsePageNo(s string) (PageNo, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("parse page number %q: %w", s, err)
	}
	if n == 0 {
		return 0, fmt.Errorf("parse page number %q: pages are numbered from 1", s)
	}
	return PageNo(n), nil
}

// ValidPageSize reports whether n is a page size SQLite can use: a power of
// two from 512 to 65536.
func ValidPageSize(n int) bool {
	return n >= MinPageSize && n <= MaxPageSize && n&(n-1) == 0
}
