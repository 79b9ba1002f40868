//! portables-generator: attach portable service images at boot, declaratively.
//!
//! The stages, their order and the rules between modules are told in ARCHITECTURE.md;
//! [`generate`] runs them.
#![forbid(unsafe_code)]

#[cfg(feature = "apply")]
pub mod apply;
pub mod arch;
pub mod attach;
pub mod boundary;
pub mod cli;
pub mod cmdline;
pub mod config;
pub mod diagnostic;
pub mod discover;
pub mod extension;
pub mod facts;
pub mod generate;
pub mod host;
pub mod host_file;
pub mod host_specifiers;
pub mod image;
pub mod inspect;
pub mod install;
pub mod kmsg;
pub mod late_mounts;
pub mod list;
pub mod model;
pub mod names;
pub mod os_release;
pub mod out_path;
pub mod output;
pub mod ownership;
pub mod plan;
pub mod preset;
pub mod profile;
pub mod render;
pub mod root;
pub mod select;
pub mod systemd_version;
#[cfg(test)]
pub(crate) mod testutil;
pub mod unit_syntax;
pub mod verity;
pub mod verscmp;
pub mod vpick;
