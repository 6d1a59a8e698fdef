package docker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/bpm-project/bpm/internal/gateway"
	"github.com/bpm-project/bpm/internal/provider"
)

// labelGatewayConfig fingerprints the gateway container's image and env, so
// a changed spec (a new hub key, a new bpm binary) replaces the container
// while an unchanged one is left running. It is a SHA-256 over the whole
// env: the private key is 32 random bytes, so the hash reveals nothing.
const labelGatewayConfig = "bpm.gateway.config"

// EstablishTunnel makes sure the remote's one gateway container runs on the
// remote's private network with spec's configuration. The image is built
// from the bpm binary itself and loaded through the API, so the engine needs
// no registry. The gateway's env, private key included, is the container's
// env: anyone with access to the engine can read it (see doc.go).
func (p *Provider) EstablishTunnel(ctx context.Context, spec provider.TunnelSpec) (provider.TunnelInfo, error) {
	p.warnInsecure()
	env := spec.GatewayEnv()
	for _, k := range []string{gateway.EnvHubEndpoint, gateway.EnvHubPublicKey, gateway.EnvAddress, gateway.EnvPrivateKey} {
		if env[k] == "" {
			return provider.TunnelInfo{}, fmt.Errorf("docker: tunnel: spec lacks %s", k)
		}
	}
	image, err := p.ensureGatewayImage(ctx)
	if err != nil {
		return provider.TunnelInfo{}, fmt.Errorf("docker: tunnel: %w", err)
	}
	list := envList(env)
	sum := sha256.New()
	fmt.Fprintln(sum, image)
	fmt.Fprintln(sum, "mount", p.bridgeMount())
	for _, kv := range list {
		fmt.Fprintln(sum, kv)
	}
	fingerprint := hex.EncodeToString(sum.Sum(nil))

	p.lifecycle.Lock()
	defer p.lifecycle.Unlock()
	if err := p.ensureNetwork(ctx); err != nil {
		return provider.TunnelInfo{}, err
	}
	name := p.gatewayName()
	c, err := p.cli.containerInspect(ctx, name)
	switch {
	case err == nil && c.Config.Labels[labelRemote] != p.remote:
		return provider.TunnelInfo{}, fmt.Errorf("docker: tunnel: a container named %s exists and bpm does not own it", name)
	case err == nil && c.Config.Labels[labelGatewayConfig] == fingerprint:
		if err := p.cli.containerStart(ctx, name); err != nil {
			return provider.TunnelInfo{}, p.wrap("start "+name, err)
		}
		return provider.TunnelInfo{GatewayAddress: spec.GatewayAddress}, nil
	case err == nil:
		p.logger.Info("gateway configuration changed; replacing its container")
		if err := p.cli.containerRemove(ctx, name); err != nil && !isStatus(err, http.StatusNotFound) {
			return provider.TunnelInfo{}, p.wrap("remove "+name, err)
		}
	case !isStatus(err, http.StatusNotFound):
		return provider.TunnelInfo{}, p.wrap("inspect "+name, err)
	}

	labels := p.labels("gateway")
	labels[labelGatewayConfig] = fingerprint
	cfg := containerConfig{
		Image:  image,
		Env:    list,
		Labels: labels,
		HostConfig: hostConfig{
			NetworkMode:   p.networkName(),
			RestartPolicy: restartPolicy{Name: "unless-stopped"},
			Mounts:        []mount{p.bridgeMount()},
		},
	}
	if _, err := p.cli.containerCreate(ctx, name, cfg); err != nil {
		return provider.TunnelInfo{}, p.wrap("create "+name, err)
	}
	if err := p.cli.containerStart(ctx, name); err != nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_ = p.cli.containerRemove(rctx, name)
		return provider.TunnelInfo{}, p.wrap("start "+name, err)
	}
	p.logger.Info("gateway started", "image", image)
	return provider.TunnelInfo{GatewayAddress: spec.GatewayAddress}, nil
}

// gatewayImage caches the gateway image's name by the binary's identity:
// hashing a 90 MB binary costs a few hundred milliseconds, and every
// deploy asks (EstablishTunnel is idempotent, not free).
type gatewayImage struct {
	mu   sync.Mutex
	key  string // path, size, mtime
	name string
}

// gatewayImageName is "bpm-gateway:" and the first 16 hex digits of the
// binary's SHA-256, from the cache while the file is unchanged.
func (p *Provider) gatewayImageName(f *os.File) (string, error) {
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	key := fmt.Sprintf("%s\x00%d\x00%d", f.Name(), fi.Size(), fi.ModTime().UnixNano())
	p.gwImage.mu.Lock()
	defer p.gwImage.mu.Unlock()
	if p.gwImage.key == key {
		return p.gwImage.name, nil
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	p.gwImage.key, p.gwImage.name = key, "bpm-gateway:"+hex.EncodeToString(h.Sum(nil))[:16]
	return p.gwImage.name, nil
}

// ensureGatewayImage loads the gateway image unless the engine has it. The
// tag is the binary's hash, so every bpm build gets its own image and an
// upgrade replaces the gateway.
func (p *Provider) ensureGatewayImage(ctx context.Context) (string, error) {
	path := p.opts.GatewayBinary
	if path == "" {
		// The running bpm; a dynamically linked one cannot run FROM scratch.
		if err := gateway.CheckStatic(); err != nil {
			return "", err
		}
		self, err := os.Executable()
		if err != nil {
			return "", fmt.Errorf("find the bpm binary: %w", err)
		}
		path = self
	}
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("gateway binary: %w", err)
	}
	defer f.Close()
	image, err := p.gatewayImageName(f)
	if err != nil {
		return "", fmt.Errorf("gateway binary: %w", err)
	}
	ok, err := p.cli.imageExists(ctx, image)
	if err != nil {
		return "", p.wrap("inspect image "+image, err)
	}
	if ok {
		return image, nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	fmt.Fprintf(p.opts.Progress, "docker: loading gateway image %s on remote %s\n", image, p.remote)
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(gateway.WriteImage(pw, f, gateway.ImageOptions{RefName: image}))
	}()
	err = p.cli.imageLoad(ctx, pr, p.opts.Progress)
	pr.CloseWithError(io.ErrClosedPipe) // unblocks the writer if the load failed early
	if err != nil {
		return "", p.wrap("load gateway image", err)
	}
	if ok, err := p.cli.imageExists(ctx, image); err != nil || !ok {
		return "", fmt.Errorf("gateway image %s not on the engine after loading it (%v)", image, err)
	}
	return image, nil
}
