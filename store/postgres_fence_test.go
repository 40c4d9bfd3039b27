package store

import (
	"fmt"
	"strings"
	"testing"
)

// perund_fence takes the fence lock by its number: it must be FenceLockID.
func TestFenceLockID(t *testing.T) {
	if !strings.Contains(postgresMigration(2), fmt.Sprintf("pg_advisory_xact_lock_shared(%d)", FenceLockID)) {
		t.Fatalf("perund_fence does not take FenceLockID (%d)", FenceLockID)
	}
}
