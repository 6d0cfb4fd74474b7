//! `PerCpuLock` waiting, `try_lock` and the relock check: a waiter for a
//! guard held for long sleeps (the kernel counts its voluntary context
//! switches) instead of spinning; `try_lock` never waits; locking a slot the
//! thread already holds panics with a message instead of hanging. Passes in
//! every environment: glibc owns the area, the library owns it, rseq
//! unavailable.

mod common;

use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use restartable::PerCpuLock;

/// How long the holder keeps the guard while the waiter waits.
const HOLD: Duration = Duration::from_millis(300);

/// This thread's voluntary context switches and CPU time, from
/// `getrusage(RUSAGE_THREAD)`.
fn thread_usage() -> (i64, Duration) {
    // SAFETY: an all-zero rusage is a valid value to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is valid for writing.
    let ret = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    assert_eq!(ret, 0, "getrusage: {}", std::io::Error::last_os_error());
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (usage.ru_nvcsw, tv(usage.ru_utime) + tv(usage.ru_stime))
}

/// Holds slot `slot` for [`HOLD`] on one thread while another waits for it
/// with `wait`; returns the waiter's voluntary context switches and CPU
/// time while it waited.
fn waiter_usage(
    cpu: usize,
    slot: usize,
    wait: fn(&PerCpuLock<u64>, usize) -> restartable::PerCpuLockGuard<'_, u64>,
) -> (i64, Duration) {
    let lock = Arc::new(PerCpuLock::new(|_| 0u64));
    let (held_tx, held_rx) = mpsc::channel();
    let holder = {
        let lock = Arc::clone(&lock);
        thread::spawn(move || {
            let mut guard = lock.lock_slot(slot);
            held_tx.send(()).unwrap();
            thread::sleep(HOLD);
            *guard += 1;
        })
    };
    held_rx.recv().unwrap();
    let waiter = {
        let lock = Arc::clone(&lock);
        thread::spawn(move || {
            common::pin_to(cpu);
            let (switches, cpu_time) = thread_usage();
            let mut guard = wait(&lock, slot);
            *guard += 1;
            let (switches_after, cpu_time_after) = thread_usage();
            (switches_after - switches, cpu_time_after - cpu_time)
        })
    };
    holder.join().unwrap();
    let usage = waiter.join().unwrap();
    assert_eq!(*lock.lock_slot(slot), 2, "both holders added");
    usage
}

/// A waiter that only spun or yielded would make no voluntary switch
/// (`sched_yield` leaves the thread runnable: the kernel counts it as
/// involuntary) and burn CPU for the whole hold; one that sleeps makes
/// many and burns little. The bounds are loose (one switch per 15 ms, half
/// the hold): what they tell apart is sleeping from spinning.
fn assert_sleeps(what: &str, (switches, cpu_time): (i64, Duration)) {
    println!(
        "{what}: {switches} voluntary context switches, {cpu_time:?} of CPU in a {HOLD:?} wait"
    );
    assert!(
        switches >= (HOLD.as_millis() / 15) as i64,
        "{what}: the waiter made only {switches} voluntary context switches in {HOLD:?}: it spins"
    );
    assert!(
        cpu_time < HOLD / 2,
        "{what}: the waiter burnt {cpu_time:?} of CPU in a {HOLD:?} wait"
    );
}

#[test]
fn a_waiter_for_the_current_cpu_slot_sleeps() {
    let cpu = common::allowed_cpus()[0];
    let lock_probe = PerCpuLock::new(|_| ());
    // The slot `lock` picks on `cpu` (a CPU number, clamped to the slots).
    let slot = cpu.min(lock_probe.len() - 1);
    println!("owner {:?}, waiting on CPU {cpu}", restartable::owner());
    assert_sleeps(
        "lock()",
        waiter_usage(cpu, slot, |lock, slot| {
            let guard = lock.lock();
            assert_eq!(guard.slot(), slot, "lock() took another slot");
            guard
        }),
    );
}

#[test]
fn a_waiter_for_a_named_slot_sleeps() {
    let cpu = common::allowed_cpus()[0];
    assert_sleeps(
        "lock_slot(0)",
        waiter_usage(cpu, 0, |lock, slot| lock.lock_slot(slot)),
    );
}

#[test]
fn try_lock_never_waits() {
    common::on_fresh_thread(|| {
        let cpu = common::allowed_cpus()[0];
        common::pin_to(cpu);
        let lock = PerCpuLock::new(|_| 0u32);
        let mut first = lock.try_lock().expect("a free slot is taken at once");
        *first += 1;
        // Held by this very thread: no wait, no panic, just `None`.
        assert!(lock.try_lock().is_none());
        assert!(lock.try_lock_slot(first.slot()).is_none());
        let slot = first.slot();
        drop(first);
        let mut again = lock.try_lock_slot(slot).expect("free again");
        *again += 1;
        drop(again);
        // Held by another thread: `None` too.
        let lock = Arc::new(lock);
        let guard = lock.lock_slot(slot);
        let other = {
            let lock = Arc::clone(&lock);
            thread::spawn(move || lock.try_lock_slot(slot).is_none())
        };
        assert!(
            other.join().unwrap(),
            "try_lock_slot waited or took a held slot"
        );
        drop(guard);
        assert_eq!(*lock.lock_slot(slot), 2);
    });
}

/// Runs `f` on a thread pinned to one CPU and returns its panic message.
fn panic_message(f: impl FnOnce() + Send + 'static) -> String {
    let cpu = common::allowed_cpus()[0];
    let err = thread::spawn(move || {
        common::pin_to(cpu);
        f()
    })
    .join()
    .expect_err("relocking did not panic");
    err.downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[test]
fn relocking_the_current_slot_panics_instead_of_hanging() {
    let message = panic_message(|| {
        let lock = PerCpuLock::new(|_| ());
        let _first = lock.lock();
        let _second = lock.lock();
    });
    assert!(message.contains("not re-entrant"), "message: {message}");
}

#[test]
fn relocking_a_named_slot_panics_instead_of_hanging() {
    let message = panic_message(|| {
        let lock = PerCpuLock::new(|_| ());
        let _first = lock.lock_slot(0);
        let _second = lock.lock_slot(0);
    });
    assert!(
        message.contains("already holds a guard on slot 0"),
        "message: {message}"
    );
}

#[test]
fn a_slot_is_free_again_after_the_panic() {
    // The panicking thread's first guard is dropped while it unwinds.
    let lock = Arc::new(PerCpuLock::new(|_| 0u8));
    let inner = Arc::clone(&lock);
    let _ = panic_message(move || {
        let _first = inner.lock_slot(0);
        let _second = inner.lock_slot(0);
    });
    assert!(lock.try_lock_slot(0).is_some());
}
