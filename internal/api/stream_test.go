package api

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/bpm-project/bpm/internal/provider"
)

func TestStreamRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	w := NewStreamWriter(&buf)
	for i := range 3 {
		if err := w.Write(Instance{ID: fmt.Sprintf("bp-%d", i), ServiceID: uint64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(nil); err != nil {
		t.Fatal(err)
	}
	got, err := readStream(&buf)
	if err != nil || len(got) != 3 || got[2].ID != "bp-2" || got[2].ServiceID != 2 {
		t.Fatalf("read back %+v, %v", got, err)
	}
}

// A list cut short by the manager carries its error; a stream that just
// stops (the manager died) is an error, never a short list.
func TestStreamErrors(t *testing.T) {
	var buf bytes.Buffer
	w := NewStreamWriter(&buf)
	w.Write(Instance{ID: "bp-0"})
	w.Close(fmt.Errorf("list: %w", provider.ErrUnavailable))
	_, err := readStream(&buf)
	if !errors.Is(err, provider.ErrUnavailable) {
		t.Fatalf("error in trailer: %v", err)
	}

	buf.Reset()
	w = NewStreamWriter(&buf)
	w.Write(Instance{ID: "bp-0"})
	w.bw.Flush() // no Close: the writer died
	if _, err := readStream(&buf); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated stream: %v", err)
	}
	if _, err := readStream(bytes.NewReader([]byte("not gob"))); err == nil {
		t.Fatal("garbage accepted as a stream")
	}
}

func TestWantsStream(t *testing.T) {
	for accept, want := range map[string]bool{
		StreamContentType:                        true,
		"application/json, " + StreamContentType: true,
		StreamContentType + ";q=0.9":             true,
		"application/json":                       false,
		"":                                       false,
	} {
		if got := WantsStream(accept); got != want {
			t.Errorf("WantsStream(%q) = %v", accept, got)
		}
	}
}
