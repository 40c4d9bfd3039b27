.PHONY: test bench run release

# Everything the tests need is installed by the script itself.
test:
	./scripts/test

run:
	go run ./cmd/perund dev

# Benchmarks: go-perun alone vs. perund's API, the wallet-like path, parallel channels, memory.
# Writes bench.txt (raw go test output).
bench:
	go test ./bench -run '^$$' -bench 'GoPerunDirect|RPCPayment$$' -benchtime 3000x -count 3 | tee bench.txt
	# The wallet-like path (node, API over loopback WebSockets, wallets in a second process)
	# interleaved with go-perun alone in blocks of 100: payments/s, updates/s and their ratio.
	go test ./bench -run '^$$' -bench 'WalletPath' -benchtime 2000x -count 3 | tee -a bench.txt
	go test ./bench -run '^$$' -bench 'RPCPaymentParallel' -benchtime 2000x -count 1 | tee -a bench.txt
	go test ./bench -run '^$$' -bench 'Memory' -benchtime 100x -count 1 | tee -a bench.txt
	go test ./bench -run '^$$' -bench 'DevStartup' -benchtime 10x -count 1 | tee -a bench.txt

# Release binaries: static (no cgo: go-ethereum's pure-Go secp256k1) for
# linux/amd64, linux/arm64 and darwin/arm64, with the version stamped and
# the commit and module versions recorded by the toolchain (perund
# version), and their SHA-256 sums. VERSION defaults to the git tag.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
PLATFORMS := linux/amd64 linux/arm64 darwin/arm64
release:
	rm -rf dist && mkdir -p dist
	for p in $(PLATFORMS); do \
		os=$${p%/*}; arch=$${p#*/}; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch go build -trimpath -buildvcs=true -ldflags "-s -w -X main.version=$(VERSION)" \
			-o dist/perund-$(VERSION)-$$os-$$arch ./cmd/perund || exit 1; \
	done
	cd dist && sha256sum perund-* > SHA256SUMS
	@cat dist/SHA256SUMS
