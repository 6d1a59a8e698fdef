//go:build !bpm_noremote

package cli

const remoteBuild = true
