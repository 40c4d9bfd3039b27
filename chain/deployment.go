package chain

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ethereum/go-ethereum/common"
)

// DeploymentFile is the name of the file in a data dir that records which
// chain and contracts the channels in that data dir belong to.
const DeploymentFile = "chain.json"

// Deployment names a chain and the Perun contracts on it.
type Deployment struct {
	ChainID   uint64    `json:"chainId"`
	Contracts Contracts `json:"contracts"`
	Assets    []Asset   `json:"assets,omitempty"`
}

// MarshalJSON writes addresses in their checksummed hex form.
func (c Contracts) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]string{"adjudicator": c.Adjudicator.Hex(), "assetHolderETH": c.AssetHolderETH.Hex()})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (c *Contracts) UnmarshalJSON(b []byte) error {
	var m struct{ Adjudicator, AssetHolderETH common.Address }
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	c.Adjudicator, c.AssetHolderETH = m.Adjudicator, m.AssetHolderETH
	return nil
}

// LoadDeployment reads the deployment recorded in dir; ok is false when
// none is recorded yet.
func LoadDeployment(dir string) (d Deployment, ok bool, err error) {
	path := filepath.Join(dir, DeploymentFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return Deployment{}, false, nil
	}
	if err != nil {
		return Deployment{}, false, fmt.Errorf("read %s: %w", path, err)
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return Deployment{}, false, fmt.Errorf("read %s: %w", path, err)
	}
	return d, true, nil
}

// Save records d in dir (atomically: a temporary file renamed over it).
func (d Deployment) Save(dir string) error {
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(dir, DeploymentFile)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Differences lists how cur departs from the recorded deployment d in ways
// that strand channels recorded against d: another chain id, another
// adjudicator or ETH asset holder, or a recorded ERC20 asset that is gone
// or has another token or holder. Assets cur adds are not a difference.
func (d Deployment) Differences(cur Deployment) []string {
	var out []string
	if d.ChainID != cur.ChainID {
		out = append(out, fmt.Sprintf("chain id %d, now %d", d.ChainID, cur.ChainID))
	}
	if d.Contracts.Adjudicator != cur.Contracts.Adjudicator {
		out = append(out, fmt.Sprintf("adjudicator %s, now %s", d.Contracts.Adjudicator.Hex(), cur.Contracts.Adjudicator.Hex()))
	}
	if d.Contracts.AssetHolderETH != cur.Contracts.AssetHolderETH {
		out = append(out, fmt.Sprintf("ETH asset holder %s, now %s", d.Contracts.AssetHolderETH.Hex(), cur.Contracts.AssetHolderETH.Hex()))
	}
	now := map[string]Asset{}
	for _, a := range cur.Assets {
		now[a.Symbol] = a
	}
	for _, a := range d.Assets {
		c, ok := now[a.Symbol]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("asset %s (holder %s) is no longer configured", a.Symbol, a.Holder.Hex()))
		case c.Token != a.Token || c.Holder != a.Holder:
			out = append(out, fmt.Sprintf("asset %s token %s holder %s, now token %s holder %s",
				a.Symbol, a.Token.Hex(), a.Holder.Hex(), c.Token.Hex(), c.Holder.Hex()))
		}
	}
	return out
}

// MismatchError refuses a data dir whose channels belong to another chain
// or other contracts than the node runs with.
type MismatchError struct {
	Dir         string
	Differences []string
	// Channels lists the channels stored in Dir, as "user: channel id".
	Channels []string
}

func (e *MismatchError) Error() string {
	msg := fmt.Sprintf("data dir %s was written for another chain or other contracts (%s)",
		e.Dir, strings.Join(e.Differences, "; "))
	if len(e.Channels) > 0 {
		msg += fmt.Sprintf("; its channels would be stranded: %s", strings.Join(e.Channels, ", "))
	}
	return msg + "; start the node with the chain and contracts of that data dir, or use another data dir"
}
