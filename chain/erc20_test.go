package chain

import (
	"context"
	"math/big"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/stretchr/testify/require"
)

// A token deployed on the embedded chain gives its holders their amount,
// TokenBalance reads what transfers leave, and SetupERC20 deploys an
// asset holder for it or validates one per mode.
func TestERC20(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	aKey, a := newKey(t)
	_, b := newKey(t)
	_, stranger := newKey(t)
	poorKey, _ := newKey(t)
	e := newTestChain(t, a)
	cb, dep, c, err := e.Deploy(ctx)
	require.NoError(t, err)

	token, err := DeployToken(ctx, cb, dep, []common.Address{a, b}, big.NewInt(1000))
	require.NoError(t, err)
	code, err := e.CodeAt(ctx, token, nil)
	require.NoError(t, err)
	require.NotEmpty(t, code, "a contract at the token's address")
	transferToken(ctx, t, e, aKey, token, b, big.NewInt(10))
	for _, tc := range []struct {
		name  string
		owner common.Address
		want  int64
	}{
		{"sender", a, 990},
		{"receiver", b, 1010},
		{"no holder", stranger, 0},
	} {
		t.Run("balance/"+tc.name, func(t *testing.T) {
			bal, err := TokenBalance(ctx, e, token, tc.owner)
			require.NoError(t, err)
			require.Equal(t, big.NewInt(tc.want).String(), bal.String())
		})
	}
	_, err = TokenBalance(ctx, e, stranger, a)
	require.ErrorContains(t, err, "token balance of "+a.Hex(), "no token at that address")

	// A second token, so that a holder of the first is another token's holder.
	token2, err := DeployToken(ctx, cb, dep, []common.Address{a}, big.NewInt(5))
	require.NoError(t, err)
	prn := Asset{Symbol: "PRN", Token: token, Decimals: 18}
	deployed, err := SetupERC20(ctx, cb, "deploy", c.Adjudicator, prn, dep)
	require.NoError(t, err)
	require.NotEqual(t, common.Address{}, deployed.Holder)
	require.Equal(t, prn.Token, deployed.Token)
	require.Equal(t, prn.Symbol, deployed.Symbol)

	tests := []struct {
		name    string
		mode    string
		asset   Asset
		adj     common.Address
		wantErr string // empty: succeeds
		same    bool   // the holder given is the one returned (validated, not deployed)
	}{
		{"validate", "validate", deployed, c.Adjudicator, "", true},
		{"validateOrDeploy with a holder validates", "validateOrDeploy", deployed, c.Adjudicator, "", true},
		{"validateOrDeploy without a holder deploys", "validateOrDeploy", prn, c.Adjudicator, "", false},
		{"validate a holder of another token", "validate", Asset{Symbol: "USD", Token: token2, Holder: deployed.Holder}, c.Adjudicator,
			"validate USD asset holder " + deployed.Holder.Hex(), false},
		{"validate a holder of another adjudicator", "validate", deployed, c.AssetHolderETH,
			"validate PRN asset holder " + deployed.Holder.Hex(), false},
		{"validate the ETH asset holder", "validate", Asset{Symbol: "PRN", Token: token, Holder: c.AssetHolderETH}, c.Adjudicator,
			"validate PRN asset holder " + c.AssetHolderETH.Hex(), false},
		{"validateOrDeploy with a wrong holder", "validateOrDeploy", Asset{Symbol: "PRN", Token: token, Holder: c.Adjudicator}, c.Adjudicator,
			"validate PRN asset holder " + c.Adjudicator.Hex(), false},
	}
	for _, tc := range tests {
		t.Run("setup/"+tc.name, func(t *testing.T) {
			got, err := SetupERC20(ctx, cb, tc.mode, tc.adj, tc.asset, dep)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			if tc.same {
				require.Equal(t, tc.asset, got)
			} else {
				require.NotEqual(t, common.Address{}, got.Holder)
				require.NotEqual(t, deployed.Holder, got.Holder, "a new holder")
			}
			_, err = SetupERC20(ctx, cb, "validate", c.Adjudicator, got, dep)
			require.NoError(t, err, "what SetupERC20 returns validates")
		})
	}

	// A deployer without ether deploys nothing, and says what failed.
	id, err := e.ChainID(ctx)
	require.NoError(t, err)
	poorCB, poor := DeployerBackend(e, id, poorKey)
	_, err = DeployToken(ctx, poorCB, poor, []common.Address{a}, big.NewInt(1))
	require.ErrorContains(t, err, "deploy token")
	_, err = SetupERC20(ctx, poorCB, "deploy", c.Adjudicator, prn, poor)
	require.ErrorContains(t, err, "deploy PRN asset holder")
}
