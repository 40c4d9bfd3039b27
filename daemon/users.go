package daemon

import (
	"crypto/ecdsa"
	"errors"
	"fmt"

	"github.com/ethereum/go-ethereum/common"

	"github.com/perund/perund/contacts"
	"github.com/perund/perund/keys"
	"github.com/perund/perund/node"
)

// The demo users' keys (perund dev's alice and bob): anvil's well-known
// test accounts #1 and #2, public knowledge that guards nothing of value.
// The test kit's alice and bob are the same.
const (
	DemoKeyAlice = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
	DemoKeyBob   = "5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"
)

// Account is a key for a node's keystore with the password it is stored
// under.
type Account struct {
	Key      *ecdsa.PrivateKey
	Password string
}

// ImportKeys stores each account's key in ks unless ks holds it already
// (a data dir used before keeps its keys and their passwords). It returns
// the accounts' addresses, in order.
func ImportKeys(ks *keys.Store, accounts []Account) ([]common.Address, error) {
	addrs := make([]common.Address, len(accounts))
	for i, a := range accounts {
		addr, err := ks.Import(a.Key, a.Password)
		if err != nil && !errors.Is(err, keys.ErrExists) {
			return nil, err
		}
		addrs[i] = addr
	}
	return addrs, nil
}

// User is a session with the alias its peers know it by.
type User struct {
	Session *node.Session
	Alias   string
}

// Introduce puts every user in every other's contacts under its alias,
// with its current peer address. A contact of the same account kept from
// an earlier run at another peer address is replaced and keeps the alias
// it had.
func Introduce(users ...User) error {
	for _, u := range users {
		for _, o := range users {
			if u.Session == o.Session {
				continue
			}
			if err := introduce(u.Session, o); err != nil {
				return fmt.Errorf("introduce %s to %s: %w", o.Alias, u.Session.Address().Hex(), err)
			}
		}
	}
	return nil
}

// introduce puts o in s's contacts.
func introduce(s *node.Session, o User) error {
	c, err := s.Contacts().ByAddress(o.Session.Address())
	switch {
	case errors.Is(err, contacts.ErrNotFound):
		_, err := s.AddContact(contacts.Contact{Alias: o.Alias, Address: o.Session.Address(), CommAddress: o.Session.CommAddress()})
		return err
	case err != nil:
		return err
	case c.CommAddress == o.Session.CommAddress():
		return nil
	}
	c.CommAddress = o.Session.CommAddress()
	return s.ReplaceContact(c)
}
