//! `PerCpuCounter`: add without atomics, sum exactly.

use core::fmt;

use super::{rseq, Index, PerCpu};
use crate::sync::{AtomicU64, Ordering};

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
pub struct PerCpuCounter {
    slots: PerCpu<Slot>,
}

impl PerCpuCounter {
    /// A zeroed counter with one slot per possible CPU.
    ///
    /// # Examples
    /// ```
    /// let hits = restartable::PerCpuCounter::new();
    /// assert_eq!(hits.sum(), 0);
    /// ```
    pub fn new() -> Self {
        Self::with_index(Index::Cpu)
    }

    /// A zeroed counter with slots per CPU or per concurrency id.
    ///
    /// # Examples
    /// ```
    /// use restartable::{Index, PerCpuCounter};
    /// let compact = PerCpuCounter::with_index(Index::MmCid);
    /// compact.add(2);
    /// assert_eq!(compact.sum(), 2);
    /// ```
    pub fn with_index(index: Index) -> Self {
        PerCpuCounter {
            slots: PerCpu::with_index(index, |_| Slot::default()),
        }
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
        if !self.add_in_section(delta) {
            self.add_cold(delta);
        }
    }

    /// Adds `delta` with a critical section, retrying aborts; false, with
    /// nothing added, when the thread cannot run one on a slot (not
    /// registered, or on a CPU beyond the slots).
    #[inline(always)]
    fn add_in_section(&self, delta: i64) -> bool {
        let (base, stride) = self.slots.raw_parts();
        let slots = self.slots.len() as u32;
        loop {
            // SAFETY: `base`/`stride`/`slots` describe this counter's live
            // slot array, whose `Slot::rseq` word sits at offset 0 of each
            // slot and is written only by these sections.
            match unsafe { rseq::add(self.slots.index(), base, stride, slots, delta) } {
                rseq::Add::Done => return true,
                rseq::Add::Retry => crate::sync::spin_hint(),
                rseq::Add::Cold => return false,
            }
        }
    }

    #[cold]
    #[inline(never)]
    fn add_cold(&self, delta: i64) {
        // Registered now, sections again, once: a thread that is registered
        // and still cold runs on a CPU beyond the slots (a container that
        // shows fewer possible CPUs than the kernel numbers, say) and takes
        // the fallback.
        if crate::registration::ensure_registered() && self.add_in_section(delta) {
            return;
        }
        // Not `current()`: that would try the area (and registration) again.
        self.slots
            .get(self.slots.fallback_index())
            .expect("slot in range")
            .atomic
            .fetch_add(delta as u64, Ordering::Relaxed);
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
        self.slots
            .iter()
            .map(Slot::count)
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
        self.slots.iter().map(|s| s.count() as i64).collect()
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
        for s in self.slots.iter() {
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

    /// How slots are indexed.
    ///
    /// # Examples
    /// ```
    /// let counter = restartable::PerCpuCounter::new();
    /// assert_eq!(counter.index(), restartable::Index::Cpu);
    /// ```
    pub fn index(&self) -> Index {
        self.slots.index()
    }

    /// `(base, stride, slots)` of the slot array, for the C header's inline
    /// add (see `ffi.rs`): `Slot::rseq` is the first word of every slot.
    pub(crate) fn raw_parts(&self) -> (*mut u8, usize, u32) {
        let (base, stride) = self.slots.raw_parts();
        (base, stride, self.slots.len() as u32)
    }
}

impl Default for PerCpuCounter {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for PerCpuCounter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PerCpuCounter")
            .field("index", &self.index())
            .field("sum", &self.sum())
            .finish()
    }
}
