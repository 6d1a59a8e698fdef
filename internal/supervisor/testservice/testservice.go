// Package testservice is a tiny blueprint stand-in for tests: a test binary
// re-executes itself with BPM_TEST_SERVICE set and, from TestMain, calls Main,
// which becomes the requested kind of service. It really listens, really
// crashes, really ignores SIGTERM — no fakes.
package testservice

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// Env variables that select and tune the service.
const (
	EnvMode      = "BPM_TEST_SERVICE"   // http | crash | exit0 | ignore-term | spam | sleep-ignore
	EnvPort      = "BPM_TEST_PORT"      // http: port on 127.0.0.1
	EnvUnhealthy = "BPM_TEST_UNHEALTHY" // http: /healthz answers 503 when "1"
	EnvPIDFile   = "BPM_TEST_PIDFILE"   // ignore-term: where to write "LEADER GRANDCHILD"
	EnvSpamBytes = "BPM_TEST_SPAM_BYTES"
	EnvSpamPause = "BPM_TEST_SPAM_PAUSE" // spam: pause after every 10 lines
)

// Marker is printed by every mode once it is up, for log assertions.
const Marker = "bpm-test-service: up"

// Main runs the service selected by BPM_TEST_SERVICE and reports false when
// the variable is unset (a normal test run). It exits the process otherwise.
func Main() bool {
	mode := os.Getenv(EnvMode)
	if mode == "" {
		return false
	}
	switch mode {
	case "http":
		serveHTTP()
	case "crash":
		fmt.Println(Marker, "(crash mode)")
		fmt.Fprintln(os.Stderr, "bpm-test-service: crashing on purpose")
		os.Exit(1)
	case "ignore-term":
		ignoreTerm()
	case "exit0":
		fmt.Println(Marker, "(exiting cleanly)")
		os.Exit(0)
	case "sleep-ignore":
		signal.Ignore(syscall.SIGTERM)
		select {}
	case "spam":
		spam()
	default:
		fmt.Fprintln(os.Stderr, "bpm-test-service: unknown mode", mode)
		os.Exit(2)
	}
	os.Exit(0)
	return true
}

func serveHTTP() { ServeHTTP(nil) }

// ServeHTTP is the http mode's service; ready, if set, is called once it
// listens (other test services build on it, e.g. one that then registers
// through its bridge). It returns when the service is told to stop.
func ServeHTTP(ready func(net.Addr)) {
	port := os.Getenv(EnvPort)
	ln, err := net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bpm-test-service: listen:", err)
		os.Exit(1)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if os.Getenv(EnvUnhealthy) == "1" {
			http.Error(w, "unhealthy on purpose", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/env", func(w http.ResponseWriter, r *http.Request) {
		env := map[string]string{}
		for _, kv := range os.Environ() {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
		json.NewEncoder(w).Encode(env)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "hello from bpm-test-service")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-term
		fmt.Println("bpm-test-service: SIGTERM, shutting down")
		srv.Close()
	}()
	fmt.Println(Marker, "listening on", ln.Addr())
	if ready != nil {
		ready(ln.Addr())
	}
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, "bpm-test-service: serve:", err)
		os.Exit(1)
	}
}

func ignoreTerm() {
	signal.Ignore(syscall.SIGTERM)
	self, err := os.Executable()
	if err != nil {
		os.Exit(3)
	}
	// A grandchild in the same process group, also deaf to SIGTERM: the
	// stop must reach it through the group.
	gc := exec.Command(self)
	gc.Env = append(os.Environ(), EnvMode+"=sleep-ignore")
	if err := gc.Start(); err != nil {
		os.Exit(3)
	}
	if p := os.Getenv(EnvPIDFile); p != "" {
		os.WriteFile(p+".tmp", fmt.Appendf(nil, "%d %d\n", os.Getpid(), gc.Process.Pid), 0o600)
		os.Rename(p+".tmp", p)
	}
	fmt.Println(Marker, "(ignoring SIGTERM)")
	select {}
}

// SpamLine is line i of spam mode's output: 100 bytes, numbered so a
// reader can check it saw every line exactly once and in order.
func SpamLine(i int) string {
	return fmt.Sprintf("%08d %s\n", i, strings.Repeat("x", 90))
}

func spam() {
	n := 1 << 20
	fmt.Sscan(os.Getenv(EnvSpamBytes), &n)
	var pause time.Duration
	if v := os.Getenv(EnvSpamPause); v != "" {
		pause, _ = time.ParseDuration(v)
	}
	for i := 0; i*100 < n; i++ {
		os.Stdout.WriteString(SpamLine(i))
		if pause > 0 && i%10 == 9 {
			time.Sleep(pause)
		}
	}
	fmt.Println(Marker, "(spam done)")
	select {}
}
