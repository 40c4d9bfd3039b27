package store

import (
	"testing"

	"github.com/perund/perund/internal/leaktest"
	"github.com/perund/perund/internal/pgtest"
)

// pg is the PostgreSQL cluster of the package's tests, started by the
// first test that needs it; each test gets a database of its own.
var pg = pgtest.NewCluster()

// TestMain stops the PostgreSQL cluster and fails the package when a
// goroutine (a database left open) is left once all tests ran.
func TestMain(m *testing.M) { leaktest.VerifyTestMain(m, pg.Stop) }
