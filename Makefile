# affectd — see README.md.
#
#   make setup   install Debian packages, fetch pinned artefacts into .cache/, Go modules
#   make build   bin/affectd and the tools
#   make test    gofmt, go vet, staticcheck, exporter tests, go test -race,
#                fuzzing, the systemd unit in a container (what CI runs)
#   make run     the daemon on its demo (a test clip, a random demo model)
#   make install binary, ONNX Runtime, detectors, config, systemd unit
#   make bench   the benchmarks (figures, not tests)

SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
export AFFECTD_CACHE ?= $(CURDIR)/.cache
ORT_LIB := $(AFFECTD_CACHE)/ort/1.30.0/libonnxruntime.so.1
PY := /usr/bin/python3
# -p 1: packages one at a time, so that the end-to-end tests that measure
# rates and latency do not compete with other packages for the CPUs.
GOTEST_FLAGS ?= -race -tags matprofile -p 1 -timeout 30m
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/affectd/affectd/daemon.Version=$(VERSION)

.PHONY: all setup build test lint vulncheck test-python test-go test-fuzz test-systemd run install bench clean

all: build

setup:
	@bash tools/setup.sh

build: setup
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/affectd ./daemon/cmd/affectd

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.cache/*')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed on: $$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

# govulncheck, offline: the Go vulnerability database is built from the
# pinned golang.org/x/vulndb module (its data/osv reports) into the cache,
# since vuln.go.dev cannot be reached here. Not part of `make test`: its
# findings include the Go toolchain's own standard library, which a
# toolchain upgrade fixes, not this repository (README, "Checks").
VULNDB_VERSION := v0.0.0-20261105234957-e22db6528018
VULNDB := $(AFFECTD_CACHE)/vulndb/$(VULNDB_VERSION)
vulncheck:
	@if [ ! -f "$(VULNDB)/index/db.json" ]; then \
		$(GO) mod download golang.org/x/vulndb@$(VULNDB_VERSION) && \
		rm -rf "$(VULNDB).tmp" && \
		$(GO) run golang.org/x/vulndb/cmd/indexdb@$(VULNDB_VERSION) \
			-vulns "$$($(GO) env GOMODCACHE)/golang.org/x/vulndb@$(VULNDB_VERSION)/data/osv" -out "$(VULNDB).tmp" && \
		mv "$(VULNDB).tmp" "$(VULNDB)"; fi
	$(GO) run golang.org/x/vuln/cmd/govulncheck@v1.9.0 -db "file://$(VULNDB)" ./...

test-python:
	$(PY) -m unittest discover -s tools/export -p 'test_*.py'

test-go:
	$(GO) test $(GOTEST_FLAGS) ./...

# Fuzz targets, each for a short budget (the full corpus runs as tests above).
# Budgets are execution counts (~10 s each here), not durations: with a
# duration, Go 1.26's fuzz coordinator can report a spurious "context deadline
# exceeded" failure when the time runs out (golang/go#75804, fixed in 1.27).
# The parsers that face the network and the hand, each with an execution
# budget (counts, not durations: golang/go#75804). About 90 s in all here.
test-fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime 100000x -fuzzminimizetime 500x ./config
	$(GO) test -run '^$$' -fuzz '^FuzzWHIPOffer$$' -fuzztime 12000x -fuzzminimizetime 500x ./capture/webrtc
	$(GO) test -run '^$$' -fuzz '^FuzzAssemble$$' -fuzztime 20000x -fuzzminimizetime 500x ./capture/webrtc
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime 2000x -fuzzminimizetime 200x ./capture/webrtc/avdec
	$(GO) test -run '^$$' -fuzz '^FuzzCheck$$' -fuzztime 20000x -fuzzminimizetime 500x ./capture/streamid
	$(GO) test -run '^$$' -fuzz '^FuzzParseStreams$$' -fuzztime 20000x -fuzzminimizetime 500x ./stream
	$(GO) test -run '^$$' -fuzz '^FuzzLoadState$$' -fuzztime 3000x -fuzzminimizetime 200x ./stream/record
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime 20000x -fuzzminimizetime 500x ./stream/osc

# The systemd unit as `make install` installs it, booted under systemd in a
# container (README, "Running as a service"); ~4 min the first time.
test-systemd: build
	bash tools/systemdcheck/check.sh

test: setup lint test-python test-go test-fuzz test-systemd

DEMO_MODEL := $(AFFECTD_CACHE)/demo/model.onnx
DEMO_LISTEN ?= 127.0.0.1:8686

# make run: the landmark backend (real AUs, pose, blend shapes) on the demo
# clip; a MAE-Face export installed as $(DEMO_MODEL) adds its heads.
# DEMO_MODEL_RANDOM=1 installs a random ViT-tiny there first (its values
# are NOT affect estimates: for trying the model path only).
run: build
	@$(GO) run ./tools/testmedia/cmd/testmedia -clip two_faces -size 640x360 >/dev/null
	@if [ -n "$(DEMO_MODEL_RANDOM)" ] && [ ! -f "$(DEMO_MODEL)" ]; then \
		echo "affectd: installing a random demo model at $(DEMO_MODEL) (its values are NOT affect estimates)"; \
		mkdir -p "$(dir $(DEMO_MODEL))" && cp "$$($(GO) run ./tools/demomodel)" "$(DEMO_MODEL)"; \
	fi
	@echo
	@echo "  affectd demo: dashboard http://$(DEMO_LISTEN)/   websocket ws://$(DEMO_LISTEN)/v1/ws   streams http://$(DEMO_LISTEN)/v1/streams"
	@echo "  tail it:      go run ./tools/wsclient -url ws://$(DEMO_LISTEN)/v1/ws -n 10"
	@if [ -f "$(DEMO_MODEL)" ]; then echo "  model:        $(DEMO_MODEL)"; else echo "  model:        none: AUs, head pose and blend shapes from the landmark backend"; fi
	@echo
	./bin/affectd run -config config/demo.yaml -listen $(DEMO_LISTEN) $$([ -f "$(DEMO_MODEL)" ] && echo -model "$(DEMO_MODEL)")

# Installs the binary, ONNX Runtime, the face detectors, an example config
# and the systemd unit (DESTDIR for packaging).
install: build
	install -D -m 0755 bin/affectd $(DESTDIR)/usr/bin/affectd
	install -D -m 0644 $(ORT_LIB) $(DESTDIR)/usr/lib/affectd/libonnxruntime.so.1
	install -D -m 0644 $(AFFECTD_CACHE)/blazeface/1.2.0/face_detection_back_256x256.onnx $(DESTDIR)/usr/lib/affectd/blazeface/face_detection_back_256x256.onnx
	install -D -m 0644 $(AFFECTD_CACHE)/blazeface/1.2.0/face_detection_front_128x128.onnx $(DESTDIR)/usr/lib/affectd/blazeface/face_detection_front_128x128.onnx
	install -D -m 0644 $(AFFECTD_CACHE)/human-models/3.0.4/onnx/facemesh.onnx $(DESTDIR)/usr/lib/affectd/human-models/facemesh.onnx
	install -D -m 0644 $(AFFECTD_CACHE)/human-models/3.0.4/onnx/iris.onnx $(DESTDIR)/usr/lib/affectd/human-models/iris.onnx
	install -D -m 0644 $(AFFECTD_CACHE)/human-models/3.0.4/onnx/emotion.onnx $(DESTDIR)/usr/lib/affectd/human-models/emotion.onnx
	install -D -m 0644 $(AFFECTD_CACHE)/human-models/3.0.4/onnx/mobilefacenet.onnx $(DESTDIR)/usr/lib/affectd/human-models/mobilefacenet.onnx
	install -D -m 0644 systemd/affectd.service $(DESTDIR)/etc/systemd/system/affectd.service
	install -D -m 0644 README.md $(DESTDIR)/usr/share/doc/affectd/README.md
	install -D -m 0644 systemd/affectd.sysusers $(DESTDIR)/usr/lib/sysusers.d/affectd.conf
	@# The affectd user and group, here or in an OS tree under DESTDIR (a
	@# package's postinst would run systemd-sysusers instead), so that the
	@# config can belong to the group: 0640 root:affectd.
	@if [ -z "$(DESTDIR)" ] || [ -f "$(DESTDIR)/etc/passwd" ]; then \
		systemd-sysusers --root="$(or $(DESTDIR),/)" "$(CURDIR)/systemd/affectd.sysusers"; fi
	test -e $(DESTDIR)/etc/affectd/affectd.yaml || install -D -m 0640 config/example.yaml $(DESTDIR)/etc/affectd/affectd.yaml
	@gid=$$(awk -F: '$$1 == "affectd" {print $$3}' "$(DESTDIR)/etc/group" 2>/dev/null); \
	if [ -n "$$gid" ]; then chgrp "$$gid" $(DESTDIR)/etc/affectd/affectd.yaml && chmod 0640 $(DESTDIR)/etc/affectd/affectd.yaml; \
	else echo "make install: no affectd group yet: run systemd-sysusers, then chgrp affectd /etc/affectd/affectd.yaml"; fi

bench: setup
	$(GO) run ./tools/bench infer
	$(GO) run ./tools/bench track
	$(GO) run ./tools/bench e2e
	$(GO) run ./tools/bench latency

clean:
	rm -rf bin
