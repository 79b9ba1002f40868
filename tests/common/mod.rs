//! Helpers shared by the integration tests (tests/golden.rs and tests/hostile.rs): building
//! test roots and images, running the generator binary, reading and comparing trees, and a
//! small line diff.
//!
//! Every test binary that says `mod common;` compiles all of this and uses only part of it.
#![allow(dead_code)]

mod diff;
mod error;
mod gpt;
mod hostile_images;
mod images;
mod patch;
mod paths;
mod run;
mod snapshot;
mod tree;

// Each test binary uses only some of these.
#[allow(unused_imports)]
pub use self::{
    diff::unified_diff,
    hostile_images::{build_images_ext, unescape},
    images::{build_images, mkimage},
    paths::{EMPTY_MARKER, PROFILE_INSTALL_DIR, generator_bin, repo_dir},
    run::{RunOutput, describe_status, normalize_paths, read_env_file, run_generator},
    snapshot::{list_paths, snapshot_changes, snapshot_meta},
    tree::{Node, Tree, check_output_modes, compare_trees, copy_tree, read_tree, write_tree},
};
