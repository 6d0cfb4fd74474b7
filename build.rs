//! Exports the shared TLS symbols from `librestartable.so` and keeps it
//! loaded once loaded.
//!
//! rustc's own version script exports only `#[no_mangle]` functions and
//! statics; `__rseq_abi` and `__rseq_refcount` are defined in assembly, so a
//! second version script makes them global in the cdylib as well.

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=restartable.map");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    // Under `cfg(restartable_loom)` the simulated backend defines no TLS
    // symbols, so there is nothing to export.
    let loom = std::env::var_os("CARGO_CFG_RESTARTABLE_LOOM").is_some();
    if os == "linux" && arch == "x86_64" && !loom {
        println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={dir}/restartable.map");
    }
    if os == "linux" {
        // Never unmap the library: its TLS block holds the area the kernel
        // writes to, its code holds critical-section descriptors that a
        // thread's `rseq_cs` may still point at, and its thread-exit
        // destructor is registered with pthread. `dlclose` then only drops
        // the reference; a later `dlopen` finds the same, live copy.
        println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    }
    println!("cargo:rustc-check-cfg=cfg(restartable_loom)");
}
