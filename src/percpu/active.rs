//! The membarrier pattern as one type: updaters add through a pointer to
//! the active per-CPU table, and a swapper makes another table active and
//! then knows that no update can still land on the old one.
//!
//! # The protocol
//!
//! An update is `load_add_load_load_add_store`: load the active table's
//! address, load the pointer at offset `off` of the table, add to the word
//! it points to.
//!
//! - A thread that runs critical sections makes the update one section on
//!   its CPU. The swapper's `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ)`
//!   makes every section in flight commit or abort before it returns, and
//!   a section that starts later reads the new table.
//! - A thread that cannot (the fallbacks) has no section to abort: a
//!   `membarrier` does not stop it between its load of the table and its
//!   atomic add, which is how updates landed on the "inactive" table after
//!   the `membarrier` returned. Such a thread *announces* itself instead:
//!   it reads the swap generation, counts itself in the counter of that
//!   generation's parity, reads the generation again (and starts over if a
//!   swap came in between), then loads the table, adds, and counts itself
//!   out (`Release`). The swapper, after it stored the new table and
//!   advanced the generation, waits until the counter of the old parity
//!   reads 0 (`Acquire`).
//!
//! All of those accesses are `SeqCst`, so they fall in one order. An
//! announced updater whose second read found the generation unchanged was
//! counted before the swap advanced it, so the swapper waits for it; one
//! that read the generation after the swap advanced it reads the new table
//! (the swap stored it first). Updaters that arrive during the wait count
//! under the new parity, so a swap waits only for updates that began
//! before it: it cannot be starved.
//!
//! Where `membarrier` is refused or missing, the swapper runs itself on
//! every CPU in turn instead, as the lock's fence does (`drain.rs`).
//!
//! # Fork
//!
//! A `fork` child has only the forking thread: a count that another
//! thread of the parent held, or a swap it was running, would never end
//! there. Each counter and the swap lock carry the fork epoch (bumped in
//! every child, see `pool.rs`) beside their value: a child's swapper
//! treats a count from an older epoch as 0, its first updater starts the
//! counter afresh, and a swap lock from an older epoch is taken over (a
//! swap is consistent at every step: the next one completes it).

use crate::cs::{self, Index, Outcome};
use crate::percpu::CachePadded;
use crate::sync::{Ordering, StaticAtomicIsize as AtomicIsize, StaticAtomicUsize as AtomicUsize};

/// The active-table pointer of librseq's membarrier pattern, exact on every
/// thread, whether it runs critical sections or their fallbacks.
///
/// Updaters call [`add`](Self::add); a swapper calls
/// [`swap`](Self::swap), which returns the table that was active, and
/// from its return on, no update lands on that table any more (until it is
/// made active again): read it, reset it, free it. The C form is
/// `restartable_active_table_new` / `_add_current` / `_add` / `_swap`.
///
/// Exactness on the counters themselves follows the operations' rule: all
/// updaters of a word take the same path. Where threads of another area
/// (fallbacks) and rseq threads of the process update the *same* words,
/// an update may be lost (see "Exactness" in [`cs`]); the swap
/// guarantee holds either way.
///
/// # Examples
/// ```
/// use restartable::ActiveTable;
/// use std::sync::atomic::{AtomicIsize, Ordering};
///
/// let n = restartable::possible_cpus();
/// let counts: Vec<Vec<AtomicIsize>> =
///     (0..2).map(|_| (0..n).map(|_| AtomicIsize::new(0)).collect()).collect();
/// // Each table: entry `cpu` points to that CPU's counter.
/// let mut tables: Vec<Vec<*mut isize>> =
///     counts.iter().map(|t| t.iter().map(|c| c.as_ptr()).collect()).collect();
/// let active = ActiveTable::new(tables[0].as_mut_ptr().cast());
/// for _ in 0..10 {
///     // SAFETY: every entry of the active table points to a live counter.
///     unsafe { active.add_current(8, 1) };
/// }
/// let old = active.swap(tables[1].as_mut_ptr().cast());
/// assert_eq!(old, tables[0].as_mut_ptr().cast());
/// // Table 0 is still now: its sum is final.
/// let sum: isize = counts[0].iter().map(|c| c.load(Ordering::Relaxed)).sum();
/// assert_eq!(sum, 10);
/// ```
#[derive(Debug)]
#[doc(alias = "restartable_active_table_swap")]
#[doc(alias = "membarrier")]
pub struct ActiveTable {
    /// The address of the active table: the word sections load first.
    active: CachePadded<AtomicIsize>,
    /// Swaps so far; its parity picks the counter fallback updaters
    /// announce themselves in.
    generation: CachePadded<AtomicUsize>,
    /// Fallback updates in flight, by the parity they announced: the count
    /// in the low 32 bits, the fork epoch it was counted in above.
    in_flight: [CachePadded<AtomicUsize>; 2],
    /// 0, or `1 | epoch << 1` while a swap runs: one swap at a time.
    swapping: AtomicUsize,
}

impl ActiveTable {
    /// A pointer to `table`, the first active table.
    ///
    /// # Examples
    /// ```
    /// use restartable::ActiveTable;
    /// use std::sync::atomic::{AtomicIsize, Ordering};
    /// let counter = AtomicIsize::new(0);
    /// let mut table = vec![counter.as_ptr(); restartable::possible_cpus()];
    /// let active = ActiveTable::new(table.as_mut_ptr().cast());
    /// assert_eq!(active.get(), table.as_mut_ptr().cast());
    /// ```
    pub fn new(table: *mut u8) -> Self {
        ActiveTable {
            active: CachePadded(AtomicIsize::new(table as isize)),
            generation: CachePadded(AtomicUsize::new(0)),
            in_flight: [
                CachePadded(AtomicUsize::new(0)),
                CachePadded(AtomicUsize::new(0)),
            ],
            swapping: AtomicUsize::new(0),
        }
    }

    /// The table active now (it may change at once).
    ///
    /// # Examples
    /// ```
    /// use restartable::ActiveTable;
    /// use std::sync::atomic::{AtomicIsize, Ordering};
    /// let counter = AtomicIsize::new(0);
    /// let mut table = vec![counter.as_ptr(); restartable::possible_cpus()];
    /// let active = ActiveTable::new(table.as_mut_ptr().cast());
    /// assert_eq!(active.get(), table.as_mut_ptr().cast());
    /// ```
    pub fn get(&self) -> *mut u8 {
        self.active.load(Ordering::SeqCst) as *mut u8
    }

    /// `*(*(table + off)) += inc` on the active table, with `off` chosen
    /// for the CPU the update runs on: `off_per_cpu * cpu`, in a critical
    /// section on that CPU, or the fallback's CPU. Retries until done.
    ///
    /// # Safety
    /// For every CPU `c` below [`possible_cpus`](crate::possible_cpus),
    /// every table that is or becomes active holds at `off_per_cpu * c` an
    /// aligned pointer to a live, aligned `isize` that is updated only
    /// through atomics or these operations.
    ///
    /// # Examples
    /// ```
    /// use restartable::ActiveTable;
    /// use std::sync::atomic::{AtomicIsize, Ordering};
    /// let counter = AtomicIsize::new(0);
    /// let mut table = vec![counter.as_ptr(); restartable::possible_cpus()];
    /// let active = ActiveTable::new(table.as_mut_ptr().cast());
    /// // SAFETY: every entry points to the live counter.
    /// unsafe { active.add_current(8, 3) };
    /// assert_eq!(counter.load(Ordering::Relaxed), 3);
    /// ```
    pub unsafe fn add_current(&self, off_per_cpu: isize, inc: isize) {
        loop {
            if crate::is_available() {
                let cpu = crate::current_cpu();
                let off = off_per_cpu * cpu as isize;
                // SAFETY: the caller's; the thread is registered (a thread
                // that is not gets `Aborted`, with nothing written).
                match unsafe {
                    cs::load_add_load_load_add_store_unchecked(
                        Index::Cpu,
                        self.active.as_ptr(),
                        off,
                        inc,
                        cpu,
                    )
                } {
                    Outcome::Committed => return,
                    _ => {
                        cs::note_abort();
                        continue;
                    }
                }
            }
            let off = off_per_cpu * crate::fallback_cpu() as isize;
            // SAFETY: forwarded from the caller.
            if unsafe { self.add_announced(off, inc) } {
                return;
            }
        }
    }

    /// `*(*(table + off)) += inc` on the active table, `off` fixed: the
    /// same on every CPU (a table of one counter per slot the caller picks
    /// itself, say by [`current_mm_cid`](crate::current_mm_cid)).
    ///
    /// # Safety
    /// Every table that is or becomes active holds at `off` an aligned
    /// pointer to a live, aligned `isize` updated only through atomics or
    /// these operations.
    ///
    /// # Examples
    /// ```
    /// use restartable::ActiveTable;
    /// use std::sync::atomic::{AtomicIsize, Ordering};
    /// let counter = AtomicIsize::new(0);
    /// let mut table = vec![counter.as_ptr(); restartable::possible_cpus()];
    /// let active = ActiveTable::new(table.as_mut_ptr().cast());
    /// // SAFETY: entry 0 points to the live counter.
    /// unsafe { active.add(0, 2) };
    /// assert_eq!(counter.load(Ordering::Relaxed), 2);
    /// ```
    pub unsafe fn add(&self, off: isize, inc: isize) {
        loop {
            if crate::is_available() {
                let cpu = crate::current_cpu();
                // SAFETY: as in `add_current`.
                match unsafe {
                    cs::load_add_load_load_add_store_unchecked(
                        Index::Cpu,
                        self.active.as_ptr(),
                        off,
                        inc,
                        cpu,
                    )
                } {
                    Outcome::Committed => return,
                    _ => {
                        cs::note_abort();
                        continue;
                    }
                }
            }
            // SAFETY: forwarded from the caller.
            if unsafe { self.add_announced(off, inc) } {
                return;
            }
        }
    }

    /// The fallback update (see the module docs); false if a swap came in
    /// between the two reads of the generation.
    ///
    /// # Safety
    /// As [`add`](Self::add).
    unsafe fn add_announced(&self, off: isize, inc: isize) -> bool {
        let generation = self.generation.load(Ordering::SeqCst);
        let count = &self.in_flight[generation & 1];
        let epoch = epoch_bits();
        let mut word = count.load(Ordering::SeqCst);
        loop {
            // A count from before a fork belongs to no live thread.
            let new = if word >> COUNT_BITS == epoch {
                word + 1
            } else {
                epoch << COUNT_BITS | 1
            };
            match count.compare_exchange_weak(word, new, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => break,
                Err(now) => word = now,
            }
        }
        if self.generation.load(Ordering::SeqCst) != generation {
            count_out(count, epoch);
            return false;
        }
        let table = self.active.load(Ordering::SeqCst);
        // SAFETY: the active table holds an aligned pointer to a live,
        // aligned `isize` at `off` (caller); the counter is updated only
        // atomically or by sections, never by plain writes.
        unsafe {
            let target = ((table + off) as *const isize).read_volatile();
            AtomicIsize::from_ptr(target as *mut isize).fetch_add(inc, Ordering::Relaxed);
        }
        count_out(count, epoch);
        true
    }

    /// Makes `table` active and returns the table that was; when it
    /// returns, every update that read the old table has landed, and none
    /// can land there any more.
    ///
    /// Costs one `membarrier` (or, where that is refused, a visit of this
    /// thread to every CPU) plus a wait for fallback updates in flight.
    /// Swaps are serialised. Must not run in a signal handler that
    /// interrupted an [`add`](Self::add) on its own thread (it would wait
    /// for that add).
    ///
    /// # Examples
    /// ```
    /// use restartable::ActiveTable;
    /// use std::sync::atomic::{AtomicIsize, Ordering};
    /// let counter = AtomicIsize::new(0);
    /// let mut table = vec![counter.as_ptr(); restartable::possible_cpus()];
    /// let other = AtomicIsize::new(0);
    /// let mut next = vec![other.as_ptr(); restartable::possible_cpus()];
    /// let active = ActiveTable::new(table.as_mut_ptr().cast());
    /// // SAFETY: every entry of both tables points to a live counter.
    /// unsafe { active.add_current(8, 1) };
    /// assert_eq!(active.swap(next.as_mut_ptr().cast()), table.as_mut_ptr().cast());
    /// // SAFETY: as above.
    /// unsafe { active.add_current(8, 1) };
    /// assert_eq!((counter.load(Ordering::Relaxed), other.load(Ordering::Relaxed)), (1, 1));
    /// ```
    pub fn swap(&self, table: *mut u8) -> *mut u8 {
        let _one = SwapLock::take(&self.swapping);
        let old = self.active.swap(table as isize, Ordering::SeqCst);
        let generation = self.generation.fetch_add(1, Ordering::SeqCst);
        fence_sections();
        let count = &self.in_flight[generation & 1];
        let mut spins = 0u32;
        // `Acquire` pairs with the updaters' counting out.
        while in_flight_now(count.load(Ordering::Acquire)) {
            // An updater preempted inside its few instructions needs a CPU
            // to finish: after a short spin, sleep rather than compete for
            // one (a yield would hand the CPU only to threads queued on it).
            if spins < 64 {
                crate::sync::spin_hint();
                spins += 1;
            } else {
                std::thread::sleep(std::time::Duration::from_micros(20));
            }
        }
        old as *mut u8
    }
}

/// Bits of a counter word that count; the fork epoch sits above.
const COUNT_BITS: u32 = 32;

/// The fork epoch as a counter word holds it.
fn epoch_bits() -> usize {
    crate::percpu::pool::fork_epoch() & (usize::MAX >> COUNT_BITS)
}

/// Whether a counter word counts a live update.
fn in_flight_now(word: usize) -> bool {
    word & ((1 << COUNT_BITS) - 1) != 0 && word >> COUNT_BITS == epoch_bits()
}

/// Counts an update out of the counter it announced in, in epoch `epoch`;
/// a counter a fork child started afresh since is left alone. `Release`:
/// the update happens before the swapper's `Acquire` read that sees it
/// gone.
fn count_out(count: &AtomicUsize, epoch: usize) {
    let mut word = count.load(Ordering::Relaxed);
    while word >> COUNT_BITS == epoch && word & ((1 << COUNT_BITS) - 1) != 0 {
        match count.compare_exchange_weak(word, word - 1, Ordering::Release, Ordering::Relaxed) {
            Ok(_) => return,
            Err(now) => word = now,
        }
    }
}

/// The swap lock, held while alive; see "Fork" in the module docs.
struct SwapLock<'a>(&'a AtomicUsize);

impl<'a> SwapLock<'a> {
    fn take(word: &'a AtomicUsize) -> Self {
        let held = 1 | crate::percpu::pool::fork_epoch() << 1;
        let mut spins = 0;
        loop {
            let now = word.load(Ordering::Relaxed);
            // Free, or held by a swap from before a fork. `Acquire` pairs
            // with the release of the previous swap.
            if now != held
                && word
                    .compare_exchange(now, held, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                return SwapLock(word);
            }
            crate::sync::backoff(&mut spins);
        }
    }
}

impl Drop for SwapLock<'_> {
    fn drop(&mut self) {
        self.0.store(0, Ordering::Release);
    }
}

/// Makes every critical section in flight on any CPU commit or abort.
fn fence_sections() {
    let rseq_may_run =
        crate::owner() != crate::Owner::Unavailable || crate::stats().registrations > 0;
    if !rseq_may_run {
        return;
    }
    // Asks for (and registers) the rseq membarrier once per process.
    if super::drain::lock_sections_enabled() && super::drain::expedite_rseq(Index::MmCid, 0) {
        return;
    }
    super::drain::visit_cpus(Index::MmCid, 0);
}
