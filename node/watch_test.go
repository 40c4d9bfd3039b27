package node_test

import (
	"context"
	"math/big"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/accounts"
	"github.com/ethereum/go-ethereum/accounts/abi/bind"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/perun-network/perun-eth-backend/bindings/adjudicator"
	ethchannel "github.com/perun-network/perun-eth-backend/channel"
	"github.com/stretchr/testify/require"
	"perun.network/go-perun/channel"

	"github.com/perund/perund/chain"
	"github.com/perund/perund/contacts"
	"github.com/perund/perund/internal/perundtest"
	"github.com/perund/perund/node"
	"github.com/perund/perund/subscriptions"
)

const keyCarol = "7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6"

// staleState is version v of the channel with alice (index 0) holding
// aliceGets of the total, signed by both parties (the test knows both
// keys: a state both once signed).
func staleState(t *testing.T, params *channel.Params, latest *channel.State, v uint64, aliceGets *big.Int, keys ...string) channel.Transaction {
	t.Helper()
	st := latest.Clone()
	st.Version = v
	total := new(big.Int).Add(st.Balances[0][0], st.Balances[0][1])
	st.Balances[0][0] = new(big.Int).Set(aliceGets)
	st.Balances[0][1] = new(big.Int).Sub(total, aliceGets)
	st.IsFinal = false
	return perundtest.SignAll(t, st, perundtest.Keys(t, keys...)...)
}

// registerAs registers tx on the env's adjudicator, sent by key.
func (v *env) registerAs(t *testing.T, key string, params *channel.Params, tx channel.Transaction) {
	t.Helper()
	pk, err := crypto.HexToECDSA(key)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	id, err := v.chain.ChainID(ctx)
	require.NoError(t, err)
	addr := crypto.PubkeyToAddress(pk.PublicKey)
	chain.ResetNonce(id, addr)
	cb, _ := chain.DeployerBackend(v.chain, id, pk)
	adj := ethchannel.NewAdjudicator(cb, v.c.Adjudicator, addr, accounts.Account{Address: addr}, 1_000_000)
	require.NoError(t, adj.Register(ctx, channel.AdjudicatorReq{Params: params, Tx: tx}, nil))
}

// blockTime is the time of the block that holds transaction hash.
func (v *env) blockTime(t *testing.T, hash string) time.Time {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := v.chain.TransactionReceipt(ctx, common.HexToHash(hash))
	require.NoError(t, err)
	h, err := v.chain.HeaderByNumber(ctx, r.BlockNumber)
	require.NoError(t, err)
	return time.Unix(int64(h.Time), 0).UTC()
}

// onChainVersion reads the version registered for a channel.
func (v *env) onChainVersion(t *testing.T, id channel.ID) uint64 {
	t.Helper()
	caller, err := adjudicator.NewAdjudicatorCaller(v.c.Adjudicator, v.chain)
	require.NoError(t, err)
	d, err := caller.Disputes(&bind.CallOpts{Context: context.Background()}, id)
	require.NoError(t, err)
	return d.Version
}

// TestRefutedWhileLoggedOut is the money-losing case of issue 12: alice
// cheats by registering an old state (in which she holds more) while her
// peers bob and carol, users of one node, are not logged in: they logged
// out with force, or their node restarted and nobody logged in. Their
// node's watchtower refutes both channels with the latest states from the
// operator account, and when bob and carol log in again their channels
// show the latest balances, their disputes subscription delivers what
// happened meanwhile and dispute_list lists it; after the challenge period
// their node withdraws their latest shares.
func TestRefutedWhileLoggedOut(t *testing.T) {
	for _, tc := range []struct {
		name    string
		restart bool
	}{
		{"logged out with force", false},
		{"node restarted, nobody logged in", true},
	} {
		// Not parallel: both cases use alice's account on chains with the
		// same id, and perun-eth-backend's nonce expectations are
		// process-wide per chain id and account.
		t.Run(tc.name, func(t *testing.T) {
			v, addrs := newEnv(t, keyAlice, keyBob, keyCarol)
			dirA, dirB := t.TempDir(), t.TempDir()
			na := v.nodeIn(t, dirA, map[string]string{keyAlice: "alice"})
			keysB := map[string]string{keyBob: "bob", keyCarol: "carol"}
			nb := v.nodeIn(t, dirB, keysB)
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			alice, err := na.OpenSession(ctx, addrs[0], "alice", false)
			require.NoError(t, err)
			peers, err := nb.OpenSessions(ctx, []node.Login{{Account: addrs[1], Password: "bob"}, {Account: addrs[2], Password: "carol"}})
			require.NoError(t, err)
			type victim struct {
				s      *node.Session
				key    string
				pw     string
				ch     node.ChannelInfo
				params *channel.Params
				latest *channel.State
			}
			victims := []*victim{{s: peers[0], key: keyBob, pw: "bob"}, {s: peers[1], key: keyCarol, pw: "carol"}}
			for _, vic := range victims {
				_, err := alice.AddContact(contacts.Contact{Alias: vic.pw, Address: vic.s.Address(), CommAddress: vic.s.CommAddress()})
				require.NoError(t, err)
				_, err = vic.s.AddContact(contacts.Contact{Alias: "alice", Address: alice.Address(), CommAddress: alice.CommAddress()})
				require.NoError(t, err)
				vic.ch = openAcceptedWith(ctx, t, alice, vic.s, eth(10), eth(10), 10)
				// alice pays 3 ETH in 3 payments: latest v3 is alice 7, peer 13.
				for i := 0; i < 3; i++ {
					_, err := alice.Send(ctx, vic.ch.ChannelID, eth(1))
					require.NoError(t, err)
				}
				require.Eventually(t, func() bool {
					c, err := vic.s.Channel(vic.ch.ChannelID)
					return err == nil && c.Version == 3
				}, 10*time.Second, 5*time.Millisecond)
				vic.params, vic.latest, err = alice.ChannelStateForTest(vic.ch.ChannelID)
				require.NoError(t, err)
			}
			// alice's own node would refute her: it goes away.
			require.NoError(t, na.Close(ctx))
			if tc.restart {
				require.NoError(t, nb.Close(ctx))
				nb = v.nodeIn(t, dirB, keysB)
			} else {
				for _, vic := range victims {
					require.NoError(t, nb.CloseSession(ctx, vic.s, true))
				}
			}
			require.Equal(t, 2, nb.WatchStats().Watched, "every channel of every user watched before anyone logs in")

			for _, vic := range victims {
				stale := staleState(t, vic.params, vic.latest, 1, eth(9), keyAlice, vic.key)
				v.registerAs(t, keyAlice, vic.params, stale)
			}
			for _, vic := range victims {
				id := vic.params.ID()
				require.Eventually(t, func() bool { return v.onChainVersion(t, id) == 3 }, time.Minute, 50*time.Millisecond, "refuted with version 3")
			}

			for _, vic := range victims {
				s, err := nb.OpenSession(ctx, vic.s.Address(), vic.pw, false)
				require.NoError(t, err)
				got, err := s.Channel(vic.ch.ChannelID)
				require.NoError(t, err)
				require.EqualValues(t, 3, got.Version)
				require.Equal(t, eth(13).String(), got.Balance.Mine)

				sub, err := s.Hub().Subscribe(subscriptions.Disputes)
				require.NoError(t, err)
				first := perundtest.Recv(t, sub.Events(), time.Minute, "the registration").(node.DisputeEvent)
				require.Equal(t, "registered", first.Event)
				require.EqualValues(t, 1, first.Version)
				require.True(t, first.ByPeer)
				require.Equal(t, "refuting with version 3", first.Response)
				require.Equal(t, node.RefutationSending, first.Refutation)
				require.Equal(t, addrs[0].Hex(), first.Sender)
				second := perundtest.Recv(t, sub.Events(), time.Minute, "the refutation").(node.DisputeEvent)
				require.EqualValues(t, 3, second.Version)
				require.True(t, second.ByWatcher)
				require.Equal(t, node.RefutationMined, second.Refutation)
				require.Equal(t, nb.OperatorForTest(), second.Sender)
				// The challenge end is the wall-clock time the chain allows
				// the conclusion: the first registration's block time plus
				// the challenge duration; a refutation does not extend it.
				require.Equal(t, v.blockTime(t, first.TxHash).Add(10*time.Second), first.Timeout)
				require.Equal(t, first.Timeout, second.Timeout)

				log, err := s.Disputes(vic.ch.ChannelID)
				require.NoError(t, err)
				require.GreaterOrEqual(t, len(log), 2)
				require.EqualValues(t, 1, log[0].Version)
				require.EqualValues(t, 3, log[1].Version)
				vic.s = s
			}
			// After the challenge period the node withdraws the latest shares.
			for _, vic := range victims {
				require.Eventually(t, func() bool {
					c, err := vic.s.Channel(vic.ch.ChannelID)
					return err == nil && c.State == node.StateClosed
				}, 2*time.Minute, 100*time.Millisecond)
				c, err := vic.s.Channel(vic.ch.ChannelID)
				require.NoError(t, err)
				require.Equal(t, eth(13).String(), c.Balance.Mine)
				require.Equal(t, "dispute", c.ClosedBy)
			}
		})
	}
}

// TestOperatorAccountIsNotAUser: the watchtower's account cannot be logged
// into (a session's transactions would take the nonces refutations need).
func TestOperatorAccountIsNotAUser(t *testing.T) {
	t.Parallel()
	v, _ := newEnv(t)
	dir := t.TempDir()
	op := v.operator(t, dir)
	n := v.nodeIn(t, dir, nil)
	_, err := n.Keys().Import(op, "pw")
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = n.OpenSession(ctx, common.HexToAddress(n.OperatorForTest()), "pw", false)
	var ia *node.InvalidArgError
	require.ErrorAs(t, err, &ia)
	require.Equal(t, "account", ia.Field)
}
