package integration

import (
	"encoding/hex"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/stretchr/testify/require"

	"github.com/perund/perund/keys"
	"github.com/perund/perund/rpc/rpctest"
)

// TestNoSecretsInLogs runs a whole session on perund dev with debug logs:
// accounts, wrong passwords, session tokens, resume, open, pay, request,
// close and shutdown. Neither passwords nor tokens nor private keys appear
// in anything the process wrote (the demo accounts' passwords, printed in
// dev mode's banner on purpose, are not secret).
func TestNoSecretsInLogs(t *testing.T) {
	port := freePort(t)
	dir := t.TempDir()
	out := &lockedBuffer{}
	cmd := exec.Command(perundBin, "dev", "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--data-dir", dir, "--log-level", "debug",
		"--set", "channel.responseTimeout=5s")
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			t.Logf("output:\n%s", out.String())
		}
	})
	require.Eventually(t, func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", port))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, time.Minute, 50*time.Millisecond)
	url := fmt.Sprintf("ws://127.0.0.1:%d/rpc", port)

	const newPassword, wrongPassword = "n3w-Pa55phrase-q8Zr", "wr0ng-Guess-Xy71"
	var secrets []string
	type sess struct {
		SessionID string `json:"sessionId"`
		Token     string `json:"token"`
		Address   string `json:"address"`
	}
	open := func(c *rpctest.Client, account, pw string) sess {
		var s sess
		c.OK("session_open", map[string]any{"account": account, "password": pw}, &s)
		secrets = append(secrets, s.Token, strings.TrimPrefix(s.Token, "0x"))
		return s
	}
	alice, bob := rpctest.Dial(t, url), rpctest.Dial(t, url)
	aliceAddr, bobAddr := addrOf(keyAlice), addrOf(keyBob)
	alice.Fail("session_open", map[string]any{"account": aliceAddr.Hex(), "password": wrongPassword}, 1001)
	as := open(alice, aliceAddr.Hex(), "alice")
	open(bob, bobAddr.Hex(), "bob")

	carol := rpctest.Dial(t, url)
	var acc map[string]string
	carol.OK("account_new", map[string]any{"password": newPassword}, &acc)
	open(carol, acc["address"], newPassword)
	again := rpctest.Dial(t, url)
	again.OK("session_resume", map[string]any{"sessionId": as.SessionID, "token": as.Token}, nil)

	bob.OK("perun_subscribe", []string{"proposals"}, nil)
	bob.OK("perun_subscribe", []string{"updates"}, nil)
	proposalAccepted := acceptAsync(t, bob, func(r map[string]any) bool { return r["proposalId"] != nil && r["status"] == "pending" })
	defer proposalAccepted()
	var ch channelView
	alice.OK("channel_open", map[string]any{"peer": "bob", "balance": map[string]string{"mine": "1000000", "theirs": "1000000"}}, &ch)
	id := map[string]any{"channelId": ch.ChannelID}
	alice.OK("channel_send", map[string]any{"channelId": ch.ChannelID, "amount": "10"}, nil)
	alice.OK("perun_subscribe", []string{"updates"}, nil)
	requestAccepted := acceptAsync(t, alice, func(r map[string]any) bool { return r["kind"] == "request" && r["status"] == "pending" })
	defer requestAccepted()
	bob.OK("channel_request", map[string]any{"channelId": ch.ChannelID, "amount": "5"}, nil)
	closeAccepted := acceptAsync(t, bob, func(r map[string]any) bool { return r["kind"] == "close" && r["status"] == "pending" })
	defer closeAccepted()
	alice.OK("channel_close", id, nil)

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-exited:
		require.NoError(t, err, "exit status after SIGTERM")
	case <-time.After(30 * time.Second):
		t.Fatal("perund dev did not stop on SIGTERM")
	}

	ks, err := keys.New(filepath.Join(dir, "keystore"), keys.LightKDF)
	require.NoError(t, err)
	carolKey, err := ks.Unlock(common.HexToAddress(acc["address"]), newPassword)
	require.NoError(t, err)
	secrets = append(secrets, newPassword, wrongPassword, keyAlice, keyBob, hex.EncodeToString(crypto.FromECDSA(carolKey)))
	logs := strings.ToLower(out.String())
	require.Contains(t, logs, "channel open", "the debug log was captured")
	for _, s := range secrets {
		require.NotContains(t, logs, strings.ToLower(s), "a secret is in the logs")
	}
}

func addrOf(key string) common.Address {
	k, _ := crypto.HexToECDSA(key)
	return crypto.PubkeyToAddress(k.PublicKey)
}
