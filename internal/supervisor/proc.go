package supervisor

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// ProcessStartTime returns field 22 of /proc/PID/stat: the process start
// time in clock ticks since boot. Together with the pid it names a process
// uniquely for the life of the machine, which is how a stored pid is told
// apart from a later process that reused it.
func ProcessStartTime(pid int) (uint64, error) {
	st, err := readStat(pid)
	if err != nil {
		return 0, err
	}
	return st.start, nil
}

type procStat struct {
	state byte
	start uint64
}

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, fmt.Errorf("supervisor: stat pid %d: %w", pid, err)
	}
	// comm (field 2) is in parentheses and may itself contain spaces and
	// parentheses, so fields are counted from the last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("supervisor: stat pid %d: malformed", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); field 22 is f[19].
	if len(f) < 20 || len(f[0]) != 1 {
		return procStat{}, fmt.Errorf("supervisor: stat pid %d: malformed", pid)
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("supervisor: stat pid %d: start time: %w", pid, err)
	}
	return procStat{state: f[0][0], start: start}, nil
}

// Alive reports whether the process pid exists, is not a zombie, and started
// at start (clock ticks). A zombie counts as dead: it has exited and only
// waits for its parent to reap it.
func Alive(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	st, err := readStat(pid)
	if err != nil {
		return false
	}
	return st.state != 'Z' && st.state != 'X' && st.start == start
}

// SignalGroup sends sig to the process group pgid, treating "no such
// process" as success: the group being gone is what the caller wants.
func SignalGroup(pgid int, sig syscall.Signal) error {
	if pgid <= 1 {
		// -1 and 0 would address every process we may signal, or our own
		// group; never let a zero value do that.
		return fmt.Errorf("supervisor: refusing to signal process group %d", pgid)
	}
	if err := syscall.Kill(-pgid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("supervisor: signal group %d: %w", pgid, err)
	}
	return nil
}
