// Command probe is the test environment's pod image: a static HTTP server
// whose answer identifies the deployment (MESSAGE) and the pod (HOSTNAME), and
// which can send a UDP datagram on request so tests can prove that pods reach
// the hub's address.
package main

import (
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"time"
)

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	host, _ := os.Hostname()
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "bpm-test-image ok message=%s hostname=%s\n", os.Getenv("MESSAGE"), host)
	})
	// /udp?addr=HOST:PORT&msg=TEXT sends TEXT to addr and returns the first reply.
	mux.HandleFunc("/udp", func(w http.ResponseWriter, r *http.Request) {
		conn, err := net.Dial("udp", r.URL.Query().Get("addr"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := conn.Write([]byte(r.URL.Query().Get("msg"))); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		buf := make([]byte, 1500)
		n, err := conn.Read(buf)
		if err != nil {
			http.Error(w, err.Error(), http.StatusGatewayTimeout)
			return
		}
		w.Write(buf[:n])
	})
	log.Printf("probe listening on :%s", port)
	log.Fatal(http.ListenAndServe(":"+port, mux))
}
