//go:build !bpm_noremote

package builtin

import (
	"github.com/bpm-project/bpm/internal/provider"
	"github.com/bpm-project/bpm/internal/provider/docker"
	"github.com/bpm-project/bpm/internal/provider/kubernetes"
	"github.com/bpm-project/bpm/internal/provider/ssh"
)

func init() {
	provider.Register(kubernetes.Info())
	provider.Register(docker.Info())
	provider.Register(ssh.Info())
}
