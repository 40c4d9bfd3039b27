package node_test

import (
	"context"
	"encoding/hex"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
	ethchannel "github.com/perun-network/perun-eth-backend/channel"
	ethwallet "github.com/perun-network/perun-eth-backend/wallet"
	"github.com/stretchr/testify/require"
	"perun.network/go-perun/channel"
	"perun.network/go-perun/client"
	"perun.network/go-perun/wallet"
	"perun.network/go-perun/wire"

	"github.com/perund/perund/internal/perundtest"
	"github.com/perund/perund/node"
	"github.com/perund/perund/subscriptions"
	"github.com/perund/perund/wireid"
)

// freshKeys returns n new private keys in hex. Tests that run in parallel
// use accounts of their own: perun-eth-backend keeps its nonce expectations
// per chain id and account for the whole process, and every embedded chain
// has the same id.
func freshKeys(t *testing.T, n int) []string {
	t.Helper()
	out := make([]string, n)
	for i := range out {
		k, err := crypto.GenerateKey()
		require.NoError(t, err)
		out[i] = hex.EncodeToString(crypto.FromECDSA(k))
	}
	return out
}

// testApp is a channel app that allows everything. perund decodes an app
// proposal only if go-perun resolves its definition, as in a process that
// registered apps: the test registers it, so that the proposal reaches the
// node's own check.
type testApp struct{ id *ethchannel.AppID }

func (a testApp) Def() channel.AppID  { return a.id }
func (testApp) NewData() channel.Data { return channel.NoData() }
func (testApp) ValidTransition(*channel.Params, *channel.State, *channel.State, channel.Index) error {
	return nil
}
func (testApp) ValidInit(*channel.Params, *channel.State) error { return nil }

// TestMaliciousProposals: mallory, a crafted wire peer, proposes channels
// that would cost the user money or that perund cannot handle: a
// participant that is not the proposer (the deposit of someone else's
// account, withdrawn to someone else), an app channel, several assets, an
// asset the node does not know, a funding agreement that makes the user
// deposit more than the initial balance gives them, a challenge duration
// below the node's minimum. The node refuses each at once with its reason
// and the user is never asked (no proposal event, nothing pending: the
// proposals topic shows proposals the user may accept); the user's
// on-chain balance is unchanged. A well-formed proposal from mallory, the
// control, reaches the user and the user's rejection reaches mallory.
func TestMaliciousProposals(t *testing.T) {
	t.Parallel()
	keys := freshKeys(t, 3) // bob, mallory, carol
	v, addrs := newEnv(t, keys...)
	bobAddr, malloryAddr, carolAddr := addrs[0], addrs[1], addrs[2]
	n := v.node(t, map[string]string{keys[0]: "bob"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bob, err := n.OpenSession(ctx, bobAddr, "bob", false)
	require.NoError(t, err)
	props, err := bob.Hub().Subscribe(subscriptions.Proposals)
	require.NoError(t, err)
	before, err := n.Balance(ctx, bobAddr)
	require.NoError(t, err)

	mallory := perundtest.NewMallory(t, perundtest.Keys(t, keys[1])[0], "127.0.0.1:0")
	mallory.Hosts.Set(bobAddr, bob.CommAddress())

	chainID, err := v.chain.ChainID(ctx)
	require.NoError(t, err)
	ethAsset := ethchannel.NewAsset(chainID, v.c.AssetHolderETH)
	unknown := ethchannel.NewAsset(chainID, common.HexToAddress("0x00000000000000000000000000000000000000e7"))
	app := testApp{id: &ethchannel.AppID{Address: ethwallet.AsWalletAddr(crypto.PubkeyToAddress(perundtest.Keys(t, keys[2])[0].PublicKey))}}
	channel.RegisterApp(app)
	alloc := func(assets ...*ethchannel.Asset) *channel.Allocation {
		ids := make([]wallet.BackendID, len(assets))
		as := make([]channel.Asset, len(assets))
		for i, a := range assets {
			ids[i], as[i] = ethwallet.BackendID, a
		}
		al := channel.NewAllocation(2, ids, as...)
		for _, a := range assets {
			al.SetAssetBalances(a, []channel.Bal{eth(1), eth(1)}) // mallory, bob
		}
		return al
	}
	participant := func(a common.Address) map[wallet.BackendID]wallet.Address {
		return map[wallet.BackendID]wallet.Address{ethwallet.BackendID: ethwallet.AsWalletAddr(a)}
	}

	tests := []struct {
		name   string
		mutate func(p *client.LedgerChannelProposalMsg)
		// reason is the node's refusal; "" is the control, which the user
		// is asked about.
		reason string
	}{
		{"proposer is not the participant", func(p *client.LedgerChannelProposalMsg) {
			p.Participant = participant(carolAddr)
		}, "the participant address must be the proposer's address"},
		{"the user as mallory's participant", func(p *client.LedgerChannelProposalMsg) {
			p.Participant = participant(bobAddr)
		}, "the participant address must be the proposer's address"},
		{"app channel", func(p *client.LedgerChannelProposalMsg) {
			p.App, p.InitData = app, channel.NoData()
		}, "app channels are not supported"},
		{"several assets", func(p *client.LedgerChannelProposalMsg) {
			p.InitBals = alloc(ethAsset, unknown)
			p.FundingAgreement = p.InitBals.Clone().Balances
		}, "only single-asset channels are supported"},
		{"unknown asset", func(p *client.LedgerChannelProposalMsg) {
			p.InitBals = alloc(unknown)
			p.FundingAgreement = p.InitBals.Clone().Balances
		}, "unsupported asset"},
		{"funding agreement other than the balances", func(p *client.LedgerChannelProposalMsg) {
			// bob would deposit 2 ETH for a balance of 1, mallory nothing
			// for a balance of 1.
			p.FundingAgreement = channel.Balances{{eth(0), eth(2)}}
		}, "funding agreement must equal the initial balances"},
		{"challenge duration below the minimum", func(p *client.LedgerChannelProposalMsg) {
			p.ChallengeDuration = 1
		}, "challenge duration 1 s is below this node's minimum of 10 s"},
		{"well-formed proposal (control)", func(*client.LedgerChannelProposalMsg) {}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			prop, err := client.NewLedgerChannelProposal(600, participant(malloryAddr), alloc(ethAsset),
				[]map[wallet.BackendID]wire.Address{wireid.NewAddress(malloryAddr).Map(), wireid.NewAddress(bobAddr).Map()},
				client.WithRandomNonce())
			require.NoError(t, err)
			tc.mutate(prop)
			require.NoError(t, mallory.Send(ctx, bobAddr, prop))
			// The node refuses at once; a proposal shown to the user would
			// only be refused when it expires (channel.responseTimeout, 5 s).
			answered := func(e *wire.Envelope) bool {
				r, ok := e.Msg.(*client.ChannelProposalRejMsg)
				return ok && r.ProposalID == prop.ProposalID
			}
			if tc.reason == "" {
				var pi node.ProposalInfo
				select {
				case ev := <-props.Events():
					pi = ev.(node.ProposalInfo)
				case <-time.After(10 * time.Second):
					t.Fatal("the well-formed proposal did not reach the user")
				}
				require.Equal(t, node.StatusPending, pi.Status)
				require.Equal(t, malloryAddr.Hex(), pi.Peer)
				require.Equal(t, eth(1).String(), pi.Balance.Mine)
				_, err := bob.RespondProposal(ctx, pi.ProposalID, false, "not from you")
				require.NoError(t, err)
				rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
				defer rcancel()
				e, err := mallory.Next(rctx, answered)
				require.NoError(t, err, "mallory hears the user's rejection")
				require.Equal(t, "not from you", e.Msg.(*client.ChannelProposalRejMsg).Reason)
				return
			}
			rctx, rcancel := context.WithTimeout(ctx, 3*time.Second)
			defer rcancel()
			e, err := mallory.Next(rctx, answered)
			require.NoError(t, err, "the node refuses the proposal at once")
			require.Equal(t, tc.reason, e.Msg.(*client.ChannelProposalRejMsg).Reason)
			select {
			case ev := <-props.Events():
				t.Fatalf("the user was asked about a proposal the node refuses: %+v", ev)
			default:
			}
			require.Empty(t, bob.Proposals())
		})
	}
	require.Empty(t, bob.Channels(""), "no channel came of it")
	after, err := n.Balance(ctx, bobAddr)
	require.NoError(t, err)
	require.Equal(t, before.String(), after.String(), "the user's on-chain balance is unchanged")
}

// proposeWith is bareClient.propose with a challenge duration.
func (b *bareClient) proposeWith(ctx context.Context, peer common.Address, mine, theirs *big.Int, challenge uint64) (*client.Channel, error) {
	alloc := channel.NewAllocation(2, []wallet.BackendID{ethwallet.BackendID}, b.asset)
	alloc.SetAssetBalances(b.asset, []channel.Bal{mine, theirs})
	prop, err := client.NewLedgerChannelProposal(challenge, map[wallet.BackendID]wallet.Address{ethwallet.BackendID: ethwallet.AsWalletAddr(b.addr)}, alloc,
		[]map[wallet.BackendID]wire.Address{wireid.NewAddress(b.addr).Map(), wireid.NewAddress(peer).Map()}, client.WithRandomNonce())
	if err != nil {
		return nil, err
	}
	return b.client.ProposeChannel(ctx, prop)
}

// openWithBare opens a channel proposed by the bare client b (mine for b,
// theirs for the user) and accepted by the user; it returns b's channel
// and the user's view.
func openWithBare(ctx context.Context, t *testing.T, b *bareClient, user *node.Session, mine, theirs *big.Int, challenge uint64) (*client.Channel, node.ChannelInfo) {
	t.Helper()
	props, err := user.Hub().Subscribe(subscriptions.Proposals)
	require.NoError(t, err)
	defer user.Hub().Unsubscribe(props.ID())
	type opened struct {
		ch  *client.Channel
		err error
	}
	res := make(chan opened, 1)
	go func() {
		ch, err := b.proposeWith(ctx, user.Address(), mine, theirs, challenge)
		res <- opened{ch, err}
	}()
	var pi node.ProposalInfo
	select {
	case ev := <-props.Events():
		pi = ev.(node.ProposalInfo)
	case <-ctx.Done():
		t.Fatal("no proposal from the bare client")
	}
	ci, err := user.RespondProposal(ctx, pi.ProposalID, true, "")
	require.NoError(t, err)
	require.NotNil(t, ci)
	select {
	case o := <-res:
		require.NoError(t, o.err)
		return o.ch, *ci
	case <-ctx.Done():
		t.Fatal("the bare client's proposal did not return")
	}
	return nil, node.ChannelInfo{}
}

// TestMaliciousUpdates: mallory, a bare go-perun client in
// comm.legacyPeers with a funded channel with bob (5 ETH each), sends
// updates that would take bob's money: a "payment" that lowers his
// balance, final states that move funds either way (a close that pays),
// an update that changes nothing. The first is no payment: bob's node does
// not accept it although it accepts payments on its own; it asks bob (a
// pending request on the updates topic, as security.md says: "an incoming
// payment never lowers the user's balance unless the user accepts it")
// and, unanswered, refuses it when it expires. The others are refused at
// once with the node's reason and bob is not asked. Bob's version and
// balances are unchanged after each; a real payment from mallory (the
// control) is accepted on its own, and the close pays bob exactly 5 ETH
// plus that payment.
func TestMaliciousUpdates(t *testing.T) {
	t.Parallel()
	keys := freshKeys(t, 2) // bob, mallory
	v, addrs := newEnv(t, keys...)
	bobAddr, malloryAddr := addrs[0], addrs[1]
	n := v.nodeWith(t, t.TempDir(), map[string]string{keys[0]: "bob"}, testNode{flags: map[string]any{
		"comm.legacyPeers": malloryAddr.Hex(), "channel.responseTimeout": "2s",
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bob, err := n.OpenSession(ctx, bobAddr, "bob", false)
	require.NoError(t, err)
	mallory := newBareClient(t, v, perundtest.Keys(t, keys[1])[0])
	mallory.register(bobAddr, bob.CommAddress())
	ch, ci := openWithBare(ctx, t, mallory, bob, eth(5), eth(5), 600)
	ups, err := bob.Hub().Subscribe(subscriptions.Updates)
	require.NoError(t, err)

	// move moves amt from mallory (index 0) to bob (index 1); a negative
	// amount moves it from bob to mallory.
	move := func(amt *big.Int, final bool) func(*channel.State) {
		return func(s *channel.State) {
			s.Balances[0][0] = new(big.Int).Sub(s.Balances[0][0], amt)
			s.Balances[0][1] = new(big.Int).Add(s.Balances[0][1], amt)
			s.IsFinal = final
		}
	}
	paid := big.NewInt(1000)
	tests := []struct {
		name   string
		update func(*channel.State)
		// reason is the node's refusal that mallory hears; "" for the
		// control, which goes through.
		reason string
		// kind is the kind of update bob's updates topic shows, and told
		// the statuses it shows in order (none: bob hears nothing).
		kind string
		told []string
	}{
		{"payment that lowers the user's balance", move(new(big.Int).Neg(eth(1)), false), "update expired",
			node.KindRequest, []string{node.StatusPending, node.StatusExpired}},
		{"final state that moves funds to mallory", move(new(big.Int).Neg(eth(1)), true), "a final state must not move funds", "", nil},
		{"final state that moves funds to the user", move(eth(1), true), "a final state must not move funds", "", nil},
		{"update that changes nothing", move(new(big.Int), false), "empty update", "", nil},
		{"payment to the user (control)", move(paid, false), "", node.KindPayment, []string{node.StatusAccepted}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			prev, err := bob.Channel(ci.ChannelID)
			require.NoError(t, err)
			uctx, ucancel := context.WithTimeout(ctx, 20*time.Second)
			defer ucancel()
			err = ch.Update(uctx, tc.update)
			for i, status := range tc.told {
				var u node.UpdateInfo
				select {
				case ev := <-ups.Events():
					u = ev.(node.UpdateInfo)
				case <-time.After(10 * time.Second):
					t.Fatalf("bob was not told %q of the update", status)
				}
				require.Equal(t, status, u.Status, "event %d", i)
				require.Equal(t, tc.kind, u.Kind)
			}
			if tc.reason == "" {
				require.NoError(t, err)
				require.Eventually(t, func() bool {
					c, err := bob.Channel(ci.ChannelID)
					return err == nil && c.Version == prev.Version+1
				}, 10*time.Second, 5*time.Millisecond)
				got, err := bob.Channel(ci.ChannelID)
				require.NoError(t, err)
				require.Equal(t, new(big.Int).Add(eth(5), paid).String(), got.Balance.Mine)
				return
			}
			var rej client.PeerRejectedError
			require.True(t, errors.As(err, &rej), "refused by bob's node: %v", err)
			require.Equal(t, tc.reason, rej.Reason)
			select {
			case ev := <-ups.Events():
				t.Fatalf("bob was told more of an update his node refuses: %+v", ev)
			default:
			}
			require.Empty(t, bob.Updates())
			got, err := bob.Channel(ci.ChannelID)
			require.NoError(t, err)
			require.Equal(t, prev.Version, got.Version)
			require.Equal(t, prev.Balance, got.Balance)
			require.Equal(t, node.StateOpen, got.State)
			require.Equal(t, prev.Version, ch.State().Version, "mallory's channel is back at the last state both signed")
		})
	}

	closed, err := bob.Close(ctx, ci.ChannelID)
	require.NoError(t, err)
	require.Equal(t, node.StateClosed, closed.State)
	require.Equal(t, "agreement", closed.ClosedBy)
	require.Equal(t, new(big.Int).Add(eth(5), paid).String(), closed.Balance.Mine)
	require.Equal(t, new(big.Int).Sub(eth(5), paid).String(), closed.Balance.Theirs)
}
