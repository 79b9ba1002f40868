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
# From the source directory: cargo takes .cargo/config.toml (the static linking, and so the
# target directory below) from where it runs, not from the manifest's directory.
target=$(realpath -m "${CARGO_TARGET_DIR:-$2}")
(cd "$1" && cargo build --release --locked --target-dir "$target" --bin portables-generator)
# .cargo/config.toml builds for a named target (the host's, unless CARGO_BUILD_TARGET says
# otherwise), so the binary is below the target's own directory.
triple=${CARGO_BUILD_TARGET:-$(rustc --print host-tuple)}
cp "$target/$triple/release/portables-generator" "$3"
