#!/bin/sh
# cargo-build.sh SRCDIR TARGETDIR OUTPUT PROFILEDIR: release build with the profile
# directory compiled in, copied to where meson expects its output.
set -eu
PORTABLES_GENERATOR_PROFILE_DIR="$4" cargo build --release --locked \
    --manifest-path "$1/Cargo.toml" --target-dir "$2" --bin portables-generator
cp "$2/release/portables-generator" "$3"
