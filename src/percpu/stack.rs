//! `PerCpuStack`: a LIFO list per CPU, pushed and popped without atomics.

use core::fmt;
use core::marker::PhantomData;
use core::ptr;

use super::fence::Fence;
use super::{rseq, Index, PerCpu};
use crate::cs::Outcome;
use crate::sync::{backoff, AtomicUsize, Ordering};

/// A heap node. `next` must stay at offset 0: the pop section loads it at
/// `head + 0`.
#[repr(C)]
struct Node<T> {
    next: *mut Node<T>,
    value: T,
}

#[repr(C)]
struct Slot {
    /// Address of the top node, or 0. Changed only by the commit of a
    /// section running on this slot's CPU with the fence seen free, or by
    /// the holder of `fence`.
    head: AtomicUsize,
    /// Held by a thread that cannot run critical sections (see `fence.rs`).
    fence: Fence,
}

/// One LIFO list per CPU. [`push`](Self::push) and [`pop`](Self::pop) work
/// on the list of the CPU the thread runs on, inside critical sections: no
/// atomic instruction, no ABA problem (a section that is interrupted
/// restarts, and only the CPU's own sections touch its list).
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
pub struct PerCpuStack<T> {
    slots: PerCpu<Slot>,
    _owns: PhantomData<Box<Node<T>>>,
}

// SAFETY: values move between threads through the lists: `T: Send` suffices,
// as for a channel.
unsafe impl<T: Send> Sync for PerCpuStack<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for PerCpuStack<T> {}

impl<T> PerCpuStack<T> {
    /// Empty lists, one per possible CPU.
    pub fn new() -> Self {
        Self::with_index(Index::Cpu)
    }

    /// Empty lists, one per CPU or per concurrency id.
    pub fn with_index(index: Index) -> Self {
        PerCpuStack {
            slots: PerCpu::with_index(index, |_| Slot {
                head: AtomicUsize::new(0),
                fence: Fence::default(),
            }),
            _owns: PhantomData,
        }
    }

    /// The number of lists.
    pub fn lists(&self) -> usize {
        self.slots.len()
    }

    /// Pushes `value` on the list of the current CPU.
    pub fn push(&self, value: T) {
        let node = Box::into_raw(Box::new(Node {
            next: ptr::null_mut(),
            value,
        }));
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
            unsafe { (*node).next = head as *mut Node<T> };
            // SAFETY: both words belong to this live slot.
            let outcome =
                unsafe { rseq::push(index, &slot.head, &slot.fence, head, node as usize, cpu) };
            match outcome {
                Outcome::Committed => return,
                Outcome::CompareFailed if slot.fence.is_held() => backoff(&mut spins),
                Outcome::CompareFailed | Outcome::Aborted => crate::sync::spin_hint(),
            }
        }
    }

    /// Pops from the list of the current CPU; `None` if it is empty.
    pub fn pop(&self) -> Option<T> {
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
            let outcome = unsafe { rseq::pop(index, &slot.head, &slot.fence, cpu) };
            match outcome {
                Ok(node) => {
                    // SAFETY: the commit unlinked `node`; we own it now.
                    let node = unsafe { Box::from_raw(node as *mut Node<T>) };
                    return Some(node.value);
                }
                // The fence was held, or the list was empty: empty still,
                // with the fence free, means empty.
                Err(Outcome::CompareFailed)
                    if slot.fence.is_held() || slot.head.load(Ordering::Relaxed) != 0 =>
                {
                    backoff(&mut spins)
                }
                Err(Outcome::CompareFailed) => return None,
                Err(_) => crate::sync::spin_hint(),
            }
        }
    }

    /// Pops from the current CPU's list, or else from any other list.
    pub fn pop_any(&self) -> Option<T> {
        self.pop()
            .or_else(|| (0..self.slots.len()).find_map(|i| self.pop_slot(i)))
    }

    /// Pushes on list `i` from any CPU (the fallback path).
    ///
    /// # Panics
    /// If `i >= self.lists()`.
    pub fn push_to(&self, i: usize, value: T) {
        let node = Box::into_raw(Box::new(Node {
            next: ptr::null_mut(),
            value,
        }));
        self.push_slot(i, node);
    }

    /// Pops from list `i` from any CPU (the fallback path).
    ///
    /// # Panics
    /// If `i >= self.lists()`.
    pub fn pop_from(&self, i: usize) -> Option<T> {
        self.pop_slot(i)
    }

    fn push_slot(&self, i: usize, node: *mut Node<T>) {
        let slot = self.slots.get(i).expect("list index out of range");
        slot.fence.acquire(self.slots.index(), i);
        let head = slot.head.load(Ordering::Relaxed);
        // SAFETY: `node` is ours until the store below publishes it.
        unsafe { (*node).next = head as *mut Node<T> };
        slot.head.store(node as usize, Ordering::Relaxed);
        slot.fence.release();
    }

    fn pop_slot(&self, i: usize) -> Option<T> {
        let slot = self.slots.get(i).expect("list index out of range");
        slot.fence.acquire(self.slots.index(), i);
        let head = slot.head.load(Ordering::Relaxed) as *mut Node<T>;
        let node = if head.is_null() {
            None
        } else {
            // SAFETY: with the fence held no section can commit on this
            // list, so `head` is a live node that we now unlink and own.
            let node = unsafe { Box::from_raw(head) };
            slot.head.store(node.next as usize, Ordering::Relaxed);
            Some(node.value)
        };
        slot.fence.release();
        node
    }

    /// Whether every list is empty (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.slots
            .iter()
            .all(|s| s.head.load(Ordering::Relaxed) == 0)
    }
}

impl<T> Default for PerCpuStack<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Drop for PerCpuStack<T> {
    fn drop(&mut self) {
        for slot in self.slots.iter_mut() {
            let mut head = slot.head.load(Ordering::Relaxed) as *mut Node<T>;
            while !head.is_null() {
                // SAFETY: `&mut self`: every node is ours, linked once.
                let node = unsafe { Box::from_raw(head) };
                head = node.next;
            }
        }
    }
}

impl<T> fmt::Debug for PerCpuStack<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PerCpuStack")
            .field("index", &self.slots.index())
            .field("lists", &self.slots.len())
            .finish()
    }
}
