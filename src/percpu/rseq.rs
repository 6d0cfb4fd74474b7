//! The critical sections the per-CPU types run, in one place: the real ones
//! from [`crate::cs`], or under `cfg(restartable_loom)` a simulation in
//! which loom decides which CPU a thread runs on and whether its section is
//! preempted (aborted) before it commits.

pub(crate) use imp::*;

use crate::cs::Outcome;

#[cfg(restartable_loom)]
pub use imp::run_as_fallback;

/// The slot index for a lock or stack section, or `None` when the thread
/// must take the fence path: it cannot run sections, or the kernel cannot
/// fence them (see [`lock_sections_enabled`](super::drain::lock_sections_enabled)).
#[inline]
pub(crate) fn fenced_slot(index: crate::cs::Index) -> Option<u32> {
    if !super::drain::lock_sections_enabled() {
        return None;
    }
    current_slot(index)
}

/// A lock or stack section's raw result as an [`Outcome`], noting an abort.
#[inline(always)]
pub(crate) fn outcome(raw: i32) -> Outcome {
    let outcome = Outcome::from_raw(raw);
    if outcome == Outcome::Aborted {
        crate::cs::note_abort();
    }
    outcome
}

/// What one attempt to add to the current CPU's slot did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Add {
    /// Committed.
    Done,
    /// Aborted by preemption, migration or a signal: try again.
    Retry,
    /// The thread's area is not registered: register or fall back.
    Cold,
}

#[cfg(not(restartable_loom))]
mod imp {
    use super::Add;
    use crate::cs::{self, Index};
    use crate::percpu::fence::{Fence, Fenced};
    use crate::percpu::PerCpu;
    use crate::sync::AtomicUsize;

    /// The calling thread's slot index (CPU or concurrency id), or `None`
    /// when the thread cannot run critical sections.
    #[inline(always)]
    pub(crate) fn current_slot(index: Index) -> Option<u32> {
        let mut raw = cs::current_index_raw(index);
        if raw < 0 && crate::registration::ensure_registered() {
            raw = cs::current_index_raw(index);
        }
        u32::try_from(raw).ok()
    }

    /// The slot index of a thread that cannot run critical sections.
    pub(crate) fn fallback_slot(index: Index) -> usize {
        let cpu = crate::fallback_cpu;
        match index {
            Index::Cpu => cpu() as usize,
            Index::MmCid => crate::mm_cid().unwrap_or_else(cpu) as usize,
        }
    }

    /// Adds `delta` to the first word of the current CPU's slot.
    ///
    /// # Safety
    /// - `base` points to `slots` slots of `stride` bytes each, alive for
    ///   the call, whose first word is written only by these sections.
    #[inline(always)]
    pub(crate) unsafe fn add(
        index: Index,
        base: *mut u8,
        stride: usize,
        slots: u32,
        delta: i64,
    ) -> Add {
        // SAFETY: forwarded from the caller.
        match unsafe { cs::add_at_current_unchecked(index, base, stride, slots, delta as isize) } {
            cs::AddResult::Committed => Add::Done,
            cs::AddResult::Aborted => {
                cs::note_abort();
                Add::Retry
            }
            cs::AddResult::NotRegistered => Add::Cold,
        }
    }

    /// Whether `fence` is where the sections look for it: the word
    /// [`cs::FENCE_OFFSET`] bytes past `word`, as both slot types lay out.
    fn fence_follows(word: &AtomicUsize, fence: &Fence) -> bool {
        word.as_ptr().wrapping_byte_add(cs::FENCE_OFFSET) == fence.word()
    }

    /// `lock` 0 -> `holder` if the fence is free, on CPU `cpu`; the raw
    /// result (see [`outcome`](super::outcome)).
    ///
    /// # Safety
    /// - `lock` and `fence` are words of one live slot, index `cpu`, below
    ///   2^31 (every slot array is shorter); `fence` follows `lock`, as the
    ///   section reads it there.
    #[inline(always)]
    pub(crate) unsafe fn try_lock(
        index: Index,
        lock: &AtomicUsize,
        fence: &Fence,
        cpu: u32,
        holder: usize,
    ) -> i32 {
        debug_assert!(fence_follows(lock, fence));
        // SAFETY: live words of the caller's slot, the fence after the
        // lock; `cpu` is checked inside.
        unsafe { cs::fenced_store_raw(index, lock.as_ptr(), 0, holder, cpu) }
    }

    /// `head` = `node` if `head` is still `expect` and the fence is free;
    /// the raw result.
    ///
    /// # Safety
    /// - as for [`try_lock`], with `head` for `lock`.
    #[inline(always)]
    pub(crate) unsafe fn push(
        index: Index,
        head: &AtomicUsize,
        fence: &Fence,
        expect: usize,
        node: usize,
        cpu: u32,
    ) -> i32 {
        debug_assert!(fence_follows(head, fence));
        // SAFETY: live words of the caller's slot, the fence after the
        // head; `cpu` is checked inside.
        unsafe { cs::fenced_store_raw(index, head.as_ptr(), expect, node, cpu) }
    }

    /// Unlinks the top node if the list is not empty and the fence is
    /// free: the raw result, and the node (when it committed).
    ///
    /// # Safety
    /// - as for [`try_lock`], with `head` for `lock`; the slot's nodes have
    ///   their `next` pointer at offset 0.
    #[inline(always)]
    pub(crate) unsafe fn pop(
        index: Index,
        head: &AtomicUsize,
        fence: &Fence,
        cpu: u32,
    ) -> (i32, usize) {
        debug_assert!(fence_follows(head, fence));
        // SAFETY: forwarded from the caller.
        unsafe { cs::fenced_pop_raw(index, head.as_ptr(), cpu) }
    }

    /// The slot array as the fast sections take it: base, stride, length.
    /// The length is 0 where the kernel does not provide `index` (an
    /// area's `mm_cid` then reads 0 on every CPU): no index is in range,
    /// and the section fails before it touches a slot.
    #[inline(always)]
    fn array<S: Fenced>(index: Index, slots: &PerCpu<S>) -> (*mut u8, usize, u32) {
        let stride = core::mem::size_of::<crate::CachePadded<S>>();
        let base = slots.base();
        debug_assert!({
            // SAFETY: every slot array holds at least one slot.
            let first = unsafe { slots.get_unchecked(0) };
            first.word().as_ptr().cast() == base && fence_follows(first.word(), first.fence())
        });
        let len = if index.provided() {
            slots.len() as u32
        } else {
            0
        };
        (base.cast(), stride, len)
    }

    /// [`try_lock`] on the slot of the index the area holds, read inside
    /// the section (none where the kernel does not provide `index`, see
    /// [`array`]): the
    /// raw result and the index, meaningful when committed. The first try
    /// of the lock's fast path; it neither registers nor falls back.
    #[inline(always)]
    pub(crate) fn try_lock_here<S: Fenced>(
        index: Index,
        slots: &PerCpu<S>,
        holder: usize,
    ) -> (i32, u32) {
        let (base, stride, len) = array(index, slots);
        // SAFETY: `len` live slots of `stride` bytes, each a lock word with
        // its fence after it (`Fenced`).
        unsafe { cs::fenced_claim_at_current_raw(index, base, stride, len, holder) }
    }

    /// Links `node` on the list of the slot of the index the area holds,
    /// read inside the section, if its fence is free: the raw result.
    /// `node.next` may be written whatever the result.
    ///
    /// # Safety
    /// - `node` is the caller's until the commit links it, with its `next`
    ///   pointer at offset 0, as every node of `slots`'s lists.
    #[inline(always)]
    pub(crate) unsafe fn push_here<S: Fenced>(
        index: Index,
        slots: &PerCpu<S>,
        node: *mut usize,
    ) -> i32 {
        let (base, stride, len) = array(index, slots);
        // SAFETY: the slots as in `try_lock_here`, each a list head with
        // its fence after it; `node` is the caller's.
        unsafe { cs::fenced_push_at_current_raw(index, base, stride, len, node) }
    }

    /// [`pop`] on the slot of the index the area holds, read inside the
    /// section: the raw result, and the node (when it committed).
    ///
    /// # Safety
    /// - every node of `slots`'s lists has its `next` pointer at offset 0
    ///   and stays readable while a section on its CPU can still commit.
    #[inline(always)]
    pub(crate) unsafe fn pop_here<S: Fenced>(index: Index, slots: &PerCpu<S>) -> (i32, usize) {
        let (base, stride, len) = array(index, slots);
        // SAFETY: the slots as in `push_here`; the nodes as the caller says.
        unsafe { cs::fenced_pop_at_current_raw(index, base, stride, len) }
    }

    /// Makes every section in flight on slot `slot` commit or abort with
    /// `membarrier`; false if the kernel refuses.
    pub(crate) fn expedite(index: Index, slot: usize) -> bool {
        crate::percpu::drain::expedite_rseq(index, slot)
    }

    /// Makes sure of slot `slot` without `membarrier` (see `drain.rs`).
    pub(crate) fn visit(index: Index, slot: usize) {
        crate::percpu::drain::visit_cpus(index, slot);
    }
}

#[cfg(restartable_loom)]
mod imp {
    //! The simulated machine: `CPUS` CPUs, each a loom mutex held for the
    //! whole body of a section (one thread runs on a CPU at a time), and a
    //! generation per CPU that every section bumps. A thread picks its CPU
    //! when it reads its slot index (loom orders the picks, so threads land
    //! on the same or different CPUs across executions); if another section
    //! ran on that CPU since, the thread was preempted and its section
    //! aborts. Threads marked with [`run_as_fallback`] behave like foreign
    //! threads and take the fallbacks.

    use core::cell::Cell;

    use super::Add;
    use crate::cs::{Index, Outcome};
    use crate::percpu::fence::{Fence, Fenced};
    use crate::percpu::PerCpu;
    use crate::sync::{AtomicBool, AtomicUsize, Ordering};

    /// Simulated CPUs.
    pub(crate) const CPUS: usize = 2;

    struct Machine {
        cpus: [loom::sync::Mutex<()>; CPUS],
        generation: [AtomicUsize; CPUS],
        next: AtomicUsize,
        /// Set by [`refuse_membarrier`].
        refused: AtomicBool,
    }

    loom::lazy_static! {
        static ref MACHINE: Machine = Machine {
            cpus: [loom::sync::Mutex::new(()), loom::sync::Mutex::new(())],
            generation: [AtomicUsize::new(0), AtomicUsize::new(0)],
            next: AtomicUsize::new(0),
            refused: AtomicBool::new(false),
        };
    }

    loom::thread_local! {
        static PLACE: Cell<(usize, usize)> = Cell::new((0, 0));
        static FALLBACK: Cell<bool> = Cell::new(false);
    }

    /// Makes the calling loom thread behave like a thread whose area is
    /// foreign: every per-CPU type takes its fallback.
    pub fn run_as_fallback() {
        FALLBACK.with(|f| f.set(true));
    }

    /// Makes the simulated `membarrier` fail from now on, as a seccomp
    /// filter installed while the process runs would.
    pub fn refuse_membarrier() {
        MACHINE.refused.store(true, Ordering::Relaxed);
    }

    pub(crate) fn current_slot(_index: Index) -> Option<u32> {
        if FALLBACK.with(|f| f.get()) {
            return None;
        }
        let cpu = MACHINE.next.fetch_add(1, Ordering::Relaxed) % CPUS;
        let generation = MACHINE.generation[cpu].load(Ordering::Relaxed);
        PLACE.with(|p| p.set((cpu, generation)));
        Some(cpu as u32)
    }

    /// [`current_slot`], or `u32::MAX` for a fallback thread.
    pub(crate) fn slot_here(index: Index) -> u32 {
        current_slot(index).unwrap_or(u32::MAX)
    }

    /// A fallback thread's slot: a simulated CPU, chosen the way
    /// [`current_slot`] chooses one, so that every execution loom explores
    /// is decided by the schedule alone and never by the host's CPU.
    pub(crate) fn fallback_slot(_index: Index) -> usize {
        MACHINE.next.fetch_add(1, Ordering::Relaxed) % CPUS
    }

    /// Runs `body` as a section on `cpu`: aborted if the thread is not on
    /// `cpu` or was preempted since it read its slot.
    fn section<R>(cpu: u32, body: impl FnOnce() -> Result<R, Outcome>) -> Result<R, Outcome> {
        let (mine, seen) = PLACE.with(|p| p.get());
        if mine != cpu as usize {
            return Err(Outcome::Aborted);
        }
        let _running = MACHINE.cpus[mine].lock().unwrap();
        if MACHINE.generation[mine].load(Ordering::Relaxed) != seen {
            return Err(Outcome::Aborted);
        }
        MACHINE.generation[mine].fetch_add(1, Ordering::Relaxed);
        body()
    }

    pub(crate) unsafe fn add(
        _index: Index,
        base: *mut u8,
        stride: usize,
        slots: u32,
        delta: i64,
    ) -> Add {
        let Some(cpu) = current_slot(Index::Cpu) else {
            return Add::Cold;
        };
        if cpu >= slots {
            return Add::Cold;
        }
        // SAFETY: the caller's slot array; the first word of each slot is a
        // (loom) `AtomicU64`.
        let word = unsafe { &*(base.add(cpu as usize * stride) as *const crate::sync::AtomicU64) };
        match section(cpu, || {
            // A plain read-modify-write: only sections on this CPU write the
            // word, and they are serialised by the CPU.
            let v = word.load(Ordering::Relaxed);
            word.store(v.wrapping_add(delta as u64), Ordering::Relaxed);
            Ok(())
        }) {
            Ok(()) => Add::Done,
            Err(_) => Add::Retry,
        }
    }

    pub(crate) unsafe fn try_lock(
        _index: Index,
        lock: &AtomicUsize,
        fence: &Fence,
        cpu: u32,
        holder: usize,
    ) -> i32 {
        raw(section(cpu, || {
            if fence.blocks_sections() || lock.load(Ordering::Acquire) != 0 {
                return Err(Outcome::CompareFailed);
            }
            lock.store(holder, Ordering::Relaxed);
            Ok(())
        }))
    }

    /// A simulated section's result as the real sections give it.
    fn raw(result: Result<(), Outcome>) -> i32 {
        match result {
            Ok(()) => Outcome::Committed as i32,
            Err(o) => o as i32,
        }
    }

    pub(crate) unsafe fn push(
        _index: Index,
        head: &AtomicUsize,
        fence: &Fence,
        expect: usize,
        node: usize,
        cpu: u32,
    ) -> i32 {
        raw(section(cpu, || {
            if fence.blocks_sections() || head.load(Ordering::Acquire) != expect {
                return Err(Outcome::CompareFailed);
            }
            head.store(node, Ordering::Release);
            Ok(())
        }))
    }

    pub(crate) unsafe fn pop(
        _index: Index,
        head: &AtomicUsize,
        fence: &Fence,
        cpu: u32,
    ) -> (i32, usize) {
        let popped = section(cpu, || {
            if fence.blocks_sections() {
                return Err(Outcome::CompareFailed);
            }
            let top = head.load(Ordering::Acquire);
            if top == 0 {
                return Err(Outcome::CompareFailed);
            }
            // SAFETY: a linked node; `next` sits at offset 0.
            let next = unsafe { *(top as *const usize) };
            head.store(next, Ordering::Release);
            Ok(top)
        });
        match popped {
            Ok(top) => (Outcome::Committed as i32, top),
            Err(o) => (o as i32, 0),
        }
    }

    /// The slot the fast paths pick, as the real ones read it: `None` for
    /// a fallback thread.
    fn slot_of<S>(index: Index, slots: &PerCpu<S>) -> Option<(u32, &S)> {
        let cpu = slot_here(index);
        slots.get(cpu as usize).map(|slot| (cpu, slot))
    }

    pub(crate) fn try_lock_here<S: Fenced>(
        index: Index,
        slots: &PerCpu<S>,
        holder: usize,
    ) -> (i32, u32) {
        let Some((cpu, slot)) = slot_of(index, slots) else {
            return (Outcome::CompareFailed as i32, 0);
        };
        // SAFETY: the words of a live slot.
        (
            unsafe { try_lock(index, slot.word(), slot.fence(), cpu, holder) },
            cpu,
        )
    }

    /// As the real push, which reads the head inside its section: here the
    /// head is read before it and compared in it, which commits the same
    /// pushes.
    pub(crate) unsafe fn push_here<S: Fenced>(
        index: Index,
        slots: &PerCpu<S>,
        node: *mut usize,
    ) -> i32 {
        let Some((cpu, slot)) = slot_of(index, slots) else {
            return Outcome::CompareFailed as i32;
        };
        let head = slot.word().load(Ordering::Relaxed);
        // SAFETY: `node` is the caller's; its `next` (a real atomic in
        // every build) sits at offset 0.
        unsafe { (*node.cast::<crate::sync::StaticAtomicUsize>()).store(head, Ordering::Relaxed) };
        // SAFETY: the words of a live slot.
        unsafe { push(index, slot.word(), slot.fence(), head, node as usize, cpu) }
    }

    pub(crate) unsafe fn pop_here<S: Fenced>(index: Index, slots: &PerCpu<S>) -> (i32, usize) {
        let Some((cpu, slot)) = slot_of(index, slots) else {
            return (Outcome::CompareFailed as i32, 0);
        };
        // SAFETY: forwarded from the caller.
        unsafe { pop(index, slot.word(), slot.fence(), cpu) }
    }

    /// The simulated `membarrier`: waits for every section in flight;
    /// false once a model refused it.
    pub(crate) fn expedite(index: Index, slot: usize) -> bool {
        if MACHINE.refused.load(Ordering::Relaxed) {
            return false;
        }
        visit(index, slot);
        true
    }

    /// The simulated move onto the CPUs: running on a CPU waits for the
    /// section running there, if any. (Sections that picked the CPU but
    /// have not started are not aborted, as on a real CPU: they start
    /// later and find the fence.)
    pub(crate) fn visit(_index: Index, _slot: usize) {
        for cpu in &MACHINE.cpus {
            drop(cpu.lock().unwrap());
        }
    }
}
