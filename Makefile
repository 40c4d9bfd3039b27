.PHONY: test bench run

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
