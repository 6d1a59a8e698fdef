package cli

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/bpm-project/bpm/internal/api"
	"github.com/bpm-project/bpm/internal/blueprint"
	"github.com/bpm-project/bpm/internal/provider"
)

// Exit codes. They are part of bpm's interface: scripts depend on them, so
// they never change meaning. docs/CLI.md lists them.
const (
	ExitOK              = 0
	ExitError           = 1 // anything not listed below
	ExitUsage           = 2 // bad flags, arguments or output format
	ExitNotFound        = 3 // no such instance, package, remote or key
	ExitNotAvailableYet = 4 // the command's capability is not in this release
	ExitNoManager       = 5 // the manager is not running
	ExitInvalid         = 6 // invalid manifest, config or request
	ExitUnavailable     = 7 // the remote target could not be reached
	ExitRefused         = 8 // refused by a quota or budget
)

// usageError marks a command-line mistake (exit 2).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// ExitCode maps an error to its documented exit code.
func ExitCode(err error) int {
	var ue *usageError
	var ee *exitError
	switch {
	case errors.As(err, &ee):
		return ee.code
	case err == nil:
		return ExitOK
	case errors.As(err, &ue):
		return ExitUsage
	case errors.Is(err, api.ErrManagerUnreachable):
		return ExitNoManager
	case errors.Is(err, provider.ErrNotAvailableYet):
		return ExitNotAvailableYet
	case errors.Is(err, api.ErrInvalid):
		return ExitInvalid
	case errors.Is(err, provider.ErrNotFound):
		return ExitNotFound
	case errors.Is(err, provider.ErrUnavailable):
		return ExitUnavailable
	case errors.Is(err, provider.ErrQuota):
		return ExitRefused
	}
	return ExitError
}

// notAvailableYet is the error of a command whose capability lands in a
// later release: it says so plainly and never prints made-up output.
func notAvailableYet(what, issue string) error {
	return fmt.Errorf("%s: %w in this build of bpm (tracked as %s)", what, provider.ErrNotAvailableYet, issue)
}

// classified keeps an error's message as it is while adding the sentinel
// that picks its exit code (errors.Is sees both).
type classified struct {
	err  error
	kind error
}

func (c *classified) Error() string   { return c.err.Error() }
func (c *classified) Unwrap() []error { return []error{c.err, c.kind} }

// packageErr classifies a failure to find or load a package: a missing path
// or name is "not found", anything else is an invalid package.
func packageErr(err error) error {
	if errors.Is(err, blueprint.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
		return &classified{err: err, kind: provider.ErrNotFound}
	}
	return &classified{err: err, kind: api.ErrInvalid}
}

// invalidf is an invalid-input error (exit 6) with its own message.
func invalidf(format string, args ...any) error {
	return &classified{err: fmt.Errorf(format, args...), kind: api.ErrInvalid}
}
