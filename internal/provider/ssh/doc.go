// Package ssh is bpm's SSH provider: it runs instances on plain hosts reached
// over SSH (golang.org/x/crypto/ssh, one reused connection per host), with
// host keys verified against known_hosts — strictly unless
// trust_on_first_use is set, and never ignored.
//
// The native runtime reuses the local provider's design on the host: the
// bpm binary is uploaded once over SFTP to ~/.bpm/bin/bpm-<sha256> (hash
// checked on the host, then renamed into place), the package's binary to
// ~/.bpm/pkg/sha256-<hash>, spec.json (0600; it holds the env) to
// ~/.bpm/instances/<id>/, and `bpm supervise --dir DIR` is started in its
// own session. Issue 7 asks for the gateway to supervise native instances;
// a supervisor per instance does the same work (restart with backoff,
// rotated logs, graceful stop) with one process's fate per instance: a
// gateway restart (a new key, a new bpm) or crash does not stop or
// restart the services, and the code is the local provider's, tested
// there. Status, logs and liveness are read back over SFTP; health
// checks and instance traffic go through direct-tcpip channels to the
// service's loopback port, so nothing listens on the host's network.
//
// Issue 7 lets a host with systemd run instances as units instead, detected
// rather than assumed. Only the detection is built: systemd is PID 1
// (/run/systemd/system exists) and the login user's manager answers
// (`systemctl --user show-environment`), asked once per connection and
// logged by the first deploy there. Every host still runs instances under
// `bpm supervise`: the test hosts have no systemd, so unit management could
// not be tested here and is not written.
//
// Every remote command line is built by command/quote; values that are not
// fixed words (env, names) never reach a command line at all.
//
// The gateways (EstablishTunnel) run the same way: `bpm gateway` under
// `bpm supervise`, its BPM_GATEWAY_* configuration (the private key
// included) only in its directory's 0600 spec.json. A native instance
// binds to its own host's loopback, which only a gateway on that host
// reaches, so the native runtime is a provider.Sited whose sites are its
// hosts (sites.go): Place picks and reserves the host, the manager gives
// that site its own hub peer (REMOTE.SITE) and tunnel spec, and the host
// runs that gateway in ~/.bpm/gateway/REMOTE.SITE/. A deploy without a site
// (the conformance suite calls Deploy directly) places by itself, and a
// spec without a site runs the remote's one gateway in
// ~/.bpm/gateway/<remote>/ on the first reachable host. A live gateway
// with the same spec is kept, a changed spec replaces it, and it outlives
// the instances: Terminate never stops it.
//
// The docker runtime (the default) drives each host's Docker Engine with
// the docker provider itself, one docker.Provider per host built with
// docker.Options.Dial: every Engine API request goes over a
// direct-streamlocal channel of the host's SSH connection to the engine's
// unix socket (runtime.docker_socket), so the engine listens on no TCP port
// and bpm has one Engine API client. Containers publish nothing; their
// addresses are on the host's private Docker network, which health checks
// reach from the host's side through the SSH connection.
// This package adds what spreading a remote over several engines needs:
// placement, the handle naming the host ({"host":…,"docker":<the docker
// provider's handle>}), finding an instance on the hosts when the handle is
// lost, and a gateway container per host: each host is a site (sites.go),
// and its docker.Provider is named REMOTE.SITE, so its containers, network,
// bridge volume and gateway are its own even when several hosts reach one
// engine. The docker provider removes a site's gateway container with its
// last instance, as it does for a docker remote.
//
// Placement is the same for both runtimes: the reachable host with the
// fewest bpm instances per CPU, counting the deploys still in flight there;
// max_instances caps the total. Deploys started together share one round
// of host queries (every host asked at once) and only their decisions are
// serialised, counting every placement made since the round began, so
// concurrent deploys spread over the hosts, cannot overshoot the cap
// together, and do not queue behind each other's queries. A host's
// platform and CPU count are asked once per connection.
//
// An instance that no reachable host holds while some host cannot be
// reached is ErrUnavailable, not ErrNotFound, in both runtimes (for its
// status, its logs, its termination): it may run on that host, and the
// manager reads ErrNotFound as gone.
//
// Speed (issue 7) is measured by the BenchmarkIntegrationSSH* benchmarks,
// each beside a baseline of the system OpenSSH client in the same run:
// scripts/bench --remote prints them.
package ssh
