//! Per-CPU data in safe Rust: [`PerCpu`], [`PerCpuCounter`], [`PerCpuLock`]
//! and [`PerCpuStack`].
//!
//! Every type keeps one cache-padded slot per possible CPU and updates the
//! slot of the CPU it runs on inside a restartable critical section: no
//! atomic read-modify-write on the fast path, and exact results under
//! preemption, migration and signals, because the kernel aborts a section
//! that is interrupted before its single commit store.
//!
//! Threads that cannot use rseq (the process is `Unavailable`, or another
//! library registered a different area for the thread) take fallbacks that
//! stay exact alongside rseq users of the same object:
//! - the counter gives each slot a second, atomic word that only fallback
//!   threads add to, and [`PerCpuCounter::sum`] adds both words;
//! - the lock and the stack give each slot a *fence* word. A fallback thread
//!   takes the fence with an atomic compare-exchange, then (if rseq is in
//!   use in the process) runs `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ)`
//!   so that every critical section in flight on that CPU is either
//!   committed or aborted, and every later one sees the fence and backs off.
//!   On kernels without that membarrier command (before Linux 5.10) every
//!   thread takes the fence path of the lock and the stack instead, and so
//!   does every thread from the moment `membarrier` starts failing (a
//!   seccomp filter installed later); see [`lock_sections_enabled`].
//!
//! # Signal handlers
//!
//! Every operation of every type may be called from a signal handler, on
//! the slot the interrupted code was working on, in every mode: a section
//! that a signal interrupts aborts, and the fallbacks' own short regions
//! that hold a fence run with signals blocked, so a handler never waits for
//! the code it interrupted. The one exception is the one every lock has: a
//! handler that locks a [`PerCpuLock`] slot on which the interrupted code
//! holds a guard waits forever (see [`PerCpuLock`]). [`PerCpuStack::push`]
//! allocates, so a handler that pushes needs an async-signal-safe global
//! allocator.
//!
//! # Fork
//!
//! A `fork` child can use every type and every slot, whatever the parent's
//! other threads were doing at the fork: a fence they held inside the
//! library is taken over by the first thread of the child that needs it.
//! Only a [`PerCpuLockGuard`] that another thread held at the fork stays
//! held in the child, as a lock would. (Children made with `clone(2)` or
//! `_Fork(3)`, which run no fork handlers, are not covered.)

#[cfg(not(restartable_loom))]
mod active;
pub(crate) mod counter;
mod drain;
mod fence;
mod lock;
pub(crate) mod pool;

#[cfg(not(restartable_loom))]
pub(crate) use fence::after_fork_in_child;
mod rseq;
mod stack;

#[cfg(not(restartable_loom))]
pub use active::ActiveTable;
pub use counter::PerCpuCounter;
pub use drain::lock_sections_enabled;
pub use lock::{PerCpuLock, PerCpuLockGuard};
pub use pool::{PerCpuBox, PerCpuPool, PoolError, Zeroable};
pub use stack::PerCpuStack;

#[cfg(restartable_loom)]
pub use rseq::run_as_fallback;

use core::fmt;
use core::ops::{Deref, DerefMut};

pub use crate::cs::Index;

mod sealed {
    pub trait Sealed {}
}

/// How a per-CPU type indexes its slots, chosen at compile time: by CPU
/// number ([`ByCpu`]) or by concurrency id ([`ByMmCid`]). The type's hot
/// path is compiled for the one field it reads, with no branch on the kind.
/// Sealed: these two are the only kinds.
///
/// # Examples
/// ```
/// use restartable::{ByCpu, ByMmCid, Index, IndexKind};
/// assert_eq!(ByCpu::INDEX, Index::Cpu);
/// assert_eq!(ByMmCid::INDEX, Index::MmCid);
/// ```
pub trait IndexKind: sealed::Sealed + Send + Sync + 'static {
    /// The field the critical sections read and check.
    const INDEX: Index;
}

/// Slots indexed by CPU number (`cpu_id`): see [`Index::Cpu`].
///
/// # Examples
/// ```
/// use restartable::{ByCpu, PerCpuCounter};
/// static HITS: PerCpuCounter<ByCpu> = PerCpuCounter::new();
/// HITS.add(2);
/// assert_eq!(HITS.sum(), 2);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ByCpu;

/// Slots indexed by concurrency id (`mm_cid`): see [`Index::MmCid`].
///
/// # Examples
/// ```
/// use restartable::{ByMmCid, PerCpuCounter};
/// static COMPACT: PerCpuCounter<ByMmCid> = PerCpuCounter::new_by_mm_cid();
/// COMPACT.add(1);
/// assert_eq!(COMPACT.sum(), 1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ByMmCid;

impl sealed::Sealed for ByCpu {}
impl sealed::Sealed for ByMmCid {}

impl IndexKind for ByCpu {
    const INDEX: Index = Index::Cpu;
}

impl IndexKind for ByMmCid {
    const INDEX: Index = Index::MmCid;
}

/// Pads and aligns a value to 128 bytes: two cache lines, because x86's
/// adjacent-line prefetcher pulls pairs of lines.
///
/// # Examples
/// ```
/// use restartable::CachePadded;
/// use std::sync::atomic::AtomicU64;
/// let counters = [CachePadded(AtomicU64::new(0)), CachePadded(AtomicU64::new(0))];
/// assert_eq!(std::mem::align_of_val(&counters[0]), 128);
/// assert_eq!(std::mem::size_of_val(&counters), 256); // never on one line
/// ```
#[derive(Default)]
#[repr(C, align(128))] // `C`: the value at offset 0, as the fast sections take it
pub struct CachePadded<T>(pub T);

impl<T> Deref for CachePadded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for CachePadded<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T: fmt::Debug> fmt::Debug for CachePadded<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One cache-padded `T` per possible CPU (or per concurrency id).
///
/// With [`Index::Cpu`] slot `i` belongs to CPU `i`. With [`Index::MmCid`]
/// slot `i` belongs to concurrency id `i`: the kernel hands out small, dense
/// ids (fewer than the process's threads and CPUs), so a process with few
/// threads touches only the first few slots — compact memory.
///
/// # Examples
/// ```
/// use restartable::PerCpu;
/// use std::sync::atomic::{AtomicU64, Ordering};
///
/// let hits = PerCpu::new(|_cpu| AtomicU64::new(0));
/// hits.current().fetch_add(1, Ordering::Relaxed);
/// let total: u64 = hits.iter().map(|h| h.load(Ordering::Relaxed)).sum();
/// assert_eq!(total, 1);
/// ```
pub struct PerCpu<T> {
    slots: Box<[CachePadded<T>]>,
    index: Index,
}

impl<T> PerCpu<T> {
    /// One slot per possible CPU, built by `init(cpu)`.
    ///
    /// # Examples
    /// ```
    /// let ids = restartable::PerCpu::new(|cpu| cpu);
    /// assert_eq!(ids.get(0), Some(&0));
    /// ```
    pub fn new(init: impl FnMut(usize) -> T) -> Self {
        Self::with_index(Index::Cpu, init)
    }

    /// One slot per possible concurrency id (`mm_cid`), built by `init(id)`.
    /// Falls back to CPU numbers where the kernel has no `mm_cid` (< 6.3).
    ///
    /// # Examples
    /// ```
    /// use restartable::{Index, PerCpu};
    /// let slots = PerCpu::new_by_mm_cid(|_| 0u8);
    /// // `Index::Cpu` where the kernel provides no concurrency id.
    /// assert!(matches!(slots.index(), Index::MmCid | Index::Cpu));
    /// ```
    pub fn new_by_mm_cid(init: impl FnMut(usize) -> T) -> Self {
        Self::with_index(Index::MmCid, init)
    }

    /// One slot per possible CPU or concurrency id, as `index` says.
    ///
    /// # Examples
    /// ```
    /// use restartable::{Index, PerCpu};
    /// let slots = PerCpu::with_index(Index::Cpu, |_| String::new());
    /// assert_eq!(slots.index(), Index::Cpu);
    /// ```
    pub fn with_index(index: Index, mut init: impl FnMut(usize) -> T) -> Self {
        let index = index.or_cpu();
        let slots = (0..crate::possible_cpus())
            .map(|i| CachePadded(init(i)))
            .collect();
        PerCpu { slots, index }
    }

    /// How slots are indexed: [`Index::MmCid`] only if asked for and the
    /// kernel provides concurrency ids.
    ///
    /// # Examples
    /// ```
    /// let slots = restartable::PerCpu::new(|_| ());
    /// assert_eq!(slots.index(), restartable::Index::Cpu);
    /// ```
    pub fn index(&self) -> Index {
        self.index
    }

    /// The number of slots (the number of possible CPUs), the same as
    /// [`slot_count`](Self::slot_count): a `PerCpu` holds one `T` per slot.
    ///
    /// # Examples
    /// ```
    /// let slots = restartable::PerCpu::new(|_| 0u64);
    /// assert_eq!(slots.len(), restartable::possible_cpus());
    /// ```
    #[inline]
    pub fn len(&self) -> usize {
        let len = self.slots.len();
        // SAFETY: `with_index` makes `possible_cpus()` slots, fewer than
        // 2^31. Telling the compiler lets a section that takes an index
        // checked against the length drop its own guard against values
        // that read as negative (`never_negative` in `cs`).
        unsafe { core::hint::assert_unchecked(len <= i32::MAX as usize) };
        len
    }

    /// The number of slots (the same name on [`PerCpuLock`] and
    /// [`PerCpuStack`]).
    ///
    /// # Examples
    /// ```
    /// let slots = restartable::PerCpu::new(|_| 0u64);
    /// assert_eq!(slots.slot_count(), slots.len());
    /// ```
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// Whether it holds no `T`: always false, as there is at least one CPU
    /// (`is_empty` means "holds no value" on every per-CPU type).
    ///
    /// # Examples
    /// ```
    /// assert!(!restartable::PerCpu::new(|_| 0u8).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Slot `i`, if it exists.
    ///
    /// # Examples
    /// ```
    /// let slots = restartable::PerCpu::new(|cpu| cpu as u32);
    /// assert_eq!(slots.get(0), Some(&0));
    /// assert_eq!(slots.get(slots.len()), None);
    /// ```
    #[inline]
    pub fn get(&self, i: usize) -> Option<&T> {
        // The bound through `len`, which the compiler knows is below 2^31.
        if i < self.len() {
            Some(&self.slots[i].0)
        } else {
            None
        }
    }

    /// Slot `i`, unchecked.
    ///
    /// # Safety
    /// - `i < self.len()`.
    #[inline(always)]
    pub(crate) unsafe fn get_unchecked(&self, i: usize) -> &T {
        // SAFETY: in range, as the caller says.
        unsafe { &self.slots.get_unchecked(i).0 }
    }

    /// Where the slots start, for sections that find a slot themselves
    /// (the per-CPU lock's and stack's fast paths): slot `i` is
    /// `size_of::<CachePadded<T>>()` bytes times `i` on (each `T` at the
    /// start of its `CachePadded`), and the slots' words that sections
    /// write are atomics.
    #[inline(always)]
    pub(crate) fn base(&self) -> *mut T {
        self.slots.as_ptr().cast_mut().cast()
    }

    /// The slots as the `cs` operations that find their slot themselves
    /// take them ([`cs::push_at_current`](crate::cs::push_at_current),
    /// [`cs::pop_at_current`](crate::cs::pop_at_current),
    /// [`cs::add_at_current_unchecked`](crate::cs::add_at_current_unchecked)):
    /// the address of slot 0's `T`, the bytes from one slot to the next,
    /// and the number of slots. Add a field's offset to the address to
    /// name that field in every slot. The words those operations write must
    /// be atomics (or otherwise in an `UnsafeCell`): they write through a
    /// shared `PerCpu`.
    ///
    /// # Examples
    /// ```
    /// use restartable::cs::{pop_at_current, push_at_current, Index, Outcome};
    /// use restartable::PerCpu;
    /// use std::sync::atomic::AtomicIsize;
    ///
    /// let heads = PerCpu::new(|_| AtomicIsize::new(0));
    /// let (base, stride, n) = heads.slot_array();
    /// let mut node = [0isize];
    /// // SAFETY: `n` slots of `stride` bytes, each starting with a head.
    /// while unsafe { push_at_current(Index::Cpu, base, stride, n, node.as_mut_ptr()) }
    ///     != Outcome::Committed
    /// {}
    /// let listed = heads.iter().filter(|h| h.load(std::sync::atomic::Ordering::Relaxed) != 0);
    /// assert_eq!(listed.count(), 1);
    /// ```
    #[inline]
    pub fn slot_array(&self) -> (*mut u8, usize, u32) {
        (
            self.base().cast(),
            core::mem::size_of::<CachePadded<T>>(),
            self.len() as u32,
        )
    }

    /// Slot `i`, mutably.
    ///
    /// # Examples
    /// ```
    /// let mut slots = restartable::PerCpu::new(|_| 0u32);
    /// *slots.get_mut(0).unwrap() = 7;
    /// assert_eq!(slots.get(0), Some(&7));
    /// ```
    pub fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.slots.get_mut(i).map(|s| &mut s.0)
    }

    /// The slot of the CPU (or concurrency id) the thread runs on now. A
    /// hint: the thread may migrate as soon as this returns, so the slot
    /// must be safe to share (atomics, or use [`PerCpuLock`]).
    ///
    /// # Examples
    /// ```
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// let hits = restartable::PerCpu::new(|_| AtomicU32::new(0));
    /// hits.current().fetch_add(1, Ordering::Relaxed);
    /// ```
    pub fn current(&self) -> &T {
        &self.slots[self.current_index()]
    }

    /// The index of the current slot (see [`PerCpu::current`]).
    ///
    /// # Examples
    /// ```
    /// let slots = restartable::PerCpu::new(|_| ());
    /// assert!(slots.current_index() < slots.len());
    /// ```
    pub fn current_index(&self) -> usize {
        let i = match self.index {
            Index::Cpu => crate::current_cpu() as usize,
            Index::MmCid => crate::mm_cid().unwrap_or_else(crate::current_cpu) as usize,
        };
        i.min(self.slots.len() - 1)
    }

    /// The slot a thread that cannot run critical sections uses now: the
    /// CPU from `sched_getcpu()` (or the concurrency id, if the area has
    /// one), clamped to the slots that exist.
    pub(crate) fn fallback_index(&self) -> usize {
        rseq::fallback_slot(self.index).min(self.slots.len() - 1)
    }

    /// Every slot, in index order.
    ///
    /// # Examples
    /// ```
    /// let slots = restartable::PerCpu::new(|cpu| cpu);
    /// assert!(slots.iter().enumerate().all(|(i, &v)| i == v));
    /// ```
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &T> {
        self.slots.iter().map(|s| &s.0)
    }

    /// Every slot, mutably.
    ///
    /// # Examples
    /// ```
    /// let mut slots = restartable::PerCpu::new(|_| 1u32);
    /// slots.iter_mut().for_each(|v| *v += 1);
    /// assert!(slots.iter().all(|&v| v == 2));
    /// ```
    pub fn iter_mut(&mut self) -> impl ExactSizeIterator<Item = &mut T> {
        self.slots.iter_mut().map(|s| &mut s.0)
    }
}

impl<T: fmt::Debug> fmt::Debug for PerCpu<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PerCpu")
            .field("index", &self.index)
            .field("slots", &self.slots)
            .finish()
    }
}

impl<T> PerCpu<T> {
    /// The slots, for consumers that take the values out.
    pub(crate) fn into_slots(self) -> Box<[CachePadded<T>]> {
        self.slots
    }
}
