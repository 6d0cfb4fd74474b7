//! What the operations do on threads that cannot run critical sections.
//!
//! Single-word additions use `fetch_add`; every other operation takes a
//! striped spin lock chosen by the address of its first word and performs
//! the same loads and stores under it, so results are exact among fallback
//! callers whatever mix of operations they run on a word (except
//! `load_add_store`, whose `fetch_add` takes no lock: mix it only with
//! itself on a given word).
//!
//! Fallback and rseq writers on the *same* word are not exact, because a
//! section's commit is a plain store that no lock orders. The per-CPU types
//! solve this with separate words (the counter) or a fence and
//! `membarrier` (the lock and the stack); do the same in your own types.

use crate::percpu::CachePadded;
use crate::sync::{backoff, Ordering, StaticAtomicBool as AtomicBool};

use super::Outcome;

const STRIPES: usize = 64;

/// Spin locks: `true` while held. `Acquire` on take, `Release` on give,
/// so each holder sees the writes of the previous one.
static LOCKS: [CachePadded<AtomicBool>; STRIPES] =
    [const { CachePadded(AtomicBool::new(false)) }; STRIPES];

fn locked<R>(word: *const isize, f: impl FnOnce() -> R) -> R {
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

/// Reads a word that fallback writers only change under its stripe lock.
///
/// # Safety
/// `p` is valid and aligned.
unsafe fn read(p: *const isize) -> isize {
    // SAFETY: forwarded from the caller.
    unsafe { p.read_volatile() }
}

/// Writes a word under its stripe lock.
///
/// # Safety
/// `p` is valid and aligned.
unsafe fn write(p: *mut isize, v: isize) {
    // SAFETY: forwarded from the caller.
    unsafe { p.write_volatile(v) }
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
    // SAFETY: `v` is valid (caller); writers hold the same stripe.
    locked(v, || unsafe {
        let ok = read(v) == expect;
        if ok {
            write(v, newv);
        }
        outcome(ok)
    })
}

/// See [`super::load_add_store`].
///
/// # Safety
/// As the rseq operation.
pub(crate) unsafe fn load_add_store(v: *mut isize, count: isize) -> Outcome {
    // SAFETY: `v` is valid and aligned for an `isize` (caller), and
    // `AtomicIsize` has the same layout.
    let word = unsafe { core::sync::atomic::AtomicIsize::from_ptr(v) };
    word.fetch_add(count, Ordering::Relaxed);
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
    // SAFETY: pointers valid (caller); writers of `*v` hold the stripe.
    locked(v, || unsafe {
        let head = read(v);
        if head == expectnot {
            return Outcome::CompareFailed;
        }
        *load = head;
        write(v, read((head + voffp) as *const isize));
        Outcome::Committed
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
    // SAFETY: pointers valid (caller); writers of `*v` hold the stripe.
    locked(v, || unsafe {
        let ok = read(v) == expect && read(v2) == expect2;
        if ok {
            write(v, newv);
        }
        outcome(ok)
    })
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
    // SAFETY: pointers valid (caller); writers of `*v` hold the stripe.
    locked(v, || unsafe {
        let ok = read(v) == expect;
        if ok {
            write(v2, newv2);
            write(v, newv);
        }
        outcome(ok)
    })
}

/// See [`super::load_cbne_memcpy_store`].
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
    // SAFETY: pointers valid (caller); writers of `*v` hold the stripe.
    locked(v, || unsafe {
        let ok = read(v) == expect;
        if ok {
            core::ptr::copy(src, dst, len);
            write(v, newv);
        }
        outcome(ok)
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
    // SAFETY: `*ptr + off` holds a valid, aligned pointer to an `isize`
    // (caller).
    unsafe {
        let target = read((read(ptr) + off) as *const isize) as *mut isize;
        core::sync::atomic::AtomicIsize::from_ptr(target).fetch_add(inc, Ordering::Relaxed);
    }
    Outcome::Committed
}
