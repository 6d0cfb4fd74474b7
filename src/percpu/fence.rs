//! The fallback side of the per-CPU lock and stack.
//!
//! A thread that cannot run critical sections takes a slot's fence with an
//! atomic compare-exchange. Critical sections on that slot check the fence
//! before they commit, but a section that read the fence just before it was
//! set could still commit afterwards. `membarrier(2)` with
//! `MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ` closes that window: when it
//! returns, every critical section that was running on the target CPU (or on
//! every CPU, for slots indexed by concurrency id) has been aborted or has
//! committed, so the fence holder sees every committed store and no section
//! can commit on the slot until the fence is released.
//!
//! Every such section reads the fence *before* any other word of the slot.
//! A section that starts after the membarrier may still overlap the
//! holder's work; reading the fence first means it either sees the fence
//! held and fails, or sees it released and then reads the words as the
//! holder left them. A section that read the list head first could see the
//! head before the holder unlinked it, then the fence after its release,
//! and commit a pointer to a freed node (the loom model in
//! `tests/loom_percpu.rs` finds exactly that interleaving).
//!
//! A kernel without that membarrier command (before Linux 5.10) leaves no
//! way to fence sections, so the lock and the stack then run none: every
//! thread takes the fence, and the fence alone excludes
//! ([`lock_sections_enabled`]).

use crate::cs::Index;
use crate::sync::{backoff, AtomicUsize, Ordering};

/// A fallback thread's exclusive claim on one slot.
///
/// 0 when free, 1 while a fallback thread holds it. Taken with a
/// compare-exchange (`Acquire`, pairing with the `Release` store of
/// [`Fence::release`]); critical sections only read it.
#[derive(Debug, Default)]
#[repr(transparent)]
pub(crate) struct Fence(AtomicUsize);

impl Fence {
    #[cfg(not(restartable_loom))]
    pub(crate) const fn word(&self) -> *mut usize {
        self.0.as_ptr()
    }

    /// Whether a fallback thread holds the slot. `Acquire` pairs with the
    /// holder's release, so a section that sees it free sees its writes.
    pub(crate) fn is_held(&self) -> bool {
        self.0.load(Ordering::Acquire) != 0
    }

    /// Takes the fence of slot `slot`, then waits until no critical section
    /// on that slot can still commit.
    pub(crate) fn acquire(&self, index: Index, slot: usize) {
        let mut spins = 0u32;
        while self
            .0
            .compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            backoff(&mut spins);
        }
        if cfg!(restartable_loom) || rseq_may_run() {
            super::rseq::expedite(index, slot);
        }
    }

    /// Releases the fence; pairs with the `Acquire` of the next holder.
    pub(crate) fn release(&self) {
        self.0.store(0, Ordering::Release);
    }
}

/// Whether any thread of the process may run critical sections.
fn rseq_may_run() -> bool {
    crate::owner() != crate::Owner::Unavailable || crate::stats().registrations > 0
}

#[cfg(not(restartable_loom))]
const UNDECIDED: u8 = 0;
#[cfg(not(restartable_loom))]
const SECTIONS: u8 = 1;
#[cfg(not(restartable_loom))]
const NO_SECTIONS: u8 = 2;

/// Whether the lock and the stack run critical sections: decided once per
/// process, the first time either needs to know.
#[cfg(not(restartable_loom))]
static SECTIONS_ALLOWED: crate::sync::StaticAtomicU8 = crate::sync::StaticAtomicU8::new(UNDECIDED);

fn membarrier(cmd: u32, flags: u32, cpu: i32) -> i64 {
    // SAFETY: membarrier takes three integers and touches no user memory.
    unsafe { libc::syscall(libc::SYS_membarrier, cmd, flags, cpu) as i64 }
}

/// Whether [`PerCpuLock`](super::PerCpuLock) and
/// [`PerCpuStack`](super::PerCpuStack) update their slots with critical
/// sections.
///
/// They do when the kernel lets a fallback thread fence the sections of one
/// CPU, with `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ)` (Linux
/// 5.10). Without it, nothing could stop a section that read a slot's fence
/// as free from committing after a fallback thread took it, so every thread
/// takes the fence path instead (an atomic compare-exchange per operation):
/// slower, never wrong. The answer is decided once per process, on first
/// use, and never changes.
///
/// # Examples
/// ```
/// // Linux 5.10 or later, with rseq in use:
/// if restartable::is_available() {
///     println!("per-CPU lock and stack use sections: {}",
///              restartable::lock_sections_enabled());
/// }
/// ```
#[cfg(not(restartable_loom))]
#[inline]
pub fn lock_sections_enabled() -> bool {
    match SECTIONS_ALLOWED.load(Ordering::Relaxed) {
        SECTIONS => true,
        NO_SECTIONS => false,
        _ => decide(),
    }
}

/// The simulated machine always has its `membarrier`.
#[cfg(restartable_loom)]
pub fn lock_sections_enabled() -> bool {
    true
}

/// Asks the kernel for the rseq membarrier and registers for it. Racing
/// callers may each ask; the first answer published is the only one used.
/// Async-signal-safe: two system calls and a compare-exchange.
#[cold]
#[cfg(not(restartable_loom))]
fn decide() -> bool {
    use linux_raw_sys::general::membarrier_cmd::{
        MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ as EXPEDITED_RSEQ, MEMBARRIER_CMD_QUERY as QUERY,
        MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ as REGISTER,
    };
    let supported = membarrier(QUERY as u32, 0, 0);
    let usable = supported >= 0
        && supported & i64::from(EXPEDITED_RSEQ as u32) != 0
        && membarrier(REGISTER as u32, 0, 0) == 0;
    let mine = if usable { SECTIONS } else { NO_SECTIONS };
    match SECTIONS_ALLOWED.compare_exchange(UNDECIDED, mine, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => usable,
        Err(first) => first == SECTIONS,
    }
}

/// Aborts or completes every critical section running on the slot's CPU.
#[cfg_attr(restartable_loom, allow(dead_code))] // the simulation has its own
pub(crate) fn expedite_rseq(index: Index, slot: usize) {
    use linux_raw_sys::general::membarrier_cmd::MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ as EXPEDITED_RSEQ;
    use linux_raw_sys::general::membarrier_cmd_flag::MEMBARRIER_CMD_FLAG_CPU as FLAG_CPU;

    if !lock_sections_enabled() {
        // No section ever runs on a fenced slot: nothing to wait for.
        return;
    }
    let ret = match index {
        Index::Cpu => membarrier(EXPEDITED_RSEQ as u32, FLAG_CPU as u32, slot as i32),
        Index::MmCid => -1,
    };
    if ret == 0 {
        return;
    }
    // Slots by concurrency id, or a CPU the kernel refuses to target
    // (offline): every CPU. The holder may not go on unfenced; the one
    // failure this registered command can have is a transient ENOMEM.
    loop {
        match membarrier(EXPEDITED_RSEQ as u32, 0, 0) {
            0 => return,
            _ if std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOMEM) => {
                // SAFETY: sched_yield has no preconditions.
                unsafe { libc::sched_yield() };
            }
            _ => {
                // The kernel answered QUERY and REGISTER but refuses the
                // fence: continuing could let a section commit under the
                // holder.
                let msg = b"restartable: membarrier(PRIVATE_EXPEDITED_RSEQ) failed\n";
                // SAFETY: writes a static buffer to stderr, then aborts;
                // both are async-signal-safe.
                unsafe {
                    libc::write(2, msg.as_ptr().cast(), msg.len());
                    libc::abort();
                }
            }
        }
    }
}
