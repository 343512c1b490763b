# edgelb — build, test and benchmark. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
BIN := bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
# The commit built, for edgelb_build_info (empty outside git: then the go
# command's own record, if any).
REVISION ?= $(shell h=$$(git rev-parse HEAD 2>/dev/null) && { git diff --quiet HEAD || h=$$h-dirty; echo $$h; })
# Build tags of the binary: nomsgpack leaves gin's MessagePack binding out
# (the API speaks JSON only; 6 MB of the binary). test/testenv.BuildTags
# is the same for the binaries the tests build.
TAGS := nomsgpack
LDFLAGS := -X github.com/edgelb/edgelb/cmd/edgelb/cli.Version=$(VERSION) -X github.com/edgelb/edgelb/api.Revision=$(REVISION)
export EDGELB_TEST_CACHE ?= $(HOME)/.cache/edgelb-test
export EDGELB_TEST_BIN := $(EDGELB_TEST_CACHE)/bin
FUZZTIME ?= 10s
TRIALS ?= 10

NFPM_VERSION := v2.43.0
NFPM := $(EDGELB_TEST_CACHE)/bin/nfpm-$(NFPM_VERSION)
GOARCH ?= $(shell $(GO) env GOARCH)
# Debian versions that sort in build order (hack/deb-version.sh):
# v1.2.3 -> 1.2.3, 1.2.3+git4.abc1234 after it, 0.0.0+git<count>.<hash> untagged.
DEB_VERSION ?= $(shell hack/deb-version.sh)

.PHONY: deb help build lab test system unit test-deps test-bins bench bench-scale bench-failover bench-config bench-bgp bench-ipvs chaos e2e-vm vm fuzz vet clean

help:
	@echo "make lab        run the self-contained demo lab (Ctrl-C stops it)"
	@echo "make build      build bin/edgelb"
	@echo "make deb        build dist/edgelb_VERSION_ARCH.deb (nfpm)"
	@echo "make test       install test dependencies and run the whole test suite"
	@echo "make unit       unit tests only, under the race detector (no API server)"
	@echo "make bench      benchmarks (desired state, endpoint change -> kernel at 1k/10k, create->status latency)"
	@echo "make bench-scale     edgelb on the real API server with 10,000 Services x 10 endpoints, 100 Nodes: memory (also after a /metrics scrape, and the heap profile's top), time to address all, endpoint change latency"
	@echo "make bench-failover  VIP failover figures on network namespaces, a GARP-ignoring client's outage with and without neighbour repair (root; TRIALS=$(TRIALS))"
	@echo "make bench-bgp       BGP figures with FRR (root): new-connection outage when a host is lost (BFD 100ms x 3), flow spread; TRIALS=$(TRIALS)"
	@echo "make bench-config    cluster configuration figures: a change on one host -> built on three (50 changes, root); size and check time at 1,000 services"
	@echo "make chaos      the fault suite at full counts (root, API server; ~30 min), then bench-scale; prints the figures"
	@echo "make fuzz       run each fuzz target for FUZZTIME ($(FUZZTIME))"
	@echo "make test-bins  build the test kube-apiserver and etcd into $(EDGELB_TEST_BIN)"
	@echo "make system     the .deb on three Debian hosts booted with systemd (docs/testbed.md); figures"
	@echo "make e2e-vm     the IPVS end-to-end tests inside the QEMU VM (part of make test)"
	@echo "make bench-ipvs IPVS figures inside the VM: 10k x 10 sync, one change, VIP vs direct req/s"
	@echo "make vm SCRIPT=f run a bash script inside the test VM (hack/vm/run.sh)"

build:
	$(GO) build -trimpath -tags $(TAGS) -ldflags "$(LDFLAGS)" -o $(BIN)/edgelb ./cmd/edgelb

# The demo: a real kube-apiserver on this host, three edgelb hosts with IPVS
# and three simulated cluster nodes in the test VM, demo Services; the
# dashboard and a VIP forwarded to loopback. Ctrl-C stops and removes it all.
lab: test-deps test-bins
	$(GO) build -o $(BIN)/lab ./test/lab
	@exec $(BIN)/lab

# A static binary, so the package works on any Debian-like root.
$(NFPM):
	mkdir -p $(dir $(NFPM))
	GOBIN=$(dir $(NFPM)) $(GO) install github.com/goreleaser/nfpm/v2/cmd/nfpm@$(NFPM_VERSION)
	mv $(dir $(NFPM))nfpm $(NFPM)

# Dates in the package (changelog, man page) are the last commit's, so a
# rebuild of the same commit is the same package.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || date +%s)

# The binary reports the package's version (edgelb version, the API,
# edgelb_build_info). The man page is generated from the command's own
# flags (hack/manpage, run for the build host even when GOARCH is another),
# the changelog from DEB_VERSION and CHANGELOG.md (hack/deb-changelog.sh),
# so lintian finds both agree with the package.
deb: $(NFPM)
	CGO_ENABLED=0 $(GO) build -trimpath -tags $(TAGS) -ldflags "-s -w -X github.com/edgelb/edgelb/cmd/edgelb/cli.Version=$(DEB_VERSION) -X github.com/edgelb/edgelb/api.Revision=$(REVISION)" -o $(BIN)/edgelb ./cmd/edgelb
	CGO_ENABLED=0 $(GO) build -trimpath -tags $(TAGS) -ldflags "-s -w" -o $(BIN)/edgelb-crash-cleanup ./cmd/edgelb-crash-cleanup
	rm -rf dist $(BIN)/deb && mkdir -p dist $(BIN)/deb
	env -u GOOS -u GOARCH CGO_ENABLED=0 $(GO) run -trimpath ./hack/manpage -version $(DEB_VERSION) \
		-date $$(date -u -d @$(SOURCE_DATE_EPOCH) +%F) >$(BIN)/deb/edgelb.8
	gzip -9n $(BIN)/deb/edgelb.8
	set -o pipefail; hack/deb-changelog.sh $(DEB_VERSION) $(SOURCE_DATE_EPOCH) | gzip -9n >$(BIN)/deb/changelog.gz
	EDGELB_VERSION=$(DEB_VERSION) GOARCH=$(GOARCH) $(NFPM) package --config packaging/nfpm.yaml --packager deb --target dist/
	@ls -1 dist/*.deb

vet:
	$(GO) vet ./...

# Debian packages the tests use; installed only when missing.
test-deps:
	@hack/test-deps.sh
	@hack/vm/deps.sh
	@hack/sysvm/deps.sh

test-bins:
	@hack/kube/build.sh

unit:
	$(GO) test -race -count=1 ./cmd/... ./lb/... ./cluster/... ./vip/... ./api/... ./web/...

# The whole suite: a short run of every fuzz target, then unit tests,
# integration tests against a real kube-apiserver, namespace and VM end-to-end
# tests. The fuzz runs are counted in executions (2000 each, a few seconds),
# not in time: Go 1.26's coordinator may report "context deadline exceeded"
# when a -fuzztime duration ends under load (golang/go#75804, fixed in 1.27).
# The Debian test bed's image (debootstrap, mostly download and unpack)
# and the test-only kube-apiserver, etcd and kubectl (a cold build takes
# minutes; at the lowest priority, so that it takes the CPU the unit tests
# leave) build in the background meanwhile; test/system waits for the
# image, hack/test.sh for the binaries before the suites that use them.
test: test-deps
	@echo "building the Debian test bed image and the test-only Kubernetes binaries in the background (logs: $(SYSVM_LOG), $(KUBE_LOG))"
	@hack/sysvm/build.sh >$(SYSVM_LOG) 2>&1 & \
	nice -n 19 hack/kube/build.sh >$(KUBE_LOG) 2>&1 & \
	$(MAKE) --no-print-directory vet && \
	$(MAKE) --no-print-directory fuzz FUZZTIME=2000x && \
	hack/test.sh

SYSVM_LOG ?= /tmp/edgelb-sysvm-build.log
KUBE_LOG ?= /tmp/edgelb-kube-build.log


# edgelb as users run it: the .deb on three Debian hosts booted with
# systemd (the test bed of docs/testbed.md); prints its figures.
system: test-deps
	$(GO) test -count=1 -v -timeout 60m -run '^TestDebianHosts$$' ./test/system 2>&1 | grep -E 'FIGURE|^(---|===|ok|FAIL|PASS)|testbed_test.go'


fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./lb/config
	$(GO) test -run '^$$' -fuzz '^FuzzAnnotations$$' -fuzztime $(FUZZTIME) ./lb
	$(GO) test -run '^$$' -fuzz '^FuzzDecide$$' -fuzztime $(FUZZTIME) ./cluster
	$(GO) test -run '^$$' -fuzz '^FuzzRequest$$' -fuzztime $(FUZZTIME) ./api
	$(GO) test -run '^$$' -fuzz '^FuzzDrainBody$$' -fuzztime $(FUZZTIME) ./api

bench: test-bins
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 3x ./lb
	$(GO) test -run '^$$' -bench '^BenchmarkEndpointToKernel$$' -benchtime 1x -timeout 20m ./lb/k8s
	$(GO) test -run '^$$' -bench '^BenchmarkCreateToStatus$$' -benchtime 1x -timeout 20m ./test/integration

# edgelb at scale against the real API server: 10,000 LoadBalancer Services
# with 10 endpoints each and 100 Nodes, created before edgelb starts (a few
# minutes). Reports edgelb's memory, the time until every Service has its
# address and how long one endpoint change takes to reach the desired state.
# EDGELB_SCALE_SERVICES, _ENDPOINTS, _NODES and _QPS change the run.
bench-scale: test-bins
	$(GO) test -run '^$$' -bench '^BenchmarkScale$$' -benchtime 1x -timeout 60m ./test/integration

e2e-vm:
	$(GO) test -count=1 -v -timeout 15m ./test/vm

bench-ipvs:
	@hack/vm/bench.sh

vm:
	@hack/vm/run.sh $(SCRIPT)

# Client-visible outage of a crash (link cut) and of a graceful stop, over
# TRIALS runs of the three-host namespace lab (needs root); then the same
# crash with keepalived (VRRP) managing the VIP instead, for comparison.
bench-failover: test-deps
	ELBT_TRIALS=$(TRIALS) $(GO) test -run '^$$' -bench '^BenchmarkFailover$$' -benchtime 1x -timeout 30m ./test/e2e
	ELBT_TRIALS=$(TRIALS) $(GO) test -run '^$$' -bench '^BenchmarkGARPIgnoringClient$$' -benchtime 1x -timeout 30m ./test/e2e
	@command -v keepalived >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends keepalived
	ELBT_TRIALS=$(TRIALS) $(GO) test -run '^$$' -bench '^BenchmarkKeepalivedFailover$$' -benchtime 1x -timeout 30m ./test/e2e

# BGP with FRR as the router: the new-connection outage when a host is cut
# off (BFD 100 ms x 3), the time until the router drops its next hop, and
# the flow spread over three hosts, over TRIALS fresh labs (needs root).
bench-bgp: test-deps
	ELBT_TRIALS=$(TRIALS) $(GO) test -run '^$$' -bench '^BenchmarkBGPHostLoss$$' -benchtime 1x -timeout 30m ./test/bgp

# The cluster configuration: 50 changes applied on one host of the
# three-host namespace lab, each timed until every host has built its
# desired state from it (p50/p99); the size of a 1,000-service document and
# the time to check one version of it; a write to committed on three
# in-process consensus members and the time to accept writes again after
# losing the leader; on the real binary, `edgelb config apply` to
# acknowledged and the leader SIGKILLed to a change acknowledged again.
bench-config: test-deps
	$(GO) test -run '^$$' -bench '^BenchmarkSpecAtScale$$' -benchmem ./lb/config
	$(GO) test -run '^$$' -bench '^BenchmarkPropose$$' -benchtime 2000x ./cluster/consensus
	$(GO) test -run '^$$' -bench '^BenchmarkLeaderLoss$$' -benchtime 10x ./cluster/consensus
	$(GO) test -run '^$$' -bench '^BenchmarkConfigPropagation$$' -benchtime 1x -timeout 20m ./test/e2e

# The fault suite (test/chaos, docs/chaos.md) at full counts: a 5-minute
# API server outage, 20 kills of each kind, 200 Services. `go test` runs it
# with reduced counts as part of the suite. The figures are printed as a
# table; the log of the whole run is in $(CHAOS_LOG).
CHAOS_LOG ?= /tmp/edgelb-chaos.log
chaos: test-deps test-bins
	@set -o pipefail; EDGELB_CHAOS_FULL=1 $(GO) test -count=1 -v -timeout 90m ./test/chaos >$(CHAOS_LOG) 2>&1; rc=$$?; \
	grep -E '^(---|ok|FAIL)|^\s+--- (FAIL|SKIP)' $(CHAOS_LOG); \
	echo; printf 'scenario\tfigure\tvalue\n' >$(CHAOS_LOG).figures; \
	grep -oP 'FIGURE\t\K.*' $(CHAOS_LOG) >>$(CHAOS_LOG).figures; column -t -s $$'\t' $(CHAOS_LOG).figures; \
	echo "(full log: $(CHAOS_LOG))"; \
	echo "scale on the real API server (make bench-scale):"; \
	$(MAKE) --no-print-directory bench-scale || rc=1; exit $$rc

clean:
	rm -rf $(BIN) dist
