package supervisor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestProcessStartTimeAndAlive(t *testing.T) {
	pid := os.Getpid()
	start, err := ProcessStartTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	if start == 0 {
		t.Fatal("start time 0")
	}
	if !Alive(pid, start) {
		t.Fatal("own process not alive")
	}
	// Same pid, different start time: a process that reused the pid.
	if Alive(pid, start+1) {
		t.Fatal("pid with wrong start time reported alive")
	}
	if Alive(0, start) || Alive(-1, start) {
		t.Fatal("non-positive pid reported alive")
	}
}

func TestSignalGroupRefusesDangerousGroups(t *testing.T) {
	for _, pg := range []int{-1, 0, 1} {
		if err := SignalGroup(pg, 0); err == nil {
			t.Fatalf("SignalGroup(%d) allowed", pg)
		}
	}
}

func TestRotatingWriterCapsSize(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, LogFile)
	const maxBytes, maxFiles = 1000, 3
	w, err := openRotating(path, maxBytes, maxFiles)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Repeat("a", 70) + "\n"
	for i := 0; i < 200; i++ {
		w.Write([]byte(line))
	}
	// One write much larger than a file, with no newline at all.
	w.Write([]byte(strings.Repeat("b", 2500)))
	w.Write([]byte("last\n"))
	w.Close()

	entries, _ := os.ReadDir(dir)
	if len(entries) != maxFiles {
		t.Fatalf("got %d files, want %d", len(entries), maxFiles)
	}
	for _, e := range entries {
		fi, _ := e.Info()
		if fi.Size() > maxBytes {
			t.Errorf("%s is %d bytes, cap %d", e.Name(), fi.Size(), maxBytes)
		}
	}
	b, _ := os.ReadFile(path)
	if !strings.HasSuffix(string(b), "last\n") {
		t.Fatalf("live file does not end with the last write: %q", b)
	}
}

func TestRotatingWriterKeepsLinesWhole(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, LogFile)
	w, err := openRotating(path, 100, 2)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Repeat("c", 29) + "\n" // 30 bytes; 3 fit in a file
	w.Write([]byte(line + line + line + line))
	w.Close()
	for _, p := range []string{path, path + ".1"} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.SplitAfter(string(b), "\n") {
			if l != "" && l != line {
				t.Fatalf("%s has a torn line %q", p, l)
			}
		}
	}
}

func TestLogFilesOrder(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, LogDir), 0o700)
	for _, n := range []string{LogFile, LogFile + ".2", LogFile + ".1", LogFile + ".10"} {
		os.WriteFile(filepath.Join(dir, LogDir, n), nil, 0o600)
	}
	var got []string
	for _, p := range LogFiles(dir) {
		got = append(got, filepath.Base(p))
	}
	want := []string{LogFile + ".10", LogFile + ".2", LogFile + ".1", LogFile}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("LogFiles = %v, want %v", got, want)
	}
}

func TestSpecValidate(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
		want string
	}{
		{"ok", Spec{Path: "/bin/true", Env: []string{"A=1", "B="}}, ""},
		{"empty path", Spec{}, "path is empty"},
		{"relative path", Spec{Path: "bin/x"}, `path "bin/x" is not absolute`},
		{"bad env", Spec{Path: "/bin/true", Env: []string{"SECRET"}}, "env entry 0 is not KEY=VALUE"},
		{"bad policy", Spec{Path: "/bin/true", Restart: Restart{Policy: "sometimes"}}, `restart policy "sometimes"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.spec.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want containing %q", err, tt.want)
			}
		})
	}
}

func TestReadPIDFileMalformed(t *testing.T) {
	dir := t.TempDir()
	for _, body := range []string{"", "12", "x 1", "0 5", "12 -3", "1 2 3"} {
		os.WriteFile(filepath.Join(dir, PIDFile), []byte(body), 0o644)
		if _, _, err := ReadPIDFile(dir); err == nil {
			t.Errorf("ReadPIDFile(%q) succeeded", body)
		}
	}
	writePIDFile(dir, 42, 7)
	pid, start, err := ReadPIDFile(dir)
	if err != nil || pid != 42 || start != 7 {
		t.Fatalf("ReadPIDFile = %d %d %v", pid, start, err)
	}
}
