//! `PerCpuLock`: a lock per CPU, acquired inside a critical section.

use core::cell::UnsafeCell;
use core::fmt;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};

use super::fence::{Busy, Fence, Fenced};
use super::{rseq, ByCpu, ByMmCid, IndexKind, PerCpu};
use crate::cs::Outcome;
use crate::sync::{backoff, AtomicUsize, Ordering, StaticAtomicUsize};

#[repr(C)]
struct Slot<T> {
    /// The holder's thread pointer ([`holder_word`]) while a thread holds
    /// the slot through a critical section, else 0. Set only by the
    /// section's commit (compare 0, then store, on this slot's CPU, with
    /// the fence seen free); cleared by the holder with a `Release` store,
    /// which pairs with the section's load (plain loads are acquire loads
    /// on x86) or the fence holder's `Acquire` load. Holding the thread
    /// pointer, the word also tells a relock by the holder itself, with no
    /// store of its own.
    lock: AtomicUsize,
    /// Held by a thread on the fence path, and by the guard it hands out
    /// (see `fence.rs`).
    fence: Fence,
    /// The thread pointer of the thread holding a guard taken through the
    /// fence, or 0 (a section's guard is told by `lock` itself). Written by
    /// that holder only (after it acquires, and back to 0 before it
    /// releases), read by a thread that finds the slot taken, to tell a
    /// relock by the holder itself (a certain deadlock: it panics instead).
    /// `Relaxed`: a thread reads its own last write, or another thread's
    /// pointer, which never equals its own. Always 0 under loom, whose
    /// model threads share one stand-in thread pointer.
    holder: StaticAtomicUsize,
    /// Accessed only by the holder of `lock` or of `fence`.
    value: UnsafeCell<T>,
}

// SAFETY: the lock word first, its fence next (asserted below).
unsafe impl<T> Fenced for Slot<T> {
    fn word(&self) -> &AtomicUsize {
        &self.lock
    }
    fn fence(&self) -> &Fence {
        &self.fence
    }
}

// The lock's sections read the fence at a fixed offset from the lock word.
#[cfg(not(restartable_loom))]
const _: () = assert!(
    core::mem::offset_of!(Slot<u8>, lock) == 0
        && core::mem::offset_of!(Slot<u8>, fence) == crate::cs::FENCE_OFFSET
);

impl<T> Slot<T> {
    /// Panics if the calling thread holds a guard on this slot: waiting for
    /// itself would never end.
    #[inline]
    fn check_not_held_by_me(&self, i: usize) {
        let me = me();
        if me != 0
            && (self.lock.load(Ordering::Relaxed) == me
                || self.holder.load(Ordering::Relaxed) == me)
        {
            relock_panic(i);
        }
    }

    /// Drops a guard taken through the fence.
    #[inline(never)]
    fn release_fence(&self) {
        if me() != 0 {
            // Before the release, so the next holder's note comes after it.
            self.holder.store(0, Ordering::Relaxed);
        }
        self.fence.release_user();
    }
}

/// The calling thread's identity for the relock check (0: not checked).
#[inline(always)]
fn me() -> usize {
    if cfg!(restartable_loom) {
        0
    } else {
        crate::arch::thread_pointer()
    }
}

/// What a section stores in `lock`: [`me`], the thread pointer (never 0),
/// or 1 under loom, where `me` is 0.
#[inline(always)]
fn holder_word() -> usize {
    if cfg!(restartable_loom) {
        1
    } else {
        me()
    }
}

#[cold]
#[inline(never)]
fn relock_panic(i: usize) -> ! {
    panic!(
        "PerCpuLock: this thread already holds a guard on slot {i}; the lock is not \
         re-entrant (drop the first guard before locking the slot again)"
    )
}

/// One `T` per CPU, each behind a lock that a thread on that CPU takes
/// without an atomic instruction.
///
/// [`lock`](Self::lock) locks the slot of the CPU the thread runs on; the
/// guard gives `&mut T`. The holder may be preempted or migrate while it
/// holds the guard — the lock stays correct; only the acquisition is per-CPU.
/// [`lock_slot`](Self::lock_slot) locks any slot (slower: the fallback path).
///
/// The type parameter says how slots are indexed, fixed at compile time so
/// that `lock` has no branch on it: [`ByCpu`] (the default, from
/// [`new`](PerCpuLock::new)) or [`ByMmCid`] (from
/// [`new_by_mm_cid`](PerCpuLock::new_by_mm_cid)).
///
/// # Waiting, and not re-entrant
///
/// A thread that finds its slot taken spins briefly, then yields, then
/// sleeps in growing steps (up to 1 ms): a guard held for long costs its
/// waiters almost no CPU, and hands over within about a millisecond.
/// [`try_lock`](Self::try_lock) and [`try_lock_slot`](Self::try_lock_slot)
/// never wait.
///
/// The lock is **not re-entrant**: a thread that holds a guard on a slot
/// and locks the same slot again would wait for itself forever. The lock
/// notices (one thread-pointer compare, made only when the slot is taken)
/// and panics with a message saying so. Locking the *current* CPU's slot
/// while holding a guard on another slot is allowed (the thread may have
/// migrated), but two guards on one CPU's slot are not: drop a guard
/// before locking again, or use [`try_lock`](Self::try_lock).
///
/// # Signal handlers
///
/// A signal handler may lock any slot, in every mode: the library's own
/// steps never make it wait for the code it interrupted (a section aborts;
/// the short regions in which a fallback thread holds a slot's fence run
/// with signals blocked). What deadlocks is what deadlocks with any lock: a handler
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
pub struct PerCpuLock<T, I: IndexKind = ByCpu> {
    slots: PerCpu<Slot<T>>,
    _index: PhantomData<fn() -> I>,
}

// SAFETY: the lock hands out `&mut T` to one holder at a time, possibly on
// another thread than the one that created it: `T: Send` suffices.
unsafe impl<T: Send, I: IndexKind> Sync for PerCpuLock<T, I> {}
// SAFETY: moving the lock moves the `T`s.
unsafe impl<T: Send, I: IndexKind> Send for PerCpuLock<T, I> {}

/// How long `lock_slot` waits for a section holder with the fence held
/// (and signals blocked) before it lets go and waits without it.
const SPINS_HOLDING_FENCE: u32 = if cfg!(restartable_loom) { 1 } else { 1000 };

/// Exclusive access to one slot of a [`PerCpuLock`]; unlocks on drop.
///
/// # Examples
/// ```
/// let lock = restartable::PerCpuLock::new(|_| Vec::new());
/// {
///     let mut guard = lock.lock(); // derefs to the slot's value
///     guard.push(1);
/// } // unlocked here
/// assert_eq!(lock.into_inner().concat(), [1]);
/// ```
#[must_use = "the slot is unlocked when the guard is dropped"]
pub struct PerCpuLockGuard<'a, T> {
    slot: &'a Slot<T>,
    /// The slot's index, with [`THROUGH_FENCE`] set for a guard that holds
    /// the fence (else a section set `lock`). Two words, so that a guard
    /// travels in registers; and where the guard comes from a section the
    /// compiler sees the flag clear, so that the drop is one store.
    index: usize,
}

/// The flag of [`PerCpuLockGuard::index`] for a guard holding the fence
/// (slot indices are below 2^31).
const THROUGH_FENCE: usize = 1 << (usize::BITS - 1);

impl<T> PerCpuLock<T, ByCpu> {
    /// One slot per possible CPU, built by `init(cpu)`.
    ///
    /// # Examples
    /// ```
    /// let lock = restartable::PerCpuLock::new(|cpu| cpu * 10);
    /// assert_eq!(*lock.lock_slot(1 % lock.len()), (1 % lock.len()) * 10);
    /// ```
    pub fn new(init: impl FnMut(usize) -> T) -> Self {
        Self::build(init)
    }
}

impl<T> PerCpuLock<T, ByMmCid> {
    /// One slot per concurrency id (`mm_cid`), built by `init(i)`: a
    /// process with few threads touches only the first few slots. Where
    /// the kernel has no `mm_cid` (before 6.3) the slots are taken by CPU.
    ///
    /// # Examples
    /// ```
    /// use restartable::PerCpuLock;
    /// let lock = PerCpuLock::new_by_mm_cid(|_| 0u64);
    /// *lock.lock() += 1;
    /// assert_eq!(lock.into_inner().iter().sum::<u64>(), 1);
    /// ```
    pub fn new_by_mm_cid(init: impl FnMut(usize) -> T) -> Self {
        Self::build(init)
    }
}

impl<T, I: IndexKind> PerCpuLock<T, I> {
    fn build(mut init: impl FnMut(usize) -> T) -> Self {
        PerCpuLock {
            slots: PerCpu::with_index(I::INDEX, |i| Slot {
                lock: AtomicUsize::new(0),
                fence: Fence::new(),
                holder: StaticAtomicUsize::new(0),
                value: UnsafeCell::new(init(i)),
            }),
            _index: PhantomData,
        }
    }

    /// The number of slots (one `T` each), the same as
    /// [`slot_count`](Self::slot_count).
    ///
    /// # Examples
    /// ```
    /// let lock = restartable::PerCpuLock::new(|_| ());
    /// assert_eq!(lock.len(), restartable::possible_cpus());
    /// ```
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// The number of slots (the same name on [`PerCpu`] and
    /// [`PerCpuStack`](crate::PerCpuStack)).
    ///
    /// # Examples
    /// ```
    /// let lock = restartable::PerCpuLock::new(|_| ());
    /// assert_eq!(lock.slot_count(), lock.len());
    /// ```
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// Whether the lock holds no `T`: always false, as there is at least
    /// one slot (`is_empty` means "holds no value" on every per-CPU type).
    ///
    /// # Examples
    /// ```
    /// assert!(!restartable::PerCpuLock::new(|_| 0).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Locks the slot of the CPU the thread runs on, waiting if needed.
    ///
    /// # Panics
    /// If the calling thread already holds a guard on that slot (the lock
    /// is not re-entrant; see the type's docs).
    ///
    /// # Examples
    /// ```
    /// let queues = restartable::PerCpuLock::new(|_| Vec::new());
    /// let mut queue = queues.lock();
    /// queue.push("job");
    /// println!("queued on slot {}", queue.slot());
    /// ```
    #[inline]
    pub fn lock(&self) -> PerCpuLockGuard<'_, T> {
        match self.lock_here() {
            Some(guard) => guard,
            None => self.lock_waiting(),
        }
    }

    /// One section on the current CPU's slot: the guard if it committed.
    /// The section reads the CPU itself (so it needs no CPU compare), finds
    /// the slot, checks its fence and takes it. No registration, no wait
    /// and no fallback, so that everything around the section stays in the
    /// caller's registers; any other outcome (taken, aborted, not
    /// registered, fence path) is left to the callers' cold paths, which
    /// start over.
    #[inline(always)]
    fn lock_here(&self) -> Option<PerCpuLockGuard<'_, T>> {
        let (raw, cpu) = rseq::try_lock_here(I::INDEX, &self.slots, holder_word());
        if raw == 0 {
            return Some(PerCpuLockGuard {
                // SAFETY: a committed section found `cpu` in range.
                slot: unsafe { self.slots.get_unchecked(cpu as usize) },
                index: cpu as usize,
            });
        }
        rseq::outcome(raw); // notes an abort
        None
    }

    /// [`lock`](Self::lock) after its first section did not commit.
    #[cold]
    #[inline(never)]
    fn lock_waiting(&self) -> PerCpuLockGuard<'_, T> {
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
            let raw = unsafe { rseq::try_lock(index, &slot.lock, &slot.fence, cpu, holder_word()) };
            match rseq::outcome(raw) {
                Outcome::Committed => {
                    return PerCpuLockGuard {
                        slot,
                        index: cpu as usize,
                    }
                }
                // A fence no live thread holds (a fork child's view of one
                // held at the fork) never opens by waiting: take it over.
                Outcome::CompareFailed if slot.fence.is_stale() => {
                    return self.lock_slot(cpu as usize)
                }
                Outcome::CompareFailed => {
                    slot.check_not_held_by_me(cpu as usize);
                    backoff(&mut spins)
                }
                Outcome::Aborted => crate::sync::spin_hint(),
            }
        }
    }

    /// Locks the slot of the CPU the thread runs on if it is free; never
    /// waits. `None` if another guard holds it (or a thread on the fallback
    /// path is taking it), including a guard of the calling thread.
    ///
    /// # Examples
    /// ```
    /// let lock = restartable::PerCpuLock::new(|_| 0u32);
    /// if let Some(mut slot) = lock.try_lock() {
    ///     *slot += 1;
    /// }
    /// let total: u32 = (0..lock.len()).map(|i| *lock.lock_slot(i)).sum();
    /// assert!(total <= 1);
    /// ```
    #[inline]
    pub fn try_lock(&self) -> Option<PerCpuLockGuard<'_, T>> {
        match self.lock_here() {
            Some(guard) => Some(guard),
            None => self.try_lock_again(),
        }
    }

    /// [`try_lock`](Self::try_lock) after its first section did not commit.
    #[cold]
    #[inline(never)]
    fn try_lock_again(&self) -> Option<PerCpuLockGuard<'_, T>> {
        let index = self.slots.index();
        loop {
            let Some(cpu) = rseq::fenced_slot(index) else {
                return self.try_lock_slot(self.slots.fallback_index());
            };
            let Some(slot) = self.slots.get(cpu as usize) else {
                return self.try_lock_slot(self.slots.fallback_index());
            };
            // SAFETY: as in `lock_here`.
            let raw = unsafe { rseq::try_lock(index, &slot.lock, &slot.fence, cpu, holder_word()) };
            match rseq::outcome(raw) {
                Outcome::Committed => {
                    return Some(PerCpuLockGuard {
                        slot,
                        index: cpu as usize,
                    })
                }
                Outcome::CompareFailed if slot.fence.is_stale() => {
                    return self.try_lock_slot(cpu as usize)
                }
                Outcome::CompareFailed => return None,
                // Preempted, migrated or signalled: the slot may be free.
                Outcome::Aborted => crate::sync::spin_hint(),
            }
        }
    }

    /// Locks slot `i` from any CPU, through the fallback path.
    ///
    /// # Panics
    /// If `i >= self.len()`, or if the calling thread already holds a guard
    /// on slot `i` (the lock is not re-entrant).
    ///
    /// # Examples
    /// ```
    /// let lock = restartable::PerCpuLock::new(|_| 0u64);
    /// for i in 0..lock.len() {
    ///     *lock.lock_slot(i) += 1;
    /// }
    /// assert_eq!(lock.into_inner().iter().sum::<u64>(), restartable::possible_cpus() as u64);
    /// ```
    pub fn lock_slot(&self, i: usize) -> PerCpuLockGuard<'_, T> {
        let slot = self.slots.get(i).expect("slot index out of range");
        slot.check_not_held_by_me(i);
        if !super::drain::sections_may_run() {
            // No section ever takes `lock`: the fence alone excludes.
            slot.fence.take_for_user();
            return PerCpuLockGuard::through_fence(slot, i);
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
                return PerCpuLockGuard::through_fence(slot, i);
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

    /// Locks slot `i` from any CPU if it is free; never waits (beyond the
    /// few instructions of a fallback thread that is taking it). `None` if a
    /// guard holds it, including one of the calling thread.
    ///
    /// # Panics
    /// If `i >= self.len()`.
    ///
    /// # Examples
    /// ```
    /// let lock = restartable::PerCpuLock::new(|_| 0u8);
    /// let held = lock.lock_slot(0);
    /// assert!(lock.try_lock_slot(0).is_none()); // held, even by this thread
    /// drop(held);
    /// assert!(lock.try_lock_slot(0).is_some());
    /// ```
    pub fn try_lock_slot(&self, i: usize) -> Option<PerCpuLockGuard<'_, T>> {
        let slot = self.slots.get(i).expect("slot index out of range");
        if !super::drain::sections_may_run() {
            loop {
                match slot.fence.try_take_for_user() {
                    Ok(()) => return Some(PerCpuLockGuard::through_fence(slot, i)),
                    Err(Busy::Held) => return None,
                    Err(Busy::Raced) => {}
                }
            }
        }
        let region = loop {
            match slot.fence.try_enter(self.slots.index(), i) {
                Ok(region) => break region,
                Err(Busy::Held) => return None,
                Err(Busy::Raced) => {}
            }
        };
        // `Acquire` pairs with a section holder's `Release` unlock.
        if slot.lock.load(Ordering::Acquire) != 0 {
            region.leave();
            return None;
        }
        region.hand_to_user();
        Some(PerCpuLockGuard::through_fence(slot, i))
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
    ///
    /// # Examples
    /// ```
    /// let mut lock = restartable::PerCpuLock::new(|_| 1u32);
    /// lock.iter_mut().for_each(|v| *v *= 2);
    /// assert!(lock.into_inner().iter().all(|&v| v == 2));
    /// ```
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.slots.iter_mut().map(|s| s.value.get_mut())
    }

    /// The values, in slot order.
    ///
    /// # Examples
    /// ```
    /// let lock = restartable::PerCpuLock::new(|cpu| cpu);
    /// assert_eq!(lock.into_inner(), (0..restartable::possible_cpus()).collect::<Vec<_>>());
    /// ```
    pub fn into_inner(self) -> Vec<T> {
        Vec::from(self.slots.into_slots())
            .into_iter()
            .map(|s| s.0.value.into_inner())
            .collect()
    }
}

impl<'a, T> PerCpuLockGuard<'a, T> {
    /// A guard for a slot just taken through the fence; notes the holder
    /// (a section's holder is noted by the `lock` word it stored).
    fn through_fence(slot: &'a Slot<T>, index: usize) -> Self {
        let me = me();
        if me != 0 {
            slot.holder.store(me, Ordering::Relaxed);
        }
        PerCpuLockGuard {
            slot,
            index: index | THROUGH_FENCE,
        }
    }

    /// The slot this guard holds.
    ///
    /// # Examples
    /// ```
    /// let lock = restartable::PerCpuLock::new(|_| ());
    /// assert_eq!(lock.lock_slot(0).slot(), 0);
    /// ```
    pub fn slot(&self) -> usize {
        self.index & !THROUGH_FENCE
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
    #[inline]
    fn drop(&mut self) {
        if self.index & THROUGH_FENCE == 0 {
            // Held through a section. `Release` publishes the holder's
            // writes to the next holder.
            self.slot.lock.store(0, Ordering::Release);
        } else {
            self.slot.release_fence();
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for PerCpuLockGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PerCpuLockGuard")
            .field("slot", &self.slot())
            .field("value", &**self)
            .finish()
    }
}

impl<T, I: IndexKind> fmt::Debug for PerCpuLock<T, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PerCpuLock")
            .field("index", &self.slots.index())
            .field("slots", &self.slots.len())
            .finish()
    }
}
