//! What the running kernel offers, read here without the library (the
//! auxiliary vector, `uname`, `membarrier`'s query), so that a test that
//! depends on a kernel feature asserts what this kernel must do and says
//! which behaviour it asserted.
//!
//! The features and the first Linux release with each:
//! - rseq itself and `MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ`: 4.18 / 5.10;
//! - `AT_RSEQ_FEATURE_SIZE` / `AT_RSEQ_ALIGN` in the auxiliary vector, and
//!   with them `node_id` and `mm_cid` (feature size 28): 6.3. Before, the
//!   vector has neither entry and the feature size is the original 20.

use std::sync::OnceLock;

/// `AT_RSEQ_FEATURE_SIZE` (`include/uapi/linux/auxvec.h`).
pub const AT_RSEQ_FEATURE_SIZE: libc::c_ulong = 27;
/// `AT_RSEQ_ALIGN`.
pub const AT_RSEQ_ALIGN: libc::c_ulong = 28;
/// The feature size of kernels that predate `AT_RSEQ_FEATURE_SIZE`.
pub const ORIGINAL_FEATURE_SIZE: u32 = 20;
/// The feature size that covers `node_id` and `mm_cid`.
pub const NODE_ID_MM_CID_FEATURE_SIZE: u32 = 28;

/// `AT_RSEQ_FEATURE_SIZE` as the kernel passed it: 0 where it passed none.
pub fn auxv_feature_size() -> u32 {
    // SAFETY: getauxval has no preconditions.
    unsafe { libc::getauxval(AT_RSEQ_FEATURE_SIZE) as u32 }
}

/// `AT_RSEQ_ALIGN` as the kernel passed it: 0 where it passed none.
pub fn auxv_align() -> u32 {
    // SAFETY: getauxval has no preconditions.
    unsafe { libc::getauxval(AT_RSEQ_ALIGN) as u32 }
}

/// The kernel's rseq feature size: the auxiliary vector's, or 20 where the
/// kernel predates that entry.
pub fn feature_size() -> u32 {
    match auxv_feature_size() {
        0 => ORIGINAL_FEATURE_SIZE,
        size => size,
    }
}

/// The alignment the kernel requires of an area: the auxiliary vector's,
/// or the 32 of `struct rseq` where the kernel predates that entry.
pub fn align() -> u32 {
    match auxv_align() {
        0 => 32,
        align => align,
    }
}

/// Whether the kernel fills `node_id` and `mm_cid` (Linux 6.3 and later).
pub fn has_node_id_and_mm_cid() -> bool {
    feature_size() >= NODE_ID_MM_CID_FEATURE_SIZE
}

/// Whether `membarrier` offers `MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ`
/// (Linux 5.10 and later, unless a filter refuses `membarrier`).
pub fn has_rseq_membarrier() -> bool {
    const QUERY: libc::c_long = 0;
    const PRIVATE_EXPEDITED_RSEQ: libc::c_long = 1 << 7;
    // SAFETY: the query takes integers only.
    let mask = unsafe { libc::syscall(libc::SYS_membarrier, QUERY, 0, 0) };
    mask > 0 && mask & PRIVATE_EXPEDITED_RSEQ != 0
}

/// The kernel's release, as `uname -r` prints it.
pub fn release() -> &'static str {
    static RELEASE: OnceLock<String> = OnceLock::new();
    RELEASE.get_or_init(|| {
        // SAFETY: an all-zero utsname is a valid value to overwrite.
        let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
        // SAFETY: `uts` is valid for writing.
        assert_eq!(unsafe { libc::uname(&mut uts) }, 0, "uname");
        // SAFETY: the kernel NUL-terminates the release.
        let release = unsafe { std::ffi::CStr::from_ptr(uts.release.as_ptr()) };
        release.to_string_lossy().into_owned()
    })
}

/// One line on what this kernel offers, for the tests' output.
pub fn describe() -> String {
    let yes = |b: bool| if b { "yes" } else { "no" };
    let size = match auxv_feature_size() {
        0 => format!("{ORIGINAL_FEATURE_SIZE} (no AT_RSEQ_FEATURE_SIZE)"),
        n => n.to_string(),
    };
    let align = match auxv_align() {
        0 => "32 (no AT_RSEQ_ALIGN)".to_string(),
        n => n.to_string(),
    };
    format!(
        "Linux {}: rseq feature size {size}, align {align}, node_id/mm_cid {}, \
         rseq membarrier {}",
        release(),
        yes(has_node_id_and_mm_cid()),
        yes(has_rseq_membarrier()),
    )
}

/// Prints which behaviour `test` asserted on this kernel (shown by
/// `cargo test -- --show-output` and on failure).
pub fn say(test: &str, asserted: &str) {
    println!("{test}: {}; asserted: {asserted}", describe());
}
