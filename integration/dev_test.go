package integration

import (
	"fmt"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/perund/perund/rpc/rpctest"
)

// devProc is a running `perund dev` process.
type devProc struct {
	dir, url, http string
	port           int
	cmd            *exec.Cmd
	out            *lockedBuffer
	exited         chan error
}

func startDev(t *testing.T, dir string, port int, extra ...string) *devProc {
	d := &devProc{dir: dir, port: port, url: fmt.Sprintf("ws://127.0.0.1:%d/rpc", port),
		http: fmt.Sprintf("http://127.0.0.1:%d", port), out: &lockedBuffer{}, exited: make(chan error, 1)}
	args := append([]string{"dev", "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--data-dir", dir,
		"--set", "channel.responseTimeout=5s"}, extra...)
	d.cmd = exec.Command(perundBin, args...)
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	require.NoError(t, d.cmd.Start())
	go func() { d.exited <- d.cmd.Wait() }()
	t.Cleanup(func() {
		d.kill()
		if t.Failed() {
			t.Logf("perund dev output:\n%s", d.out.String())
		}
	})
	return d
}

// healthy waits until the node answers /healthz with 200.
func (d *devProc) healthy(t *testing.T) {
	deadline := time.After(time.Minute)
	for {
		resp, err := http.Get(d.http + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case err := <-d.exited:
			t.Fatalf("perund dev exited (%v):\n%s", err, d.out.String())
		case <-deadline:
			t.Fatalf("perund dev did not become healthy:\n%s", d.out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (d *devProc) kill() {
	if d.cmd.ProcessState == nil {
		_ = d.cmd.Process.Kill()
		select {
		case <-d.exited:
		case <-time.After(10 * time.Second):
		}
	}
}

func (d *devProc) login(t *testing.T, key, pw string) *session {
	s := &session{Client: rpctest.Dial(t, d.url)}
	s.OK("session_open", map[string]any{"account": addrOf(key).Hex(), "password": pw}, s)
	return s
}

func ethAmount(num, den int64) *big.Int {
	v := new(big.Int).Mul(big.NewInt(num), big.NewInt(1e18))
	return v.Div(v, big.NewInt(den))
}

func chainBalance(t *testing.T, s *session) *big.Int {
	var b map[string]string
	s.OK("chain_balance", nil, &b)
	v, ok := new(big.Int).SetString(b["balance"], 10)
	require.True(t, ok, b)
	return v
}

// TestDevRestart: `perund dev --data-dir DIR` opens a channel with a
// 10-second challenge, takes payments, is killed with SIGKILL and started
// again: the embedded chain kept its contracts and deposits, the channel
// comes back open at its version with its asset, and a cooperative close
// pays alice her share. A copy of the data dir without the chain is
// refused at start, naming the channel.
func TestDevRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	port := freePort(t)
	d := startDev(t, dir, port)
	d.healthy(t)
	sa, sb := d.login(t, keyAlice, "alice"), d.login(t, keyBob, "bob")
	sb.OK("perun_subscribe", []string{"proposals"}, nil)
	accepted := acceptAsync(t, sb, func(r map[string]any) bool { return r["status"] == "pending" })
	five := ethAmount(5, 1)
	var ch channelView
	sa.OK("channel_open", map[string]any{"peer": "bob", "challengeDuration": 10,
		"balance": map[string]string{"mine": five.String(), "theirs": five.String()}}, &ch)
	accepted()
	require.Equal(t, "open", ch.State)
	tenth := ethAmount(1, 10)
	for i := 0; i < 3; i++ {
		sa.OK("channel_send", map[string]any{"channelId": ch.ChannelID, "amount": tenth.String()}, nil)
	}
	id := map[string]any{"channelId": ch.ChannelID}
	var before channelView
	sa.OK("channel_get", id, &before)
	require.Equal(t, uint64(3), before.Version)

	d.kill()
	// A data dir whose chain is gone is refused, naming the channel.
	stale := t.TempDir()
	require.NoError(t, os.CopyFS(stale, os.DirFS(dir)))
	require.NoError(t, os.RemoveAll(filepath.Join(stale, "chain")))
	s := startDev(t, stale, freePort(t))
	select {
	case err := <-s.exited:
		require.Error(t, err, "perund dev on a data dir of another chain must not start")
		out := s.out.String()
		require.Contains(t, out, "another chain or other contracts")
		require.Contains(t, strings.ToLower(out), strings.ToLower(ch.ChannelID))
	case <-time.After(time.Minute):
		t.Fatalf("perund dev on a data dir without its chain did not stop:\n%s", s.out.String())
	}

	d = startDev(t, dir, port)
	d.healthy(t)
	sa, sb = d.login(t, keyAlice, "alice"), d.login(t, keyBob, "bob")
	var after channelView
	sa.OK("channel_get", id, &after)
	require.Equal(t, "open", after.State)
	require.Equal(t, before.Version, after.Version)
	require.Equal(t, before.Balance, after.Balance)
	var bobContact map[string]any
	sa.OK("contacts_get", map[string]any{"alias": "bob"}, &bobContact)
	require.Equal(t, sb.CommAddress, bobContact["commAddress"], "the demo contact shows the node's current peer port")
	var raw map[string]any
	sa.OK("channel_get", id, &raw)
	require.Equal(t, "ETH", raw["asset"])
	require.EqualValues(t, 10, raw["challengeDuration"])

	sa.OK("channel_send", map[string]any{"channelId": ch.ChannelID, "amount": tenth.String()}, nil)
	sb.OK("perun_subscribe", []string{"updates"}, nil)
	closeAccepted := acceptAsync(t, sb, func(r map[string]any) bool { return r["kind"] == "close" && r["status"] == "pending" })
	defer closeAccepted()
	start := chainBalance(t, sa)
	var closed channelView
	sa.OK("channel_close", id, &closed)
	require.Equal(t, "closed", closed.State)
	share := new(big.Int).Sub(five, new(big.Int).Mul(tenth, big.NewInt(4)))
	require.Equal(t, share.String(), closed.Balance["mine"])
	// The node's API shows no receipts: alice gets her share less the gas
	// of her close transactions, a few hundred thousand gas at the chain's
	// suggested price (far below one payment).
	got := new(big.Int).Sub(chainBalance(t, sa), start)
	fees := new(big.Int).Sub(share, got)
	require.Equal(t, 1, fees.Sign(), "alice paid gas (got %s of %s)", got, share)
	require.Equal(t, -1, fees.Cmp(ethAmount(1, 1000)), "alice received her share less gas (got %s of %s)", got, share)
}
