# The two commands README.md gives a newcomer are `make demo` and `make test`.
GO ?= go
export PATH := $(PATH):/usr/local/go/bin

# Modules of this repository: the library, the controller-runtime module, the
# real-API-server tests, the examples, and the SQL source's tests with a real
# SQLite driver.
MODULES := . controllerruntime test examples source/sqlsource/sqltest
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: demo test test-unit test-e2e test-examples lint api-check api-baseline fuzz bench bench-controller soak

## demo: start three local clusters and a dashboard, and change them while it runs
demo:
	@echo "Building the demo (the first run also builds etcd and kube-apiserver: about ten minutes; later runs take seconds)..."
	cd examples && $(GO) build -o ../bin/demo ./demo
	./bin/demo

## test: every test of every module, under the race detector
test: test-unit test-e2e test-examples

test-unit:
	$(GO) test -race -count=1 ./...
	cd controllerruntime && $(GO) test -race -count=1 ./...
	cd source/sqlsource/sqltest && $(GO) test -race -count=1 ./...

## test-e2e: tests against real kube-apiserver processes (builds them once into a cache)
test-e2e:
	cd test && $(GO) run ./cmd/localclusters -build-only
	cd test && $(GO) test -race -count=1 -timeout=45m ./...

## soak: three replicas of a service, sharing five local clusters through package shard
## (Leases in a hub), under random, overlapping faults for DURATION (a replica killed
## among them), every invariant checked all the time (test/soak).
## SEED replays a run's fault schedule (empty: a fresh one, printed); REPORT=FILE
## keeps the report. Fails on any violation.
DURATION ?= 3m
SEED ?=
REPORT ?=
soak:
	cd test && $(GO) run ./cmd/localclusters -build-only
	cd test && CLUSTERREGISTRY_SOAK_DURATION=$(DURATION) CLUSTERREGISTRY_SOAK_SEED=$(SEED) CLUSTERREGISTRY_SOAK_REPORT=$(abspath $(REPORT)) \
		$(GO) test -race -count=1 -timeout=$(or $(TIMEOUT),2h) -run='^TestSoak$$' -v ./soak

## test-examples: the examples build, and their tests pass (the demo on local clusters; the
## dashboard in headless Chromium when CLUSTERREGISTRY_BROWSER_TEST=1)
test-examples:
	cd examples && $(GO) build ./... && $(GO) test -race -count=1 -timeout=30m ./...

lint:
	@out="$$(gofmt -l .)"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@for m in $(MODULES); do echo "vet + staticcheck: $$m"; (cd $$m && $(GO) vet ./... && $(GO) run $(STATICCHECK) ./...) || exit 1; done

## api-check: the library's public API against the baselines in api/ (apidiff); an
## incompatible change fails unless api/BREAKING lists it (see api/README.md)
api-check:
	./.ci/api check

## api-baseline: regenerate api/*.apidiff from this tree and empty api/BREAKING
## (at a release, or after intended breaks are merged)
api-baseline:
	./.ci/api baseline

## bench: the benchmarks against baselines A, B and L (and client-go for the cold start), then the table of ratios README shows
bench:
	$(GO) test -run='^$$' -bench='Lookup|Snapshot|WriteLockHold|SyncNoChange|SyncOneChange' -benchmem -count=$(or $(COUNT),6) . | tee bench.out
	$(GO) test -run='^$$' -bench='SyncBlackHole|IdleClusterMemory' -benchmem -benchtime=1x -count=$(or $(SLOW_COUNT),2) . | tee -a bench.out
	# A process of its own, so that its RSS starts from the cold start's alone.
	$(GO) test -run='^$$' -bench='ColdStart' -benchtime=1x -count=$(or $(SLOW_COUNT),2) -timeout=30m . | tee -a bench.out
	$(GO) run ./internal/benchtable < bench.out

# A count of inputs rather than a duration: when a duration runs out while the
# engine gathers its baseline or minimizes a new input (a slow target on a busy
# machine), go test ends with "context deadline exceeded" instead of PASS. A count
# has no deadline, and minimizing a new input runs it once (-fuzzminimizetime=1x).
FUZZTIME ?= 2000x
## fuzz: each fuzz target briefly (FUZZTIME inputs each)
fuzz:
	$(GO) test -run='^$$' -fuzz='^FuzzValidateName$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=1x .
	$(GO) test -run='^$$' -fuzz='^FuzzTrustPolicy$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=1x ./trust
	$(GO) test -run='^$$' -fuzz='^FuzzParse$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=1x -parallel=1 ./source/kubeconfig
	$(GO) test -run='^$$' -fuzz='^FuzzKubeconfigSecret$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=1x -parallel=1 ./source/secret
	$(GO) test -run='^$$' -fuzz='^FuzzArgoCDSecret$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=1x -parallel=1 ./source/secret
	$(GO) test -run='^$$' -fuzz='^FuzzClusterAPISecret$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=1x -parallel=1 ./source/secret
	$(GO) test -run='^$$' -fuzz='^FuzzClusterProfile$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=1x -parallel=1 ./source/clusterprofile
	$(GO) test -run='^$$' -fuzz='^FuzzParseUntrusted$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=1x -parallel=1 ./source/kubeconfig
	$(GO) test -run='^$$' -fuzz='^FuzzSanitizeName$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=1x -parallel=1 ./source/kubeconfig
	$(GO) test -run='^$$' -fuzz='^FuzzRow$$' -fuzztime=$(FUZZTIME) -fuzzminimizetime=1x -parallel=1 ./source/sqlsource

## bench-controller: the controllerruntime module's figures: quiet clusters' latency under a flood (fair
## queue against one shared FIFO), and memory and goroutines per engaged idle cluster (against a bare
## controller-runtime cluster.Cluster per cluster)
bench-controller:
	cd controllerruntime && $(GO) test -run='^$$' -bench='Fairness|IdleClusterMemory' -benchtime=1x -count=$(or $(SLOW_COUNT),3) .
