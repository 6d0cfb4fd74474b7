//! What a `fork` child must undo: the child has only the forking thread,
//! so whatever another thread held inside the library at the fork (the
//! owner's decision, a fallback stripe lock, a lock or stack fence) would
//! stay held forever. One `pthread_atfork` child handler lets each part
//! release its own; it is registered once, at the start of the owner's
//! decision, before any of them can be held.

use crate::sync::{Ordering, StaticAtomicBool as AtomicBool};

/// Registers the child handler, once per process.
pub(crate) fn register_child_handler() {
    static REGISTERED: AtomicBool = AtomicBool::new(false);
    // `Relaxed`: only the registration itself is guarded.
    if REGISTERED.swap(true, Ordering::Relaxed) {
        return;
    }
    // SAFETY: registers a handler with the right signature; it only stores
    // to atomics, which is async-signal-safe as a fork child requires. A
    // failure (ENOMEM) leaves only what was held at a fork held in the
    // child.
    unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
}

extern "C" fn in_child() {
    crate::area::after_fork_in_child();
    #[cfg(not(restartable_loom))]
    crate::cs::after_fork_in_child();
    #[cfg(not(restartable_loom))]
    crate::percpu::after_fork_in_child();
    crate::percpu::pool::after_fork_in_child();
}
