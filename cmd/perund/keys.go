package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/ethereum/go-ethereum/crypto"
	"golang.org/x/term"

	"github.com/perund/perund/config"
	"github.com/perund/perund/keys"
)

func runKeys(args []string) error {
	if len(args) < 1 {
		return errors.New("keys: want new, import or list")
	}
	fs := flag.NewFlagSet("keys "+args[0], flag.ContinueOnError)
	cfgFile := fs.String("config", "", "YAML configuration file (for keystore.dir / dataDir)")
	dir := fs.String("keystore", "", "keystore directory (default: dataDir/keystore)")
	pwFile := fs.String("password-file", "", "read the password from this file instead of the terminal")
	keyFile := fs.String("key-file", "", "import: read the hex private key from this file instead of the terminal")
	light := fs.Bool("light-kdf", false, "use light scrypt parameters (tests and dev only)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	ksDir := *dir
	if ksDir == "" {
		cfg, err := config.Load(config.Sources{File: *cfgFile, Env: os.Environ()})
		if err != nil {
			return err
		}
		ksDir = cfg.KeystoreDir()
	}
	kdf := keys.StandardKDF
	if *light {
		kdf = keys.LightKDF
	}
	ks, err := keys.New(ksDir, kdf)
	if err != nil {
		return err
	}
	switch args[0] {
	case "list":
		list, err := ks.List()
		if err != nil {
			return err
		}
		for _, a := range list {
			fmt.Println(a.Hex())
		}
		return nil
	case "new":
		pw, err := password(*pwFile, true)
		if err != nil {
			return err
		}
		a, err := ks.Create(pw)
		if err != nil {
			return err
		}
		fmt.Println(a.Hex())
		return nil
	case "import":
		var hexKey string
		if *keyFile != "" {
			b, err := os.ReadFile(*keyFile)
			if err != nil {
				return fmt.Errorf("read key file: %w", err)
			}
			hexKey = strings.TrimSpace(string(b))
		} else {
			if hexKey, err = secret("Private key (hex): "); err != nil {
				return err
			}
		}
		k, err := crypto.HexToECDSA(strings.TrimPrefix(hexKey, "0x"))
		if err != nil {
			return errors.New("import: not a hex secp256k1 private key")
		}
		pw, err := password(*pwFile, true)
		if err != nil {
			return err
		}
		a, err := ks.Import(k, pw)
		if err != nil {
			return err
		}
		fmt.Println(a.Hex())
		return nil
	}
	return fmt.Errorf("keys: unknown subcommand %q", args[0])
}

// password reads a password from file, or from the terminal without echo.
func password(file string, confirm bool) (string, error) {
	if file != "" {
		return readPasswordFile(file)
	}
	pw, err := secret("Password: ")
	if err != nil {
		return "", err
	}
	if confirm && term.IsTerminal(int(os.Stdin.Fd())) {
		again, err := secret("Repeat password: ")
		if err != nil {
			return "", err
		}
		if again != pw {
			return "", errors.New("passwords do not match")
		}
	}
	if pw == "" {
		return "", errors.New("empty password")
	}
	return pw, nil
}

func secret(prompt string) (string, error) {
	fd := int(os.Stdin.Fd())
	if term.IsTerminal(fd) {
		fmt.Fprint(os.Stderr, prompt)
		b, err := term.ReadPassword(fd)
		fmt.Fprintln(os.Stderr)
		if err != nil {
			return "", fmt.Errorf("read %s: %w", strings.TrimSuffix(prompt, ": "), err)
		}
		return string(b), nil
	}
	line, err := bufio.NewReader(os.Stdin).ReadString('\n')
	if err != nil && line == "" {
		return "", fmt.Errorf("read %s from stdin: %w", strings.TrimSuffix(prompt, ": "), err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}
