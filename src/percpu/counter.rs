//! `PerCpuCounter`: add without atomics, sum exactly.

use core::fmt;
use core::marker::PhantomData;

use super::{rseq, ByCpu, ByMmCid, CachePadded, Index, IndexKind};
use crate::sync::{AtomicU64, Ordering, StaticAtomicPtr, StaticAtomicU32};

/// One slot of the counter.
#[derive(Debug, Default)]
#[repr(C)]
struct Slot {
    /// Added to only by critical sections running on this slot's CPU (the
    /// single commit is `add [slot], delta`); read by `sum` with `Relaxed`.
    /// Must stay at offset 0: the add section addresses the slot base.
    rseq: AtomicU64,
    /// Added to only with `fetch_add`, by threads that cannot run critical
    /// sections, so that they never race with the non-atomic adds above.
    atomic: AtomicU64,
    /// `rseq + atomic` as the last [`PerCpuCounter::reset`] read them: the
    /// slot counts from here. A reset cannot zero the words themselves (a
    /// store from another CPU would race with the sections' plain adds and
    /// could be undone by one), so it moves this baseline instead.
    base: AtomicU64,
}

impl Slot {
    /// Everything ever added to the slot (wrapping).
    fn total(&self) -> u64 {
        self.rseq
            .load(Ordering::Relaxed)
            .wrapping_add(self.atomic.load(Ordering::Relaxed))
    }

    /// The count since the last reset.
    fn count(&self) -> u64 {
        // `Acquire` pairs with the reset's `Release`: the words read below
        // are at least as new as those the baseline was taken from.
        let base = self.base.load(Ordering::Acquire);
        self.total().wrapping_sub(base)
    }
}

/// A counter split across CPUs: [`add`](Self::add) touches only the slot of
/// the current CPU, with no atomic instruction; [`sum`](Self::sum) adds all
/// slots.
///
/// Arithmetic wraps (as `u64`); `add` takes an `i64` so that negative deltas
/// subtract. `sum` is exact once writers are quiescent, and otherwise a value
/// the counter held at some point during the call, give or take adds that
/// race with it. [`reset`](Self::reset) loses nothing even while others add:
/// it returns what it cleared, and every concurrent add lands either in that
/// or in the count after it.
///
/// The type parameter says how slots are indexed, fixed at compile time so
/// that `add` has no branch on it: [`ByCpu`] (the default, one slot per
/// possible CPU) or [`ByMmCid`] (one per concurrency id, see
/// [`PerCpuCounter::new_by_mm_cid`]).
///
/// [`new`](Self::new) is a `const fn` and allocates nothing: the slots are
/// allocated on the first use, so a counter can be a `static`.
///
/// # Examples
/// ```
/// use restartable::PerCpuCounter;
/// use std::sync::Arc;
///
/// let counter = Arc::new(PerCpuCounter::new());
/// let workers: Vec<_> = (0..4)
///     .map(|_| {
///         let c = Arc::clone(&counter);
///         std::thread::spawn(move || (0..1000).for_each(|_| c.add(1)))
///     })
///     .collect();
/// workers.into_iter().for_each(|w| w.join().unwrap());
/// assert_eq!(counter.sum(), 4000);
/// ```
///
/// As a `static`:
/// ```
/// use restartable::PerCpuCounter;
///
/// static HITS: PerCpuCounter = PerCpuCounter::new();
/// HITS.add(2);
/// assert_eq!(HITS.sum(), 2);
/// ```
pub struct PerCpuCounter<I: IndexKind = ByCpu> {
    /// Slot 0 of the slot array: null until the first use allocates it,
    /// then set once (by a compare-exchange, so that one allocation wins)
    /// and freed by `Drop`.
    slots: StaticAtomicPtr<CachePadded<Slot>>,
    /// The number of slots the critical sections may index: 0 until
    /// `slots` is set, so that an add before that finds no slot in range
    /// and takes the cold path, which allocates; then the length of the
    /// array. Stored (`Release`) only after `slots` is set.
    len: StaticAtomicU32,
    _index: PhantomData<fn() -> I>,
}

/// Bytes from one slot to the next: a power of two the section's index
/// arithmetic relies on.
pub(crate) const STRIDE: usize = core::mem::size_of::<CachePadded<Slot>>();
const _: () = assert!(STRIDE.is_power_of_two());
/// `log2(STRIDE)`, which the C header's inline add takes as a constant
/// (`RESTARTABLE_COUNTER_STRIDE_SHIFT`).
pub(crate) const STRIDE_SHIFT: u32 = 7;
const _: () = assert!(STRIDE == 1 << STRIDE_SHIFT);

// SAFETY: the slot array is reached only through `&self` methods whose
// every access is atomic (or a critical section on a word only sections
// write); the pointer itself is an atomic.
unsafe impl<I: IndexKind> Send for PerCpuCounter<I> {}
// SAFETY: as for `Send`.
unsafe impl<I: IndexKind> Sync for PerCpuCounter<I> {}

impl PerCpuCounter<ByCpu> {
    /// A zeroed counter with one slot per possible CPU. Allocates nothing:
    /// the slots are allocated on first use.
    ///
    /// # Examples
    /// ```
    /// static REQUESTS: restartable::PerCpuCounter = restartable::PerCpuCounter::new();
    /// REQUESTS.incr();
    /// assert_eq!(REQUESTS.sum(), 1);
    /// ```
    pub const fn new() -> Self {
        Self::empty()
    }
}

impl PerCpuCounter<ByMmCid> {
    /// A zeroed counter with one slot per concurrency id (`mm_cid`): a
    /// process with few threads touches only the first few slots. Where the
    /// kernel has no `mm_cid` (before 6.3) the slots are indexed by CPU.
    ///
    /// # Examples
    /// ```
    /// let counter = restartable::PerCpuCounter::new_by_mm_cid();
    /// counter.add(3);
    /// assert_eq!(counter.sum(), 3);
    /// ```
    pub const fn new_by_mm_cid() -> Self {
        Self::empty()
    }
}

impl<I: IndexKind> PerCpuCounter<I> {
    const fn empty() -> Self {
        PerCpuCounter {
            slots: StaticAtomicPtr::new(core::ptr::null_mut()),
            len: StaticAtomicU32::new(0),
            _index: PhantomData,
        }
    }

    /// How this counter's slots are indexed: [`IndexKind::INDEX`], or
    /// [`Index::Cpu`] for a [`ByMmCid`] counter where the kernel has no
    /// `mm_cid`.
    fn effective_index() -> Index {
        I::INDEX.or_cpu()
    }

    /// The slot array, allocated now if no use did so before.
    fn slots(&self) -> &[CachePadded<Slot>] {
        // `Acquire`: pairs with the `AcqRel` exchange that published the
        // array, so its zeroed slots are seen.
        let mut base = self.slots.load(Ordering::Acquire);
        let len = crate::possible_cpus();
        if base.is_null() {
            base = self.allocate(len);
        }
        // SAFETY: `base` is the array of `len` slots allocated by
        // `allocate` (`possible_cpus()` never changes once counted), live
        // until `Drop`, which needs `&mut self`.
        unsafe { core::slice::from_raw_parts(base, len) }
    }

    #[cold]
    fn allocate(&self, len: usize) -> *mut CachePadded<Slot> {
        let fresh: Box<[CachePadded<Slot>]> = (0..len).map(|_| Default::default()).collect();
        let fresh = Box::into_raw(fresh) as *mut CachePadded<Slot>;
        // `AcqRel`: releases the zeroed slots to whoever loads the pointer,
        // and acquires those of another thread's allocation that won.
        let base = match self.slots.compare_exchange(
            core::ptr::null_mut(),
            fresh,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => fresh,
            Err(winner) => {
                // SAFETY: `fresh` came from `Box::into_raw` just above with
                // `len` slots, and no one else saw it.
                drop(unsafe { Box::from_raw(core::ptr::slice_from_raw_parts_mut(fresh, len)) });
                winner
            }
        };
        // `Release`: an add that reads this length (`Acquire`) sees the
        // pointer and the slots. Every thread that gets here stores the
        // same value.
        self.len.store(len as u32, Ordering::Release);
        base
    }

    /// Adds `delta` (wrapping) to the slot of the current CPU.
    ///
    /// # Examples
    /// ```
    /// let bytes = restartable::PerCpuCounter::new();
    /// bytes.add(1500);
    /// bytes.add(-500); // a negative delta subtracts
    /// assert_eq!(bytes.sum(), 1000);
    /// ```
    #[inline]
    pub fn add(&self, delta: i64) {
        if !self.add_in_section(I::INDEX, delta) {
            self.add_cold(delta);
        }
    }

    /// Adds `delta` with a critical section on the field `index` names,
    /// retrying aborts; false, with nothing added, when the thread cannot
    /// run one on a slot (not registered, slots not allocated yet, or on a
    /// CPU beyond the slots; for `mm_cid`, a kernel without it).
    #[inline(always)]
    fn add_in_section(&self, index: Index, delta: i64) -> bool {
        if !index.provided() {
            return false;
        }
        // `Acquire`: pairs with the `Release` store in `allocate`; a length
        // above 0 means `slots` holds the array.
        let len = self.len.load(Ordering::Acquire);
        let base = self.slots.load(Ordering::Relaxed) as *mut u8;
        loop {
            // SAFETY: with `len` > 0, `base` is this counter's live array of
            // `len` slots of `STRIDE` bytes, whose `Slot::rseq` word sits at
            // offset 0 and is written only by these sections; with `len` 0
            // no index is in range and the section writes nothing.
            match unsafe { rseq::add(index, base, STRIDE, len, delta) } {
                rseq::Add::Done => return true,
                rseq::Add::Retry => crate::sync::spin_hint(),
                rseq::Add::Cold => return false,
            }
        }
    }

    #[cold]
    #[inline(never)]
    fn add_cold(&self, delta: i64) {
        let slots = self.slots();
        let index = Self::effective_index();
        // Registered now, sections again, once: a thread that is registered
        // and still cold runs on a CPU beyond the slots (a container that
        // shows fewer possible CPUs than the kernel numbers, say) and takes
        // the fallback.
        if crate::registration::ensure_registered() && self.add_in_section(index, delta) {
            return;
        }
        // Not `current()`: that would try the area (and registration) again.
        let i = rseq::fallback_slot(index).min(slots.len() - 1);
        slots[i].atomic.fetch_add(delta as u64, Ordering::Relaxed);
    }

    /// Increments by one.
    ///
    /// # Examples
    /// ```
    /// let requests = restartable::PerCpuCounter::new();
    /// requests.incr();
    /// assert_eq!(requests.sum(), 1);
    /// ```
    #[inline]
    pub fn incr(&self) {
        self.add(1);
    }

    /// The sum of every slot since the last reset (wrapping), as `i64`.
    ///
    /// # Examples
    /// ```
    /// let balance = restartable::PerCpuCounter::new();
    /// balance.add(10);
    /// balance.add(-3);
    /// assert_eq!(balance.sum(), 7);
    /// ```
    pub fn sum(&self) -> i64 {
        self.slots()
            .iter()
            .map(|s| s.count())
            .fold(0u64, u64::wrapping_add) as i64
    }

    /// The count of each slot since the last reset, in slot order.
    ///
    /// # Examples
    /// ```
    /// let counter = restartable::PerCpuCounter::new();
    /// counter.add(4);
    /// let slots = counter.per_slot();
    /// assert_eq!(slots.len(), restartable::possible_cpus());
    /// assert_eq!(slots.iter().sum::<i64>(), 4);
    /// ```
    pub fn per_slot(&self) -> Vec<i64> {
        self.slots().iter().map(|s| s.count() as i64).collect()
    }

    /// Sets the counter to zero and returns the sum it cleared.
    ///
    /// Exact even while other threads add: each add is counted either in
    /// the returned value or in the sums after the reset, never both and
    /// never neither. Concurrent resets split what they clear between them.
    ///
    /// # Examples
    /// ```
    /// let counter = restartable::PerCpuCounter::new();
    /// counter.add(5);
    /// assert_eq!(counter.reset(), 5);
    /// counter.add(2);
    /// assert_eq!(counter.sum(), 2);
    /// ```
    pub fn reset(&self) -> i64 {
        let mut cleared = 0u64;
        for s in self.slots().iter() {
            let mut base = s.base.load(Ordering::Acquire);
            loop {
                let total = s.total();
                // A failed exchange means another reset moved the baseline:
                // take a fresh total, so that the baseline only moves forward.
                match s
                    .base
                    .compare_exchange_weak(base, total, Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => {
                        cleared = cleared.wrapping_add(total.wrapping_sub(base));
                        break;
                    }
                    Err(now) => base = now,
                }
            }
        }
        cleared as i64
    }

    /// How slots are indexed: as the type says, or by CPU for a
    /// [`ByMmCid`] counter where the kernel has no `mm_cid`.
    ///
    /// # Examples
    /// ```
    /// let counter = restartable::PerCpuCounter::new();
    /// assert_eq!(counter.index(), restartable::Index::Cpu);
    /// ```
    pub fn index(&self) -> Index {
        Self::effective_index()
    }

    /// `(base, stride, slots)` of the slot array, allocated now if needed,
    /// for the C header's inline add (see `ffi.rs`): `Slot::rseq` is the
    /// first word of every slot.
    /// A counter on the `len` zeroed slots of `STRIDE` bytes at `base`,
    /// which it does not own (the C handle holds its slots right after
    /// itself).
    ///
    /// # Safety
    /// - `base` is aligned to `STRIDE`, zeroed, valid for `len *
    ///   STRIDE` bytes and used by nothing else while the counter lives;
    /// - `len` is `possible_cpus()`;
    /// - the counter is never dropped (its `Drop` would free `base` as its
    ///   own allocation): keep it in a `ManuallyDrop`.
    pub(crate) unsafe fn on_slots(base: *mut u8, len: usize) -> Self {
        debug_assert_eq!(len, crate::possible_cpus());
        PerCpuCounter {
            slots: StaticAtomicPtr::new(base.cast()),
            len: StaticAtomicU32::new(len as u32),
            _index: PhantomData,
        }
    }
}

impl<I: IndexKind> Drop for PerCpuCounter<I> {
    fn drop(&mut self) {
        let base = *self.slots.get_mut();
        if !base.is_null() {
            // SAFETY: `base` came from `allocate`, with `possible_cpus()`
            // slots, and `&mut self` means no one uses it any more.
            drop(unsafe {
                Box::from_raw(core::ptr::slice_from_raw_parts_mut(
                    base,
                    crate::possible_cpus(),
                ))
            });
        }
    }
}

impl Default for PerCpuCounter<ByCpu> {
    fn default() -> Self {
        Self::new()
    }
}

impl Default for PerCpuCounter<ByMmCid> {
    fn default() -> Self {
        Self::new_by_mm_cid()
    }
}

impl<I: IndexKind> fmt::Debug for PerCpuCounter<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PerCpuCounter")
            .field("index", &self.index())
            .field("sum", &self.sum())
            .finish()
    }
}
