//! The pool's machinery: the mapping and its allocator (one lock for
//! every pool, held across `fork`), and an object's range with its
//! per-slot states and lazy initialisation. See the parent module's docs.

use core::cell::UnsafeCell;
use core::ptr::NonNull;
use std::sync::Arc;

use super::{PerCpuPool, PoolError};
use crate::cs::Index;
use crate::sync::{backoff, Ordering, SignalsBlocked, StaticAtomicBool, StaticAtomicUsize};

/// A slot state: its instance is initialised.
pub(crate) const READY: usize = 2;
/// A slot state: being initialised; the fork epoch sits above bit 2.
const BUSY: usize = 1;
const EPOCH_SHIFT: u32 = 2;

/// The fork epoch: a child bumps it, so that a slot left busy by a thread
/// of the parent is seen as stale. `Relaxed`: it changes only in a fork
/// child, before any other code runs there.
static EPOCH: StaticAtomicUsize = StaticAtomicUsize::new(0);

/// In a `fork` child (see `fork.rs`): busy slots from before the fork
/// belong to no live thread.
pub(crate) fn after_fork_in_child() {
    EPOCH.fetch_add(1, Ordering::Relaxed);
}

/// The fork epoch now (see [`after_fork_in_child`]): other per-process
/// words that a vanished thread may leave held compare against it.
#[cfg_attr(restartable_loom, allow(dead_code))] // the active table is not in the loom build
pub(crate) fn fork_epoch() -> usize {
    EPOCH.load(Ordering::Relaxed)
}

/// The allocator lock of every pool: `true` while a thread allocates or
/// frees. One lock for all pools, so that `fork` can wait for it: a
/// `pthread_atfork` handler takes it before the fork and releases it after,
/// in the parent and in the child, so that no thread of the child finds a
/// free list half changed. `Acquire` on take, `Release` on give.
static ALLOCATING: StaticAtomicBool = StaticAtomicBool::new(false);

/// Holds [`ALLOCATING`] while alive.
struct Allocating;

impl Allocating {
    fn take() -> Self {
        let mut spins = 0;
        while ALLOCATING
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            backoff(&mut spins);
        }
        Allocating
    }
}

impl Drop for Allocating {
    fn drop(&mut self) {
        ALLOCATING.store(false, Ordering::Release);
    }
}

extern "C" fn before_fork() {
    core::mem::forget(Allocating::take());
}

extern "C" fn after_fork() {
    ALLOCATING.store(false, Ordering::Release);
}

/// Registers the fork handlers of the allocator lock, once per process.
pub(super) fn register_fork_handlers() {
    static REGISTERED: StaticAtomicBool = StaticAtomicBool::new(false);
    // `Relaxed`: only the registration itself is guarded.
    if REGISTERED.swap(true, Ordering::Relaxed) {
        return;
    }
    // SAFETY: handlers with the right signature; they only touch an
    // atomic. A failure (ENOMEM) leaves a fork during an allocation
    // unhandled, as before.
    unsafe { libc::pthread_atfork(Some(before_fork), Some(after_fork), Some(after_fork)) };
}

fn busy_now() -> usize {
    BUSY | (EPOCH.load(Ordering::Relaxed) << EPOCH_SHIFT)
}

pub(super) fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if page > 0 {
        page as usize
    } else {
        4096
    }
}

/// The mapping and its allocator, shared by the pool handle and every
/// object allocated from it (the last of them unmaps it).
pub(super) struct Inner {
    /// Start of slot 0. The mapping is `slots * stride` bytes, read and
    /// written only through objects' instances and the pool's own clearing.
    pub(super) base: NonNull<u8>,
    pub(super) stride: usize,
    pub(super) slots: usize,
    pub(super) index: Index,
    /// Free ranges `(offset, len)` of every slot, sorted and coalesced;
    /// every byte in them is zero in every slot. Read and written only
    /// while [`ALLOCATING`] is held.
    pub(super) free: UnsafeCell<Vec<(usize, usize)>>,
}

// SAFETY: `base` is a private mapping owned by `Inner`; the free list is
// touched only under the allocator lock, and instances are handed out only through objects, whose
// own types say what may be shared.
unsafe impl Send for Inner {}
// SAFETY: as above.
unsafe impl Sync for Inner {}

impl Drop for Inner {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `PerCpuPool::with_layout`; no object
        // (each holds an `Arc` to this) is left.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.slots * self.stride) };
    }
}

impl Inner {
    pub(super) fn take(&self, size: usize, align: usize) -> Result<usize, PoolError> {
        let _held = Allocating::take();
        // SAFETY: the allocator lock is held.
        let free = unsafe { &mut *self.free.get() };
        for i in 0..free.len() {
            let (start, len) = free[i];
            let off = (start + align - 1) & !(align - 1);
            if off + size > start + len {
                continue;
            }
            let end = off + size;
            let after = (end, start + len - end);
            let before = (start, off - start);
            free.remove(i);
            if after.1 > 0 {
                free.insert(i, after);
            }
            if before.1 > 0 {
                free.insert(i, before);
            }
            return Ok(off);
        }
        Err(PoolError::Exhausted)
    }

    fn give_back(&self, off: usize, size: usize) {
        let _held = Allocating::take();
        // SAFETY: the allocator lock is held.
        let free = unsafe { &mut *self.free.get() };
        let at = free.partition_point(|&(start, _)| start < off);
        free.insert(at, (off, size));
        // Coalesce with the neighbours.
        if at + 1 < free.len() && free[at].0 + free[at].1 == free[at + 1].0 {
            free[at].1 += free[at + 1].1;
            free.remove(at + 1);
        }
        if at > 0 && free[at - 1].0 + free[at - 1].1 == free[at].0 {
            free[at - 1].1 += free[at].1;
            free.remove(at);
        }
    }

    /// Instance `slot` of the object at `off`.
    #[inline]
    fn at(&self, off: usize, slot: usize) -> *mut u8 {
        debug_assert!(slot < self.slots && off < self.stride);
        // SAFETY: inside the mapping: `slot < slots`, `off < stride`.
        unsafe { self.base.as_ptr().add(slot * self.stride + off) }
    }
}

/// Size and alignment of an object's instance.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    pub(crate) size: usize,
    pub(crate) align: usize,
}

impl Layout {
    pub(super) fn of<T>() -> Self {
        Layout {
            size: core::mem::size_of::<T>(),
            align: core::mem::align_of::<T>(),
        }
    }
}

/// How a slot's instance gets its first value.
pub(crate) enum Init {
    /// Copied from these bytes (the C form).
    Bytes(Box<[u8]>),
    /// Written by the owner's closure (the Rust form).
    Closure,
}

/// An object's range in the slots and its per-slot states; shared by
/// [`PerCpuBox`](super::PerCpuBox) and the C handle.
pub(crate) struct RawObject {
    pool: Arc<Inner>,
    /// Offset of the object in every slot.
    off: usize,
    layout: Layout,
    /// One state word per slot for lazily initialised objects, `None` for
    /// zeroed ones (every slot is ready).
    states: Option<Box<[StaticAtomicUsize]>>,
    bytes: Option<Box<[u8]>>,
}

impl RawObject {
    pub(crate) fn new(
        pool: &PerCpuPool,
        layout: Layout,
        init: Option<Init>,
    ) -> Result<Self, PoolError> {
        let inner = &pool.inner;
        if layout.size > inner.stride
            || !layout.align.is_power_of_two()
            || layout.align > page_size()
        {
            return Err(PoolError::BadLayout);
        }
        // A zero-sized object still gets a distinct byte.
        let off = inner.take(layout.size.max(1), layout.align)?;
        let (states, bytes) = match init {
            None => (None, None),
            Some(init) => {
                let states = (0..inner.slots)
                    .map(|_| StaticAtomicUsize::new(0))
                    .collect();
                let bytes = match init {
                    Init::Bytes(b) => Some(b),
                    Init::Closure => None,
                };
                (Some(states), bytes)
            }
        };
        Ok(RawObject {
            pool: Arc::clone(inner),
            off,
            layout,
            states,
            bytes,
        })
    }

    #[inline]
    pub(crate) fn slots(&self) -> usize {
        self.pool.slots
    }

    #[inline]
    pub(crate) fn stride(&self) -> usize {
        self.pool.stride
    }

    #[inline]
    pub(crate) fn index(&self) -> Index {
        self.pool.index
    }

    /// Instance 0.
    #[inline]
    pub(crate) fn base(&self) -> *mut u8 {
        self.pool.at(self.off, 0)
    }

    /// The state words (null for a zeroed object): the C accessor reads
    /// them.
    pub(crate) fn states_ptr(&self) -> *const usize {
        self.states
            .as_ref()
            .map_or(core::ptr::null(), |s| s.as_ptr().cast())
    }

    /// Whether slot `slot` holds a value.
    #[inline]
    pub(crate) fn is_ready(&self, slot: usize) -> bool {
        match &self.states {
            None => true,
            // `Acquire` pairs with the `Release` that published the value.
            Some(states) => states[slot].load(Ordering::Acquire) == READY,
        }
    }

    /// Instance `slot`, initialised first if it is not yet (with `write`,
    /// or from the prototype bytes when `write` is `None`); `None` for a
    /// slot out of range.
    #[inline]
    pub(crate) fn instance(
        &self,
        slot: usize,
        write: Option<&dyn Fn(*mut u8, usize)>,
    ) -> Option<*mut u8> {
        if slot >= self.pool.slots {
            return None;
        }
        let ptr = self.pool.at(self.off, slot);
        if let Some(states) = &self.states {
            let state = &states[slot];
            // `Acquire` pairs with the `Release` that published the value.
            if state.load(Ordering::Acquire) != READY {
                self.initialise(state, ptr, slot, write);
            }
        }
        Some(ptr)
    }

    #[cold]
    fn initialise(
        &self,
        state: &StaticAtomicUsize,
        ptr: *mut u8,
        slot: usize,
        write: Option<&dyn Fn(*mut u8, usize)>,
    ) {
        let mut spins = 0;
        loop {
            let now = state.load(Ordering::Acquire);
            let busy = busy_now();
            if now == READY {
                return;
            }
            if now == busy {
                // Another live thread initialises it.
                backoff(&mut spins);
                continue;
            }
            // Free, or busy from before a fork (no live holder).
            let _blocked = SignalsBlocked::new();
            if state
                .compare_exchange(now, busy, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
            /// Leaves the slot free again if the initialiser unwinds.
            struct Undo<'a>(&'a StaticAtomicUsize);
            impl Drop for Undo<'_> {
                fn drop(&mut self) {
                    // The pool's invariant holds again only once the
                    // owner frees the object (it clears every slot that
                    // is not READY too, see `Drop`).
                    self.0.store(0, Ordering::Release);
                }
            }
            let undo = Undo(state);
            match (write, &self.bytes) {
                (Some(write), _) => write(ptr, slot),
                (None, Some(bytes)) => {
                    // SAFETY: `ptr` is this slot's instance, `layout.size`
                    // bytes inside the mapping; no one else writes it while
                    // the state is busy.
                    unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr, bytes.len()) }
                }
                (None, None) => {}
            }
            core::mem::forget(undo);
            // `Release` publishes the value to every later accessor.
            state.store(READY, Ordering::Release);
            return;
        }
    }
}

impl Drop for RawObject {
    fn drop(&mut self) {
        let size = self.layout.size.max(1);
        for slot in 0..self.pool.slots {
            // Slots of a lazy object that never got a value were never
            // written (or a panicking initialiser may have written some):
            // those with state 0 and a zeroed object's every slot are
            // checked; writes only where a byte is not zero.
            let ptr = self.pool.at(self.off, slot);
            // SAFETY: `size` bytes of the slot, inside the mapping; no
            // instance is in use (the owner is being dropped).
            let bytes = unsafe { core::slice::from_raw_parts_mut(ptr, size) };
            if bytes.iter().any(|&b| b != 0) {
                bytes.fill(0);
            }
        }
        self.pool.give_back(self.off, size);
    }
}
