//! The floor of `benches/speed/run`: a static binary that does nothing. It is started exactly
//! as the generator is (same arguments, same output directories), so its time is what any
//! generator pays to be executed at all; every other figure is read as a ratio to it.
//! Built by the script with `rustc` alone (static, panic=abort, stripped): it is no part of
//! the crate.

fn main() {}
