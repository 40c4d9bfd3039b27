package chain

import (
	"context"
	"fmt"

	"github.com/ethereum/go-ethereum/accounts"
	"github.com/ethereum/go-ethereum/accounts/abi/bind"
	"github.com/ethereum/go-ethereum/common"
	"github.com/perun-network/perun-eth-backend/bindings/peruntoken"
	ethchannel "github.com/perun-network/perun-eth-backend/channel"
)

// SetupAll validates or deploys (per mode, as SetupContracts and
// SetupERC20) the adjudicator, the ETH asset holder and an asset holder for
// each token of assets. deployed, when not nil, is told of each contract
// SetupAll deployed (not of those it validated), in order.
func SetupAll(ctx context.Context, cb ethchannel.ContractBackend, mode string, given Contracts, assets []Asset,
	deployer accounts.Account, deployed func(name string, addr common.Address)) (Contracts, []Asset, error) {
	if deployed == nil {
		deployed = func(string, common.Address) {}
	}
	c, err := SetupContracts(ctx, cb, mode, given, deployer)
	if err != nil {
		return Contracts{}, nil, err
	}
	if c.Adjudicator != given.Adjudicator {
		deployed("Adjudicator", c.Adjudicator)
	}
	if c.AssetHolderETH != given.AssetHolderETH {
		deployed("AssetHolderETH", c.AssetHolderETH)
	}
	out := make([]Asset, 0, len(assets))
	for _, a := range assets {
		// Asset holders of an earlier adjudicator do not serve a new one.
		if c.Adjudicator != given.Adjudicator {
			a.Holder = common.Address{}
		}
		h, err := SetupERC20(ctx, cb, mode, c.Adjudicator, a, deployer)
		if err != nil {
			return Contracts{}, nil, err
		}
		if h.Holder != a.Holder {
			deployed("AssetHolderERC20 "+a.Symbol, h.Holder)
		}
		out = append(out, h)
	}
	return c, out, nil
}

// TokenDecimals reads an ERC20 token's decimals().
func TokenDecimals(ctx context.Context, b bind.ContractCaller, token common.Address) (uint8, error) {
	c, err := peruntoken.NewPeruntokenCaller(token, b)
	if err != nil {
		return 0, fmt.Errorf("bind token %s: %w", token.Hex(), err)
	}
	d, err := c.Decimals(&bind.CallOpts{Context: ctx})
	if err != nil {
		return 0, fmt.Errorf("decimals of token %s: %w", token.Hex(), err)
	}
	return d, nil
}
