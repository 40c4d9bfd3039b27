package store

import (
	"context"
	"fmt"
	"math/big"
	"math/rand"
	"sync/atomic"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/stretchr/testify/require"
	"perun.network/go-perun/channel"
)

// BenchmarkUpdate measures the store's part of one off-chain update: the
// four writes go-perun makes for it as the update's proposer (Staged, our
// SigAdded, the peer's SigAdded, Enabled), which the view commits as one
// batch (combine.go; the figures in docs/benchmarks.md from before it are
// of four batches), by one channel at a time and by
// several users' channels at once: on LevelDB with and without fsync
// (goleveldb merges concurrent writes into one journal write and fsync),
// and on PostgreSQL (each batch one committed transaction; the test
// cluster runs with fsync off, so this is the cost of the round trips and
// the server's work, not of the disk); postgres-fenced is PostgreSQL as a
// cluster member writes it, each batch checking the lease's epoch first.
func BenchmarkUpdate(b *testing.B) {
	benchUpdate(b, []backend{levelDBBackend(false), levelDBBackend(true), postgresBackend(0), postgresFencedBackend()})
}

// benchUpdate runs BenchmarkUpdate on backends.
func benchUpdate(b *testing.B, backends []backend) {
	for _, bk := range backends {
		for _, par := range []int{1, 16} {
			b.Run(fmt.Sprintf("%s/writers=%d", bk.name, par), func(b *testing.B) {
				ctx := context.Background()
				st := openTestStore(b, bk)
				rng := rand.New(rand.NewSource(8))
				var next atomic.Int64
				type user struct {
					v  View
					ch channel.Source
				}
				users := make([]user, par)
				for i := range users {
					v := st.User(common.BigToAddress(big.NewInt(int64(i + 1))))
					ch := newChannel(ctx, b, rng, v)
					ch.Init(ctx, b, rng)
					ch.SignAll(ctx, b)
					ch.EnableInit(b)
					ch.SetFunded(b)
					users[i] = user{v: v, ch: ch}
				}
				update := func(u user) {
					s := u.ch
					require.NoError(b, u.v.Staged(ctx, s))
					require.NoError(b, u.v.SigAdded(ctx, s, 0))
					require.NoError(b, u.v.SigAdded(ctx, s, 1))
					require.NoError(b, u.v.Enabled(ctx, s))
				}
				b.ResetTimer()
				if par == 1 {
					for range b.N {
						update(users[0])
					}
					return
				}
				b.SetParallelism((par + 1) / 2) // GOMAXPROCS × this goroutines
				b.RunParallel(func(pb *testing.PB) {
					u := users[int(next.Add(1)-1)%par]
					for pb.Next() {
						update(u)
					}
				})
			})
		}
	}
}

// postgresFencedBackend is PostgreSQL opened at epoch 1 of a lease row that
// it holds: every write runs the fence.
func postgresFencedBackend() backend {
	return backend{
		name:   "postgres-fenced",
		create: pg.Database,
		open: func(_ testing.TB, url string) (Store, error) {
			ctx, cancel := context.WithTimeout(context.Background(), DefaultPostgresTimeout)
			defer cancel()
			st, err := OpenPostgres(ctx, url, PostgresOptions{Epoch: 1})
			if err != nil {
				return nil, err
			}
			if _, err := st.pool.Exec(ctx, `INSERT INTO lease (name, holder, epoch, expires)
				VALUES ($1, 'bench', 1, 'infinity')`, LeaseName); err != nil {
				_ = st.Close()
				return nil, err
			}
			return st, nil
		},
	}
}
