package node

import (
	"context"
	"fmt"
	"math/big"
	"sort"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/perun-network/perun-eth-backend/bindings/assetholdereth"
	ethchannel "github.com/perun-network/perun-eth-backend/channel"
	cherrors "github.com/perun-network/perun-eth-backend/channel/errors"
	"perun.network/go-perun/channel"

	"github.com/perund/perund/chain"
)

// Gas limit of each ERC20 approve and deposit transaction.
const erc20GasLimit = 200_000

// assetEntry is one asset channels can hold: ETH or an ERC20 token.
type assetEntry struct {
	symbol   string
	decimals uint8
	token    common.Address // zero for ETH
	holder   common.Address
	asset    *ethchannel.Asset
}

func (a *assetEntry) isETH() bool { return a.token == (common.Address{}) }

func (a *assetEntry) depositor() ethchannel.Depositor {
	if a.isETH() {
		return estimatingETHDepositor{}
	}
	return ethchannel.NewERC20Depositor(a.token, erc20GasLimit)
}

// AssetInfo describes an asset in node_info.
type AssetInfo struct {
	Symbol      string `json:"symbol"`
	Decimals    uint8  `json:"decimals"`
	Token       string `json:"token,omitempty"`
	AssetHolder string `json:"assetHolder"`
}

func newAssets(chainID *big.Int, c chain.Contracts, tokens []chain.Asset) []*assetEntry {
	out := []*assetEntry{{symbol: AssetETH, decimals: 18, holder: c.AssetHolderETH, asset: ethchannel.NewAsset(chainID, c.AssetHolderETH)}}
	for _, t := range tokens {
		out = append(out, &assetEntry{symbol: t.Symbol, decimals: t.Decimals, token: t.Token, holder: t.Holder,
			asset: ethchannel.NewAsset(chainID, t.Holder)})
	}
	return out
}

// asset finds an asset by symbol; "" is ETH.
func (n *Node) asset(symbol string) (*assetEntry, error) {
	if symbol == "" {
		symbol = AssetETH
	}
	for _, a := range n.assets {
		if a.symbol == symbol {
			return a, nil
		}
	}
	return nil, &InvalidArgError{Field: "asset", Msg: fmt.Sprintf("unknown asset %q (known: %v)", symbol, n.symbols())}
}

// assetOf finds the asset of a channel asset, or nil.
func (n *Node) assetOf(a channel.Asset) *assetEntry {
	for _, e := range n.assets {
		if e.asset.Equal(a) {
			return e
		}
	}
	return nil
}

func (n *Node) symbols() []string {
	out := make([]string, len(n.assets))
	for i, a := range n.assets {
		out[i] = a.symbol
	}
	sort.Strings(out)
	return out
}

// Assets describes the node's assets.
func (n *Node) Assets() []AssetInfo {
	out := make([]AssetInfo, 0, len(n.assets))
	for _, a := range n.assets {
		ai := AssetInfo{Symbol: a.symbol, Decimals: a.decimals, AssetHolder: a.holder.Hex()}
		if !a.isETH() {
			ai.Token = a.token.Hex()
		}
		out = append(out, ai)
	}
	return out
}

// AssetBalance returns addr's on-chain balance of the asset.
func (n *Node) AssetBalance(ctx context.Context, symbol string, addr common.Address) (*big.Int, error) {
	a, err := n.asset(symbol)
	if err != nil {
		return nil, err
	}
	if a.isETH() {
		return n.Balance(ctx, addr)
	}
	b, err := chain.TokenBalance(ctx, n.chain, a.token, addr)
	if err != nil {
		return nil, &ChainError{Err: err}
	}
	return b, nil
}

// estimatingETHDepositor deposits ether with a gas limit estimated for the
// deposit at hand plus a quarter: a fixed limit breaks when a network
// reprices storage (geth 1.17's dev fork Bogota, with EIP-8037's state-gas
// metering, ran a deposit with 100,000 gas out of gas).
type estimatingETHDepositor struct{}

// Deposit estimates the deposit's gas and sends it with go-perun's ETH
// depositor.
func (estimatingETHDepositor) Deposit(ctx context.Context, req ethchannel.DepositReq) (types.Transactions, error) {
	holderABI, err := assetholdereth.AssetholderethMetaData.GetAbi()
	if err != nil {
		return nil, fmt.Errorf("asset holder ABI: %w", err)
	}
	data, err := holderABI.Pack("deposit", req.FundingID, req.Balance)
	if err != nil {
		return nil, fmt.Errorf("pack deposit: %w", err)
	}
	holder := req.Asset.EthAddress()
	gas, err := req.CB.EstimateGas(ctx, ethereum.CallMsg{From: req.Account.Address, To: &holder, Value: req.Balance, Data: data})
	if err != nil {
		// An unreachable chain stays recognisable as such (as go-perun's
		// own depositor marks it).
		return nil, fmt.Errorf("estimate the gas of a deposit of %s wei: %w", req.Balance, cherrors.CheckIsChainNotReachableError(err))
	}
	return ethchannel.NewETHDepositor(gas+gas/4).Deposit(ctx, req)
}

// NumTX is the number of transactions of a deposit.
func (estimatingETHDepositor) NumTX() uint32 { return 1 }
