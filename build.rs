//! Checks the loom configuration and declares the crate's own cfg.
//!
//! The crate builds as an rlib only; the C libraries are linked by the
//! Makefile from a staticlib of the crate (`make`, see the README's "From
//! C"), which is where `restartable.map` and the other link options of
//! `librestartable.so` are given.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // loom is an optional dependency (so that it stays out of users' lock
    // files): the cfg alone would end in "unresolved crate `loom`".
    let loom = std::env::var_os("CARGO_CFG_RESTARTABLE_LOOM").is_some();
    if loom && std::env::var_os("CARGO_FEATURE_LOOM").is_none() {
        eprintln!("error: `--cfg restartable_loom` needs `--features loom` as well");
        std::process::exit(1);
    }
    println!("cargo:rustc-check-cfg=cfg(restartable_loom)");
}
