package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"syscall"
)

// ErrManagerUnreachable means nothing answered on the manager's socket.
var ErrManagerUnreachable = errors.New("manager is not running")

// Client talks to a manager over its unix socket.
type Client struct {
	socket string
	hc     *http.Client
}

// NewClient returns a client for the manager listening on socket.
func NewClient(socket string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		DisableCompression: true,
	}
	return &Client{socket: socket, hc: &http.Client{Transport: tr}}
}

// Socket returns the socket path the client dials.
func (c *Client) Socket() string { return c.socket }

// Info returns the manager's description of itself.
func (c *Client) Info(ctx context.Context) (ManagerInfo, error) {
	var out ManagerInfo
	err := c.do(ctx, http.MethodGet, "/info", nil, &out)
	return out, err
}

// Deploy asks the manager to deploy a package.
func (c *Client) Deploy(ctx context.Context, req DeployRequest) (Instance, error) {
	var out Instance
	err := c.do(ctx, http.MethodPost, "/instances", req, &out)
	return out, err
}

// ListOptions filters a list call.
type ListOptions struct {
	Remote     string // one remote's name; "" for all
	RemoteOnly bool   // only instances on remotes (not local)
	All        bool   // include terminated instances
}

// List returns instances.
func (c *Client) List(ctx context.Context, opts ListOptions) ([]Instance, error) {
	q := url.Values{}
	if opts.Remote != "" {
		q.Set("remote", opts.Remote)
	}
	if opts.RemoteOnly {
		q.Set("remote_only", "true")
	}
	if opts.All {
		q.Set("all", "true")
	}
	resp, err := c.sendAccept(ctx, http.MethodGet, "/instances?"+q.Encode(), nil, StreamContentType)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, decodeError(resp)
	}
	return readStream(resp.Body)
}

// Status returns one instance with the provider's live view.
func (c *Client) Status(ctx context.Context, id string) (InstanceDetail, error) {
	var out InstanceDetail
	err := c.do(ctx, http.MethodGet, "/instances/"+url.PathEscape(id), nil, &out)
	return out, err
}

// Terminate stops an instance and waits until it is gone.
func (c *Client) Terminate(ctx context.Context, id string) (Instance, error) {
	var out Instance
	err := c.do(ctx, http.MethodDelete, "/instances/"+url.PathEscape(id), nil, &out)
	return out, err
}

// Logs streams an instance's output to w until it ends or, with follow,
// until ctx is done.
func (c *Client) Logs(ctx context.Context, id string, follow bool, tail int, w io.Writer) error {
	q := url.Values{}
	if follow {
		q.Set("follow", "true")
	}
	if tail > 0 {
		q.Set("tail", strconv.Itoa(tail))
	}
	resp, err := c.send(ctx, http.MethodGet, "/instances/"+url.PathEscape(id)+"/logs?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return decodeError(resp)
	}
	_, err = io.Copy(w, resp.Body)
	if err != nil && ctx.Err() != nil {
		return nil // the user stopped following
	}
	return err
}

func (c *Client) send(ctx context.Context, method, path string, body any) (*http.Response, error) {
	return c.sendAccept(ctx, method, path, body, "application/json")
}

func (c *Client) sendAccept(ctx context.Context, method, path string, body any, accept string) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("api: encode request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	// The host is a placeholder: the transport always dials the socket.
	req, err := http.NewRequestWithContext(ctx, method, "http://bpm/"+Version+path, rd)
	if err != nil {
		return nil, fmt.Errorf("api: build request: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", accept)
	resp, err := c.hc.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%w at %s", ErrManagerUnreachable, c.socket)
		}
		return nil, fmt.Errorf("api: %s %s: %w", method, path, err)
	}
	return resp, nil
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	resp, err := c.send(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return decodeError(resp)
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("api: decode %s %s reply: %w", method, path, err)
	}
	return nil
}

func decodeError(resp *http.Response) error {
	var body struct {
		Error *Error `json:"error"`
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err := json.Unmarshal(b, &body); err != nil || body.Error == nil {
		return fmt.Errorf("api: manager answered %s", resp.Status)
	}
	return body.Error
}
