#!/bin/sh
# refresh.sh copies the shared price catalog into this directory, where
# go:embed compiles it into bpm. The binary must never read ../shared at run
# time (an installed bpm has no such directory), so the copy is checked in
# and refreshed on purpose, by `go generate ./internal/cost`.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=${BPM_PRICING_DIR:-$here/../../../../shared/pricing}
for f in catalog.csv fees.csv SOURCES.md; do
	cp "$src/$f" "$here/$f"
done
# The catalog's own date: when this copy was taken. Prices keep their own
# source dates; this one says how fresh the copy is.
date -u +%Y-%m-%d >"$here/COPIED"
