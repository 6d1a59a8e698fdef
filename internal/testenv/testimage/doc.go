// Command testimage is the program inside the test environment's container
// image (scripts/testenv builds it into a FROM scratch image): a tiny static
// HTTP server, so Docker, SSH-docker and Kubernetes tests can check that a
// container really runs and answers without pulling anything from a registry.
//
// It listens on :$PORT (default 8080) and answers:
//
//	GET /         {"service":"httpecho","hostname":...,"path":...,"message":$MESSAGE}
//	GET /healthz  ok
package main
