#!/bin/sh
# Regenerates bridge.pb.go and bridge_grpc.pb.go from bridge.proto with
# pinned plugin versions. Needs protoc (Debian: apt-get install
# protobuf-compiler); the plugins are installed from the Go module proxy.
set -eu
cd "$(dirname "$0")"
bin="${BPM_PROTOC_GOBIN:-${TMPDIR:-/tmp}/bpm-protoc-plugins}"
GOBIN="$bin" go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
GOBIN="$bin" go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1
PATH="$bin:$PATH" protoc -I . \
	--go_out=. --go_opt=paths=source_relative \
	--go-grpc_out=. --go-grpc_opt=paths=source_relative \
	bridge.proto
