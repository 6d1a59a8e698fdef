// Command mkimage writes a single-layer FROM-scratch image archive that
// `ctr images import` (and `docker load`) accept, without docker or a
// registry: an OCI image layout plus a docker manifest.json in one tar.
//
//	mkimage -o out.tar -ref localhost/x:v1 -entrypoint /x [-user 65534] [-env K=V]... SRC=/DEST...
//
// The output is deterministic (fixed mtimes, no gzip header fields) so an
// unchanged binary yields the same image ID.
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"strings"
	"time"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func digest(b []byte) string { return fmt.Sprintf("sha256:%x", sha256.Sum256(b)) }

func main() {
	out := flag.String("o", "", "output archive")
	ref := flag.String("ref", "", "image reference, e.g. localhost/bpm-testenv/pause:v1")
	entry := flag.String("entrypoint", "", "entrypoint path inside the image")
	user := flag.String("user", "", "user to run as")
	var env multi
	flag.Var(&env, "env", "K=V environment entry (repeatable)")
	flag.Parse()
	if *out == "" || *ref == "" || *entry == "" || flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	epoch := time.Unix(0, 0)

	// Layer: each SRC=/DEST file, executable, owned by root.
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	for _, a := range flag.Args() {
		src, dst, ok := strings.Cut(a, "=")
		if !ok || !strings.HasPrefix(dst, "/") {
			log.Fatalf("want SRC=/DEST, got %q", a)
		}
		data, err := os.ReadFile(src)
		if err != nil {
			log.Fatal(err)
		}
		hdr := &tar.Header{Name: strings.TrimPrefix(dst, "/"), Mode: 0o755, Size: int64(len(data)),
			ModTime: epoch, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			log.Fatal(err)
		}
		tw.Write(data)
	}
	must(tw.Close())
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
	zw.Write(layer.Bytes())
	must(zw.Close())

	cfg := map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"created":      epoch.UTC().Format(time.RFC3339),
		"config":       map[string]any{"Entrypoint": []string{*entry}, "Env": append([]string{"PATH=/"}, env...), "User": *user},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{digest(layer.Bytes())}},
	}
	cfgJSON, _ := json.Marshal(cfg)
	manifest, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(cfgJSON), "size": len(cfgJSON)},
		"layers":        []any{map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest(gz.Bytes()), "size": gz.Len()}},
	})
	tag := (*ref)[strings.LastIndex(*ref, ":")+1:]
	index, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests": []any{map[string]any{
			"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest(manifest), "size": len(manifest),
			"annotations": map[string]string{"io.containerd.image.name": *ref, "org.opencontainers.image.ref.name": tag},
		}},
	})
	blob := func(b []byte) string { return "blobs/sha256/" + strings.TrimPrefix(digest(b), "sha256:") }
	dockerManifest, _ := json.Marshal([]any{map[string]any{
		"Config": blob(cfgJSON), "RepoTags": []string{*ref}, "Layers": []string{blob(gz.Bytes())},
	}})

	f, err := os.Create(*out + ".tmp")
	if err != nil {
		log.Fatal(err)
	}
	aw := tar.NewWriter(f)
	add := func(name string, b []byte) {
		must(aw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), ModTime: epoch, Typeflag: tar.TypeReg}))
		_, err := aw.Write(b)
		must(err)
	}
	add("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	add(blob(gz.Bytes()), gz.Bytes())
	add(blob(cfgJSON), cfgJSON)
	add(blob(manifest), manifest)
	add("index.json", index)
	add("manifest.json", dockerManifest)
	must(aw.Close())
	must(f.Close())
	must(os.Rename(*out+".tmp", *out))
}

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
