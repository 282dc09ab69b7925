# affectd — see README.md.
#
#   make setup   install Debian packages, fetch pinned artefacts into .cache/, Go modules
#   make build   bin/affectd and the tools
#   make test    gofmt, go vet, exporter tests, go test -race (what CI runs)
#   make run     the daemon on its demo
#   make bench   the benchmarks (figures, not tests)

SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
export AFFECTD_CACHE ?= $(CURDIR)/.cache
ORT_LIB := $(AFFECTD_CACHE)/ort/1.30.0/libonnxruntime.so.1
PY := /usr/bin/python3
GOTEST_FLAGS ?= -race -tags matprofile -timeout 20m
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/affectd/affectd/daemon.Version=$(VERSION)

.PHONY: all setup build test lint test-python test-go run bench clean

all: build

setup:
	@bash tools/setup.sh

build: setup
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/affectd ./daemon/cmd/affectd

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.cache/*')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed on: $$unformatted"; exit 1; fi
	$(GO) vet ./...

test-python:
	$(PY) -m unittest discover -s tools/export -p 'test_*.py'

test-go:
	$(GO) test $(GOTEST_FLAGS) ./...

test: setup lint test-python test-go

run: build
	@model=$$($(GO) run ./tools/demomodel) && \
	echo "affectd: demo model $$model (random weights: its values are not affect estimates)" && \
	./bin/affectd model-info -ort $(ORT_LIB) $$model

bench: setup
	$(GO) run ./tools/bench infer
	$(GO) run ./tools/bench track

clean:
	rm -rf bin
