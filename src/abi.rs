//! The kernel's rseq ABI: `struct rseq`, `struct rseq_cs` and their constants.
//!
//! Layouts follow `include/uapi/linux/rseq.h`. Each field says who writes it
//! and when; the offsets the assembly uses are constants here, checked
//! against the struct layout at compile time.

use core::cell::UnsafeCell;
use core::mem::{align_of, offset_of, size_of};

/// `cpu_id` before the thread registered an area.
///
/// # Examples
/// ```
/// use restartable::abi::{CPU_ID_REGISTRATION_FAILED, CPU_ID_UNINITIALIZED};
/// let raw = restartable::current_cpu_raw();
/// assert!(raw >= 0 || raw == CPU_ID_UNINITIALIZED || raw == CPU_ID_REGISTRATION_FAILED);
/// ```
#[doc(alias = "RSEQ_CPU_ID_UNINITIALIZED")]
pub const CPU_ID_UNINITIALIZED: i32 = -1;

/// `cpu_id` after a registration attempt failed (glibc writes it).
///
/// # Examples
/// ```
/// let raw = restartable::current_cpu_raw();
/// if raw == restartable::abi::CPU_ID_REGISTRATION_FAILED {
///     println!("a registration of this thread's area failed");
/// }
/// ```
#[doc(alias = "RSEQ_CPU_ID_REGISTRATION_FAILED")]
pub const CPU_ID_REGISTRATION_FAILED: i32 = -2;

/// `flags` argument of `rseq(2)` that unregisters the area.
///
/// # Examples
/// ```
/// // rseq(area, len, FLAG_UNREGISTER, sig) ends a registration.
/// assert_eq!(restartable::abi::FLAG_UNREGISTER, 1);
/// ```
#[doc(alias = "RSEQ_FLAG_UNREGISTER")]
pub const FLAG_UNREGISTER: u32 = 1;

/// `flags` argument of `rseq(2)` that registers with the time-slice
/// extension enabled from the start (Linux 7.0; refused with `EINVAL`
/// before).
#[doc(alias = "RSEQ_FLAG_SLICE_EXT_DEFAULT_ON")]
///
/// # Examples
/// ```
/// use restartable::abi::{FLAG_SLICE_EXT_DEFAULT_ON, FLAG_UNREGISTER};
/// // A flag of its own, distinct from the unregister flag.
/// assert_eq!(FLAG_SLICE_EXT_DEFAULT_ON & FLAG_UNREGISTER, 0);
/// ```
pub const FLAG_SLICE_EXT_DEFAULT_ON: u32 = 1 << 1;

/// Bit of [`Rseq::flags`] the kernel sets at registration when it offers
/// the time-slice extension to this registration. Read-only for user space.
#[doc(alias = "RSEQ_CS_FLAG_SLICE_EXT_AVAILABLE")]
///
/// # Examples
/// ```
/// use restartable::abi::AREA_FLAG_SLICE_EXT_AVAILABLE;
/// let flags = 0u32; // as read from the area's `flags` word
/// let offered = flags & AREA_FLAG_SLICE_EXT_AVAILABLE != 0;
/// assert!(!offered);
/// ```
pub const AREA_FLAG_SLICE_EXT_AVAILABLE: u32 = 1 << 4;

/// Bit of [`Rseq::flags`] the kernel sets while the time-slice extension is
/// enabled for the thread. Read-only for user space.
#[doc(alias = "RSEQ_CS_FLAG_SLICE_EXT_ENABLED")]
///
/// # Examples
/// ```
/// use restartable::abi::{AREA_FLAG_SLICE_EXT_AVAILABLE, AREA_FLAG_SLICE_EXT_ENABLED};
/// assert_ne!(AREA_FLAG_SLICE_EXT_ENABLED, AREA_FLAG_SLICE_EXT_AVAILABLE);
/// ```
pub const AREA_FLAG_SLICE_EXT_ENABLED: u32 = 1 << 5;

/// `prctl(2)` option of the time-slice extension (Linux 7.0).
///
/// # Examples
/// ```
/// use restartable::abi::{PR_RSEQ_SLICE_EXTENSION, PR_RSEQ_SLICE_EXTENSION_GET};
/// // SAFETY: a query with no pointer arguments.
/// let r = unsafe { libc::prctl(PR_RSEQ_SLICE_EXTENSION, PR_RSEQ_SLICE_EXTENSION_GET, 0, 0, 0) };
/// // 0 or 1 where the kernel has the option; -1 (EINVAL, ENOTSUPP) elsewhere.
/// assert!(r >= -1 && r <= 1);
/// ```
pub const PR_RSEQ_SLICE_EXTENSION: libc::c_int = 79;
/// `prctl(PR_RSEQ_SLICE_EXTENSION, GET, 0, 0, 0)`: 1 if enabled, 0 if not.
///
/// # Examples
/// ```
/// use restartable::abi::{PR_RSEQ_SLICE_EXTENSION_GET, PR_RSEQ_SLICE_EXTENSION_SET};
/// assert_ne!(PR_RSEQ_SLICE_EXTENSION_GET, PR_RSEQ_SLICE_EXTENSION_SET);
/// ```
pub const PR_RSEQ_SLICE_EXTENSION_GET: libc::c_ulong = 1;
/// `prctl(PR_RSEQ_SLICE_EXTENSION, SET, flags, 0, 0)`: enables or disables.
///
/// # Examples
/// ```
/// use restartable::abi::{PR_RSEQ_SLICE_EXTENSION_SET, PR_RSEQ_SLICE_EXT_ENABLE};
/// // What `restartable::slice::enable()` asks the kernel for:
/// let (option, flags) = (PR_RSEQ_SLICE_EXTENSION_SET, PR_RSEQ_SLICE_EXT_ENABLE);
/// assert_eq!((option, flags), (2, 1));
/// ```
pub const PR_RSEQ_SLICE_EXTENSION_SET: libc::c_ulong = 2;
/// The enable bit of `PR_RSEQ_SLICE_EXTENSION_SET` / `_GET`.
///
/// # Examples
/// ```
/// use restartable::abi::PR_RSEQ_SLICE_EXT_ENABLE;
/// assert_eq!(PR_RSEQ_SLICE_EXT_ENABLE.count_ones(), 1);
/// ```
pub const PR_RSEQ_SLICE_EXT_ENABLE: libc::c_ulong = 1;

/// The kernel's `ENOTSUPP` (524), which `prctl(PR_RSEQ_SLICE_EXTENSION)`
/// answers where the kernel was built without
/// `CONFIG_RSEQ_SLICE_EXTENSION`, the extension is off on the command line
/// (`rseq_slice_ext=0`), or the area is registered with the classic length.
/// Not a user-space errno: `libc` has no name for it.
///
/// # Examples
/// ```
/// use restartable::slice::{SliceStatus, SliceUnavailable};
/// // The slice API turns this errno into a reason of its own.
/// if let SliceStatus::Unavailable(SliceUnavailable::Kernel { errno }) = restartable::slice::status() {
///     assert_ne!(errno, restartable::abi::ENOTSUPP);
/// }
/// ```
pub const ENOTSUPP: i32 = 524;

/// Feature size of kernels that predate `AT_RSEQ_FEATURE_SIZE` (Linux < 6.3):
/// `cpu_id_start`, `cpu_id`, `rseq_cs` and `flags`.
///
/// # Examples
/// ```
/// let usable = restartable::feature_size();
/// assert!(usable == 0 || usable >= restartable::abi::ORIGINAL_FEATURE_SIZE);
/// ```
pub const ORIGINAL_FEATURE_SIZE: u32 = 20;

/// The smallest length `rseq(2)` accepts: the classic length, which every
/// kernel takes from an area aligned to 32 and which a classic registrant
/// of `__rseq_abi` passes. Longer registrations are "extensible" ones (see
/// [`AREA_CAPACITY`]).
///
/// # Examples
/// ```
/// use restartable::abi::{Rseq, MIN_REGISTRATION_LEN};
/// assert_eq!(std::mem::size_of::<Rseq>() as u32, MIN_REGISTRATION_LEN);
/// ```
pub const MIN_REGISTRATION_LEN: u32 = 32;

/// Alignment the kernel requires of an area registered with the classic
/// length, and the least `AT_RSEQ_ALIGN` can say.
///
/// # Examples
/// ```
/// let area = restartable::rseq_location();
/// assert_eq!(area as usize % restartable::abi::AREA_ALIGN, 0);
/// ```
pub const AREA_ALIGN: usize = 32;

/// Bytes this library reserves for its own area, and the alignment it gives
/// it. A registration longer than 32 bytes must cover the kernel's feature
/// size (`AT_RSEQ_FEATURE_SIZE`) and sit at an address aligned to
/// `AT_RSEQ_ALIGN` (Linux 7.0: feature size 33, alignment 64); the library
/// registers its area with `max(32, feature size)` bytes when the kernel's
/// feature size and alignment fit in these 64 bytes, and with the classic
/// 32 bytes otherwise.
///
/// # Examples
/// ```
/// use restartable::abi::{AREA_CAPACITY, MIN_REGISTRATION_LEN};
/// assert!(restartable::registration_len() as usize <= AREA_CAPACITY);
/// assert!(AREA_CAPACITY >= MIN_REGISTRATION_LEN as usize);
/// ```
pub const AREA_CAPACITY: usize = 64;

/// Alignment the kernel requires of a critical-section descriptor.
///
/// # Examples
/// ```
/// use restartable::abi::{RseqCs, CS_ALIGN};
/// assert_eq!(std::mem::align_of::<RseqCs>(), CS_ALIGN);
/// ```
pub const CS_ALIGN: usize = 32;

/// `getauxval` key for the size of the kernel's rseq feature set (Linux 6.3).
///
/// # Examples
/// ```
/// // SAFETY: getauxval has no preconditions.
/// let size = unsafe { libc::getauxval(restartable::abi::AT_RSEQ_FEATURE_SIZE) };
/// println!("kernel feature size: {size} (0: older than Linux 6.3)");
/// ```
pub const AT_RSEQ_FEATURE_SIZE: libc::c_ulong = 27;

/// `getauxval` key for the alignment the kernel requires of the area.
///
/// # Examples
/// ```
/// // SAFETY: getauxval has no preconditions.
/// let align = unsafe { libc::getauxval(restartable::abi::AT_RSEQ_ALIGN) };
/// assert!(align == 0 || align >= 32);
/// ```
pub const AT_RSEQ_ALIGN: libc::c_ulong = 28;

/// `RSEQ_SIG`: the 4 bytes placed before every abort handler. The kernel
/// checks them before jumping to an abort handler and kills the thread
/// otherwise. On x86 the immediate of `ud1 0x53053053(%rip), %edi`; on
/// aarch64 the instruction word `0xd428bc00` itself (other targets run no
/// sections and use the x86 value).
///
/// # Examples
/// ```
/// // A component that registers `__rseq_abi` itself must pass this signature.
/// println!("signature {:#x}", restartable::abi::RSEQ_SIG);
/// ```
pub const RSEQ_SIG: u32 = if cfg!(target_arch = "aarch64") {
    0xd428_bc00
} else {
    0x5305_3053
};

/// Byte offset of `cpu_id_start` in [`Rseq`].
///
/// # Examples
/// ```
/// use restartable::abi::{Rseq, CPU_ID_START_OFFSET};
/// assert_eq!(std::mem::offset_of!(Rseq, cpu_id_start), CPU_ID_START_OFFSET);
/// ```
pub const CPU_ID_START_OFFSET: usize = 0;
/// Byte offset of `cpu_id` in [`Rseq`].
///
/// # Examples
/// ```
/// use restartable::abi::{Rseq, CPU_ID_OFFSET};
/// assert_eq!(std::mem::offset_of!(Rseq, cpu_id), CPU_ID_OFFSET);
/// ```
pub const CPU_ID_OFFSET: usize = 4;
/// Byte offset of `rseq_cs` in [`Rseq`].
///
/// # Examples
/// ```
/// use restartable::abi::{Rseq, RSEQ_CS_OFFSET};
/// assert_eq!(std::mem::offset_of!(Rseq, rseq_cs), RSEQ_CS_OFFSET);
/// ```
pub const RSEQ_CS_OFFSET: usize = 8;
/// Byte offset of `flags` in [`Rseq`].
///
/// # Examples
/// ```
/// use restartable::abi::{Rseq, FLAGS_OFFSET};
/// assert_eq!(std::mem::offset_of!(Rseq, flags), FLAGS_OFFSET);
/// ```
pub const FLAGS_OFFSET: usize = 16;
/// Byte offset of `node_id` in [`Rseq`].
///
/// # Examples
/// ```
/// use restartable::abi::{Rseq, NODE_ID_OFFSET};
/// assert_eq!(std::mem::offset_of!(Rseq, node_id), NODE_ID_OFFSET);
/// ```
pub const NODE_ID_OFFSET: usize = 20;
/// Byte offset of `mm_cid` in [`Rseq`].
///
/// # Examples
/// ```
/// use restartable::abi::{Rseq, MM_CID_OFFSET};
/// assert_eq!(std::mem::offset_of!(Rseq, mm_cid), MM_CID_OFFSET);
/// ```
pub const MM_CID_OFFSET: usize = 24;

/// Byte offset of `slice_ctrl` in [`Rseq`] (Linux 7.0).
///
/// # Examples
/// ```
/// use restartable::abi::{Rseq, SLICE_CTRL_OFFSET};
/// assert_eq!(std::mem::offset_of!(Rseq, slice_ctrl), SLICE_CTRL_OFFSET);
/// ```
pub const SLICE_CTRL_OFFSET: usize = 28;
/// Byte offset of `slice_ctrl.request`: set by user space, cleared by user
/// space or the kernel.
///
/// # Examples
/// ```
/// use restartable::abi::{SLICE_CTRL_OFFSET, SLICE_REQUEST_OFFSET};
/// assert_eq!(SLICE_REQUEST_OFFSET, SLICE_CTRL_OFFSET); // the word's first byte
/// ```
pub const SLICE_REQUEST_OFFSET: usize = SLICE_CTRL_OFFSET;
/// Byte offset of `slice_ctrl.granted`: written by the kernel only.
///
/// # Examples
/// ```
/// use restartable::abi::{SLICE_GRANTED_OFFSET, SLICE_REQUEST_OFFSET};
/// assert_eq!(SLICE_GRANTED_OFFSET, SLICE_REQUEST_OFFSET + 1);
/// ```
pub const SLICE_GRANTED_OFFSET: usize = SLICE_CTRL_OFFSET + 1;

/// Feature size needed to read `node_id` (the field ends at byte 24).
///
/// # Examples
/// ```
/// let has_node_id = restartable::feature_size() >= restartable::abi::NODE_ID_END;
/// assert_eq!(has_node_id, restartable::node_id().is_some());
/// ```
pub const NODE_ID_END: u32 = (NODE_ID_OFFSET + 4) as u32;
/// Feature size needed to read `mm_cid` (the field ends at byte 28).
///
/// # Examples
/// ```
/// let has_mm_cid = restartable::feature_size() >= restartable::abi::MM_CID_END;
/// assert_eq!(has_mm_cid, restartable::mm_cid().is_some());
/// ```
pub const MM_CID_END: u32 = (MM_CID_OFFSET + 4) as u32;
/// Feature size of kernels with `slice_ctrl`: the field ends at byte 32 and
/// a reserved byte follows, so that the feature size exceeds the classic
/// length (Linux 7.0: 33).
///
/// # Examples
/// ```
/// use restartable::abi::SLICE_CTRL_FEATURE_SIZE;
/// let kernel_has_slices = restartable::kernel_feature_size() >= SLICE_CTRL_FEATURE_SIZE;
/// println!("kernel offers slice_ctrl: {kernel_has_slices}");
/// ```
pub const SLICE_CTRL_FEATURE_SIZE: u32 = 33;

/// The fields a registration of `len` bytes can use on a kernel whose
/// feature size is `kernel`: everything the kernel offers up to `len` for
/// an extensible registration (longer than 32 bytes); for a classic one,
/// no field past `mm_cid` (the kernel gives `slice_ctrl` only to
/// extensible registrations).
///
/// # Examples
/// ```
/// use restartable::abi::usable_feature_size;
/// assert_eq!(usable_feature_size(33, 32), 28); // classic length on Linux 7.x
/// assert_eq!(usable_feature_size(33, 33), 33); // extensible length
/// assert_eq!(usable_feature_size(20, 32), 20); // Linux < 6.3
/// ```
pub const fn usable_feature_size(kernel: u32, len: u32) -> u32 {
    let cap = if len > MIN_REGISTRATION_LEN {
        len
    } else {
        MM_CID_END
    };
    if kernel < cap {
        kernel
    } else {
        cap
    }
}

/// `struct rseq`: the per-thread area shared between a thread and the kernel.
///
/// Once registered, the kernel writes the CPU fields on every return to user
/// space after preemption, migration or signal delivery. User space must
/// never write them again (Linux 6.19 enforces this); it writes only
/// `rseq_cs`. Every field is therefore accessed with volatile reads through
/// raw pointers; the struct is never read or written as a whole after
/// registration.
///
/// # Examples
/// ```
/// let area: *mut restartable::abi::Rseq = restartable::rseq_location();
/// // SAFETY: the calling thread's live area; a volatile read of a field.
/// let cpu_id = unsafe { area.cast::<u8>().add(restartable::abi::CPU_ID_OFFSET).cast::<u32>().read_volatile() };
/// assert_eq!(cpu_id as i32, restartable::current_cpu_raw());
/// ```
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
    /// Time-slice extension control (feature size >= 33, extensible
    /// registrations only): byte 0 `request`, set by user space and cleared
    /// by user space or the kernel; byte 1 `granted`, written by the kernel
    /// only. Padding that no one reads on older kernels.
    pub slice_ctrl: UnsafeCell<u32>,
}

/// `struct rseq_cs`: the descriptor of one critical section.
///
/// Written once by the assembler into section `__rseq_cs`, read by the
/// kernel when it preempts a thread whose `rseq_cs` points at it.
///
/// # Examples
/// ```
/// use restartable::abi::RseqCs;
/// // What the assembler writes for a section of 12 bytes.
/// let cs = RseqCs { version: 0, flags: 0, start_ip: 0x1000, post_commit_offset: 12, abort_ip: 0x2000 };
/// assert!(cs.start_ip + cs.post_commit_offset <= cs.abort_ip);
/// ```
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
///
/// # Examples
/// ```
/// use restartable::abi::{RseqCs, CS_START_IP_OFFSET};
/// assert_eq!(std::mem::offset_of!(RseqCs, start_ip), CS_START_IP_OFFSET);
/// ```
pub const CS_START_IP_OFFSET: usize = 8;
/// See [`CS_START_IP_OFFSET`].
///
/// # Examples
/// ```
/// use restartable::abi::{RseqCs, CS_POST_COMMIT_OFFSET_OFFSET};
/// assert_eq!(std::mem::offset_of!(RseqCs, post_commit_offset), CS_POST_COMMIT_OFFSET_OFFSET);
/// ```
pub const CS_POST_COMMIT_OFFSET_OFFSET: usize = 16;
/// See [`CS_START_IP_OFFSET`].
///
/// # Examples
/// ```
/// use restartable::abi::{RseqCs, CS_ABORT_IP_OFFSET};
/// assert_eq!(std::mem::offset_of!(RseqCs, abort_ip), CS_ABORT_IP_OFFSET);
/// ```
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
    assert!(offset_of!(Rseq, slice_ctrl) == SLICE_CTRL_OFFSET);
    assert!(SLICE_CTRL_FEATURE_SIZE as usize <= AREA_CAPACITY);
    assert!(AREA_CAPACITY.is_power_of_two() && AREA_CAPACITY >= AREA_ALIGN);
    assert!(usable_feature_size(33, 32) == 28);
    assert!(usable_feature_size(33, 33) == 33);
    assert!(usable_feature_size(28, 32) == 28);
    assert!(usable_feature_size(20, 32) == 20);
    assert!(size_of::<RseqCs>() == 32);
    assert!(align_of::<RseqCs>() == CS_ALIGN);
    assert!(offset_of!(RseqCs, start_ip) == CS_START_IP_OFFSET);
    assert!(offset_of!(RseqCs, post_commit_offset) == CS_POST_COMMIT_OFFSET_OFFSET);
    assert!(offset_of!(RseqCs, abort_ip) == CS_ABORT_IP_OFFSET);
};
