package node_test

import (
	"context"
	"errors"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perund/perund/node"
	"github.com/perund/perund/subscriptions"
)

// milli is n thousandths of an ether.
func milli(n int64) *big.Int { return new(big.Int).Mul(big.NewInt(n), big.NewInt(1e15)) }

// TestCoalescedPaymentsExact: alice and bob on two nodes pay each other
// concurrently on one channel of 1 ETH each (60 payments of alice's, 40 of
// bob's, 5 requests of bob's that alice accepts), alice's payments adding
// up to more than she can ever hold, so some of hers fail for want of
// funds while the others go through. Afterwards both sides agree on the
// version and the balances; the balance moved by exactly the answered
// payments; fewer updates than payments were made (payments waiting
// together were carried by one update); and the close withdraws each
// side's share to the wei. On both store backends.
func TestCoalescedPaymentsExact(t *testing.T) { onEachBackend(t, testCoalescedPaymentsExact) }

// testCoalescedPaymentsExact is TestCoalescedPaymentsExact with alice's
// node configured by flagsA and bob's by flagsB (their stores).
func testCoalescedPaymentsExact(t *testing.T, flagsA, flagsB map[string]any) {
	v, addrs := newEnv(t, keyAlice, keyBob)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	_, _, alice, bob := v.twoNodes(ctx, t, addrs, flagsA, flagsB)
	ci := openAccepted(ctx, t, alice, bob, eth(1), eth(1))

	// alice accepts bob's requests (and, at the end, his close).
	aups, err := alice.Hub().Subscribe(subscriptions.Updates)
	require.NoError(t, err)
	respondErrs := make(chan error, 16)
	stopResponder := make(chan struct{})
	var responder sync.WaitGroup
	responder.Add(1)
	go func() {
		defer responder.Done()
		for {
			select {
			case ev, ok := <-aups.Events():
				if !ok {
					return
				}
				if u := ev.(node.UpdateInfo); u.Status == node.StatusPending {
					if _, err := alice.RespondUpdate(ctx, u.UpdateID, true, ""); err != nil {
						respondErrs <- err
					}
				}
			case <-stopResponder:
				return
			}
		}
	}()

	type call struct {
		from    string // "alice" or "bob"
		request bool
		amt     *big.Int
		err     error
	}
	var calls []*call
	for i := 0; i < 60; i++ {
		calls = append(calls, &call{from: "alice", amt: milli(50)}) // 3 ETH in all
	}
	for i := 0; i < 40; i++ {
		calls = append(calls, &call{from: "bob", amt: milli(10 + int64(i%3)*10)})
	}
	for i := 0; i < 5; i++ {
		calls = append(calls, &call{from: "bob", request: true, amt: milli(5)})
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, c := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			s := alice
			if c.from == "bob" {
				s = bob
			}
			if c.request {
				_, c.err = s.Request(ctx, ci.ChannelID, c.amt)
			} else {
				_, c.err = s.Send(ctx, ci.ChannelID, c.amt)
			}
		}()
	}
	close(start)
	wg.Wait()

	// What was answered: alice paid A, bob paid B, alice paid R on bob's
	// requests.
	paidA, paidB, paidR := new(big.Int), new(big.Int), new(big.Int)
	ok, short := 0, 0 // short: alice's payments refused for want of funds
	for _, c := range calls {
		var ie *node.InsufficientFundsError
		switch {
		case c.err == nil:
			ok++
			switch {
			case c.request:
				paidR.Add(paidR, c.amt)
			case c.from == "alice":
				paidA.Add(paidA, c.amt)
			default:
				paidB.Add(paidB, c.amt)
			}
		case errors.As(c.err, &ie):
			have, _ := new(big.Int).SetString(ie.Available, 10)
			require.Negative(t, have.Cmp(c.amt), "refused for want of funds with %s available for %s", ie.Available, c.amt)
			// bob's payments (0.8 ETH in all) always fit; his requests ask
			// alice to pay and may find her balance spent.
			require.True(t, c.from == "alice" || c.request, "bob's payments always fit: %v", c.err)
			if !c.request {
				short++
			}
		default:
			t.Fatalf("%s's %s of %s: %v", c.from, map[bool]string{true: "request", false: "payment"}[c.request], c.amt, c.err)
		}
	}
	require.Positive(t, short, "alice's payments add up to more than she can hold: some must fail")
	t.Logf("%d payments answered, %d of alice's refused for want of funds", ok, short)

	// Both sides agree, and the balance moved by exactly what was answered.
	wantAlice := new(big.Int).Sub(eth(1), paidA)
	wantAlice.Add(wantAlice, paidB).Sub(wantAlice, paidR)
	var a, b node.ChannelInfo
	require.Eventually(t, func() bool {
		a, _ = alice.Channel(ci.ChannelID)
		b, _ = bob.Channel(ci.ChannelID)
		return a.Version == b.Version
	}, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, wantAlice.String(), a.Balance.Mine)
	require.Equal(t, a.Balance.Mine, b.Balance.Theirs)
	require.Equal(t, a.Balance.Theirs, b.Balance.Mine)
	require.Equal(t, new(big.Int).Sub(eth(2), wantAlice).String(), b.Balance.Mine)
	require.Less(t, a.Version, uint64(ok), "payments that waited together shared updates")
	t.Logf("%d answered payments in %d updates", ok, a.Version)

	// The close withdraws each side's share to the wei.
	from, before := v.balanceNow(t, addrs[0], addrs[1])
	beforeA, beforeB := before[0], before[1]
	closed, err := bob.Close(ctx, ci.ChannelID)
	require.NoError(t, err)
	require.Equal(t, "agreement", closed.ClosedBy)
	require.Eventually(t, func() bool {
		c, err := alice.Channel(ci.ChannelID)
		return err == nil && c.State == node.StateClosed
	}, time.Minute, 50*time.Millisecond)
	close(stopResponder)
	responder.Wait()
	close(respondErrs)
	for err := range respondErrs {
		require.NoError(t, err, "alice's answer to an update")
	}
	v.requireWithdrew(t, addrs[0], beforeA, wantAlice, from, "alice's share")
	v.requireWithdrew(t, addrs[1], beforeB, new(big.Int).Sub(eth(2), wantAlice), from, "bob's share")
}
