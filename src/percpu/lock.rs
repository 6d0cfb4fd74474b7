//! `PerCpuLock`: a lock per CPU, acquired inside a critical section.

use core::cell::UnsafeCell;
use core::fmt;
use core::ops::{Deref, DerefMut};

use super::fence::Fence;
use super::{rseq, Index, PerCpu};
use crate::cs::Outcome;
use crate::sync::{backoff, AtomicUsize, Ordering};

#[repr(C)]
struct Slot<T> {
    /// 1 while a thread holds the slot through a critical section. Set only
    /// by the section's commit (compare 0, then store 1, on this slot's CPU,
    /// with the fence seen free); cleared by the holder with a `Release`
    /// store, which pairs with the section's load (plain loads are acquire
    /// loads on x86) or the fence holder's `Acquire` load.
    lock: AtomicUsize,
    /// Held by a thread on the fence path, and by the guard it hands out
    /// (see `fence.rs`).
    fence: Fence,
    /// Accessed only by the holder of `lock` or of `fence`.
    value: UnsafeCell<T>,
}

/// One `T` per CPU, each behind a lock that a thread on that CPU takes
/// without an atomic instruction.
///
/// [`lock`](Self::lock) locks the slot of the CPU the thread runs on; the
/// guard gives `&mut T`. The holder may be preempted or migrate while it
/// holds the guard — the lock stays correct; only the acquisition is per-CPU.
/// [`lock_slot`](Self::lock_slot) locks any slot (slower: the fallback path).
///
/// # Signal handlers
///
/// A signal handler may lock any slot, in every mode: the library's own
/// steps never make it wait for the code it interrupted (a section aborts;
/// the short regions that hold a fence run with signals blocked, see
/// `fence.rs`). What deadlocks is what deadlocks with any lock: a handler
/// that locks a slot while the code it interrupted *holds a guard* on that
/// slot waits forever. Code that holds a guard on a slot some handler may
/// lock must block those signals from before it locks until the guard is
/// dropped.
///
/// # Fork
///
/// A `fork` child can lock every slot, even one another thread of the
/// parent was in the middle of locking at the fork. A guard that another
/// thread *held* at the fork stays held in the child, where no thread will
/// drop it: as with any lock, fork only where no other thread holds one,
/// or never touch those slots in the child.
///
/// # Examples
/// ```
/// use restartable::PerCpuLock;
///
/// let caches = PerCpuLock::new(|_cpu| Vec::<u32>::new());
/// caches.lock().push(7);
/// let total: usize = (0..caches.len()).map(|i| caches.lock_slot(i).len()).sum();
/// assert_eq!(total, 1);
/// ```
pub struct PerCpuLock<T> {
    slots: PerCpu<Slot<T>>,
}

// SAFETY: the lock hands out `&mut T` to one holder at a time, possibly on
// another thread than the one that created it: `T: Send` suffices.
unsafe impl<T: Send> Sync for PerCpuLock<T> {}
// SAFETY: moving the lock moves the `T`s.
unsafe impl<T: Send> Send for PerCpuLock<T> {}

/// How a guard holds its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// `lock` set by a section; the guard clears it.
    Section,
    /// The fence, handed to the guard; the guard releases it.
    Fence,
}

/// How long `lock_slot` waits for a section holder with the fence held
/// (and signals blocked) before it lets go and waits without it.
const SPINS_HOLDING_FENCE: u32 = if cfg!(restartable_loom) { 1 } else { 1000 };

/// Exclusive access to one slot of a [`PerCpuLock`]; unlocks on drop.
#[must_use = "the slot is unlocked when the guard is dropped"]
pub struct PerCpuLockGuard<'a, T> {
    slot: &'a Slot<T>,
    index: usize,
    via: Via,
}

impl<T> PerCpuLock<T> {
    /// One slot per possible CPU, built by `init(cpu)`.
    pub fn new(init: impl FnMut(usize) -> T) -> Self {
        Self::with_index(Index::Cpu, init)
    }

    /// One slot per CPU or per concurrency id, built by `init(i)`.
    pub fn with_index(index: Index, mut init: impl FnMut(usize) -> T) -> Self {
        PerCpuLock {
            slots: PerCpu::with_index(index, |i| Slot {
                lock: AtomicUsize::new(0),
                fence: Fence::default(),
                value: UnsafeCell::new(init(i)),
            }),
        }
    }

    /// The number of slots.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Always false.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Locks the slot of the CPU the thread runs on, waiting if needed.
    pub fn lock(&self) -> PerCpuLockGuard<'_, T> {
        let index = self.slots.index();
        let mut spins = 0;
        loop {
            let Some(cpu) = rseq::fenced_slot(index) else {
                return self.lock_slot(self.slots.fallback_index());
            };
            let Some(slot) = self.slots.get(cpu as usize) else {
                return self.lock_slot(self.slots.fallback_index());
            };
            // SAFETY: both words belong to this live slot; `cpu` is the
            // index the section checks against the area.
            let outcome = unsafe { rseq::try_lock(index, &slot.lock, &slot.fence, cpu) };
            match outcome {
                Outcome::Committed => {
                    return PerCpuLockGuard {
                        slot,
                        index: cpu as usize,
                        via: Via::Section,
                    }
                }
                // A fence no live thread holds (a fork child's view of one
                // held at the fork) never opens by waiting: take it over.
                Outcome::CompareFailed if slot.fence.is_stale() => {
                    return self.lock_slot(cpu as usize)
                }
                Outcome::CompareFailed => backoff(&mut spins),
                Outcome::Aborted => crate::sync::spin_hint(),
            }
        }
    }

    /// Locks slot `i` from any CPU, through the fallback path.
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn lock_slot(&self, i: usize) -> PerCpuLockGuard<'_, T> {
        let slot = self.slots.get(i).expect("slot index out of range");
        if !super::drain::sections_may_run() {
            // No section ever takes `lock`: the fence alone excludes.
            slot.fence.take_for_user();
            return PerCpuLockGuard {
                slot,
                index: i,
                via: Via::Fence,
            };
        }
        loop {
            let region = slot.fence.enter(self.slots.index(), i);
            // No section can take `lock` now; wait a little for a section
            // holder. `Acquire` pairs with its `Release` unlock.
            let mut spins = 0;
            while slot.lock.load(Ordering::Acquire) != 0 && spins < SPINS_HOLDING_FENCE {
                crate::sync::spin_hint();
                spins += 1;
            }
            if slot.lock.load(Ordering::Acquire) == 0 {
                region.hand_to_user();
                return PerCpuLockGuard {
                    slot,
                    index: i,
                    via: Via::Fence,
                };
            }
            // A guard may be held for long: wait for it with the fence
            // free and the caller's signal mask, then try again.
            region.leave();
            let mut spins = 0;
            while slot.lock.load(Ordering::Relaxed) != 0 {
                backoff(&mut spins);
            }
        }
    }

    /// Loom models only: makes the simulated `membarrier` fail from now on,
    /// as a seccomp filter installed while the process runs would, so that
    /// a model can switch the lock and the stack off sections mid-run.
    #[cfg(restartable_loom)]
    #[doc(hidden)]
    pub fn refuse_membarrier() {
        super::rseq::refuse_membarrier();
    }

    /// Every value, through `&mut self` (no locking needed).
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.slots.iter_mut().map(|s| s.value.get_mut())
    }

    /// The values, in slot order.
    pub fn into_inner(self) -> Vec<T> {
        Vec::from(self.slots.into_slots())
            .into_iter()
            .map(|s| s.0.value.into_inner())
            .collect()
    }
}

impl<T> PerCpuLockGuard<'_, T> {
    /// The slot this guard holds.
    pub fn slot(&self) -> usize {
        self.index
    }
}

impl<T> Deref for PerCpuLockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the slot exclusively (see `Slot::value`).
        unsafe { &*self.slot.value.get() }
    }
}

impl<T> DerefMut for PerCpuLockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the slot exclusively (see `Slot::value`).
        unsafe { &mut *self.slot.value.get() }
    }
}

impl<T> Drop for PerCpuLockGuard<'_, T> {
    fn drop(&mut self) {
        match self.via {
            // Publishes the holder's writes to the next holder.
            Via::Section => self.slot.lock.store(0, Ordering::Release),
            Via::Fence => self.slot.fence.release_user(),
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for PerCpuLockGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PerCpuLockGuard")
            .field("slot", &self.index)
            .field("value", &**self)
            .finish()
    }
}

impl<T> fmt::Debug for PerCpuLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PerCpuLock")
            .field("index", &self.slots.index())
            .field("slots", &self.slots.len())
            .finish()
    }
}
