//! Reading the CPU number, node and concurrency id from the area.
//!
//! [`current_cpu`] is the fast path: one load of the process-wide area
//! offset (hoisted out of loops by the compiler), one `%fs`-relative load of
//! `cpu_id`, one predicted branch. A negative `cpu_id` (the thread is not
//! registered yet, or cannot be) sends it to a cold path that registers
//! lazily or falls back to `sched_getcpu()`.

use crate::abi;
use crate::arch;
use crate::area;
use crate::registration;
use crate::sync::{Ordering, StaticAtomicUsize};

/// Reads one 32-bit field of the calling thread's active area.
#[inline(always)]
fn load<const FIELD: usize>() -> u32 {
    // SAFETY: `area::offset()` is the TP offset of the calling thread's
    // active area: glibc's or this library's, both in static TLS and alive
    // for the whole life of the thread.
    unsafe { arch::load_u32::<FIELD>(area::offset()) }
}

/// The CPU the calling thread runs on. Never fails.
///
/// Reads `cpu_id` from the thread's rseq area; on the first call of a
/// thread that is not registered yet it registers lazily; where rseq cannot
/// be used it returns `sched_getcpu()`. The value may be stale as soon as it
/// is returned (the thread can migrate): use it as a hint, or inside a
/// critical section that checks it.
///
/// # Examples
/// ```
/// let cpu = restartable::current_cpu();
/// assert!((cpu as usize) < restartable::possible_cpus());
/// ```
#[doc(alias = "sched_getcpu")]
#[doc(alias = "rseq_current_cpu")]
#[inline(always)]
pub fn current_cpu() -> u32 {
    let cpu = load::<{ abi::CPU_ID_OFFSET }>() as i32;
    if cpu >= 0 {
        cpu as u32
    } else {
        let cpu = current_cpu_cold();
        // SAFETY: `current_cpu_cold` returns a value below 2^31 on every
        // path. Telling the compiler lets the sections that take this CPU
        // drop their own guard against negative values (`never_negative`
        // in `cs`).
        unsafe { core::hint::assert_unchecked(cpu <= i32::MAX as u32) };
        cpu
    }
}

/// The cold path of [`current_cpu`]; always below 2^31.
#[cold]
#[inline(never)]
fn current_cpu_cold() -> u32 {
    if registration::ensure_registered() {
        let cpu = load::<{ abi::CPU_ID_OFFSET }>() as i32;
        if cpu >= 0 {
            return cpu as u32;
        }
    }
    fallback_cpu().min(i32::MAX as u32)
}

/// `cpu_id` as the area holds it, without registering or falling back:
/// negative when the thread is not registered (-1) or registration failed
/// (-2).
///
/// # Examples
/// ```
/// let raw = restartable::current_cpu_raw();
/// assert!(raw >= -2);
/// ```
#[doc(alias = "rseq_current_cpu_raw")]
#[inline(always)]
pub fn current_cpu_raw() -> i32 {
    load::<{ abi::CPU_ID_OFFSET }>() as i32
}

/// `cpu_id_start`: always a valid CPU number once registered (0 before).
///
/// One load and no branch: the cheapest CPU read for a retry loop around
/// the checked [`cs`](crate::cs) operations. On a thread that is not
/// registered yet it reads 0, the section's CPU check fails, and the
/// operation's cold path registers or falls back, so such a loop is exact
/// too. (Without rseq every thread reads 0: where the slot matters for
/// contention as well as exactness, read [`current_cpu`], which falls back
/// to the kernel's answer.)
///
/// # Examples
/// ```
/// let cpu = restartable::cpu_id_start();
/// assert!((cpu as usize) < restartable::possible_cpus());
/// ```
#[inline(always)]
pub fn cpu_id_start() -> u32 {
    // Below 2^31 whatever the area holds (a CPU number always is): one
    // `and`, which tells the compiler so, and lets the sections that take
    // the value drop their guard against negative ones.
    load::<{ abi::CPU_ID_START_OFFSET }>() & i32::MAX as u32
}

/// The NUMA node of the CPU the thread runs on, when the kernel provides it
/// (feature size >= 24) and the thread is registered.
///
/// # Examples
/// ```
/// if let Some(node) = restartable::node_id() {
///     println!("node {node}");
/// }
/// ```
#[doc(alias = "numa_node_of_cpu")]
#[inline]
pub fn node_id() -> Option<u32> {
    field_if_covered::<{ abi::NODE_ID_OFFSET }>(abi::NODE_ID_END)
}

/// The thread's concurrency id (`mm_cid`): dense, below the number of
/// threads and CPUs of the process. `Some` only when the kernel provides it
/// (feature size >= 28) and the thread is registered.
///
/// # Examples
/// ```
/// if let Some(cid) = restartable::mm_cid() {
///     assert!((cid as usize) < restartable::possible_cpus());
/// }
/// ```
#[inline]
pub fn mm_cid() -> Option<u32> {
    field_if_covered::<{ abi::MM_CID_OFFSET }>(abi::MM_CID_END)
}

#[inline]
fn field_if_covered<const FIELD: usize>(end: u32) -> Option<u32> {
    if area::feature_size() < end {
        return None;
    }
    if current_cpu_raw() < 0 && !registration::ensure_registered() {
        return None;
    }
    Some(load::<FIELD>())
}

/// Whether the calling thread's CPU reads and critical sections use rseq
/// (true) or their fallbacks (false). Registers lazily.
///
/// # Examples
/// ```
/// use restartable::{is_available, owner, Owner};
/// if owner() == Owner::Unavailable {
///     assert!(!is_available());
/// }
/// ```
#[inline]
pub fn is_available() -> bool {
    current_cpu_raw() >= 0 || registration::ensure_registered()
}

/// The fallback CPU read: `sched_getcpu()`, or the `getcpu` system call if
/// that fails, or 0 if both fail (a CPU number is a hint, never an error).
///
/// # Examples
/// ```
/// let cpu = restartable::fallback_cpu();
/// assert!((cpu as usize) < restartable::possible_cpus());
/// ```
#[doc(alias = "getcpu")]
#[cold]
pub fn fallback_cpu() -> u32 {
    // SAFETY: sched_getcpu has no preconditions.
    let cpu = unsafe { libc::sched_getcpu() };
    if cpu >= 0 {
        return cpu as u32;
    }
    let mut cpu: u32 = 0;
    // SAFETY: getcpu writes one u32 through the first pointer; the others
    // may be null.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_getcpu,
            &mut cpu as *mut u32,
            core::ptr::null_mut::<u32>(),
            core::ptr::null_mut::<u8>(),
        )
    };
    if ret == 0 {
        cpu
    } else {
        0
    }
}

/// The number of possible CPUs: every `cpu_id` and `mm_cid` is below it.
///
/// Read once from `/sys/devices/system/cpu/possible`, falling back to
/// `sysconf(_SC_NPROCESSORS_CONF)`. Threads that ask before the first
/// answer is published each count, and the first answer is the one every
/// thread uses; none waits for another, so a `fork` child made while a
/// thread was counting counts again itself. Async-signal-safe: the count
/// reads the file into a buffer on the stack.
///
/// # Examples
/// ```
/// assert!(restartable::possible_cpus() >= 1);
/// ```
pub fn possible_cpus() -> usize {
    // `Relaxed`: the count is the only thing published.
    match POSSIBLE.load(Ordering::Relaxed) {
        0 => count_possible_cpus(),
        n => n,
    }
}

/// The published count of [`possible_cpus`], 0 until the first one.
static POSSIBLE: StaticAtomicUsize = StaticAtomicUsize::new(0);

#[cold]
fn count_possible_cpus() -> usize {
    let from_sysfs = read_possible_list().map(|max| max + 1);
    // SAFETY: sysconf has no preconditions.
    let conf = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) };
    let conf = if conf > 0 { conf as usize } else { 1 };
    // Below 2^31 whatever the files say, so that every slot index is too
    // (the lock's and the stack's sections rely on it; no kernel comes
    // near: NR_CPUS is at most 8192).
    let mine = from_sysfs
        .unwrap_or(conf)
        .max(conf)
        .clamp(1, i32::MAX as usize);
    match POSSIBLE.compare_exchange(0, mine, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => mine,
        Err(first) => first,
    }
}

/// The largest CPU number in `/sys/devices/system/cpu/possible`, read
/// without allocating (see `file.rs`).
fn read_possible_list() -> Option<usize> {
    let mut text = [0u8; 1024];
    let mut len = 0;
    let end = crate::file::read_chunks(c"/sys/devices/system/cpu/possible", |chunk| {
        let Some(room) = text.get_mut(len..len + chunk.len()) else {
            // Longer than any list this parses: stop, and ignore it.
            return Some(());
        };
        room.copy_from_slice(chunk);
        len += chunk.len();
        None
    });
    if end != Some(None) {
        return None;
    }
    parse_cpu_list_max(core::str::from_utf8(&text[..len]).ok()?.trim())
}

/// The largest CPU number in a kernel CPU list such as `0-3,8-11`.
fn parse_cpu_list_max(list: &str) -> Option<usize> {
    list.split(',')
        .filter_map(|range| range.rsplit('-').next()?.trim().parse::<usize>().ok())
        .max()
}

#[cfg(test)]
mod tests {
    use super::parse_cpu_list_max;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list_max("0"), Some(0));
        assert_eq!(parse_cpu_list_max("0-1"), Some(1));
        assert_eq!(parse_cpu_list_max("0-3,8-11"), Some(11));
        assert_eq!(parse_cpu_list_max(""), None);
    }
}
