.PHONY: test bench run

# Everything the tests need is installed by the script itself.
test:
	./scripts/test

run:
	go run ./cmd/perund dev

# Benchmarks: go-perun alone vs. perund's API, parallel channels, memory.
# Writes bench.txt (raw go test output).
bench:
	go test ./bench -run '^$$' -bench 'GoPerunDirect|RPCPayment$$' -benchtime 3000x -count 3 | tee bench.txt
	go test ./bench -run '^$$' -bench 'RPCPaymentParallel' -benchtime 2000x -count 1 | tee -a bench.txt
	go test ./bench -run '^$$' -bench 'Memory' -benchtime 100x -count 1 | tee -a bench.txt
	go test ./bench -run '^$$' -bench 'DevStartup' -benchtime 10x -count 1 | tee -a bench.txt
