//! The C ABI of `librestartable.so` / `librestartable.a`; the declarations
//! are in `include/restartable.h`.
//!
//! Every function has a defined result for every input: null pointers give
//! `-EINVAL` (or do nothing, for the counter's `_add`, `_reset`, `_free`),
//! and every call works in every mode, through the fallbacks where rseq is
//! unavailable. Names start with `restartable_`, except [`rseq_location`].

use core::ffi::c_int;

use crate::abi::Rseq;
use crate::cs::{self, Index, Outcome};
use crate::{Error, Owner, PerCpuCounter, ThreadState};

fn status(result: Result<ThreadState, Error>) -> c_int {
    match result {
        Ok(_) => 0,
        Err(e) => e.to_errno(),
    }
}

/// `struct rseq_area *rseq_location(void)`: the calling thread's active
/// area (glibc's, or `__rseq_abi`); never null.
#[no_mangle]
pub extern "C" fn rseq_location() -> *mut Rseq {
    crate::rseq_location()
}

/// `int restartable_register(void)`: 0, `-EOVERFLOW` (too many holds) or
/// the negated errno of an unexpected `rseq(2)` failure.
#[no_mangle]
pub extern "C" fn restartable_register() -> c_int {
    status(crate::register_current_thread())
}

/// `int restartable_unregister(void)`: 0, or `-EINVAL` when the calling
/// thread holds no registration taken by `restartable_register` (nothing
/// changes).
#[no_mangle]
pub extern "C" fn restartable_unregister() -> c_int {
    status(crate::unregister_current_thread())
}

/// `int restartable_owner(void)`: `RESTARTABLE_OWNER_LIBC` (1),
/// `_LIBRARY` (2) or `_NONE` (3).
#[no_mangle]
pub extern "C" fn restartable_owner() -> c_int {
    crate::owner() as c_int
}

/// `int restartable_thread_state(void)`: `RESTARTABLE_THREAD_UNREGISTERED`
/// (0), `_REGISTERED` (1), `_BORROWED` (2) or `_FOREIGN` (3).
#[no_mangle]
pub extern "C" fn restartable_thread_state() -> c_int {
    crate::thread_state() as c_int
}

/// `int32_t restartable_cpu_slow(void)`: the out-of-line CPU read that the
/// header's inline `restartable_cpu()` falls back to. Never negative.
#[no_mangle]
pub extern "C" fn restartable_cpu_slow() -> i32 {
    crate::current_cpu() as i32
}

/// `int32_t restartable_cpu_raw(void)`: `cpu_id` as the area holds it.
#[no_mangle]
pub extern "C" fn restartable_cpu_raw() -> i32 {
    crate::current_cpu_raw()
}

/// `int32_t restartable_cpu_start(void)`: `cpu_id_start`.
#[no_mangle]
pub extern "C" fn restartable_cpu_start() -> i32 {
    crate::cpu_id_start() as i32
}

/// `int32_t restartable_node_id(void)`: the NUMA node, or -1.
#[no_mangle]
pub extern "C" fn restartable_node_id() -> i32 {
    crate::node_id().map_or(-1, |n| n as i32)
}

/// `int32_t restartable_mm_cid(void)`: the concurrency id, or -1.
#[no_mangle]
pub extern "C" fn restartable_mm_cid() -> i32 {
    crate::mm_cid().map_or(-1, |n| n as i32)
}

/// `uint32_t restartable_feature_size(void)`: see [`crate::feature_size`].
#[no_mangle]
pub extern "C" fn restartable_feature_size() -> u32 {
    crate::feature_size()
}

/// `void restartable_prepare_unload(void)`: clears the calling thread's
/// `rseq_cs`, so that the kernel never reads a descriptor in code about to
/// be unmapped. Call it on every thread that ran sections of that code.
#[no_mangle]
pub extern "C" fn restartable_prepare_unload() {
    if crate::owner() == Owner::Unavailable {
        return;
    }
    let area = crate::rseq_location();
    // SAFETY: the calling thread's live area; `rseq_cs` is the one field
    // user space writes.
    unsafe { (*area).rseq_cs.get().write_volatile(0) };
}

fn index_of_cpu(cpu: c_int) -> Option<u32> {
    u32::try_from(cpu).ok()
}

/// `int restartable_load_add_store(intptr_t *v, intptr_t count, int cpu)`:
/// 0 committed, -1 aborted (read the CPU again and retry), `-EINVAL` for a
/// null `v` or a negative `cpu`.
///
/// # Safety
/// `v` is null or valid and aligned, updated only through these functions.
#[no_mangle]
pub unsafe extern "C" fn restartable_load_add_store(
    v: *mut isize,
    count: isize,
    cpu: c_int,
) -> c_int {
    let Some(cpu) = index_of_cpu(cpu).filter(|_| !v.is_null()) else {
        return -libc::EINVAL;
    };
    // SAFETY: `v` is non-null and valid (caller).
    unsafe { cs::load_add_store(Index::Cpu, v, count, cpu) as c_int }
}

/// `int restartable_load_cbne_store(intptr_t *v, intptr_t expect,
/// intptr_t newv, int cpu)`: 0 committed, 1 `*v != expect`, -1 aborted,
/// `-EINVAL` for a null `v` or a negative `cpu`.
///
/// # Safety
/// `v` is null or valid and aligned, updated only through these functions.
#[no_mangle]
pub unsafe extern "C" fn restartable_load_cbne_store(
    v: *mut isize,
    expect: isize,
    newv: isize,
    cpu: c_int,
) -> c_int {
    let Some(cpu) = index_of_cpu(cpu).filter(|_| !v.is_null()) else {
        return -libc::EINVAL;
    };
    // SAFETY: `v` is non-null and valid (caller).
    let outcome = unsafe { cs::load_cbne_store(Index::Cpu, v, expect, newv, cpu) };
    match outcome {
        Outcome::Committed => 0,
        Outcome::CompareFailed => 1,
        Outcome::Aborted => -1,
    }
}

/// `struct restartable_percpu_counter *restartable_percpu_counter_new(void)`:
/// a zeroed counter (never null: allocation failure aborts, as in Rust).
#[no_mangle]
pub extern "C" fn restartable_percpu_counter_new() -> *mut PerCpuCounter {
    Box::into_raw(Box::new(PerCpuCounter::new()))
}

/// `void restartable_percpu_counter_add(counter, int64_t delta)`; a null
/// counter is ignored.
///
/// # Safety
/// `counter` is null or came from `restartable_percpu_counter_new` and was
/// not freed.
#[no_mangle]
pub unsafe extern "C" fn restartable_percpu_counter_add(counter: *const PerCpuCounter, delta: i64) {
    // SAFETY: null or a live counter (caller).
    if let Some(counter) = unsafe { counter.as_ref() } {
        counter.add(delta);
    }
}

/// `int64_t restartable_percpu_counter_sum(counter)`: 0 for null.
///
/// # Safety
/// As [`restartable_percpu_counter_add`].
#[no_mangle]
pub unsafe extern "C" fn restartable_percpu_counter_sum(counter: *const PerCpuCounter) -> i64 {
    // SAFETY: null or a live counter (caller).
    unsafe { counter.as_ref() }.map_or(0, PerCpuCounter::sum)
}

/// `void restartable_percpu_counter_reset(counter)`; null is ignored.
///
/// # Safety
/// As [`restartable_percpu_counter_add`].
#[no_mangle]
pub unsafe extern "C" fn restartable_percpu_counter_reset(counter: *const PerCpuCounter) {
    // SAFETY: null or a live counter (caller).
    if let Some(counter) = unsafe { counter.as_ref() } {
        counter.reset();
    }
}

/// `void restartable_percpu_counter_free(counter)`; null is ignored.
///
/// # Safety
/// `counter` is null or came from `restartable_percpu_counter_new`, is
/// freed once, and no other thread uses it any more.
#[no_mangle]
pub unsafe extern "C" fn restartable_percpu_counter_free(counter: *mut PerCpuCounter) {
    if !counter.is_null() {
        // SAFETY: allocated by `Box::into_raw` in `_new`, freed once (caller).
        drop(unsafe { Box::from_raw(counter) });
    }
}
