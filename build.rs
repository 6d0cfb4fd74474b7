//! Exports the shared TLS symbols from `librestartable.so` and keeps it
//! loaded once loaded.
//!
//! rustc's own version script exports only `#[no_mangle]` functions and
//! statics; `__rseq_abi`, `__rseq_refcount` and `restartable_area_offset`
//! are defined in assembly, so a second version script, `restartable.map`,
//! makes them global in the cdylib as well. Linkers differ here: LLD (the
//! default on x86_64 Linux since Rust 1.90) merges the two scripts, while
//! GNU ld refuses a second anonymous one, and no other option of GNU ld
//! (a named version node, `--dynamic-list`, `--export-dynamic-symbol`)
//! overrides the `local: *` of rustc's script. So the build first links a
//! tiny cdylib the way the real one will be linked, with a second script,
//! and passes `restartable.map` only if that link succeeds. Otherwise the
//! library still builds and works, but those three symbols stay local:
//! later copies find its area through the TLS header (`area::probe`), a
//! classic `__rseq_abi` registrant does not share it, and C programs that
//! use the header's inline functions do not link against the `.so` (the
//! `.a` and the Rust crate are unaffected). Linking with LLD
//! (`-C link-arg=-fuse-ld=lld`) restores the exports.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=restartable.map");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    // Under `cfg(restartable_loom)` the simulated backend defines no TLS
    // symbols, so there is nothing to export.
    let loom = std::env::var_os("CARGO_CFG_RESTARTABLE_LOOM").is_some();
    // loom is an optional dependency (so that it stays out of users' lock
    // files): the cfg alone would end in "unresolved crate `loom`".
    if loom && std::env::var_os("CARGO_FEATURE_LOOM").is_none() {
        eprintln!("error: `--cfg restartable_loom` needs `--features loom` as well");
        std::process::exit(1);
    }
    if os == "linux" && arch == "x86_64" && !loom {
        if linker_merges_version_scripts() {
            println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={dir}/restartable.map");
        } else {
            println!(
                "cargo:warning=the linker refuses a second version script (GNU ld): \
                 librestartable.so does not export __rseq_abi, __rseq_refcount and \
                 restartable_area_offset; link with LLD to export them"
            );
        }
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

/// Whether rustc's linker, for this target and these flags, accepts a
/// second version script beside rustc's own: links an empty `no_std`
/// cdylib with one (a few tens of milliseconds).
fn linker_merges_version_scripts() -> bool {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let source = out.join("version_script_probe.rs");
    let map = out.join("version_script_probe.map");
    let written = std::fs::write(
        &source,
        "#![no_std]\n\
         #[panic_handler]\n\
         fn panic(_: &core::panic::PanicInfo) -> ! { loop {} }\n\
         #[no_mangle]\n\
         pub extern \"C\" fn restartable_version_script_probe() {}\n",
    )
    .and_then(|()| {
        std::fs::write(
            &map,
            "{\n  global:\n    restartable_version_script_probe;\n};\n",
        )
    });
    if written.is_err() {
        return false;
    }
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let mut cmd = Command::new(rustc);
    cmd.arg("--crate-type=cdylib")
        .arg("--crate-name=version_script_probe")
        .arg("--edition=2021")
        .arg("-Cpanic=abort")
        .arg(format!("-Clink-arg=-Wl,--version-script={}", map.display()))
        .arg("--out-dir")
        .arg(&out)
        .arg(&source);
    if let Ok(target) = std::env::var("TARGET") {
        cmd.arg("--target").arg(target);
    }
    if let Some(linker) = std::env::var_os("RUSTC_LINKER") {
        let mut arg = OsString::from("-Clinker=");
        arg.push(linker);
        cmd.arg(arg);
    }
    // The flags the crate itself is built with (`-C linker=`, `-fuse-ld`,
    // `-C linker-features`, ...) pick the linker: pass them on.
    if let Ok(flags) = std::env::var("CARGO_ENCODED_RUSTFLAGS") {
        cmd.args(flags.split('\x1f').filter(|f| !f.is_empty()));
    }
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
