package keys

import "github.com/ethereum/go-ethereum/common"

func hexAddr(s string) common.Address { return common.HexToAddress(s) }
