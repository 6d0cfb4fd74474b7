//! The fallback side of the per-CPU lock and stack: a *fence* word per slot.
//!
//! A thread that cannot run critical sections (or names a slot itself)
//! takes a slot's fence with a compare-exchange. Critical sections on that
//! slot read the fence first and fail while it is not 0, but a section that
//! read it just before it was taken could still commit afterwards, so the
//! new holder first makes sure that none can ([`drain`](super::drain)).
//!
//! Every such section reads the fence *before* any other word of the slot.
//! A section that starts after the drain may still overlap the holder's
//! work; reading the fence first means it either sees the fence held and
//! fails, or sees it released and then reads the words as the holder left
//! them. A section that read the list head first could see the head before
//! the holder unlinked it, then the fence after its release, and commit a
//! pointer to a freed node (the loom model in `tests/loom_percpu.rs` finds
//! exactly that interleaving).
//!
//! # What the word holds
//!
//! - `0`: free; sections may commit.
//! - [`CLOSED`]: free, and sections must keep off: the lock and the stack
//!   run no sections (the kernel has no rseq membarrier: every fence starts
//!   `CLOSED`), or stopped running them while the process ran (`drain.rs`
//!   says when: every fence is released `CLOSED` from then on). A section
//!   finds the fence non-zero and fails, and its operation's cold path
//!   takes the fence path, so the operations' fast path needs no check of
//!   the switch; the next holder has nothing to make sure of (a fence
//!   released as 0 would cost it the slow check again). A fence still 0
//!   at the switch lets sections commit until its first holder, which
//!   makes sure of the slot without `membarrier` before it proceeds.
//! - [`USER`]: held by a [`PerCpuLockGuard`](super::PerCpuLockGuard).
//! - [`HELD`] with the fork epoch above it: held inside one of the
//!   library's own short regions ([`Region`]: a stack pop, a stack push
//!   where sections run, a lock being taken where sections run).
//!
//! # Signal handlers
//!
//! A [`Region`] runs with every signal blocked. A handler that ran inside
//! one and needed a fence would wait for it forever if it were its own
//! thread's, and could wait in a cycle if it were another's (each thread's
//! handler waiting for the fence the other thread's region holds). So no
//! handler runs while the library holds a fence, and a handler may use
//! every operation, on any slot. Waiting *for* a fence happens with the
//! caller's mask, since a guard of the lock may hold it for long.
//!
//! # Fork
//!
//! A `fork` child holds only the forking thread, never inside a region
//! (signals are blocked there, so not even from a handler). The child's
//! fork handler bumps the epoch, so a region's hold from before the fork no
//! longer matches: the first thread that needs the slot takes the fence
//! over, with nothing to drain (no section of the parent runs in the
//! child). A region leaves the slot consistent at every instruction (one
//! commit store, after private writes), so taking it over is safe. Guards
//! held by user code ([`USER`]) stay held, as any lock's.

use crate::cs::Index;
use crate::sync::{backoff, AtomicUsize, Ordering, SignalsBlocked};

/// Held by a guard of the per-CPU lock.
const USER: usize = 1;
/// Free, while the lock and the stack run no sections.
const CLOSED: usize = 2;
/// Held in a region; the epoch sits above [`EPOCH_SHIFT`].
const HELD: usize = 4;
const EPOCH_SHIFT: u32 = 3;

#[cfg(not(restartable_loom))]
static EPOCH: crate::sync::StaticAtomicUsize = crate::sync::StaticAtomicUsize::new(0);

/// The value of a region's hold now: forks this process survived (its
/// child bumps the epoch) make older holds stale. `Relaxed`: the epoch only
/// changes in a fork child, before any other code runs there.
#[inline]
fn held() -> usize {
    #[cfg(not(restartable_loom))]
    let epoch = EPOCH.load(Ordering::Relaxed) & (usize::MAX >> EPOCH_SHIFT);
    #[cfg(restartable_loom)]
    let epoch = 0;
    HELD | epoch << EPOCH_SHIFT
}

/// In a `fork` child (see `fork.rs`): a new epoch, so that fences held in
/// regions from before the fork are seen as stale and taken over.
#[cfg(not(restartable_loom))]
pub(crate) fn after_fork_in_child() {
    EPOCH.fetch_add(1, Ordering::Relaxed);
}

/// What a thread that needs the slot finds in the fence word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Free,
    Closed,
    /// Held in a region from before a fork: no live thread holds it.
    Stale,
    /// Held by a live thread (a region, or a guard).
    Held,
}

fn classify(word: usize, held: usize) -> Seen {
    match word {
        0 => Seen::Free,
        CLOSED => Seen::Closed,
        USER => Seen::Held,
        _ if word == held => Seen::Held,
        _ => Seen::Stale,
    }
}

/// Why one attempt to take a fence failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Busy {
    /// A live thread holds it.
    Held,
    /// It changed between the read and the compare-exchange: try again.
    Raced,
}

/// A slot's fence word; see the module docs for its values. Taken with a
/// compare-exchange (`Acquire`, pairing with the `Release` that freed it);
/// critical sections only read it.
#[derive(Debug)]
#[repr(transparent)]
pub(crate) struct Fence(AtomicUsize);

/// A slot of the per-CPU lock or stack as their sections see it: the word
/// they guard (the lock word, the list head) and the fence after it.
///
/// # Safety
/// Outside loom, `word` is the slot's first field and `fence` the next,
/// [`FENCE_OFFSET`](crate::cs::FENCE_OFFSET) bytes on: the fast sections
/// address both from the slot's start (each slot type asserts this at
/// compile time).
pub(crate) unsafe trait Fenced {
    /// The guarded word.
    fn word(&self) -> &AtomicUsize;
    /// Its fence.
    fn fence(&self) -> &Fence;
}

/// A fence held in one of the library's own regions, with every signal
/// blocked; [`Region::leave`] (or dropping it) releases the fence, then
/// restores the mask.
#[derive(Debug)]
pub(crate) struct Region<'a> {
    fence: &'a Fence,
    /// Leave the fence to a lock guard ([`Region::hand_to_user`]).
    to_user: bool,
    /// Dropped after `Drop::drop` has released the fence.
    _blocked: SignalsBlocked,
}

impl Fence {
    /// The fence of a new slot: free, and [`CLOSED`] where the lock and
    /// the stack run no sections, so that a section fails on it without
    /// any other check. (Deciding the state here means no slot exists
    /// before the process knows whether sections run.)
    pub(crate) fn new() -> Self {
        Fence(AtomicUsize::new(free_value()))
    }

    #[cfg(not(restartable_loom))]
    pub(crate) const fn word(&self) -> *mut usize {
        self.0.as_ptr()
    }

    /// Whether a section must fail: the word is not 0. `Acquire` pairs
    /// with the release of the last holder, so a section that finds it free
    /// sees that holder's writes.
    #[cfg_attr(not(restartable_loom), allow(dead_code))] // the asm reads the word
    pub(crate) fn blocks_sections(&self) -> bool {
        self.0.load(Ordering::Acquire) != 0
    }

    /// Whether a live thread holds the fence (a section that failed on it
    /// should wait rather than give up).
    pub(crate) fn is_held(&self) -> bool {
        classify(self.0.load(Ordering::Relaxed), held()) == Seen::Held
    }

    /// Whether the fence is held by no live thread (a fork child's view of
    /// a region from before the fork). A section that failed on it must
    /// take the fence path, which takes it over: waiting would never end.
    pub(crate) fn is_stale(&self) -> bool {
        classify(self.0.load(Ordering::Relaxed), held()) == Seen::Stale
    }

    /// Enters a region on slot `slot`: waits (with the caller's signal
    /// mask) until the fence can be taken, takes it with every signal
    /// blocked, and makes sure no section can still commit on the slot.
    pub(crate) fn enter(&self, index: Index, slot: usize) -> Region<'_> {
        let mut spins = 0u32;
        loop {
            match self.try_enter(index, slot) {
                Ok(region) => return region,
                Err(Busy::Held) => backoff(&mut spins),
                Err(Busy::Raced) => {}
            }
        }
    }

    /// One attempt at [`enter`](Self::enter): the region, or why not.
    pub(crate) fn try_enter(&self, index: Index, slot: usize) -> Result<Region<'_>, Busy> {
        let held = held();
        let word = self.0.load(Ordering::Relaxed);
        let drain = match classify(word, held) {
            Seen::Free => true,
            // Sections stopped before this fence was last released: a
            // late one finds the fence non-zero and fails.
            Seen::Closed => false,
            // No section of the parent runs in a fork child.
            Seen::Stale => false,
            Seen::Held => return Err(Busy::Held),
        };
        let blocked = SignalsBlocked::new();
        // `Acquire` pairs with the `Release` of the previous holder.
        if self
            .0
            .compare_exchange(word, held, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return Err(Busy::Raced);
        }
        if drain {
            super::drain::drain(index, slot);
        }
        Ok(Region {
            fence: self,
            to_user: false,
            _blocked: blocked,
        })
    }

    /// Takes the fence for a lock guard at once, where no section can run
    /// on the slot (see [`sections_may_run`](super::drain::sections_may_run)):
    /// nothing to make sure of, so no region, and one compare-exchange.
    /// Waits with the caller's signal mask.
    pub(crate) fn take_for_user(&self) {
        let mut spins = 0u32;
        while self.try_take_for_user().is_err() {
            backoff(&mut spins);
        }
    }

    /// One attempt at [`take_for_user`](Self::take_for_user).
    pub(crate) fn try_take_for_user(&self) -> Result<(), Busy> {
        let word = self.0.load(Ordering::Relaxed);
        if classify(word, held()) == Seen::Held {
            return Err(Busy::Held);
        }
        // `Acquire` pairs with the `Release` of the previous holder.
        self.0
            .compare_exchange(word, USER, Ordering::Acquire, Ordering::Relaxed)
            .map(drop)
            .map_err(|_| Busy::Raced)
    }

    /// Releases a lock guard's hold; pairs with the `Acquire` of the next
    /// holder (and the sections' read).
    pub(crate) fn release_user(&self) {
        self.0.store(free_value(), Ordering::Release);
    }
}

impl Region<'_> {
    /// Releases the fence, then restores the signal mask.
    pub(crate) fn leave(self) {}

    /// Hands the fence to a lock guard, which releases it
    /// ([`Fence::release_user`]); restores the signal mask.
    pub(crate) fn hand_to_user(mut self) {
        self.to_user = true;
    }
}

impl Drop for Region<'_> {
    fn drop(&mut self) {
        if self.to_user {
            // The same thread goes on holding it: nothing to publish.
            self.fence.0.store(USER, Ordering::Relaxed);
        } else {
            // `Release` publishes the holder's writes to the next holder and
            // to sections that find the fence free.
            self.fence.0.store(free_value(), Ordering::Release);
        }
    }
}

/// What a free fence holds: 0 while the lock and the stack run sections,
/// [`CLOSED`] where they never did or have stopped.
fn free_value() -> usize {
    if super::drain::lock_sections_enabled() {
        0
    } else {
        CLOSED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_classify() {
        let now = HELD | 3 << EPOCH_SHIFT;
        assert_eq!(classify(0, now), Seen::Free);
        assert_eq!(classify(CLOSED, now), Seen::Closed);
        assert_eq!(classify(USER, now), Seen::Held);
        assert_eq!(classify(now, now), Seen::Held);
        assert_eq!(classify(HELD | 2 << EPOCH_SHIFT, now), Seen::Stale);
    }
}
