package api

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/bpm-project/bpm/internal/provider"
)

// Code classifies an API error so the CLI can pick an exit code without
// parsing messages.
type Code string

// Error codes carried in the JSON error body.
const (
	CodeInvalid         Code = "invalid"           // bad request, manifest or config
	CodeNotFound        Code = "not_found"         // no such instance, package or remote
	CodeExists          Code = "exists"            // already exists
	CodeUnsupported     Code = "unsupported"       // provider cannot do this
	CodeNotAvailableYet Code = "not_available_yet" // capability lands later
	CodeUnavailable     Code = "unavailable"       // target unreachable
	CodeQuota           Code = "quota"             // quota or budget
	CodeInternal        Code = "internal"
)

// Error is the JSON error body: {"error": {"code": ..., "message": ...}}.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Message }

// Unwrap maps the code back to the provider sentinel so errors.Is works on
// the client side exactly as on the server side.
func (e *Error) Unwrap() error {
	switch e.Code {
	case CodeNotFound:
		return provider.ErrNotFound
	case CodeExists:
		return provider.ErrExists
	case CodeUnsupported:
		return provider.ErrUnsupported
	case CodeNotAvailableYet:
		return provider.ErrNotAvailableYet
	case CodeUnavailable:
		return provider.ErrUnavailable
	case CodeQuota:
		return provider.ErrQuota
	case CodeInvalid:
		return ErrInvalid
	}
	return nil
}

// ErrInvalid marks bad input: a malformed request, manifest or config.
var ErrInvalid = errors.New("invalid input")

// Invalid wraps a message as an ErrInvalid error.
func Invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// ErrorFrom classifies err into an API error and its HTTP status.
func ErrorFrom(err error) (*Error, int) {
	var ae *Error
	if errors.As(err, &ae) {
		return ae, statusFor(ae.Code)
	}
	code := CodeInternal
	switch {
	case errors.Is(err, ErrInvalid):
		code = CodeInvalid
	case errors.Is(err, provider.ErrNotAvailableYet):
		code = CodeNotAvailableYet
	case errors.Is(err, provider.ErrNotFound):
		code = CodeNotFound
	case errors.Is(err, provider.ErrExists):
		code = CodeExists
	case errors.Is(err, provider.ErrUnsupported):
		code = CodeUnsupported
	case errors.Is(err, provider.ErrUnavailable):
		code = CodeUnavailable
	case errors.Is(err, provider.ErrQuota):
		code = CodeQuota
	}
	return &Error{Code: code, Message: err.Error()}, statusFor(code)
}

func statusFor(c Code) int {
	switch c {
	case CodeInvalid:
		return http.StatusBadRequest
	case CodeNotFound:
		return http.StatusNotFound
	case CodeExists:
		return http.StatusConflict
	case CodeUnsupported, CodeNotAvailableYet:
		return http.StatusNotImplemented
	case CodeUnavailable:
		return http.StatusServiceUnavailable
	case CodeQuota:
		return http.StatusForbidden
	}
	return http.StatusInternalServerError
}
