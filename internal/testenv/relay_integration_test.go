package testenv

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/bpm-project/bpm/internal/testenv/udprelay"
)

// TestIntegrationRelayComponent drives the bpm-udprelay process that
// scripts/testenv started, in front of a hub started here.
func TestIntegrationRelayComponent(t *testing.T) {
	env := Require(t, "relay")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rc := env.Relay.Client()
	before, err := rc.Config(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The relay is shared: put it back as we found it, minus the counters.
	t.Cleanup(func() {
		_ = rc.Reset(context.Background())
		_ = rc.SetConfig(context.Background(), udprelay.Config{Upstream: before.Upstream})
	})

	// The hub on loopback: namespaces reach it only through the relay.
	hub, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Close()
	received := make(chan string, 4096)
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := hub.ReadFromUDP(buf)
			if err != nil {
				return
			}
			received <- string(buf[:n])
			_, _ = hub.WriteToUDP(buf[:n], from)
		}
	}()
	if err := rc.SetConfig(ctx, udprelay.Config{Upstream: hub.LocalAddr().String()}); err != nil {
		t.Fatal(err)
	}
	if err := rc.Reset(ctx); err != nil {
		t.Fatal(err)
	}

	c, err := net.Dial("udp", env.Relay.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echo := func(msg string, wait time.Duration) error {
		if _, err := c.Write([]byte(msg)); err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(wait))
		buf := make([]byte, 2048)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return err
			}
			if string(buf[:n]) == msg {
				return nil
			}
		}
	}
	if err := echo("hello", 10*time.Second); err != nil {
		t.Fatalf("round trip through the relay: %v", err)
	}

	t.Run("drop fraction", func(t *testing.T) {
		if err := rc.Reset(ctx); err != nil {
			t.Fatal(err)
		}
		const p, n = 0.2, 2000
		if err := rc.SetConfig(ctx, udprelay.Config{Up: udprelay.Impairment{Drop: p}}); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i += 100 {
			for j := i; j < i+100; j++ {
				if _, err := c.Write([]byte(fmt.Sprint("d", j))); err != nil {
					t.Fatal(err)
				}
			}
			// Let the relay drain each burst so socket buffers never overflow.
			deadline := time.Now().Add(10 * time.Second)
			for {
				st, err := rc.Stats(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if st.Up.Received >= uint64(i+100) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("relay read %d of %d datagrams", st.Up.Received, i+100)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
		st, err := rc.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got := float64(st.Up.Dropped) / n
		// Five standard deviations of binomial(2000, 0.2) is 0.045.
		if got < p-0.045 || got > p+0.045 {
			t.Errorf("dropped fraction %.4f, want %.2f ± 0.045 (stats %+v)", got, p, st.Up)
		}
	})

	t.Run("partition and heal", func(t *testing.T) {
		if err := rc.Reset(ctx); err != nil {
			t.Fatal(err)
		}
		if err := rc.Partition(ctx, udprelay.Both); err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if err := echo(fmt.Sprint("cut", i), 300*time.Millisecond); err == nil {
				t.Fatal("echo through a partition")
			}
		}
		if err := rc.Heal(ctx); err != nil {
			t.Fatal(err)
		}
		if err := echo("healed", 10*time.Second); err != nil {
			t.Fatalf("no round trip after heal: %v", err)
		}
		st, err := rc.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Up.Partitioned != 3 {
			t.Errorf("partitioned %d, want 3", st.Up.Partitioned)
		}
	})

	// From an SSH host's namespace to the relay on the hub address: the path
	// a gateway on that host takes.
	t.Run("from a namespace", func(t *testing.T) {
		// Require skips locally without the ssh hosts and fails in CI.
		senv := Require(t, "ssh")
		if err := rc.Reset(ctx); err != nil {
			t.Fatal(err)
		}
		for len(received) > 0 {
			<-received
		}
		cl, err := ssh.Dial("tcp", senv.SSH.Hosts[1], sshConfig(t, senv.SSH, senv.SSH.KnownHosts))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		msg := "via relay from " + senv.SSH.Hosts[1]
		if out, err := sshRun(cl, fmt.Sprintf("echo -n '%s' >/dev/udp/%s/%d", msg, senv.SSH.HubAddr, env.Relay.Port)); err != nil {
			t.Fatalf("send: %v: %s", err, out)
		}
		select {
		case got := <-received:
			if got != msg {
				t.Fatalf("hub got %q, want %q", got, msg)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("hub got nothing from the namespace through the relay")
		}
	})
}
