// Tiny static images for the Kubernetes test environment, built without
// docker or a registry. A module of its own so the project's ./... is unaffected.
module github.com/bpm-project/bpm/testenv-k8s-images

go 1.24.0
