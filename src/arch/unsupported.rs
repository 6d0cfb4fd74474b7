//! Every target without rseq code: the same function
//! set as `x86_64.rs`, answering "not available". The crate builds and works
//! here through its fallbacks: the area always reads `cpu_id == -1`, so every
//! reader takes its cold path and every operation its atomic fallback.

use core::cell::UnsafeCell;

use crate::abi::{Rseq, CPU_ID_UNINITIALIZED};
use crate::registration::ThreadRecord;

/// No rseq code for this architecture.
pub(crate) const AVAILABLE: bool = false;

/// No signature: sections never run here.
pub(crate) const SIG: u32 = 0;

/// No `rseq_slice_yield` here: never called, since no area is ever
/// registered (the kernel answers ENOSYS to -1).
pub(crate) const SYS_RSEQ_SLICE_YIELD: libc::c_long = -1;

/// Everything this backend keeps per thread, in one block whose address
/// stands in for the thread pointer, so the offsets below are constant.
#[repr(C)]
struct Block {
    area: Rseq,
    refcount: UnsafeCell<u32>,
    busy: UnsafeCell<u32>,
    len: UnsafeCell<u32>,
    record: UnsafeCell<ThreadRecord>,
}

std::thread_local! {
    static BLOCK: Block = const {
        Block {
            area: Rseq {
                cpu_id_start: UnsafeCell::new(0),
                cpu_id: UnsafeCell::new(CPU_ID_UNINITIALIZED as u32),
                rseq_cs: UnsafeCell::new(0),
                flags: UnsafeCell::new(0),
                node_id: UnsafeCell::new(0),
                mm_cid: UnsafeCell::new(0),
                slice_ctrl: UnsafeCell::new(0),
            },
            refcount: UnsafeCell::new(0),
            busy: UnsafeCell::new(0),
            len: UnsafeCell::new(0),
            record: UnsafeCell::new(ThreadRecord::NEW),
        }
    };
}

/// The TP offset of the active area, exported for the C header like the
/// x86_64 backend does (always 0 here: the area sits at the stand-in thread
/// pointer).
#[no_mangle]
#[allow(non_upper_case_globals)] // the C ABI spells it this way
pub static restartable_area_offset: core::sync::atomic::AtomicIsize =
    core::sync::atomic::AtomicIsize::new(0);

/// The process-wide area offset.
#[inline]
pub(crate) fn area_offset() -> isize {
    restartable_area_offset.load(core::sync::atomic::Ordering::Relaxed)
}

/// Sets the process-wide area offset.
pub(crate) fn set_area_offset(offset: isize) {
    restartable_area_offset.store(offset, core::sync::atomic::Ordering::Relaxed);
}

/// No glibc registration is looked for where no section can run.
pub(crate) fn libc_rseq_symbols() -> (*const u32, *const isize) {
    (core::ptr::null(), core::ptr::null())
}

/// The address of this thread's block; stands in for the thread pointer.
#[inline]
pub(crate) fn thread_pointer() -> usize {
    BLOCK.with(|b| b as *const Block as usize)
}

/// The area sits at the stand-in thread pointer itself.
#[inline]
pub(crate) fn own_area_offset() -> isize {
    0
}

/// The refcount's place in the block.
#[inline]
pub(crate) fn own_refcount_offset() -> isize {
    core::mem::offset_of!(Block, refcount) as isize
}

/// The busy word's place in the block.
#[inline]
pub(crate) fn own_busy_offset() -> isize {
    core::mem::offset_of!(Block, busy) as isize
}

/// The registered-length word's place in the block.
#[inline]
pub(crate) fn own_len_offset() -> isize {
    core::mem::offset_of!(Block, len) as isize
}

/// The area used where rseq cannot be: the same never-registered one.
#[inline]
pub(crate) fn inert_area_offset() -> isize {
    0
}

/// The calling thread's state.
#[inline]
pub(crate) fn own_thread_state() -> *mut ThreadRecord {
    BLOCK.with(|b| b.record.get())
}

/// Runs the owner's decision before `main`, like the other backends.
#[used]
#[link_section = ".init_array.00101"]
static CONSTRUCTOR: extern "C" fn() = crate::area::constructor;

/// Reads a field of the calling thread's area.
///
/// # Safety
/// - `offset` is 0 (the only offset this backend hands out).
#[inline]
pub(crate) unsafe fn load_u32<const FIELD: usize>(offset: isize) -> u32 {
    debug_assert_eq!(offset, 0);
    let field = (thread_pointer() as *mut u8)
        .wrapping_add(FIELD)
        .cast::<u32>();
    // SAFETY: `field` lies inside this thread's live `AREA` (FIELD < 32).
    unsafe { field.read_volatile() }
}

/// No rseq here: always `-ENOSYS`.
///
/// # Safety
/// - none; the signature matches the other backends.
#[inline]
pub(crate) unsafe fn sys_rseq(_area: *mut Rseq, _len: u32, _flags: u32, _sig: u32) -> i32 {
    -libc::ENOSYS
}

// Critical-section operations: never reached (no thread registers here, so
// the checked entry points take their fallbacks); each reports "aborted".

/// Not available: aborted.
///
/// # Safety
/// None; kept for the common function set.
pub(crate) unsafe fn load_cbne_store<const FIELD: usize>(
    _: *mut isize,
    _: isize,
    _: isize,
    _: u32,
) -> i32 {
    -1
}

/// Not available: aborted.
///
/// # Safety
/// None; kept for the common function set.
pub(crate) unsafe fn load_add_store<const FIELD: usize>(_: *mut isize, _: isize, _: u32) -> i32 {
    -1
}

/// Not available: aborted.
///
/// # Safety
/// None; kept for the common function set.
pub(crate) unsafe fn load_cbeq_store_add_load_store<const FIELD: usize>(
    _: *mut isize,
    _: isize,
    _: isize,
    _: *mut isize,
    _: u32,
) -> i32 {
    -1
}

/// Not available: aborted.
///
/// # Safety
/// None; kept for the common function set.
pub(crate) unsafe fn load_cbne_load_cbne_store<const FIELD: usize>(
    _: *mut isize,
    _: isize,
    _: *mut isize,
    _: isize,
    _: isize,
    _: u32,
) -> i32 {
    -1
}

/// Not available: aborted.
///
/// # Safety
/// None; kept for the common function set.
pub(crate) unsafe fn load_cbne_store_store<const FIELD: usize>(
    _: *mut isize,
    _: isize,
    _: *mut isize,
    _: isize,
    _: isize,
    _: u32,
) -> i32 {
    -1
}

/// Not available: aborted.
///
/// # Safety
/// None; kept for the common function set.
pub(crate) unsafe fn load_cbne_store_store_release<const FIELD: usize>(
    _: *mut isize,
    _: isize,
    _: *mut isize,
    _: isize,
    _: isize,
    _: u32,
) -> i32 {
    -1
}

/// Not available: aborted.
///
/// # Safety
/// None; kept for the common function set.
pub(crate) unsafe fn load_cbne_memcpy_store<const FIELD: usize>(
    _: *mut isize,
    _: isize,
    _: *mut u8,
    _: *const u8,
    _: usize,
    _: isize,
    _: u32,
) -> i32 {
    -1
}

/// Not available: aborted.
///
/// # Safety
/// None; kept for the common function set.
pub(crate) unsafe fn load_add_load_load_add_store<const FIELD: usize>(
    _: *mut isize,
    _: isize,
    _: isize,
    _: u32,
) -> i32 {
    -1
}

/// Not available: "not registered".
///
/// # Safety
/// None; kept for the common function set.
pub(crate) unsafe fn add_at_current<const FIELD: usize>(
    _: *mut u8,
    _: usize,
    _: u32,
    _: isize,
) -> i32 {
    1
}

/// Not available: aborted.
///
/// # Safety
/// None; kept for the common function set.
#[cfg_attr(restartable_loom, allow(dead_code))] // the loom model has its own
pub(crate) unsafe fn fenced_store<const FIELD: usize>(
    _: *mut usize,
    _: usize,
    _: usize,
    _: u32,
) -> i32 {
    -1
}

/// Not available: aborted.
///
/// # Safety
/// None; kept for the common function set.
#[cfg_attr(restartable_loom, allow(dead_code))] // the loom model pops in its simulation
pub(crate) unsafe fn fenced_pop<const FIELD: usize>(_: *mut usize, _: u32) -> (i32, usize) {
    (-1, 0)
}

/// Not available: aborted.
///
/// # Safety
/// As [`load_cbne_memcpy_store`].
#[inline(always)]
pub(crate) unsafe fn load_cbne_memcpy_store_release<const FIELD: usize>(
    v: *mut isize,
    expect: isize,
    dst: *mut u8,
    src: *const u8,
    len: usize,
    newv: isize,
    cpu: u32,
) -> i32 {
    // SAFETY: forwarded from the caller.
    unsafe { load_cbne_memcpy_store::<FIELD>(v, expect, dst, src, len, newv, cpu) }
}

/// Not available: aborted.
///
/// # Safety
/// None; kept for the common function set.
#[cfg_attr(restartable_loom, allow(dead_code))] // the loom model has its own
pub(crate) unsafe fn fenced_claim_at_current<const FIELD: usize>(
    _: *mut u8,
    _: usize,
    _: u32,
    _: usize,
) -> (i32, u32) {
    (-1, 0)
}

/// Not available: aborted.
///
/// # Safety
/// None; kept for the common function set.
#[cfg_attr(restartable_loom, allow(dead_code))] // the loom model has its own
pub(crate) unsafe fn fenced_push_at_current<const FIELD: usize>(
    _: *mut u8,
    _: usize,
    _: u32,
    _: *mut usize,
) -> i32 {
    -1
}

/// Not available: aborted.
///
/// # Safety
/// None; kept for the common function set.
#[cfg_attr(restartable_loom, allow(dead_code))] // the loom model pops in its simulation
pub(crate) unsafe fn fenced_pop_at_current<const FIELD: usize>(
    _: *mut u8,
    _: usize,
    _: u32,
) -> (i32, usize) {
    (-1, 0)
}

/// Not available: aborted (the area reads no index).
///
/// # Safety
/// None; kept for the common function set.
pub(crate) unsafe fn push_at_current<const FIELD: usize>(
    _: *mut u8,
    _: usize,
    _: u32,
    _: *mut usize,
) -> i32 {
    -1
}

/// Not available: aborted (the area reads no index).
///
/// # Safety
/// None; kept for the common function set.
pub(crate) unsafe fn pop_at_current<const FIELD: usize>(
    _: *mut u8,
    _: usize,
    _: u32,
) -> (i32, usize) {
    (-1, 0)
}

/// Not available: aborted (the area reads no index).
///
/// # Safety
/// None; kept for the common function set.
pub(crate) unsafe fn buffer_push_at_current<const FIELD: usize>(
    _: *mut u8,
    _: usize,
    _: u32,
    _: usize,
    _: isize,
) -> i32 {
    -1
}

/// Not available: aborted (the area reads no index).
///
/// # Safety
/// None; kept for the common function set.
pub(crate) unsafe fn buffer_pop_at_current<const FIELD: usize>(
    _: *mut u8,
    _: usize,
    _: u32,
) -> (i32, isize) {
    (-1, 0)
}
