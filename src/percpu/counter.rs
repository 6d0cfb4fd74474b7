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
}

/// A counter split across CPUs: [`add`](Self::add) touches only the slot of
/// the current CPU, with no atomic instruction; [`sum`](Self::sum) adds all
/// slots.
///
/// Arithmetic wraps (as `u64`); `add` takes an `i64` so that negative deltas
/// subtract. `sum` is exact once writers are quiescent, and otherwise a value
/// the counter held at some point during the call, give or take adds that
/// race with it.
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
    pub fn new() -> Self {
        Self::with_index(Index::Cpu)
    }

    /// A zeroed counter with slots per CPU or per concurrency id.
    pub fn with_index(index: Index) -> Self {
        PerCpuCounter {
            slots: PerCpu::with_index(index, |_| Slot::default()),
        }
    }

    /// Adds `delta` (wrapping) to the slot of the current CPU.
    #[inline]
    pub fn add(&self, delta: i64) {
        let (base, stride) = self.slots.raw_parts();
        let slots = self.slots.len() as u32;
        loop {
            // SAFETY: `base`/`stride`/`slots` describe this counter's live
            // slot array, whose `Slot::rseq` word sits at offset 0 of each
            // slot and is written only by these sections.
            match unsafe { rseq::add(self.slots.index(), base, stride, slots, delta) } {
                rseq::Add::Done => return,
                rseq::Add::Retry => crate::sync::spin_hint(),
                rseq::Add::Cold => return self.add_cold(delta),
            }
        }
    }

    #[cold]
    #[inline(never)]
    fn add_cold(&self, delta: i64) {
        if crate::registration::ensure_registered() {
            return self.add(delta);
        }
        // Not `current()`: that would try the area (and registration) again.
        self.slots
            .get(self.slots.fallback_index())
            .expect("slot in range")
            .atomic
            .fetch_add(delta as u64, Ordering::Relaxed);
    }

    /// Increments by one.
    #[inline]
    pub fn incr(&self) {
        self.add(1);
    }

    /// The sum of every slot (wrapping), as `i64`.
    pub fn sum(&self) -> i64 {
        self.slots
            .iter()
            .map(|s| {
                s.rseq
                    .load(Ordering::Relaxed)
                    .wrapping_add(s.atomic.load(Ordering::Relaxed))
            })
            .fold(0u64, u64::wrapping_add) as i64
    }

    /// The count of each slot, in slot order.
    pub fn per_slot(&self) -> Vec<i64> {
        self.slots
            .iter()
            .map(|s| {
                s.rseq
                    .load(Ordering::Relaxed)
                    .wrapping_add(s.atomic.load(Ordering::Relaxed)) as i64
            })
            .collect()
    }

    /// Sets every slot to zero. Adds that run concurrently may survive or
    /// be lost; reset while writers are quiescent for an exact zero.
    pub fn reset(&self) {
        for s in self.slots.iter() {
            s.rseq.store(0, Ordering::Relaxed);
            s.atomic.store(0, Ordering::Relaxed);
        }
    }

    /// How slots are indexed.
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
