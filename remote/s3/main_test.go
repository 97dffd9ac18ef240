package s3_test

import (
	"testing"

	"github.com/cambiumdb/cambium/internal/testminio"
)

// TestMain stops the MinIO server that the S3 tests share.
func TestMain(m *testing.M) {
	testminio.Main(m)
}
