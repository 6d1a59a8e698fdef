package local_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/bpm-project/bpm/internal/provider"
	"github.com/bpm-project/bpm/internal/provider/local"
	"github.com/bpm-project/bpm/internal/supervisor"
	"github.com/bpm-project/bpm/internal/supervisor/testservice"
)

// The test binary plays every process of a local deployment when
// re-executed: the supervisor (BPM_TEST_SUPERVISOR=1), the service
// (BPM_TEST_SERVICE=mode), and a throwaway manager that deploys and is then
// SIGKILLed (BPM_TEST_MANAGER=1).
func TestMain(m *testing.M) {
	if os.Getenv("BPM_TEST_SUPERVISOR") == "1" {
		os.Exit(supervisor.Main(os.Args[2:], os.Stderr))
	}
	if os.Getenv("BPM_TEST_SUPERVISOR") == "slow" {
		slowSupervisor()
	}
	if os.Getenv("BPM_TEST_MANAGER") == "1" {
		os.Exit(managerMain())
	}
	if testservice.Main() {
		return
	}
	os.Exit(m.Run())
}

// managerMain deploys one instance described by BPM_TEST_MANAGER_REQ, prints
// its handle and then waits to be killed, like a manager that crashes right
// after a deploy.
func managerMain() int {
	var req struct {
		DataDir string
		Request provider.DeployRequest
	}
	if err := json.Unmarshal([]byte(os.Getenv("BPM_TEST_MANAGER_REQ")), &req); err != nil {
		fmt.Fprintln(os.Stderr, "manager:", err)
		return 2
	}
	p, err := local.New(testOptions(req.DataDir))
	if err != nil {
		fmt.Fprintln(os.Stderr, "manager:", err)
		return 2
	}
	h, err := p.Deploy(context.Background(), req.Request)
	if err != nil {
		fmt.Fprintln(os.Stderr, "manager:", err)
		return 1
	}
	fmt.Println("deployed", strings.TrimSpace(string(h)))
	select {}
}

// slowSupervisor records itself like a supervisor and then never reports the
// service started, to exercise Deploy's cleanup when its wait is cut short.
func slowSupervisor() {
	dir := os.Args[len(os.Args)-1]
	start, _ := supervisor.ProcessStartTime(os.Getpid())
	os.WriteFile(dir+"/"+supervisor.PIDFile, fmt.Appendf(nil, "%d %d\n", os.Getpid(), start), 0o644)
	select {}
}
