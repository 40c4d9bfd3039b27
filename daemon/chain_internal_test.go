package daemon

import (
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/stretchr/testify/require"

	"github.com/perund/perund/chain"
	"github.com/perund/perund/config"
)

// TestNeedsDeployment: what contracts.mode and the configured addresses
// ask of Dial.
func TestNeedsDeployment(t *testing.T) {
	holder := common.HexToAddress("0x01")
	named := chain.Asset{Symbol: "PRN", Holder: holder}
	unnamed := chain.Asset{Symbol: "USD"}
	cases := []struct {
		name         string
		mode         string
		adj, holders string
		assets       []chain.Asset
		want         bool
	}{
		{"deploy always deploys", config.ModeDeploy, "0x1", "0x2", []chain.Asset{named}, true},
		{"validate never deploys", config.ModeValidate, "", "", []chain.Asset{unnamed}, false},
		{"everything named", config.ModeValidateOrDeploy, "0x1", "0x2", []chain.Asset{named}, false},
		{"no adjudicator", config.ModeValidateOrDeploy, "", "0x2", nil, true},
		{"no ETH holder", config.ModeValidateOrDeploy, "0x1", "", nil, true},
		{"a token without holder", config.ModeValidateOrDeploy, "0x1", "0x2", []chain.Asset{named, unnamed}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &config.Config{}
			cfg.Contracts.Mode, cfg.Contracts.Adjudicator, cfg.Contracts.AssetHolderETH = tc.mode, tc.adj, tc.holders
			require.Equal(t, tc.want, needsDeployment(cfg, tc.assets))
		})
	}
}
