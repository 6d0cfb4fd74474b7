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
//! # When membarrier starts failing
//!
//! A sandbox installed after start-up (a seccomp filter) may deny
//! `membarrier` to a process that has been using it. The first holder that
//! gets a refusal (anything but a transient `ENOMEM`) switches the lock and
//! the stack off sections for the whole process (`CLOSED`): every thread
//! takes the fence path from its next operation on.
//!
//! A section that read a fence as 0 before it was taken may still be
//! running, though; and every fence still 0 may yet be taken. The holder of
//! such a fence makes sure of the slot without `membarrier`: a section on
//! slot `c` of a CPU-indexed object commits only while its thread runs on
//! CPU `c`, so the holder moves itself to CPU `c` (`sched_setaffinity`, then
//! back to its own mask). Once it runs there, any section that was running
//! there has been preempted, and a preempted section aborts. For slots by
//! concurrency id, which any CPU may serve, it visits every CPU in turn. A
//! CPU the kernel will not run the holder on (offline, or outside its
//! cpuset) runs no thread of the process either — unless the process spans
//! cpusets (threaded cgroups), which this does not cover.
//!
//! If the kernel refuses `sched_setaffinity` too, nothing observable tells
//! the holder that a section on another CPU is over. It then waits
//! [`GRACE`] before it touches the slot: a section that read the fence
//! before it was taken is a few instructions from its end, and could still
//! commit after that wait only if its CPU stopped executing for that long
//! in the middle of them (a paused virtual CPU). That is the one case left
//! uncovered, documented in [`lock_sections_enabled`].
//!
//! Each fence needs this at most once after the switch: released fences
//! hold `CLOSED` from then on, which fails a late section as surely as a
//! held fence does, so their next holders have nothing to make sure of.
//! The holder changes and restores its own affinity mask:
//! a concurrent `sched_setaffinity` of that thread by someone else is
//! overwritten by the restore.

use crate::cs::Index;
use crate::sync::Ordering;

const UNDECIDED: u8 = 0;
/// Sections run; fences are made sure of with `membarrier`.
const SECTIONS: u8 = 1;
/// No section ever ran: the kernel had no rseq membarrier.
const NO_SECTIONS: u8 = 2;
/// Sections ran, until `membarrier` was refused.
const CLOSED: u8 = 3;

/// How long a holder waits for sections it cannot otherwise rule out.
#[cfg(not(restartable_loom))]
pub(crate) const GRACE: std::time::Duration = std::time::Duration::from_millis(20);

#[cfg(not(restartable_loom))]
static STATE: crate::sync::StaticAtomicU8 = crate::sync::StaticAtomicU8::new(UNDECIDED);

#[cfg(restartable_loom)]
loom::lazy_static! {
    /// The simulated machine always has its `membarrier`, until a model
    /// refuses it ([`super::rseq::refuse_membarrier`]).
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
/// use, and changes at most once: to false, if `membarrier` starts failing
/// (a seccomp filter installed later, say).
///
/// After such a switch, the first holder of each fence makes sure that no
/// section that started before can still commit on its slot by running on
/// the slot's CPU (`sched_setaffinity`; every CPU for slots by concurrency
/// id). If the kernel refuses that too, it waits 20 ms instead, which rules
/// out every such section except on a CPU that stopped executing for longer
/// than that in the middle of it (a paused virtual CPU).
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

/// Switches the lock and the stack off sections, for good.
fn close() {
    let _ = STATE.compare_exchange(SECTIONS, CLOSED, Ordering::Relaxed, Ordering::Relaxed);
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
    match state() {
        SECTIONS => {
            if super::rseq::expedite(index, slot) {
                return;
            }
            close();
            super::rseq::visit(index, slot);
        }
        CLOSED => super::rseq::visit(index, slot),
        // No section ever ran on any slot.
        _ => {}
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
/// (every CPU for slots by concurrency id); false if the kernel refuses.
#[cfg(not(restartable_loom))]
pub(crate) fn expedite_rseq(index: Index, slot: usize) -> bool {
    use linux_raw_sys::general::membarrier_cmd::MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ as EXPEDITED_RSEQ;
    use linux_raw_sys::general::membarrier_cmd_flag::MEMBARRIER_CMD_FLAG_CPU as FLAG_CPU;

    if index == Index::Cpu && membarrier(EXPEDITED_RSEQ as u32, FLAG_CPU as u32, slot as i32) == 0 {
        return true;
    }
    // Slots by concurrency id, or a CPU the kernel refuses to target
    // (offline): every CPU. The one failure this registered command has
    // otherwise is a transient ENOMEM; anything else is a refusal.
    loop {
        if membarrier(EXPEDITED_RSEQ as u32, 0, 0) == 0 {
            return true;
        }
        if errno() != libc::ENOMEM {
            return false;
        }
        // SAFETY: sched_yield has no preconditions.
        unsafe { libc::sched_yield() };
    }
}

/// CPUs an affinity mask on the stack can name.
#[cfg(not(restartable_loom))]
const MASK_CPUS: usize = 8192;

#[cfg(not(restartable_loom))]
type Mask = [usize; MASK_CPUS / usize::BITS as usize];

/// `sched_setaffinity(0, mask)`: 0, or the errno.
#[cfg(not(restartable_loom))]
fn set_affinity(mask: &Mask) -> i32 {
    // SAFETY: `mask` is valid for reading its size.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_sched_setaffinity,
            0,
            core::mem::size_of_val(mask),
            mask.as_ptr(),
        )
    };
    if ret == 0 {
        0
    } else {
        errno()
    }
}

/// Makes sure of slot `slot` without `membarrier`, by running this thread
/// on the CPUs whose sections could commit on it (see the module docs).
/// Async-signal-safe: system calls on a mask on the stack.
#[cfg(not(restartable_loom))]
pub(crate) fn visit_cpus(index: Index, slot: usize) {
    let bits = usize::BITS as usize;
    let mut saved: Mask = [0; MASK_CPUS / usize::BITS as usize];
    // SAFETY: `saved` is valid for writing its size.
    let got = unsafe {
        libc::syscall(
            libc::SYS_sched_getaffinity,
            0,
            core::mem::size_of_val(&saved),
            saved.as_mut_ptr(),
        )
    };
    let cpus = crate::possible_cpus();
    if got < 0 || cpus > MASK_CPUS || slot >= MASK_CPUS {
        return grace();
    }
    // Runs this thread on `cpu`: true once it has run there, or if the
    // kernel runs no thread there (EINVAL: offline, outside the cpuset).
    let visit = |cpu: usize| {
        let mut one: Mask = [0; MASK_CPUS / usize::BITS as usize];
        one[cpu / bits] = 1 << (cpu % bits);
        // For the calling thread the kernel migrates before it returns.
        matches!(set_affinity(&one), 0 | libc::EINVAL)
    };
    let sure = match index {
        Index::Cpu => visit(slot),
        Index::MmCid => (0..cpus).all(visit),
    };
    if set_affinity(&saved) != 0 {
        // The saved mask no longer fits the cpuset: every CPU, which the
        // kernel narrows to what is allowed.
        let _ = set_affinity(&[usize::MAX; MASK_CPUS / usize::BITS as usize]);
    }
    if !sure {
        grace();
    }
}

/// Waits [`GRACE`], with nothing but `nanosleep` and the vDSO clock (both
/// async-signal-safe, and a refused `nanosleep` only makes it spin).
#[cfg(not(restartable_loom))]
fn grace() {
    let end = std::time::Instant::now() + GRACE;
    while std::time::Instant::now() < end {
        let pause = libc::timespec {
            tv_sec: 0,
            tv_nsec: 1_000_000,
        };
        // SAFETY: `pause` is a valid timespec; no remainder is asked for.
        unsafe { libc::nanosleep(&pause, core::ptr::null_mut()) };
    }
}
