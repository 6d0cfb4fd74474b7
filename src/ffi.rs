//! The C ABI: what `librestartable.so` / `librestartable.a` export and
//! `include/restartable.h` declares.
//!
//! Every name starts with `restartable_`, except `rseq_location`, which
//! keeps the name proposed for it when glibc's rseq support was designed
//! (like `__errno_location`). None collides with librseq (`rseq_*`) or
//! glibc (`__rseq_*`).
//!
//! Return conventions: registration calls return 0 or a negative errno
//! ([`Error::to_errno`]); critical-section operations return 0 committed,
//! 1 compare failed (nothing written), -1 aborted (no commit; the stores
//! three operations make before their commit may be done, see
//! [`cs::Outcome::Aborted`]) and `-EINVAL` for a negative CPU (nothing
//! written); reads of optional fields return -1 when the value is
//! unavailable.
//!
//! On x86_64 the header implements `restartable_cpu`, the operations and
//! the counter's add as `static inline` functions and calls the ones here
//! only on their cold paths; other targets and other languages call these.
//! Every function here is safe to call in every [`Owner`] mode and on
//! every thread state: without rseq each one takes its fallback.

use core::ffi::c_int;

use crate::abi::Rseq;
use crate::cs::{self, Index};
use crate::error::Error;
use crate::{Owner, PerCpuCounter, ThreadState};

/// `RESTARTABLE_OWNER_LIBC`.
const OWNER_LIBC: c_int = 1;
/// `RESTARTABLE_OWNER_LIBRARY`.
const OWNER_LIBRARY: c_int = 2;
/// `RESTARTABLE_OWNER_NONE`.
const OWNER_NONE: c_int = 3;

/// `struct rseq_area *rseq_location(void)`: the calling thread's active
/// area, glibc's or this library's; never null.
#[export_name = "rseq_location"]
pub extern "C" fn restartable_rseq_location() -> *mut Rseq {
    crate::rseq_location()
}

fn errno_of(result: Result<ThreadState, Error>) -> c_int {
    match result {
        Ok(_) => 0,
        Err(e) => e.to_errno(),
    }
}

/// `int restartable_register(void)`: takes one hold on the calling
/// thread's registration (see [`crate::register_current_thread`]).
///
/// Returns 0 when the hold was taken, whatever the thread's state then is
/// (`restartable_thread_state()` says whether rseq serves it); `-EOVERFLOW`
/// on hold overflow; the negated errno of an unexpected `rseq(2)` failure.
/// Nothing changes on error.
#[no_mangle]
pub extern "C" fn restartable_register() -> c_int {
    errno_of(crate::register_current_thread())
}

/// `int restartable_unregister(void)`: releases one hold taken by
/// `restartable_register`; the last hold unregisters what this library
/// registered. Returns 0, or `-EINVAL` when the caller holds nothing on
/// this thread (nothing changes).
#[no_mangle]
pub extern "C" fn restartable_unregister() -> c_int {
    errno_of(crate::unregister_current_thread())
}

/// `int restartable_owner(void)`: `RESTARTABLE_OWNER_LIBC` (1),
/// `RESTARTABLE_OWNER_LIBRARY` (2) or `RESTARTABLE_OWNER_NONE` (3).
#[no_mangle]
pub extern "C" fn restartable_owner() -> c_int {
    match crate::owner() {
        Owner::Libc => OWNER_LIBC,
        Owner::Library => OWNER_LIBRARY,
        Owner::Unavailable => OWNER_NONE,
    }
}

/// `int restartable_thread_state(void)`: a `RESTARTABLE_THREAD_*` value,
/// the [`ThreadState`] discriminant.
#[no_mangle]
pub extern "C" fn restartable_thread_state() -> c_int {
    crate::thread_state() as c_int
}

/// `int restartable_is_available(void)`: 1 when the calling thread's CPU
/// reads and sections use rseq, 0 when they take their fallbacks.
/// Registers lazily.
#[no_mangle]
pub extern "C" fn restartable_is_available() -> c_int {
    c_int::from(crate::is_available())
}

/// `uint32_t restartable_refcount(void)`: the calling thread's
/// `__rseq_refcount`, the holds of every component sharing `__rseq_abi`.
#[no_mangle]
pub extern "C" fn restartable_refcount() -> u32 {
    crate::refcount_of_current_thread()
}

/// `int32_t restartable_cpu(void)`: the CPU the calling thread runs on;
/// never fails (the out-of-line form of the header's inline function).
#[no_mangle]
pub extern "C" fn restartable_cpu() -> i32 {
    crate::current_cpu() as i32
}

/// `int32_t restartable_cpu_slow(void)`: the cold path of the header's
/// inline `restartable_cpu`, taken when the area reads a negative
/// `cpu_id`: registers lazily or falls back to `sched_getcpu()`.
#[no_mangle]
#[cold]
pub extern "C" fn restartable_cpu_slow() -> i32 {
    crate::current_cpu() as i32
}

/// `int32_t restartable_cpu_raw(void)`: `cpu_id` as the area holds it,
/// negative when the thread is not registered; never registers.
#[no_mangle]
pub extern "C" fn restartable_cpu_raw() -> i32 {
    crate::current_cpu_raw()
}

/// `uint32_t restartable_cpu_start(void)`: `cpu_id_start`, always a valid
/// CPU number once registered (0 before).
#[no_mangle]
pub extern "C" fn restartable_cpu_start() -> u32 {
    crate::cpu_id_start()
}

/// `int32_t restartable_node_id(void)`: the NUMA node, or -1 when the
/// kernel does not provide it or the thread is not registered.
#[no_mangle]
pub extern "C" fn restartable_node_id() -> i32 {
    crate::node_id().map_or(-1, |n| n as i32)
}

/// `int32_t restartable_mm_cid(void)`: the concurrency id, or -1 when the
/// kernel does not provide it or the thread is not registered.
#[no_mangle]
pub extern "C" fn restartable_mm_cid() -> i32 {
    crate::mm_cid().map_or(-1, |n| n as i32)
}

/// `uint32_t restartable_feature_size(void)`: the usable feature size (0
/// without rseq, 20 on old kernels, 28 with `node_id` and `mm_cid`, 33
/// with `slice_ctrl` for an extensible registration).
#[no_mangle]
pub extern "C" fn restartable_feature_size() -> u32 {
    crate::feature_size()
}

/// `uint32_t restartable_registration_len(void)`: the process's
/// registration length (see [`crate::registration_len`]).
#[no_mangle]
pub extern "C" fn restartable_registration_len() -> u32 {
    crate::registration_len()
}

/// `uint32_t restartable_thread_registration_len(void)`: the calling
/// thread's (see [`crate::thread_registration_len`]).
#[no_mangle]
pub extern "C" fn restartable_thread_registration_len() -> u32 {
    crate::thread_registration_len()
}

/// `uint64_t restartable_abort_count(void)`: aborted sections seen by the
/// library's checked operations and counters (see [`cs::abort_count`]).
#[no_mangle]
pub extern "C" fn restartable_abort_count() -> u64 {
    cs::abort_count()
}

/// `void restartable_prepare_unload(void)`: clears the calling thread's
/// `rseq_cs`.
///
/// After a critical section the field keeps pointing at its descriptor
/// until the kernel next preempts the thread; if the code holding that
/// descriptor is unmapped first (`dlclose` of a component with sections),
/// the kernel would read freed memory and kill the thread. Each thread that
/// ran sections from such a component calls this before it is unloaded.
#[no_mangle]
pub extern "C" fn restartable_prepare_unload() {
    let area = crate::rseq_location();
    // SAFETY: `area` is the calling thread's live area; `rseq_cs` is the
    // one field user space writes (the kernel only reads and clears it), and
    // this thread is outside any section while it runs this function.
    unsafe { (*area).rseq_cs.get().write_volatile(0) };
}

/// Defines the C functions of one operation, indexed by CPU and by
/// `mm_cid`.
macro_rules! c_operation {
    (
        $(#[$doc:meta])*
        $op:ident: $cpu_name:ident / $cpu_slow:ident, $cid_name:ident / $cid_slow:ident
            ( $($arg:ident : $ty:ty),* )
    ) => {
        #[doc = concat!("`int ", stringify!($cpu_name), "(..., int cpu)`: [`cs::",
            stringify!($op), "`] on the slot of CPU `cpu`.")]
        ///
        /// Returns 0 committed, 1 compare failed (nothing written), -1
        /// aborted (read the CPU again and retry; the commit did not
        /// happen), and `-EINVAL`, touching nothing, for a negative `cpu`.
        /// Threads without rseq take the fallback.
        $(#[$doc])*
        ///
        /// # Safety
        /// Every pointer is valid and aligned for the accesses the
        /// operation names, and the words are updated only through these
        /// operations.
        #[no_mangle]
        #[allow(clippy::too_many_arguments)] // the operation's own operands
        pub unsafe extern "C" fn $cpu_name($($arg: $ty,)* cpu: c_int) -> c_int {
            let Ok(cpu) = u32::try_from(cpu) else {
                return -libc::EINVAL;
            };
            // SAFETY: forwarded from the caller.
            unsafe { cs::$op(Index::Cpu, $($arg,)* cpu) as c_int }
        }

        #[doc = concat!("`int ", stringify!($cid_name), "(..., int cid)`: [`cs::",
            stringify!($op), "`] on the slot of concurrency id `cid`.")]
        ///
        /// Returns as the CPU-indexed form.
        $(#[$doc])*
        ///
        /// # Safety
        /// As the CPU-indexed form.
        #[no_mangle]
        #[allow(clippy::too_many_arguments)] // the operation's own operands
        pub unsafe extern "C" fn $cid_name($($arg: $ty,)* cid: c_int) -> c_int {
            let Ok(cid) = u32::try_from(cid) else {
                return -libc::EINVAL;
            };
            // SAFETY: forwarded from the caller.
            unsafe { cs::$op(Index::MmCid, $($arg,)* cid) as c_int }
        }

        #[doc = concat!("`int ", stringify!($cpu_slow), "(..., int cpu)`: the cold path ",
            "of the header's inline `", stringify!($cpu_name), "`; the same as the ",
            "out-of-line function.")]
        ///
        /// # Safety
        /// As the CPU-indexed form.
        #[no_mangle]
        #[cold]
        #[allow(clippy::too_many_arguments)] // the operation's own operands
        pub unsafe extern "C" fn $cpu_slow($($arg: $ty,)* cpu: c_int) -> c_int {
            // SAFETY: forwarded from the caller.
            unsafe { $cpu_name($($arg,)* cpu) }
        }

        #[doc = concat!("`int ", stringify!($cid_slow), "(..., int cid)`: the cold path ",
            "of the header's inline `", stringify!($cid_name), "`; the same as the ",
            "out-of-line function.")]
        ///
        /// # Safety
        /// As the CPU-indexed form.
        #[no_mangle]
        #[cold]
        #[allow(clippy::too_many_arguments)] // the operation's own operands
        pub unsafe extern "C" fn $cid_slow($($arg: $ty,)* cid: c_int) -> c_int {
            // SAFETY: forwarded from the caller.
            unsafe { $cid_name($($arg,)* cid) }
        }
    };
}

c_operation!(load_cbne_store:
    restartable_load_cbne_store / restartable_load_cbne_store_slow,
    restartable_load_cbne_store_mm_cid / restartable_load_cbne_store_mm_cid_slow(
        v: *mut isize, expect: isize, newv: isize));
c_operation!(load_add_store:
    restartable_load_add_store / restartable_load_add_store_slow,
    restartable_load_add_store_mm_cid / restartable_load_add_store_mm_cid_slow(
        v: *mut isize, count: isize));
c_operation!(
    /// After an abort, `*load` may hold the head the section read (the
    /// store comes before the commit).
    load_cbeq_store_add_load_store:
    restartable_load_cbeq_store_add_load_store / restartable_load_cbeq_store_add_load_store_slow,
    restartable_load_cbeq_store_add_load_store_mm_cid / restartable_load_cbeq_store_add_load_store_mm_cid_slow(
        v: *mut isize, expectnot: isize, voffp: isize, load: *mut isize));
c_operation!(load_cbne_load_cbne_store:
    restartable_load_cbne_load_cbne_store / restartable_load_cbne_load_cbne_store_slow,
    restartable_load_cbne_load_cbne_store_mm_cid / restartable_load_cbne_load_cbne_store_mm_cid_slow(
        v: *mut isize, expect: isize, v2: *mut isize, expect2: isize, newv: isize));
c_operation!(
    /// After an abort, `*v2` may hold `newv2` (the store comes before the
    /// commit).
    load_cbne_store_store:
    restartable_load_cbne_store_store / restartable_load_cbne_store_store_slow,
    restartable_load_cbne_store_store_mm_cid / restartable_load_cbne_store_store_mm_cid_slow(
        v: *mut isize, expect: isize, v2: *mut isize, newv2: isize, newv: isize));
c_operation!(
    /// After an abort, `*v2` may hold `newv2` (the store comes before the
    /// commit).
    load_cbne_store_store_release:
    restartable_load_cbne_store_store_release / restartable_load_cbne_store_store_release_slow,
    restartable_load_cbne_store_store_release_mm_cid / restartable_load_cbne_store_store_release_mm_cid_slow(
        v: *mut isize, expect: isize, v2: *mut isize, newv2: isize, newv: isize));
c_operation!(
    /// After an abort, the first bytes of `dst`, any number up to `len`,
    /// may hold those of `src` (the copy comes before the commit).
    load_cbne_memcpy_store:
    restartable_load_cbne_memcpy_store / restartable_load_cbne_memcpy_store_slow,
    restartable_load_cbne_memcpy_store_mm_cid / restartable_load_cbne_memcpy_store_mm_cid_slow(
        v: *mut isize, expect: isize, dst: *mut u8, src: *const u8, len: usize, newv: isize));
c_operation!(
    /// After an abort, the first bytes of `dst`, any number up to `len`,
    /// may hold those of `src` (the copy comes before the commit).
    load_cbne_memcpy_store_release:
    restartable_load_cbne_memcpy_store_release / restartable_load_cbne_memcpy_store_release_slow,
    restartable_load_cbne_memcpy_store_release_mm_cid / restartable_load_cbne_memcpy_store_release_mm_cid_slow(
        v: *mut isize, expect: isize, dst: *mut u8, src: *const u8, len: usize, newv: isize));
c_operation!(load_add_load_load_add_store:
    restartable_load_add_load_load_add_store / restartable_load_add_load_load_add_store_slow,
    restartable_load_add_load_load_add_store_mm_cid / restartable_load_add_load_load_add_store_mm_cid_slow(
        ptr: *mut isize, off: isize, inc: isize));

/// `uint32_t restartable_possible_cpus(void)`: the number of possible
/// CPUs, what a slot array indexed by CPU (or by concurrency id) needs.
#[no_mangle]
pub extern "C" fn restartable_possible_cpus() -> u32 {
    crate::possible_cpus() as u32
}

/// Whether the slots a C caller passes to an operation at the current CPU
/// are sound: a slot per possible CPU, aligned, `stride` a whole number of
/// words apart.
fn slots_ok(heads: *mut u8, stride: usize, slots: u32) -> bool {
    let word = core::mem::align_of::<isize>();
    !heads.is_null()
        && heads as usize % word == 0
        && stride >= word
        && stride % word == 0
        && slots as usize >= crate::possible_cpus()
}

/// Defines the C functions of an operation at the current CPU (the list's,
/// the buffer's), by CPU and by `mm_cid`, each with the `_slow` name of the
/// header's cold path.
macro_rules! c_at_current {
    (
        $(#[$doc:meta])*
        $ret:ty: $cpu_name:ident / $cpu_slow:ident, $cid_name:ident / $cid_slow:ident
            ( $($arg:ident : $ty:ty),* ) $body:expr
    ) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// The slot array holds `slots` live slots `stride` bytes apart,
        /// written only by these operations, laid out as the Rust operation
        /// says (nodes, items and all).
        #[no_mangle]
        pub unsafe extern "C" fn $cpu_name($($arg: $ty),*) -> $ret {
            // SAFETY: forwarded from the caller.
            unsafe { $body(Index::Cpu, $($arg),*) }
        }

        #[doc = concat!("[`", stringify!($cpu_name), "`] indexed by concurrency id.")]
        ///
        /// # Safety
        /// As the CPU-indexed form.
        #[no_mangle]
        pub unsafe extern "C" fn $cid_name($($arg: $ty),*) -> $ret {
            // SAFETY: forwarded from the caller.
            unsafe { $body(Index::MmCid, $($arg),*) }
        }

        #[doc = concat!("The cold path of the header's inline `", stringify!($cpu_name),
            "`; the same as the out-of-line function.")]
        ///
        /// # Safety
        /// As the CPU-indexed form.
        #[no_mangle]
        #[cold]
        pub unsafe extern "C" fn $cpu_slow($($arg: $ty),*) -> $ret {
            // SAFETY: forwarded from the caller.
            unsafe { $cpu_name($($arg),*) }
        }

        #[doc = concat!("The cold path of the header's inline `", stringify!($cid_name),
            "`; the same as the out-of-line function.")]
        ///
        /// # Safety
        /// As the CPU-indexed form.
        #[no_mangle]
        #[cold]
        pub unsafe extern "C" fn $cid_slow($($arg: $ty),*) -> $ret {
            // SAFETY: forwarded from the caller.
            unsafe { $cid_name($($arg),*) }
        }
    };
}

/// [`cs::push_at_current`] for C: 0 committed, -1 aborted, `-EINVAL`
/// (touching nothing) for a null or misaligned `heads` or `node`, a
/// `stride` that is not a whole number of words, or fewer `slots` than
/// possible CPUs.
unsafe fn c_push(
    index: Index,
    heads: *mut u8,
    stride: usize,
    slots: u32,
    node: *mut isize,
) -> c_int {
    if !slots_ok(heads, stride, slots) || node.is_null() || !node.is_aligned() {
        return -libc::EINVAL;
    }
    // SAFETY: checked above as far as C can be; the rest is the caller's.
    unsafe { cs::push_at_current(index, heads, stride, slots, node) as c_int }
}

/// [`cs::pop_at_current`] for C: 0 committed (`*node` the node), 1 empty,
/// -1 aborted (`*node` null for both), `-EINVAL` (touching nothing) for a
/// null `node` or slots as [`c_push`] refuses them.
unsafe fn c_pop(
    index: Index,
    heads: *mut u8,
    stride: usize,
    slots: u32,
    node: *mut *mut isize,
) -> c_int {
    if !slots_ok(heads, stride, slots) || node.is_null() || !node.is_aligned() {
        return -libc::EINVAL;
    }
    // SAFETY: checked above as far as C can be; the rest is the caller's.
    let (outcome, popped) = unsafe { cs::pop_at_current(index, heads, stride, slots) };
    // SAFETY: `node` is a valid out-pointer (caller).
    unsafe { node.write(popped) };
    outcome as c_int
}

c_at_current!(
    /// `int restartable_push_at_current(void *heads, size_t stride,
    /// uint32_t slots, intptr_t *node)`: pushes `node` on the list of the
    /// slot of the CPU the thread runs on, found inside the section (see
    /// [`c_push`] for the results).
    c_int:
    restartable_push_at_current / restartable_push_at_current_slow,
    restartable_push_at_current_mm_cid / restartable_push_at_current_mm_cid_slow(
        heads: *mut u8, stride: usize, slots: u32, node: *mut isize) c_push
);
c_at_current!(
    /// `int restartable_pop_at_current(void *heads, size_t stride, uint32_t
    /// slots, intptr_t **node)`: pops the head node of the list of the slot
    /// of the CPU the thread runs on (see [`c_pop`] for the results).
    c_int:
    restartable_pop_at_current / restartable_pop_at_current_slow,
    restartable_pop_at_current_mm_cid / restartable_pop_at_current_mm_cid_slow(
        heads: *mut u8, stride: usize, slots: u32, node: *mut *mut isize) c_pop
);

/// [`cs::buffer_push_at_current`] for C: 0 committed, 1 full, -1 aborted,
/// `-EINVAL` (touching nothing) for slots as [`c_push`] refuses them, or a
/// `capacity` that does not fit in a slot after its count.
unsafe fn c_buffer_push(
    index: Index,
    buffers: *mut u8,
    stride: usize,
    slots: u32,
    capacity: usize,
    item: isize,
) -> c_int {
    if !slots_ok(buffers, stride, slots) || !cs::buffer_fits(stride, capacity) {
        return -libc::EINVAL;
    }
    // SAFETY: checked above as far as C can be; the rest is the caller's.
    unsafe { cs::buffer_push_at_current(index, buffers, stride, slots, capacity, item) as c_int }
}

/// [`cs::buffer_pop_at_current`] for C: 0 committed (`*item` the item), 1
/// empty, -1 aborted (`*item` 0 for both), `-EINVAL` (touching nothing)
/// for a null or misaligned `item`, or slots as [`c_push`] refuses them.
unsafe fn c_buffer_pop(
    index: Index,
    buffers: *mut u8,
    stride: usize,
    slots: u32,
    item: *mut isize,
) -> c_int {
    if !slots_ok(buffers, stride, slots) || item.is_null() || !item.is_aligned() {
        return -libc::EINVAL;
    }
    // SAFETY: checked above as far as C can be; the rest is the caller's.
    let (outcome, popped) = unsafe { cs::buffer_pop_at_current(index, buffers, stride, slots) };
    // SAFETY: `item` is a valid out-pointer (caller).
    unsafe { item.write(popped) };
    outcome as c_int
}

c_at_current!(
    /// `int restartable_buffer_push_at_current(void *buffers, size_t
    /// stride, uint32_t slots, size_t capacity, intptr_t item)`: stores
    /// `item` in the buffer of the slot of the CPU the thread runs on,
    /// found inside the section (see [`c_buffer_push`] for the results).
    c_int:
    restartable_buffer_push_at_current / restartable_buffer_push_at_current_slow,
    restartable_buffer_push_at_current_mm_cid / restartable_buffer_push_at_current_mm_cid_slow(
        buffers: *mut u8, stride: usize, slots: u32, capacity: usize, item: isize) c_buffer_push
);
c_at_current!(
    /// `int restartable_buffer_pop_at_current(void *buffers, size_t stride,
    /// uint32_t slots, intptr_t *item)`: takes the last item of the buffer
    /// of the slot of the CPU the thread runs on (see [`c_buffer_pop`] for
    /// the results).
    c_int:
    restartable_buffer_pop_at_current / restartable_buffer_pop_at_current_slow,
    restartable_buffer_pop_at_current_mm_cid / restartable_buffer_pop_at_current_mm_cid_slow(
        buffers: *mut u8, stride: usize, slots: u32, item: *mut isize) c_buffer_pop
);

/// `restartable_percpu_counter_t`: a [`PerCpuCounter`] behind a handle
/// whose first fields let the header's inline add find the slots, which
/// follow the handle in the same allocation: slot `i` starts at
/// `RESTARTABLE_COUNTER_SLOTS_OFFSET + (i << RESTARTABLE_COUNTER_STRIDE_SHIFT)`
/// bytes from the handle, so that an add reaches its slot from the handle
/// pointer with no load in between.
///
/// The layout up to `counter` is part of the C ABI (the header mirrors it
/// as `struct restartable_percpu_counter_fast`).
#[repr(C, align(128))]
#[derive(Debug)]
pub struct CCounter {
    /// Address of slot 0 (the handle's address plus
    /// [`C_COUNTER_SLOTS_OFFSET`]); each slot starts with the word that
    /// critical sections add to (never written otherwise while the counter
    /// lives).
    base: *mut u8,
    /// Bytes from one slot to the next.
    stride: usize,
    /// Number of slots (possible CPUs).
    slots: u32,
    /// `log2(stride)`, the header's `RESTARTABLE_COUNTER_STRIDE_SHIFT`: the
    /// inline add shifts the index by that constant.
    stride_shift: u32,
    /// The counter on the slots that follow; never dropped (it does not
    /// own them: `restartable_percpu_counter_free` frees the whole block).
    counter: core::mem::ManuallyDrop<PerCpuCounter>,
}

/// Where the slots start, from the handle: the header's
/// `RESTARTABLE_COUNTER_SLOTS_OFFSET`, one slot stride.
const C_COUNTER_SLOTS_OFFSET: usize = 128;
const _: () = assert!(core::mem::size_of::<CCounter>() == C_COUNTER_SLOTS_OFFSET);
const _: () = assert!(crate::percpu::counter::STRIDE == C_COUNTER_SLOTS_OFFSET);

/// The allocation of a handle and its `slots` slots.
fn c_counter_layout(slots: usize) -> std::alloc::Layout {
    let bytes = C_COUNTER_SLOTS_OFFSET + slots * crate::percpu::counter::STRIDE;
    std::alloc::Layout::from_size_align(bytes, C_COUNTER_SLOTS_OFFSET)
        .expect("a counter's slots fit the address space")
}

/// `restartable_percpu_counter_t *restartable_percpu_counter_new(void)`:
/// a zeroed counter with one slot per possible CPU; free it with
/// `restartable_percpu_counter_free`. Aborts when out of memory.
#[no_mangle]
pub extern "C" fn restartable_percpu_counter_new() -> *mut CCounter {
    let len = crate::possible_cpus();
    let layout = c_counter_layout(len);
    // SAFETY: the layout has a non-zero size.
    let block = unsafe { std::alloc::alloc_zeroed(layout) };
    if block.is_null() {
        std::alloc::handle_alloc_error(layout);
    }
    let stride_shift = crate::percpu::counter::STRIDE_SHIFT;
    // SAFETY: the block holds the handle, then `len` slots, aligned to
    // their stride and zeroed (the counter's empty slots); the counter is
    // kept in a `ManuallyDrop` and its slots freed with the block.
    unsafe {
        let base = block.add(C_COUNTER_SLOTS_OFFSET);
        block.cast::<CCounter>().write(CCounter {
            base,
            stride: 1 << stride_shift,
            slots: len as u32,
            stride_shift,
            counter: core::mem::ManuallyDrop::new(PerCpuCounter::on_slots(base, len)),
        });
    }
    block.cast()
}

/// `void restartable_percpu_counter_add(restartable_percpu_counter_t *c,
/// int64_t delta)`: adds `delta` (wrapping) on the current CPU's slot.
///
/// # Safety
/// `c` is null (a no-op, or 0) or comes from
/// `restartable_percpu_counter_new` and is not freed.
#[no_mangle]
pub unsafe extern "C" fn restartable_percpu_counter_add(c: *const CCounter, delta: i64) {
    // SAFETY: null or a live counter (caller).
    if let Some(c) = unsafe { c.as_ref() } {
        c.counter.add(delta);
    }
}

/// `void restartable_percpu_counter_add_slow(restartable_percpu_counter_t
/// *c, int64_t delta)`: the cold path of the header's inline add, taken
/// when the thread is not registered; the same as the out-of-line add.
///
/// # Safety
/// `c` is null (a no-op, or 0) or comes from
/// `restartable_percpu_counter_new` and is not freed.
#[no_mangle]
#[cold]
pub unsafe extern "C" fn restartable_percpu_counter_add_slow(c: *const CCounter, delta: i64) {
    // SAFETY: null or a live counter (caller).
    unsafe { restartable_percpu_counter_add(c, delta) }
}

/// `int64_t restartable_percpu_counter_sum(const restartable_percpu_counter_t
/// *c)`: the sum of every slot (exact once writers are quiescent).
///
/// # Safety
/// `c` is null (a no-op, or 0) or comes from
/// `restartable_percpu_counter_new` and is not freed.
#[no_mangle]
pub unsafe extern "C" fn restartable_percpu_counter_sum(c: *const CCounter) -> i64 {
    // SAFETY: null or a live counter (caller).
    unsafe { c.as_ref() }.map_or(0, |c| c.counter.sum())
}

/// `int64_t restartable_percpu_counter_reset(restartable_percpu_counter_t
/// *c)`: sets the counter to zero and returns the sum it cleared; adds that
/// race with it land in one or the other, never lost.
///
/// # Safety
/// `c` is null (a no-op, or 0) or comes from
/// `restartable_percpu_counter_new` and is not freed.
#[no_mangle]
pub unsafe extern "C" fn restartable_percpu_counter_reset(c: *const CCounter) -> i64 {
    // SAFETY: null or a live counter (caller).
    unsafe { c.as_ref() }.map_or(0, |c| c.counter.reset())
}

/// `void restartable_percpu_counter_free(restartable_percpu_counter_t
/// *c)`: frees the counter; null is ignored.
///
/// # Safety
/// `c` is null or comes from `restartable_percpu_counter_new`, is freed
/// once, and no thread uses it any more.
#[no_mangle]
pub unsafe extern "C" fn restartable_percpu_counter_free(c: *mut CCounter) {
    if !c.is_null() {
        // SAFETY: made by `_new` with the layout of its `slots` slots,
        // freed once (caller); the counter in it owns nothing to drop.
        unsafe {
            let layout = c_counter_layout((*c).slots as usize);
            std::alloc::dealloc(c.cast(), layout);
        }
    }
}

/// `int restartable_area_is_exported(void)`: 1 when a classic `__rseq_abi`
/// user loaded later would share the area (see
/// [`crate::area_is_exported`]), 0 otherwise.
#[no_mangle]
pub extern "C" fn restartable_area_is_exported() -> c_int {
    crate::area_is_exported().into()
}

/// `size_t restartable_report(char *buf, size_t len)`: the text of
/// [`crate::report`] (who owns the area, why, versions, seccomp mode,
/// counters), with `snprintf`'s contract.
///
/// Writes at most `len` bytes: as much of the report as fits in `len - 1`
/// bytes, then a NUL (nothing at all when `len` is 0, and `buf` may then
/// be null). Returns the report's full length, NUL excluded, so a return
/// value `>= len` means the text was cut short and `len` must be at least
/// the return value plus one. The text is UTF-8, lines end with `\n`, and
/// a cut may fall inside a multi-byte character.
///
/// # Safety
/// - `buf` is valid for writing `len` bytes, or `len` is 0.
#[no_mangle]
pub unsafe extern "C" fn restartable_report(buf: *mut core::ffi::c_char, len: usize) -> usize {
    let text = crate::report().to_string();
    if len > 0 && !buf.is_null() {
        let n = text.len().min(len - 1);
        // SAFETY: `buf` is valid for `len` bytes (caller), and `n + 1 <= len`.
        unsafe {
            core::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), n);
            *buf.add(n) = 0;
        }
    }
    text.len()
}

// --- The time-slice extension (see `slice`) ---------------------------------

/// `int restartable_slice_status(void)`: `RESTARTABLE_SLICE_ENABLED` (2),
/// `RESTARTABLE_SLICE_AVAILABLE` (1), or the negative reason code of
/// [`crate::slice::SliceUnavailable::code`].
#[no_mangle]
pub extern "C" fn restartable_slice_status() -> c_int {
    match crate::slice::status() {
        crate::slice::SliceStatus::Enabled => 2,
        crate::slice::SliceStatus::Available => 1,
        crate::slice::SliceStatus::Unavailable(why) => why.code(),
    }
}

/// `int restartable_slice_enable(void)`: 0, or the negative reason code.
#[no_mangle]
pub extern "C" fn restartable_slice_enable() -> c_int {
    crate::slice::enable().map_or_else(|why| why.code(), |()| 0)
}

/// `int restartable_slice_begin(void)`: asks for an extension if it is
/// enabled on the thread; returns the token for `restartable_slice_end`
/// (1 if this call set the request, 0 for a no-op).
#[no_mangle]
pub extern "C" fn restartable_slice_begin() -> c_int {
    let guard = crate::slice::SliceGuard::new();
    let requested = guard.requested();
    core::mem::forget(guard);
    requested.into()
}

/// `void restartable_slice_end(int token)`: ends what
/// `restartable_slice_begin` started (nothing for token 0), yielding if
/// the kernel granted an extension.
#[no_mangle]
pub extern "C" fn restartable_slice_end(token: c_int) {
    if token != 0 {
        crate::slice::end_request();
    }
}

/// `const char *restartable_slice_reason(int code)`: a static,
/// NUL-terminated description of a code `restartable_slice_status` or
/// `restartable_slice_enable` returned ("" for codes >= 0, "unknown code"
/// for others).
#[no_mangle]
pub extern "C" fn restartable_slice_reason(code: c_int) -> *const core::ffi::c_char {
    let text: &'static core::ffi::CStr = match code {
        0..=c_int::MAX => c"",
        -1 => c"this thread uses no rseq area",
        -2 => c"the kernel predates the time-slice extension (rseq feature size below 33)",
        -3 => c"the rseq area is registered with the classic 32-byte length",
        -4 => c"the kernel answers ENOTSUPP: built without CONFIG_RSEQ_SLICE_EXTENSION or off on its command line",
        -5 => c"prctl(PR_RSEQ_SLICE_EXTENSION) failed",
        _ => c"unknown code",
    };
    text.as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_calls_are_consistent() {
        std::thread::spawn(|| {
            let status = restartable_slice_status();
            assert!((-5..=2).contains(&status) && status != 0);
            let enabled = restartable_slice_enable();
            assert!(enabled == 0 || enabled == status || status > 0);
            let token = restartable_slice_begin();
            assert_eq!(token == 1, restartable_slice_status() == 2);
            restartable_slice_end(token);
            // SAFETY: static C strings.
            let text = unsafe { core::ffi::CStr::from_ptr(restartable_slice_reason(-4)) };
            assert!(text.to_bytes().starts_with(b"the kernel answers ENOTSUPP"));
            // SAFETY: as above.
            let text = unsafe { core::ffi::CStr::from_ptr(restartable_slice_reason(-99)) };
            assert_eq!(text.to_bytes(), b"unknown code");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn registration_balance() {
        std::thread::spawn(|| {
            assert_eq!(restartable_unregister(), -libc::EINVAL);
            assert_eq!(restartable_register(), 0);
            assert_eq!(restartable_unregister(), 0);
            assert_eq!(restartable_unregister(), -libc::EINVAL);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn counter_round_trip() {
        let c = restartable_percpu_counter_new();
        // SAFETY: `c` is live until the free below.
        unsafe {
            for _ in 0..100 {
                restartable_percpu_counter_add(c, 2);
            }
            restartable_percpu_counter_add(c, -50);
            assert_eq!(restartable_percpu_counter_sum(c), 150);
            assert_eq!(restartable_percpu_counter_reset(c), 150);
            assert_eq!(restartable_percpu_counter_sum(c), 0);
            restartable_percpu_counter_free(c);
            restartable_percpu_counter_free(core::ptr::null_mut());
        }
    }

    #[test]
    fn owner_constants_match() {
        let expected = match crate::owner() {
            Owner::Libc => 1,
            Owner::Library => 2,
            Owner::Unavailable => 3,
        };
        assert_eq!(restartable_owner(), expected);
        assert_eq!(restartable_rseq_location(), crate::rseq_location());
    }
}
