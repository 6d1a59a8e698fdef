// Package bridgepb is the generated protobuf and gRPC code for the
// blueprint_manager_bridge.BlueprintManagerBridge service (bridge.proto,
// written from bpm's wire sheet). The generated files are committed;
// regenerate them with `go generate ./internal/bridge/bridgepb`, which runs
// gen.sh: protoc from Debian's protobuf-compiler plus protoc-gen-go v1.36.12
// and protoc-gen-go-grpc v1.5.1 installed at those pinned versions.
package bridgepb

//go:generate ./gen.sh
