package chain

import (
	"context"
	"fmt"
	"math/big"

	"github.com/ethereum/go-ethereum/accounts"
	"github.com/ethereum/go-ethereum/accounts/abi/bind"
	"github.com/ethereum/go-ethereum/common"
	"github.com/perun-network/perun-eth-backend/bindings/peruntoken"
	ethchannel "github.com/perun-network/perun-eth-backend/channel"
)

// Asset is an ERC20 token channels can hold, with its asset holder.
type Asset struct {
	Symbol   string         `json:"symbol"`
	Token    common.Address `json:"token"`
	Holder   common.Address `json:"holder"`
	Decimals uint8          `json:"decimals"`
}

// SetupERC20 validates the asset holder of a token, or deploys one when
// mode asks for it (validateOrDeploy: deploy when no holder is given).
func SetupERC20(ctx context.Context, cb ethchannel.ContractBackend, mode string, adj common.Address, a Asset, deployer accounts.Account) (Asset, error) {
	if mode == "validate" || mode == "validateOrDeploy" && a.Holder != (common.Address{}) {
		if err := ethchannel.ValidateAssetHolderERC20(ctx, cb, a.Holder, adj, a.Token); err != nil {
			return a, fmt.Errorf("validate %s asset holder %s: %w", a.Symbol, a.Holder.Hex(), err)
		}
		return a, nil
	}
	h, err := ethchannel.DeployERC20Assetholder(ctx, cb, adj, a.Token, deployer)
	if err != nil {
		return a, fmt.Errorf("deploy %s asset holder: %w", a.Symbol, err)
	}
	a.Holder = h
	return a, nil
}

// DeployToken deploys perun's test ERC20 token, giving each holder amount.
func DeployToken(ctx context.Context, cb ethchannel.ContractBackend, deployer accounts.Account, holders []common.Address, amount *big.Int) (common.Address, error) {
	t, err := ethchannel.DeployPerunToken(ctx, cb, deployer, holders, amount)
	if err != nil {
		return t, fmt.Errorf("deploy token: %w", err)
	}
	return t, nil
}

// TokenBalance reads an ERC20 balance.
func TokenBalance(ctx context.Context, b Backend, token, owner common.Address) (*big.Int, error) {
	c, err := peruntoken.NewPeruntokenCaller(token, b)
	if err != nil {
		return nil, fmt.Errorf("bind token %s: %w", token.Hex(), err)
	}
	v, err := c.BalanceOf(&bind.CallOpts{Context: ctx}, owner)
	if err != nil {
		return nil, fmt.Errorf("token balance of %s: %w", owner.Hex(), err)
	}
	return v, nil
}
