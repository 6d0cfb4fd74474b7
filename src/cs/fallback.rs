//! What the operations do on threads that cannot run critical sections.
//!
//! Each fallback makes the same loads and stores as its section, and ends
//! in the same single commit, which is an atomic read-modify-write:
//! - operations whose only store is the commit run without a lock:
//!   `load_cbne_store` and `load_cbne_load_cbne_store` commit with a
//!   compare-exchange, `load_add_store` and `load_add_load_load_add_store`
//!   with `fetch_add`;
//! - operations with stores before the commit (`load_cbne_store_store` and
//!   its release form, `load_cbne_memcpy_store`, the list pop
//!   `load_cbeq_store_add_load_store`, the buffer push) and the buffer pop,
//!   whose item must be the one its count covers, take a striped spin lock
//!   chosen by the address of their first word, so that two of them never
//!   interleave their stores on one word, and commit with a
//!   compare-exchange, so that a lock-free commit in between is never
//!   overwritten.
//!
//! Any mix of fallback operations on a word is therefore exact. A
//! compare-exchange commit that fails after the lock was taken (a lock-free
//! operation changed the word since the comparison) makes
//! `load_cbne_store_store` and `load_cbne_memcpy_store` answer
//! [`CompareFailed`](super::Outcome::CompareFailed), with the stores before
//! the commit made, as a section aborted after them leaves them; the pop
//! reads the head again.
//!
//! # Copies
//!
//! `load_cbne_memcpy_store` gives the bytes of a forward copy on both
//! paths: byte by byte here, in increasing address order, each byte read
//! from `src` just before it is written to `dst`; eight bytes at a step in
//! the x86_64 section, except where `dst` lies 1 to 7 bytes above `src`,
//! the one layout in which the two would differ, which it copies byte by
//! byte too. So overlapping ranges come out the same on both paths (with
//! `dst` above `src`, the first bytes repeat), and a thread reading `dst`
//! during the copy sees a prefix of it change, from the start.
//!
//! # Signal handlers
//!
//! Every fallback may run in a signal handler that interrupted another one
//! on the same thread. The lock-free ones never wait. The locked ones run
//! with every signal blocked (two `pthread_sigmask` calls), so no handler
//! can interrupt a thread that holds a stripe and then wait for it.
//!
//! # Fork
//!
//! A `fork` child holds only the forking thread, which is never inside a
//! locked region (signals are blocked there, so not even from a handler).
//! The child's fork handler frees every stripe: a thread that held one in
//! the parent stopped somewhere before or after its commit, which leaves the
//! words as a section aborted or committed there does.
//!
//! Fallback and rseq writers on the *same* word are not exact, because a
//! section's commit is a plain store that no lock orders. The per-CPU types
//! solve this with separate words (the counter) or a fence and
//! `membarrier` (the lock and the stack); do the same in your own types.

use core::sync::atomic::AtomicIsize;

use crate::percpu::CachePadded;
use crate::sync::{backoff, Ordering, SignalsBlocked, StaticAtomicBool as AtomicBool};

use super::Outcome;

const STRIPES: usize = 64;

/// Spin locks: `true` while held. `Acquire` on take, `Release` on give,
/// so each holder sees the writes of the previous one.
static LOCKS: [CachePadded<AtomicBool>; STRIPES] =
    [const { CachePadded(AtomicBool::new(false)) }; STRIPES];

/// In a `fork` child (see `fork.rs`): no thread of the child is inside a
/// locked region (see "Fork"). `Relaxed`: the child runs only this thread
/// for now.
#[cfg(not(restartable_loom))]
pub(crate) fn after_fork_in_child() {
    for lock in &LOCKS {
        lock.store(false, Ordering::Relaxed);
    }
}

/// Runs `f` holding the stripe of `word`, with every signal blocked.
fn locked<R>(word: *const isize, f: impl FnOnce() -> R) -> R {
    let _blocked = SignalsBlocked::new();
    let lock = &LOCKS[(word as usize >> 3) % STRIPES];
    let mut spins = 0;
    while lock
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        backoff(&mut spins);
    }
    let result = f();
    lock.store(false, Ordering::Release);
    result
}

/// The word at `p`, as an atomic.
///
/// # Safety
/// `p` is valid and aligned for the whole call of the operation.
unsafe fn word<'a>(p: *mut isize) -> &'a AtomicIsize {
    // SAFETY: forwarded from the caller; `AtomicIsize` has the layout of
    // `isize`.
    unsafe { AtomicIsize::from_ptr(p) }
}

/// The commit: `*v = newv` if `*v` is still `expect`. `AcqRel` on success:
/// `Release` publishes the stores before it (a `*v2`, a copy) to whoever
/// acquires the new value; `Acquire` pairs with the commit it replaces.
fn commit(v: &AtomicIsize, expect: isize, newv: isize) -> bool {
    v.compare_exchange(expect, newv, Ordering::AcqRel, Ordering::Relaxed)
        .is_ok()
}

fn outcome(ok: bool) -> Outcome {
    if ok {
        Outcome::Committed
    } else {
        Outcome::CompareFailed
    }
}

/// See [`super::load_cbne_store`].
///
/// # Safety
/// As the rseq operation.
pub(crate) unsafe fn load_cbne_store(v: *mut isize, expect: isize, newv: isize) -> Outcome {
    // SAFETY: `v` is valid and aligned (caller).
    outcome(commit(unsafe { word(v) }, expect, newv))
}

/// See [`super::load_add_store`].
///
/// # Safety
/// As the rseq operation.
pub(crate) unsafe fn load_add_store(v: *mut isize, count: isize) -> Outcome {
    // SAFETY: `v` is valid and aligned (caller). `Relaxed`: an addition
    // publishes nothing else.
    unsafe { word(v) }.fetch_add(count, Ordering::Relaxed);
    Outcome::Committed
}

/// See [`super::load_cbeq_store_add_load_store`].
///
/// # Safety
/// As the rseq operation.
pub(crate) unsafe fn load_cbeq_store_add_load_store(
    v: *mut isize,
    expectnot: isize,
    voffp: isize,
    load: *mut isize,
) -> Outcome {
    // SAFETY: `v` is valid and aligned (caller).
    let head = unsafe { word(v) };
    locked(v, || loop {
        // `Acquire` pairs with the commit that linked `top`, so its `next`
        // is readable as that writer left it.
        let top = head.load(Ordering::Acquire);
        if top == expectnot {
            return Outcome::CompareFailed;
        }
        // SAFETY: `load` is valid (caller); `top + voffp` is readable for
        // every head but `expectnot` (caller), and `top` stays linked while
        // the stripe is held: pops of this word hold it, pushes only add
        // above it.
        let next = unsafe {
            load.write_volatile(top);
            ((top + voffp) as *const isize).read_volatile()
        };
        if commit(head, top, next) {
            return Outcome::Committed;
        }
        // A lock-free push changed the head: read it again.
    })
}

/// See [`super::push_at_current`]: `node.next = *head; *head = node`,
/// lock-free. A push never suffers from a head that changed and came back
/// between its read and its commit: `node.next` is that head either way.
///
/// # Safety
/// `head` is valid and aligned; `node` is the caller's, valid and aligned.
pub(crate) unsafe fn push(head: *mut isize, node: *mut isize) {
    // SAFETY: `head` is valid and aligned (caller).
    let word = unsafe { word(head) };
    loop {
        let top = word.load(Ordering::Relaxed);
        // SAFETY: `node` is the caller's until the commit links it; the
        // commit's `Release` publishes this store with it.
        unsafe { node.write_volatile(top) };
        if commit(word, top, node as isize) {
            return;
        }
    }
}

/// See [`super::buffer_push_at_current`]: `items[count] = item; count +=
/// 1` unless the buffer at `slot` (its count, then its items) is full,
/// under the stripe of the count.
///
/// # Safety
/// `slot` is valid and aligned, a count followed by `capacity` words.
pub(crate) unsafe fn buffer_push(slot: *mut isize, capacity: usize, item: isize) -> Outcome {
    // SAFETY: `slot` is valid and aligned (caller).
    let count = unsafe { word(slot) };
    locked(slot, || loop {
        let n = count.load(Ordering::Acquire);
        if n as usize >= capacity {
            return Outcome::CompareFailed;
        }
        // SAFETY: below `capacity` (checked), so inside the slot (caller);
        // the commit's `Release` publishes the item with the count.
        unsafe { slot.add(1 + n as usize).write_volatile(item) };
        if commit(count, n, n + 1) {
            return Outcome::Committed;
        }
        // A lock-free operation changed the count: read it again.
    })
}

/// See [`super::buffer_pop_at_current`]: `count -= 1; item = items[count]`
/// unless the buffer at `slot` is empty, under the stripe of the count.
/// The item is 0 unless committed.
///
/// # Safety
/// `slot` is valid and aligned, a count followed by that many words.
pub(crate) unsafe fn buffer_pop(slot: *mut isize) -> (Outcome, isize) {
    // SAFETY: `slot` is valid and aligned (caller).
    let count = unsafe { word(slot) };
    locked(slot, || loop {
        // `Acquire` pairs with the push that published the item.
        let n = count.load(Ordering::Acquire);
        if n == 0 {
            return (Outcome::CompareFailed, 0);
        }
        // SAFETY: item `n - 1` lies inside the slot (caller).
        let item = unsafe { slot.add(n as usize).read_volatile() };
        if commit(count, n, n - 1) {
            return (Outcome::Committed, item);
        }
    })
}

/// See [`super::load_cbne_load_cbne_store`].
///
/// # Safety
/// As the rseq operation.
pub(crate) unsafe fn load_cbne_load_cbne_store(
    v: *mut isize,
    expect: isize,
    v2: *mut isize,
    expect2: isize,
    newv: isize,
) -> Outcome {
    // SAFETY: both pointers are valid and aligned (caller).
    let (first, second) = unsafe { (word(v), word(v2)) };
    // Like the section: `*v`, then `*v2`, then the commit. `Acquire` pairs
    // with the commits that wrote them.
    let ok = first.load(Ordering::Acquire) == expect
        && second.load(Ordering::Acquire) == expect2
        && commit(first, expect, newv);
    outcome(ok)
}

/// The release form of [`load_cbne_store_store`]: the lock's release
/// already orders both stores before the next holder's reads.
///
/// # Safety
/// As [`load_cbne_store_store`].
pub(crate) unsafe fn load_cbne_store_store_release(
    v: *mut isize,
    expect: isize,
    v2: *mut isize,
    newv2: isize,
    newv: isize,
) -> Outcome {
    // SAFETY: forwarded from the caller.
    unsafe { load_cbne_store_store(v, expect, v2, newv2, newv) }
}

/// See [`super::load_cbne_store_store`].
///
/// # Safety
/// As the rseq operation.
pub(crate) unsafe fn load_cbne_store_store(
    v: *mut isize,
    expect: isize,
    v2: *mut isize,
    newv2: isize,
    newv: isize,
) -> Outcome {
    // SAFETY: both pointers are valid and aligned (caller).
    let (first, second) = unsafe { (word(v), word(v2)) };
    locked(v, || {
        if first.load(Ordering::Acquire) != expect {
            return Outcome::CompareFailed;
        }
        // The speculative store; the commit's `Release` publishes it.
        second.store(newv2, Ordering::Relaxed);
        outcome(commit(first, expect, newv))
    })
}

/// The release form of [`load_cbne_memcpy_store`]: the lock's release
/// already orders the copy before the next holder's reads.
///
/// # Safety
/// As [`load_cbne_memcpy_store`].
pub(crate) unsafe fn load_cbne_memcpy_store_release(
    v: *mut isize,
    expect: isize,
    dst: *mut u8,
    src: *const u8,
    len: usize,
    newv: isize,
) -> Outcome {
    // SAFETY: forwarded from the caller.
    unsafe { load_cbne_memcpy_store(v, expect, dst, src, len, newv) }
}

/// See [`super::load_cbne_memcpy_store`]: copies byte by byte, forward,
/// the bytes the section gives (see "Copies" in the module docs).
///
/// # Safety
/// As the rseq operation.
pub(crate) unsafe fn load_cbne_memcpy_store(
    v: *mut isize,
    expect: isize,
    dst: *mut u8,
    src: *const u8,
    len: usize,
    newv: isize,
) -> Outcome {
    // SAFETY: `v` is valid and aligned (caller).
    let first = unsafe { word(v) };
    locked(v, || {
        if first.load(Ordering::Acquire) != expect {
            return Outcome::CompareFailed;
        }
        for i in 0..len {
            // SAFETY: `dst` and `src` are valid for `len` bytes (caller).
            // Volatile, one byte each: the compiler may neither widen,
            // reorder nor turn the loop into a `memmove`.
            unsafe { dst.add(i).write_volatile(src.add(i).read_volatile()) };
        }
        outcome(commit(first, expect, newv))
    })
}

/// See [`super::load_add_load_load_add_store`].
///
/// # Safety
/// As the rseq operation.
pub(crate) unsafe fn load_add_load_load_add_store(
    ptr: *mut isize,
    off: isize,
    inc: isize,
) -> Outcome {
    // SAFETY: `ptr` is valid, and `*ptr + off` holds a valid, aligned
    // pointer to an `isize` (caller). `Acquire` pairs with the store that
    // published `*ptr`; the addition is `Relaxed`, as `load_add_store`'s.
    unsafe {
        let target = (word(ptr).load(Ordering::Acquire) + off) as *const isize;
        let target = target.read_volatile() as *mut isize;
        word(target).fetch_add(inc, Ordering::Relaxed);
    }
    Outcome::Committed
}
