// Package ociimage writes single-layer FROM scratch container images as tar
// archives that both the OCI tools (containerd's `ctr images import`,
// Kubernetes nodes) and older Docker engines (`docker load`, Docker 20.10)
// accept: the archive holds an OCI image layout and Docker's manifest.json
// pointing at the same blobs, as `docker save` writes today.
//
// bpm needs images without a registry and without a Docker daemon on the
// operator's machine: the gateway image is its own static binary, and
// `bpm package image` packs a blueprint's static binary. Archives are
// reproducible: the same files and options give the same bytes.
package ociimage
