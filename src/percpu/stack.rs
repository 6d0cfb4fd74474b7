//! `PerCpuStack`: a LIFO list per CPU, pushed and popped without atomics.

use core::fmt;
use core::marker::PhantomData;

use super::fence::{Fence, Fenced};
use super::{rseq, ByCpu, ByMmCid, IndexKind, PerCpu};
use crate::cs::Outcome;
use crate::sync::{backoff, AtomicUsize, Ordering, StaticAtomicUsize as RealAtomicUsize};

/// A heap node. `next` must stay at offset 0: the pop section loads it at
/// `head + 0`.
#[repr(C)]
struct Node<T> {
    /// The node below, or 0. The real atomic in every build (the `Static`
    /// name): the pop section, real or simulated, reads it as a `usize`.
    next: RealAtomicUsize,
    value: T,
}

#[repr(C)]
struct Slot {
    /// Address of the top node, or 0. Changed only by the commit of a
    /// section running on this slot's CPU with the fence seen free, or by
    /// the holder of `fence`.
    head: AtomicUsize,
    /// Held by a thread on the fence path (see `fence.rs`).
    fence: Fence,
}

// SAFETY: the head first, its fence next (asserted below).
unsafe impl Fenced for Slot {
    fn word(&self) -> &AtomicUsize {
        &self.head
    }
    fn fence(&self) -> &Fence {
        &self.fence
    }
}

// The stack's sections read the fence at a fixed offset from the head.
#[cfg(not(restartable_loom))]
const _: () = assert!(
    core::mem::offset_of!(Slot, head) == 0
        && core::mem::offset_of!(Slot, fence) == crate::cs::FENCE_OFFSET
);

/// One LIFO list per CPU. [`push`](Self::push) and [`pop`](Self::pop) work
/// on the list of the CPU the thread runs on, inside critical sections: no
/// atomic instruction, no ABA problem (a section that is interrupted
/// restarts, and only the CPU's own sections touch its list).
///
/// Every operation may be called from a signal handler, on any list,
/// whatever the interrupted code was doing with the stack (sections abort;
/// the fence path holds a fence only with signals blocked, and where no section runs a push takes no fence at all).
/// [`push`](Self::push) allocates a node and the pops free one, through
/// the global allocator, which must then be async-signal-safe itself. A
/// `fork` child may use every list, even one another thread was working on
/// at the fork.
///
/// The type parameter says how lists are indexed, fixed at compile time so
/// that `push` and `pop` have no branch on it: [`ByCpu`] (the default, from
/// [`new`](PerCpuStack::new)) or [`ByMmCid`] (from
/// [`new_by_mm_cid`](PerCpuStack::new_by_mm_cid)).
///
/// # Examples
/// ```
/// use restartable::PerCpuStack;
///
/// let stack = PerCpuStack::new();
/// stack.push(1);
/// stack.push(2);
/// let mut seen = vec![stack.pop_any().unwrap(), stack.pop_any().unwrap()];
/// seen.sort();
/// assert_eq!(seen, [1, 2]);
/// assert_eq!(stack.pop_any(), None);
/// ```
pub struct PerCpuStack<T, I: IndexKind = ByCpu> {
    slots: PerCpu<Slot>,
    _owns: PhantomData<Box<Node<T>>>,
    _index: PhantomData<fn() -> I>,
}

// SAFETY: values move between threads through the lists: `T: Send` suffices,
// as for a channel.
unsafe impl<T: Send, I: IndexKind> Sync for PerCpuStack<T, I> {}
// SAFETY: as above.
unsafe impl<T: Send, I: IndexKind> Send for PerCpuStack<T, I> {}

impl<T> PerCpuStack<T, ByCpu> {
    /// Empty lists, one per possible CPU.
    ///
    /// # Examples
    /// ```
    /// let stack = restartable::PerCpuStack::<String>::new();
    /// assert!(stack.is_empty());
    /// ```
    pub fn new() -> Self {
        Self::build()
    }
}

impl<T> PerCpuStack<T, ByMmCid> {
    /// Empty lists, one per concurrency id (`mm_cid`): a process with few
    /// threads touches only the first few lists. Where the kernel has no
    /// `mm_cid` (before 6.3) the lists are taken by CPU.
    ///
    /// # Examples
    /// ```
    /// use restartable::PerCpuStack;
    /// let stack = PerCpuStack::new_by_mm_cid();
    /// stack.push(1u8);
    /// assert_eq!(stack.pop_any(), Some(1));
    /// ```
    pub fn new_by_mm_cid() -> Self {
        Self::build()
    }
}

impl<T, I: IndexKind> PerCpuStack<T, I> {
    fn build() -> Self {
        PerCpuStack {
            slots: PerCpu::with_index(I::INDEX, |_| Slot {
                head: AtomicUsize::new(0),
                fence: Fence::new(),
            }),
            _owns: PhantomData,
            _index: PhantomData,
        }
    }

    /// The number of lists, one per slot (the same name on [`PerCpu`] and
    /// [`PerCpuLock`](crate::PerCpuLock)).
    ///
    /// # Examples
    /// ```
    /// let stack = restartable::PerCpuStack::<u8>::new();
    /// assert_eq!(stack.slot_count(), restartable::possible_cpus());
    /// ```
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// The number of lists.
    #[deprecated(
        since = "0.1.0",
        note = "renamed `slot_count`, as on every per-CPU type"
    )]
    #[doc(hidden)]
    pub fn lists(&self) -> usize {
        self.slot_count()
    }

    /// Pushes `value` on the list of the current CPU.
    ///
    /// # Examples
    /// ```
    /// let free_buffers = restartable::PerCpuStack::new();
    /// free_buffers.push(vec![0u8; 4096]);
    /// assert!(!free_buffers.is_empty());
    /// ```
    #[inline]
    pub fn push(&self, value: T) {
        let node = Self::node(value);
        if !self.push_here(node) {
            self.push_waiting(node);
        }
    }

    /// One push section on the current CPU's list: whether it committed.
    /// As `PerCpuLock::lock_here`: nothing but the section, the rest left
    /// to the cold path.
    #[inline(always)]
    fn push_here(&self, node: *mut Node<T>) -> bool {
        // SAFETY: `node` is ours until the commit publishes it; `next` is
        // at offset 0 of every node.
        let raw = unsafe { rseq::push_here(I::INDEX, &self.slots, node.cast()) };
        if raw == 0 {
            return true;
        }
        rseq::outcome(raw); // notes an abort
        false
    }

    /// [`push`](Self::push) after its first section did not commit.
    #[cold]
    #[inline(never)]
    fn push_waiting(&self, node: *mut Node<T>) {
        let index = self.slots.index();
        let mut spins = 0;
        loop {
            let Some(cpu) = rseq::fenced_slot(index) else {
                return self.push_slot(self.slots.fallback_index(), node);
            };
            let Some(slot) = self.slots.get(cpu as usize) else {
                return self.push_slot(self.slots.fallback_index(), node);
            };
            let head = slot.head.load(Ordering::Relaxed);
            // SAFETY: `node` is ours until the commit publishes it.
            unsafe { (*node).next.store(head, Ordering::Relaxed) };
            // SAFETY: both words belong to this live slot.
            let raw =
                unsafe { rseq::push(index, &slot.head, &slot.fence, head, node as usize, cpu) };
            match rseq::outcome(raw) {
                Outcome::Committed => return,
                // A fence from before a fork: waiting would not end.
                Outcome::CompareFailed if slot.fence.is_stale() => {
                    return self.push_slot(cpu as usize, node)
                }
                Outcome::CompareFailed if slot.fence.is_held() => backoff(&mut spins),
                Outcome::CompareFailed | Outcome::Aborted => crate::sync::spin_hint(),
            }
        }
    }

    /// Pops from the list of the current CPU; `None` if it is empty.
    ///
    /// # Examples
    /// ```
    /// let stack = restartable::PerCpuStack::new();
    /// stack.push(3);
    /// // The thread may have migrated since the push: then this list is empty.
    /// match stack.pop() {
    ///     Some(v) => assert_eq!(v, 3),
    ///     None => assert_eq!(stack.pop_any(), Some(3)),
    /// }
    /// ```
    #[inline]
    pub fn pop(&self) -> Option<T> {
        match self.pop_here() {
            // SAFETY: the commit unlinked `node`; we own it now.
            Some(node) => Some(unsafe { Self::take(node) }),
            None => self.pop_waiting(),
        }
    }

    /// One pop section on the current CPU's list: the node it unlinked.
    #[inline(always)]
    fn pop_here(&self) -> Option<usize> {
        // SAFETY: as in `pop_waiting`.
        let (raw, node) = unsafe { rseq::pop_here(I::INDEX, &self.slots) };
        if raw == 0 {
            return Some(node);
        }
        rseq::outcome(raw); // notes an abort
        None
    }

    /// [`pop`](Self::pop) after its first section did not commit.
    #[cold]
    #[inline(never)]
    fn pop_waiting(&self) -> Option<T> {
        let index = self.slots.index();
        let mut spins = 0;
        loop {
            let Some(cpu) = rseq::fenced_slot(index) else {
                return self.pop_slot(self.slots.fallback_index());
            };
            let Some(slot) = self.slots.get(cpu as usize) else {
                return self.pop_slot(self.slots.fallback_index());
            };
            // SAFETY: both words belong to this live slot; nodes reachable
            // from `head` are live while the section may still commit (only
            // this CPU's sections and the fence holder unlink them).
            let (raw, node) = unsafe { rseq::pop(index, &slot.head, &slot.fence, cpu) };
            match rseq::outcome(raw) {
                Outcome::Committed => {
                    // SAFETY: the commit unlinked `node`; we own it now.
                    return Some(unsafe { Self::take(node) });
                }
                Outcome::CompareFailed if slot.fence.is_stale() => {
                    return self.pop_slot(cpu as usize)
                }
                // The fence was held, or the list was empty: empty still,
                // with the fence free, means empty.
                Outcome::CompareFailed
                    if slot.fence.is_held() || slot.head.load(Ordering::Relaxed) != 0 =>
                {
                    backoff(&mut spins)
                }
                Outcome::CompareFailed => return None,
                Outcome::Aborted => crate::sync::spin_hint(),
            }
        }
    }

    /// Pops from the current CPU's list, or else from any other list.
    ///
    /// # Examples
    /// ```
    /// let stack = restartable::PerCpuStack::new();
    /// stack.push_to(0, 'a');
    /// assert_eq!(stack.pop_any(), Some('a'));
    /// assert_eq!(stack.pop_any(), None);
    /// ```
    pub fn pop_any(&self) -> Option<T> {
        self.pop()
            .or_else(|| (0..self.slots.len()).find_map(|i| self.pop_slot(i)))
    }

    /// Pushes on list `i` from any CPU (the fallback path).
    ///
    /// # Panics
    /// If `i >= self.slot_count()`.
    ///
    /// # Examples
    /// ```
    /// let stack = restartable::PerCpuStack::new();
    /// let last = stack.slot_count() - 1;
    /// stack.push_to(last, 5);
    /// assert_eq!(stack.pop_from(last), Some(5));
    /// ```
    pub fn push_to(&self, i: usize, value: T) {
        self.push_slot(i, Self::node(value));
    }

    /// Pops from list `i` from any CPU (the fallback path).
    ///
    /// # Panics
    /// If `i >= self.slot_count()`.
    ///
    /// # Examples
    /// ```
    /// let stack = restartable::PerCpuStack::new();
    /// stack.push_to(0, "x");
    /// assert_eq!(stack.pop_from(0), Some("x"));
    /// assert_eq!(stack.pop_from(0), None);
    /// ```
    pub fn pop_from(&self, i: usize) -> Option<T> {
        self.pop_slot(i)
    }

    fn node(value: T) -> *mut Node<T> {
        Box::into_raw(Box::new(Node {
            next: RealAtomicUsize::new(0),
            value,
        }))
    }

    /// Frees an unlinked node and returns its value.
    ///
    /// # Safety
    /// `node` came from [`Self::node`], is unlinked, and nothing else will
    /// read it.
    unsafe fn take(node: usize) -> T {
        // SAFETY: the caller's.
        unsafe { Box::from_raw(node as *mut Node<T>) }.value
    }

    fn push_slot(&self, i: usize, node: *mut Node<T>) {
        let slot = self.slots.get(i).expect("list index out of range");
        // Where no section runs, a push needs no fence: it links the node
        // with one compare-exchange, and the pops (which hold the fence)
        // commit with one too, so neither overwrites the other. Otherwise a
        // section's plain commit could, so the push takes the fence.
        let region =
            super::drain::sections_may_run().then(|| slot.fence.enter(self.slots.index(), i));
        loop {
            let head = slot.head.load(Ordering::Relaxed);
            // SAFETY: `node` is ours until the exchange publishes it.
            unsafe { (*node).next.store(head, Ordering::Relaxed) };
            // `Release` publishes the node to the thread that pops it (its
            // `Acquire` load of `head`).
            if slot
                .head
                .compare_exchange(head, node as usize, Ordering::Release, Ordering::Relaxed)
                .is_ok()
            {
                break;
            }
        }
        drop(region);
    }

    fn pop_slot(&self, i: usize) -> Option<T> {
        let slot = self.slots.get(i).expect("list index out of range");
        let region = slot.fence.enter(self.slots.index(), i);
        let value = loop {
            // `Acquire` pairs with the `Release` of the push that linked
            // the node (a section's plain commit store is a release on x86).
            let head = slot.head.load(Ordering::Acquire);
            if head == 0 {
                break None;
            }
            // SAFETY: with the fence held no section can commit on this
            // list and no other thread pops from it, so `head` is a live
            // node: only pops unlink (and free) nodes, and pushes without
            // the fence only add above it.
            let next = unsafe { (*(head as *const Node<T>)).next.load(Ordering::Relaxed) };
            // A compare-exchange: a push without the fence may have linked
            // a node above `head` since it was read.
            if slot
                .head
                .compare_exchange(head, next, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                // SAFETY: unlinked just above; no one else reads it.
                break Some(unsafe { Self::take(head) });
            }
        };
        region.leave();
        value
    }

    /// Whether every list is empty (a snapshot): the stack holds no
    /// value (`is_empty` means "holds no value" on every per-CPU type).
    ///
    /// # Examples
    /// ```
    /// let stack = restartable::PerCpuStack::new();
    /// assert!(stack.is_empty());
    /// stack.push(1);
    /// assert!(!stack.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.slots
            .iter()
            .all(|s| s.head.load(Ordering::Relaxed) == 0)
    }
}

impl<T> Default for PerCpuStack<T, ByCpu> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T, I: IndexKind> Drop for PerCpuStack<T, I> {
    fn drop(&mut self) {
        for slot in self.slots.iter_mut() {
            let mut head = slot.head.load(Ordering::Relaxed);
            while head != 0 {
                // SAFETY: `&mut self`: every node is ours, linked once.
                let node = unsafe { Box::from_raw(head as *mut Node<T>) };
                head = node.next.load(Ordering::Relaxed);
            }
        }
    }
}

impl<T, I: IndexKind> fmt::Debug for PerCpuStack<T, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PerCpuStack")
            .field("index", &self.slots.index())
            .field("lists", &self.slots.len())
            .finish()
    }
}
