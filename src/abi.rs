//! The kernel's rseq ABI: `struct rseq`, `struct rseq_cs` and their constants.
//!
//! Layouts follow `include/uapi/linux/rseq.h`. Each field says who writes it
//! and when; the offsets the assembly uses are constants here, checked
//! against the struct layout at compile time.

use core::cell::UnsafeCell;
use core::mem::{align_of, offset_of, size_of};

/// `cpu_id` before the thread registered an area.
#[doc(alias = "RSEQ_CPU_ID_UNINITIALIZED")]
pub const CPU_ID_UNINITIALIZED: i32 = -1;

/// `cpu_id` after a registration attempt failed (glibc writes it).
#[doc(alias = "RSEQ_CPU_ID_REGISTRATION_FAILED")]
pub const CPU_ID_REGISTRATION_FAILED: i32 = -2;

/// `flags` argument of `rseq(2)` that unregisters the area.
#[doc(alias = "RSEQ_FLAG_UNREGISTER")]
pub const FLAG_UNREGISTER: u32 = 1;

/// Feature size of kernels that predate `AT_RSEQ_FEATURE_SIZE` (Linux < 6.3):
/// `cpu_id_start`, `cpu_id`, `rseq_cs` and `flags`.
pub const ORIGINAL_FEATURE_SIZE: u32 = 20;

/// The smallest length `rseq(2)` accepts, and the length this crate registers.
pub const MIN_REGISTRATION_LEN: u32 = 32;

/// Alignment the kernel requires of the area (`AT_RSEQ_ALIGN` reports it).
pub const AREA_ALIGN: usize = 32;

/// Alignment the kernel requires of a critical-section descriptor.
pub const CS_ALIGN: usize = 32;

/// `getauxval` key for the size of the kernel's rseq feature set (Linux 6.3).
pub const AT_RSEQ_FEATURE_SIZE: libc::c_ulong = 27;

/// `getauxval` key for the alignment the kernel requires of the area.
pub const AT_RSEQ_ALIGN: libc::c_ulong = 28;

/// `RSEQ_SIG`: the 4 bytes placed before every abort handler. The kernel
/// checks them before jumping to an abort handler and kills the thread
/// otherwise. On x86 the immediate of `ud1 0x53053053(%rip), %edi`; on
/// aarch64 the instruction word `0xd428bc00` itself (other targets run no
/// sections and use the x86 value).
pub const RSEQ_SIG: u32 = if cfg!(target_arch = "aarch64") {
    0xd428_bc00
} else {
    0x5305_3053
};

/// Byte offset of `cpu_id_start` in [`Rseq`].
pub const CPU_ID_START_OFFSET: usize = 0;
/// Byte offset of `cpu_id` in [`Rseq`].
pub const CPU_ID_OFFSET: usize = 4;
/// Byte offset of `rseq_cs` in [`Rseq`].
pub const RSEQ_CS_OFFSET: usize = 8;
/// Byte offset of `flags` in [`Rseq`].
pub const FLAGS_OFFSET: usize = 16;
/// Byte offset of `node_id` in [`Rseq`].
pub const NODE_ID_OFFSET: usize = 20;
/// Byte offset of `mm_cid` in [`Rseq`].
pub const MM_CID_OFFSET: usize = 24;

/// Feature size needed to read `node_id` (the field ends at byte 24).
pub const NODE_ID_END: u32 = (NODE_ID_OFFSET + 4) as u32;
/// Feature size needed to read `mm_cid` (the field ends at byte 28).
pub const MM_CID_END: u32 = (MM_CID_OFFSET + 4) as u32;

/// `struct rseq`: the per-thread area shared between a thread and the kernel.
///
/// Once registered, the kernel writes the CPU fields on every return to user
/// space after preemption, migration or signal delivery. User space must
/// never write them again (Linux 6.19 enforces this); it writes only
/// `rseq_cs`. Every field is therefore accessed with volatile reads through
/// raw pointers; the struct is never read or written as a whole after
/// registration.
#[doc(alias = "rseq")]
#[repr(C, align(32))]
#[derive(Debug)]
pub struct Rseq {
    /// CPU the thread runs on, always in range even before registration.
    /// Written by user space once before registration (0), by the kernel after.
    pub cpu_id_start: UnsafeCell<u32>,
    /// CPU the thread runs on, or [`CPU_ID_UNINITIALIZED`] /
    /// [`CPU_ID_REGISTRATION_FAILED`]. Written by the kernel after
    /// registration; initialised to -1 by the owner before it.
    pub cpu_id: UnsafeCell<u32>,
    /// Address of the active [`RseqCs`] descriptor, or 0. Written by user
    /// space when it enters a critical section; the kernel clears it when it
    /// finds the instruction pointer outside the section or after an abort.
    pub rseq_cs: UnsafeCell<u64>,
    /// Deprecated per-thread flags; always 0.
    pub flags: UnsafeCell<u32>,
    /// NUMA node of `cpu_id`. Written by the kernel (feature size >= 24).
    pub node_id: UnsafeCell<u32>,
    /// Concurrency id: dense, < number of threads and CPUs of the process.
    /// Written by the kernel (feature size >= 28).
    pub mm_cid: UnsafeCell<u32>,
}

/// `struct rseq_cs`: the descriptor of one critical section.
///
/// Written once by the assembler into section `__rseq_cs`, read by the
/// kernel when it preempts a thread whose `rseq_cs` points at it.
#[doc(alias = "rseq_cs")]
#[repr(C, align(32))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RseqCs {
    /// Always 0.
    pub version: u32,
    /// Always 0 (the per-section flags are deprecated).
    pub flags: u32,
    /// Address of the first instruction of the section.
    pub start_ip: u64,
    /// Length of the section in bytes: the commit instruction ends it.
    pub post_commit_offset: u64,
    /// Where the kernel sends the thread when it aborts the section; the
    /// four bytes before it hold the signature.
    pub abort_ip: u64,
}

/// Byte offsets of [`RseqCs`] fields, as the assembler lays them out.
pub const CS_START_IP_OFFSET: usize = 8;
/// See [`CS_START_IP_OFFSET`].
pub const CS_POST_COMMIT_OFFSET_OFFSET: usize = 16;
/// See [`CS_START_IP_OFFSET`].
pub const CS_ABORT_IP_OFFSET: usize = 24;

const _: () = {
    assert!(size_of::<Rseq>() == 32);
    assert!(align_of::<Rseq>() == AREA_ALIGN);
    assert!(offset_of!(Rseq, cpu_id_start) == CPU_ID_START_OFFSET);
    assert!(offset_of!(Rseq, cpu_id) == CPU_ID_OFFSET);
    assert!(offset_of!(Rseq, rseq_cs) == RSEQ_CS_OFFSET);
    assert!(offset_of!(Rseq, flags) == FLAGS_OFFSET);
    assert!(offset_of!(Rseq, node_id) == NODE_ID_OFFSET);
    assert!(offset_of!(Rseq, mm_cid) == MM_CID_OFFSET);
    assert!(size_of::<RseqCs>() == 32);
    assert!(align_of::<RseqCs>() == CS_ALIGN);
    assert!(offset_of!(RseqCs, start_ip) == CS_START_IP_OFFSET);
    assert!(offset_of!(RseqCs, post_commit_offset) == CS_POST_COMMIT_OFFSET_OFFSET);
    assert!(offset_of!(RseqCs, abort_ip) == CS_ABORT_IP_OFFSET);
};
