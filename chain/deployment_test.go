package chain

import (
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/stretchr/testify/require"
)

func TestDeploymentDifferences(t *testing.T) {
	a := func(n byte) common.Address { return common.BytesToAddress([]byte{n}) }
	rec := Deployment{ChainID: 1337, Contracts: Contracts{Adjudicator: a(1), AssetHolderETH: a(2)},
		Assets: []Asset{{Symbol: "PRN", Token: a(3), Holder: a(4), Decimals: 18}}}
	tests := []struct {
		name string
		cur  func(d Deployment) Deployment
		want []string // substrings, one per difference
	}{
		{"same", func(d Deployment) Deployment { return d }, nil},
		{"asset added", func(d Deployment) Deployment {
			d.Assets = append(append([]Asset{}, d.Assets...), Asset{Symbol: "USD", Token: a(5), Holder: a(6)})
			return d
		}, nil},
		{"other chain", func(d Deployment) Deployment { d.ChainID = 1; return d }, []string{"chain id 1337, now 1"}},
		{"other adjudicator", func(d Deployment) Deployment { d.Contracts.Adjudicator = a(9); return d }, []string{"adjudicator"}},
		{"other ETH holder", func(d Deployment) Deployment { d.Contracts.AssetHolderETH = a(9); return d }, []string{"ETH asset holder"}},
		{"asset gone", func(d Deployment) Deployment { d.Assets = nil; return d }, []string{"PRN (holder"}},
		{"asset moved", func(d Deployment) Deployment {
			d.Assets = []Asset{{Symbol: "PRN", Token: a(3), Holder: a(9)}}
			return d
		}, []string{"asset PRN token"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := rec.Differences(tc.cur(rec))
			require.Len(t, got, len(tc.want), "%v", got)
			for i, w := range tc.want {
				require.Contains(t, got[i], w)
			}
		})
	}
}

func TestDeploymentSaveLoad(t *testing.T) {
	dir := t.TempDir()
	_, ok, err := LoadDeployment(dir)
	require.NoError(t, err)
	require.False(t, ok)
	d := Deployment{ChainID: 5, Contracts: Contracts{Adjudicator: common.HexToAddress("0x01"), AssetHolderETH: common.HexToAddress("0x02")},
		Assets: []Asset{{Symbol: "PRN", Token: common.HexToAddress("0x03"), Holder: common.HexToAddress("0x04"), Decimals: 6}}}
	require.NoError(t, d.Save(dir))
	got, ok, err := LoadDeployment(dir)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, d, got)
}

func TestMismatchError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  *MismatchError
		want string
	}{
		{"no channels", &MismatchError{Dir: "/data", Differences: []string{"chain id 1337, now 1"}},
			"data dir /data was written for another chain or other contracts (chain id 1337, now 1); " +
				"start the node with the chain and contracts of that data dir, or use another data dir"},
		{"channels stranded", &MismatchError{Dir: "/data", Differences: []string{"chain id 1337, now 1", "adjudicator 0x01, now 0x02"},
			Channels: []string{"alice: 0xaa", "bob: 0xbb"}},
			"data dir /data was written for another chain or other contracts (chain id 1337, now 1; adjudicator 0x01, now 0x02); " +
				"its channels would be stranded: alice: 0xaa, bob: 0xbb; " +
				"start the node with the chain and contracts of that data dir, or use another data dir"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var err error = tc.err
			require.EqualError(t, err, tc.want)
		})
	}
}
