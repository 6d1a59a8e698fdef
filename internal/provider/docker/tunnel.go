package docker

import (
	"context"
	"fmt"

	"github.com/bpm-project/bpm/internal/provider"
)

// EstablishTunnel runs the remote's gateway container.
func (p *Provider) EstablishTunnel(ctx context.Context, spec provider.TunnelSpec) (provider.TunnelInfo, error) {
	return provider.TunnelInfo{}, fmt.Errorf("docker: tunnel: %w", provider.ErrNotAvailableYet)
}
