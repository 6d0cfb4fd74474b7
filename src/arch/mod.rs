//! Architecture layer: one file per `target_arch`, each with the same set of
//! functions, picked by path so that the rest of the crate has no
//! `cfg(target_arch)`.
//!
//! Every file provides:
//! - `AVAILABLE`: whether rseq code exists for the architecture;
//! - `SIG`: the signature placed before every abort handler;
//! - `thread_pointer()`, `own_area()`, `own_refcount()`, `own_thread_state()`;
//! - `load_u32(offset, field)`: a volatile read of a field of the area at
//!   `thread_pointer() + offset`, inlined to one instruction where possible;
//! - `sys_rseq(area, len, flags, sig)`: the raw system call;
//! - the critical-section operations of [`crate::cs`].
//!
//! Under `cfg(restartable_loom)` the layer is a simulated backend in which
//! loom decides on which CPU a thread runs and whether a section commits.

#[cfg_attr(
    all(target_arch = "x86_64", target_os = "linux", not(restartable_loom)),
    path = "x86_64.rs"
)]
#[cfg_attr(
    all(target_arch = "aarch64", target_os = "linux", not(restartable_loom)),
    path = "aarch64.rs"
)]
#[cfg_attr(
    not(all(
        any(target_arch = "x86_64", target_arch = "aarch64"),
        target_os = "linux",
        not(restartable_loom)
    )),
    path = "unsupported.rs"
)]
mod imp;

pub(crate) use imp::*;
