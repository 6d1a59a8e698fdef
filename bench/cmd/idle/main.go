// Command idle is the baseline of BenchmarkIdleRSS: a Go program that does
// nothing but wait, so its resident memory is the floor any Go process pays
// (runtime, a few goroutines, signal handling) on this machine and toolchain.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	// Waiting on a signal rather than select{}: with no other goroutine the
	// runtime would report a deadlock, and a daemon waits for SIGTERM anyway.
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, os.Interrupt)
	// The benchmark reads this line to know the runtime is initialised.
	fmt.Println("ready")
	<-c
}
