package state

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/bpm-project/bpm/internal/provider"
)

// crashChildEnv makes the test binary act as a manager that writes rows and
// is then killed, for TestCrashKeepsCommittedRows.
const crashChildEnv = "BPM_STATE_CRASH_CHILD"

func TestMain(m *testing.M) {
	if path := os.Getenv(crashChildEnv); path != "" {
		crashChild(path)
		return
	}
	os.Exit(m.Run())
}

// crashChild writes intent rows and a transition, reports "ready", and waits
// to be killed without ever closing the Store.
func crashChild(path string) {
	ctx := context.Background()
	s, err := Open(ctx, path)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	for i := 0; i < 20; i++ {
		if err := s.CreateInstance(ctx, newInst(fmt.Sprintf("bp-crash%02d", i))); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
	}
	if _, err := s.UpdateInstance(ctx, "bp-crash00", Update{State: ptr(provider.StateCreating)}); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	select {}
}

func TestCrashKeepsCommittedRows(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a child process")
	}
	path := filepath.Join(t.TempDir(), "state.db")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child said %q, %v", line, err)
	}
	// SIGKILL: no deferred Close, no checkpoint, the -wal holds the commits.
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, out)
	_ = cmd.Wait()
	if _, err := os.Stat(path + "-wal"); err != nil {
		t.Logf("no -wal after the kill (%v); the test still checks the rows", err)
	}

	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatalf("reopen after crash: %v", err)
	}
	defer s.Close()
	list, err := s.ListInstances(context.Background(), Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 20 {
		t.Errorf("after crash: %d rows, want 20", len(list))
	}
	got, err := s.GetInstance(context.Background(), "bp-crash00")
	if err != nil {
		t.Fatal(err)
	}
	if got.State != provider.StateCreating {
		t.Errorf("bp-crash00 state = %q, want creating", got.State)
	}
	ev, err := s.Events(context.Background(), "bp-crash00", 0)
	if err != nil || len(ev) != 2 {
		t.Errorf("bp-crash00 events = %d, %v; want 2", len(ev), err)
	}
}

func TestCopiedFilesWhileOpen(t *testing.T) {
	// The files of a Store that was never closed — copied while it is open,
	// as a crash would leave them — open as a database with every row.
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "state.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.CreateInstance(ctx, newInst("bp-copied")); err != nil {
		t.Fatal(err)
	}
	copyPath := filepath.Join(dir, "copy", "state.db")
	if err := os.MkdirAll(filepath.Dir(copyPath), 0o700); err != nil {
		t.Fatal(err)
	}
	// The -shm is an index SQLite rebuilds from the -wal; leaving it out is
	// what a reboot (tmpfs-backed shm or not) can do.
	for _, suffix := range []string{"", "-wal"} {
		b, err := os.ReadFile(path + suffix)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(copyPath+suffix, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c, err := Open(ctx, copyPath)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.GetInstance(ctx, "bp-copied"); err != nil {
		t.Errorf("row missing from the copy: %v", err)
	}
}
