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

/// The layout of each copy's static-TLS block, the same on every
/// architecture whose file defines it in assembly (offsets from the block's
/// start, which is aligned to [`tls::BLOCK_ALIGN`]):
///
/// | offset | bytes | what |
/// |---|---|---|
/// | 0 | 16 | magic `"restartable-tls"` + [`tls::VERSION`] (`area::probe` finds it) |
/// | 16 | 4 | `__rseq_refcount` |
/// | 20 | 4 | the busy word |
/// | 24 | 4 | the length the shared area is registered with on this thread (0: none) |
/// | 28 | 4 | zero |
/// | 32 | 32 | the inert area (never registered; `cpu_id` -1) |
/// | 64 | 64 | `__rseq_abi` ([`crate::abi::AREA_CAPACITY`] bytes, aligned to 64) |
///
/// then, in `.tbss`, this copy's 8-byte thread record. 136 bytes, aligned to
/// 64: within what `dlopen` finds in glibc's static TLS surplus.
#[allow(dead_code)] // the unsupported and simulated backends keep no header
pub(crate) mod tls {
    /// Version of the layout; the last byte of the magic. Copies use only
    /// headers of their own version.
    pub(crate) const VERSION: u8 = 2;
    /// Size of the header.
    pub(crate) const HEADER_SIZE: usize = 32;
    /// `__rseq_refcount`'s place.
    pub(crate) const REFCOUNT_AT: usize = 16;
    /// The busy word's place.
    pub(crate) const BUSY_AT: usize = 20;
    /// The registered-length word's place.
    pub(crate) const LEN_AT: usize = 24;
    /// The inert area's place.
    pub(crate) const INERT_AT: usize = 32;
    /// `__rseq_abi`'s place.
    pub(crate) const AREA_AT: usize = 64;
    /// The block's alignment (and the area's).
    pub(crate) const BLOCK_ALIGN: usize = 64;
    /// Size of the initialised block.
    pub(crate) const SIZE: usize = AREA_AT + crate::abi::AREA_CAPACITY;

    const _: () = {
        assert!(HEADER_SIZE <= INERT_AT);
        assert!(INERT_AT + 32 <= AREA_AT);
        assert!(AREA_AT % BLOCK_ALIGN == 0);
        assert!(BLOCK_ALIGN >= crate::abi::AREA_CAPACITY);
    };
}

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
