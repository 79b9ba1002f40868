#!/bin/sh
# cargo-build.sh SRCDIR TARGETDIR OUTPUT PROFILEDIR: release build with the profile
# directory compiled in, copied to where meson expects its output. CARGO_TARGET_DIR, when
# set, is used in place of TARGETDIR, so that a build reuses what cargo already compiled.
set -eu
# The binary's built-in profile directory (src/profile.rs) needs no variable: leaving it unset
# then gives the very build a plain `cargo build --release` makes, which cargo does not redo.
if [ "$4" != /usr/lib/portables-generator/profile ]; then
    PORTABLES_GENERATOR_PROFILE_DIR="$4"
    export PORTABLES_GENERATOR_PROFILE_DIR
fi
cargo build --release --locked \
    --manifest-path "$1/Cargo.toml" --target-dir "${CARGO_TARGET_DIR:-$2}" --bin portables-generator
# .cargo/config.toml builds for a named target (the host's, unless CARGO_BUILD_TARGET says
# otherwise), so the binary is below the target's own directory.
triple=${CARGO_BUILD_TARGET:-$(rustc --print host-tuple)}
cp "${CARGO_TARGET_DIR:-$2}/$triple/release/portables-generator" "$3"
