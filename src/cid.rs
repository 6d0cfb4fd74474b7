//! A concurrency-id read that never fails.

/// The calling thread's concurrency id (`mm_cid`) where the kernel provides
/// it and the thread runs critical sections, and otherwise a stand-in that
/// is just as usable as an index: the CPU number
/// ([`current_cpu`](crate::current_cpu), which is `sched_getcpu()` where
/// rseq cannot be used). Never fails, and always below
/// [`possible_cpus`](crate::possible_cpus), so an array with one slot per
/// possible CPU can be indexed by it.
///
/// # Exactness
///
/// The value is a hint, as a CPU number is: the thread may be given
/// another id (or CPU) as soon as this returns. Pass it to an operation
/// indexed by [`Index::MmCid`](crate::cs::Index::MmCid): a thread that runs
/// sections checks it there (and retries on [`Outcome::Aborted`](crate::cs::Outcome)),
/// while a thread that cannot (no rseq, another area registered, a kernel
/// without `mm_cid`) takes the operation's fallback, an atomic or a striped
/// lock, which is exact whatever index it was given. The rules for mixing
/// the two paths on one word are those of the operations (see
/// "Exactness" in [`cs`](crate::cs)).
///
/// # Examples
/// ```
/// use restartable::cs::{self, Index, Outcome};
/// use restartable::PerCpu;
/// use std::sync::atomic::{AtomicIsize, Ordering};
///
/// let slots = PerCpu::new(|_| AtomicIsize::new(0)); // one per possible CPU
/// loop {
///     let cid = restartable::current_mm_cid();
///     let word = slots.get(cid as usize).unwrap().as_ptr();
///     // SAFETY: a live, aligned word of the slot array.
///     if unsafe { cs::load_add_store(Index::MmCid, word, 1, cid) } == Outcome::Committed {
///         break;
///     }
/// }
/// assert_eq!(slots.iter().map(|s| s.load(Ordering::Relaxed)).sum::<isize>(), 1);
/// ```
#[doc(alias = "rseq_current_mm_cid")]
#[inline]
pub fn current_mm_cid() -> u32 {
    match crate::mm_cid() {
        Some(cid) => cid,
        None => crate::current_cpu(),
    }
}
