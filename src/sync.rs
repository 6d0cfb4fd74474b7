//! The one place that names `core::sync::atomic` or `loom`.
//!
//! Algorithm code (per-CPU slots, the refcount state machine) uses the
//! switchable names, which become loom's types under `cfg(restartable_loom)`
//! so that loom can explore their interleavings. Process-wide statics need
//! `const` constructors, which loom's types lack; they use the `Static*`
//! names, which are always the real atomics.

#[cfg(not(restartable_loom))]
#[allow(unused_imports)] // each build uses a different subset
pub(crate) use core::sync::atomic::{
    fence, AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize,
};

#[cfg(restartable_loom)]
#[allow(unused_imports)] // each build uses a different subset
pub(crate) use loom::sync::atomic::{
    fence, AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize,
};

#[allow(unused_imports)] // each build uses a different subset
pub(crate) use core::sync::atomic::{
    AtomicBool as StaticAtomicBool, AtomicIsize as StaticAtomicIsize, AtomicPtr as StaticAtomicPtr,
    AtomicU32 as StaticAtomicU32, AtomicU64 as StaticAtomicU64, AtomicU8 as StaticAtomicU8,
    AtomicUsize as StaticAtomicUsize, Ordering,
};

/// A pause inside a retry loop. Under loom it yields, so that loom lets the
/// thread being waited for run instead of exploring an endless spin.
#[inline]
pub(crate) fn spin_hint() {
    #[cfg(restartable_loom)]
    loom::thread::yield_now();
    #[cfg(not(restartable_loom))]
    core::hint::spin_loop();
}

/// Gives the CPU away (loom: lets another model thread run).
#[inline]
pub(crate) fn yield_now() {
    #[cfg(restartable_loom)]
    loom::thread::yield_now();
    #[cfg(not(restartable_loom))]
    std::thread::yield_now();
}

/// Steps of a wait that spin before it starts to yield.
const BACKOFF_SPINS: u32 = 64;
/// Steps that yield before it starts to sleep.
const BACKOFF_YIELDS: u32 = 64;
/// The longest sleep of one step, in microseconds.
const BACKOFF_MAX_SLEEP_US: u64 = 1000;

/// One step of a wait for another thread. `spins` counts the steps (start
/// it at 0). The first steps spin (the other thread is about to finish),
/// the next ones yield (it may have been preempted), and from then on each
/// step sleeps, 1 µs doubling up to 1 ms: a thread that waits for a lock
/// guard held for long burns almost no CPU (where nothing else is
/// runnable, `sched_yield` returns at once, and a waiter that only yields
/// keeps a CPU busy). Under loom every step past the spins yields.
pub(crate) fn backoff(spins: &mut u32) {
    let step = *spins;
    *spins = step.saturating_add(1);
    if step < BACKOFF_SPINS {
        spin_hint();
    } else if cfg!(restartable_loom) || step < BACKOFF_SPINS + BACKOFF_YIELDS {
        yield_now();
    } else {
        let doublings = (step - BACKOFF_SPINS - BACKOFF_YIELDS).min(10);
        let us = (1u64 << doublings).min(BACKOFF_MAX_SLEEP_US);
        // `nanosleep` (async-signal-safe; a signal's handler runs and the
        // sleep resumes).
        std::thread::sleep(std::time::Duration::from_micros(us));
    }
}

/// Every signal blocked on the calling thread, for as long as this lives:
/// the library's own short regions that hold a lock or a fence run with
/// it, so that no signal handler can run on a thread while it holds one
/// (a handler that waited for it would wait forever). Two
/// `pthread_sigmask` calls (none under loom, which has no signals).
#[derive(Debug)]
pub(crate) struct SignalsBlocked(#[cfg(not(restartable_loom))] libc::sigset_t);

impl SignalsBlocked {
    pub(crate) fn new() -> Self {
        #[cfg(not(restartable_loom))]
        {
            let mut all = core::mem::MaybeUninit::<libc::sigset_t>::uninit();
            let mut old = core::mem::MaybeUninit::<libc::sigset_t>::uninit();
            // SAFETY: sigfillset initialises `all`; pthread_sigmask reads it
            // and writes `old`, both valid, and cannot fail with these
            // arguments. glibc leaves its own internal signals unblocked.
            unsafe {
                libc::sigfillset(all.as_mut_ptr());
                libc::pthread_sigmask(libc::SIG_BLOCK, all.as_ptr(), old.as_mut_ptr());
                SignalsBlocked(old.assume_init())
            }
        }
        #[cfg(restartable_loom)]
        SignalsBlocked()
    }
}

impl Drop for SignalsBlocked {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved by `new`.
        #[cfg(not(restartable_loom))]
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, core::ptr::null_mut())
        };
    }
}
