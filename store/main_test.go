package store

import (
	"testing"

	"github.com/perund/perund/internal/leaktest"
)

// TestMain fails the package when a goroutine (a database left open) is
// left once all tests ran.
func TestMain(m *testing.M) { leaktest.VerifyTestMain(m) }
