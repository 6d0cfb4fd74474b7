//! Making sure that no critical section can still commit on a slot whose
//! fence was just taken, and deciding whether the lock and the stack run
//! sections at all.
//!
//! The usual way is `membarrier(2)` with
//! `MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ` (Linux 5.10): when it returns,
//! every section that was running on the target CPU (or on every CPU, for
//! slots indexed by concurrency id) has been aborted or has committed.
//!
//! A kernel without that command leaves no way to fence sections, so the
//! lock and the stack then run none: every thread takes the fence, and the
//! fence alone excludes ([`lock_sections_enabled`] is false from the
//! start).
//!
//! The kernel answered the query and the registration for that command,
//! so a later refusal (anything but a transient `ENOMEM`) leaves no way to
//! make sure of the slot: the holder aborts the process rather than go on
//! unfenced.

use crate::cs::Index;
use crate::sync::Ordering;

const UNDECIDED: u8 = 0;
/// Sections run; fences are made sure of with `membarrier`.
const SECTIONS: u8 = 1;
/// No section ever ran: the kernel had no rseq membarrier.
const NO_SECTIONS: u8 = 2;

#[cfg(not(restartable_loom))]
static STATE: crate::sync::StaticAtomicU8 = crate::sync::StaticAtomicU8::new(UNDECIDED);

#[cfg(restartable_loom)]
loom::lazy_static! {
    /// The simulated machine always has its `membarrier`.
    static ref STATE: crate::sync::AtomicU8 = crate::sync::AtomicU8::new(SECTIONS);
}

/// The state, deciding it on first use. `Relaxed`: each value is a
/// decision on its own, read again by every operation; the slots' words
/// are ordered by the fences.
#[inline]
fn state() -> u8 {
    match STATE.load(Ordering::Relaxed) {
        UNDECIDED => decide(),
        state => state,
    }
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
#[inline]
pub fn lock_sections_enabled() -> bool {
    state() == SECTIONS
}

/// Asks the kernel for the rseq membarrier and registers for it. Racing
/// callers may each ask; the first answer published is the only one used.
/// Async-signal-safe: two system calls and a compare-exchange.
#[cold]
#[cfg(not(restartable_loom))]
fn decide() -> u8 {
    use linux_raw_sys::general::membarrier_cmd::{
        MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ as EXPEDITED_RSEQ, MEMBARRIER_CMD_QUERY as QUERY,
        MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ as REGISTER,
    };
    let supported = membarrier(QUERY as u32, 0, 0);
    let usable = supported >= 0
        && supported & i64::from(EXPEDITED_RSEQ as u32) != 0
        && membarrier(REGISTER as u32, 0, 0) == 0;
    let mine = if usable { SECTIONS } else { NO_SECTIONS };
    match STATE.compare_exchange(UNDECIDED, mine, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => mine,
        Err(first) => first,
    }
}

#[cfg(restartable_loom)]
fn decide() -> u8 {
    STATE.load(Ordering::Relaxed)
}

/// Whether any thread of the process may run critical sections.
fn rseq_may_run() -> bool {
    cfg!(restartable_loom)
        || crate::owner() != crate::Owner::Unavailable
        || crate::stats().registrations > 0
}

/// Whether a section may ever run on a slot of the lock or the stack: if
/// not, a fence holder has nothing to make sure of, and nothing but other
/// fallback threads to exclude. Never turns from false to true: no thread
/// registers once the process is `Unavailable`, and `NO_SECTIONS` is final.
#[inline]
pub(crate) fn sections_may_run() -> bool {
    rseq_may_run() && state() != NO_SECTIONS
}

/// Makes sure that no critical section that started before the fence of
/// slot `slot` was taken can still commit on it (see the module docs).
pub(crate) fn drain(index: Index, slot: usize) {
    if !rseq_may_run() {
        return;
    }
    if state() == SECTIONS {
        super::rseq::expedite(index, slot);
    }
}

#[cfg(not(restartable_loom))]
fn membarrier(cmd: u32, flags: u32, cpu: i32) -> i64 {
    // SAFETY: membarrier takes three integers and touches no user memory.
    unsafe { libc::syscall(libc::SYS_membarrier, cmd, flags, cpu) as i64 }
}

#[cfg(not(restartable_loom))]
fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Aborts or completes every critical section running on the slot's CPU
/// (every CPU for slots by concurrency id).
#[cfg(not(restartable_loom))]
pub(crate) fn expedite_rseq(index: Index, slot: usize) {
    use linux_raw_sys::general::membarrier_cmd::MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ as EXPEDITED_RSEQ;
    use linux_raw_sys::general::membarrier_cmd_flag::MEMBARRIER_CMD_FLAG_CPU as FLAG_CPU;

    if index == Index::Cpu && membarrier(EXPEDITED_RSEQ as u32, FLAG_CPU as u32, slot as i32) == 0 {
        return;
    }
    // Slots by concurrency id, or a CPU the kernel refuses to target
    // (offline): every CPU. The holder may not go on unfenced; the one
    // failure this registered command can have is a transient ENOMEM.
    loop {
        if membarrier(EXPEDITED_RSEQ as u32, 0, 0) == 0 {
            return;
        }
        if errno() != libc::ENOMEM {
            let msg = b"restartable: membarrier(PRIVATE_EXPEDITED_RSEQ) failed\n";
            // SAFETY: writes a static buffer to stderr, then aborts; both
            // are async-signal-safe.
            unsafe {
                libc::write(2, msg.as_ptr().cast(), msg.len());
                libc::abort();
            }
        }
        // SAFETY: sched_yield has no preconditions.
        unsafe { libc::sched_yield() };
    }
}
