//! `PerCpuLock` waiting, `try_lock` and the relock check: a waiter for a
//! guard held for long sleeps (the kernel counts its voluntary context
//! switches) instead of spinning or yielding; `try_lock` never waits; locking a slot the
//! thread already holds panics with a message instead of hanging. Passes in
//! every environment: glibc owns the area, the library owns it, rseq
//! unavailable.

mod common;

use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use restartable::PerCpuLock;

/// How many voluntary context switches the waiter must make while it waits:
/// one that only spins or yields makes none (`sched_yield` leaves a thread
/// runnable, so the kernel counts its switches as involuntary), one that
/// sleeps makes one per sleep.
const SLEEPS: u64 = 10;
/// How long the holder waits for them before it gives up: only a waiter
/// that never sleeps takes that long, however loaded the machine.
const PATIENCE: Duration = Duration::from_secs(20);

/// This thread's CPU time, from `getrusage(RUSAGE_THREAD)`.
fn thread_cpu_time() -> Duration {
    // SAFETY: an all-zero rusage is a valid value to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is valid for writing.
    let ret = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    assert_eq!(ret, 0, "getrusage: {}", std::io::Error::last_os_error());
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Thread `tid`'s voluntary context switches, from its `/proc` status.
fn voluntary_switches(tid: libc::pid_t) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status"))
        .expect("read the waiter's /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("voluntary_ctxt_switches in /proc status")
}

/// Holds slot `slot` while another thread, on CPU `cpu`, waits for it with
/// `wait`, until the waiter has slept [`SLEEPS`] times (or [`PATIENCE`]
/// ran out); asserts that it slept, and prints the CPU time it spent.
fn assert_waiter_sleeps(
    what: &str,
    cpu: usize,
    slot: usize,
    wait: fn(&PerCpuLock<u64>, usize) -> restartable::PerCpuLockGuard<'_, u64>,
) {
    let lock = Arc::new(PerCpuLock::new(|_| 0u64));
    let mut guard = lock.lock_slot(slot);
    let (tid_tx, tid_rx) = mpsc::channel();
    let waiter = {
        let lock = Arc::clone(&lock);
        thread::spawn(move || {
            common::pin_to(cpu);
            // SAFETY: gettid has no preconditions.
            tid_tx.send(unsafe { libc::gettid() }).unwrap();
            let before = thread_cpu_time();
            let mut guard = wait(&lock, slot);
            *guard += 1;
            thread_cpu_time() - before
        })
    };
    let tid = tid_rx.recv().unwrap();
    let baseline = voluntary_switches(tid);
    let start = Instant::now();
    let slept = loop {
        let switches = voluntary_switches(tid) - baseline;
        if switches >= SLEEPS {
            break true;
        }
        if start.elapsed() > PATIENCE {
            break false;
        }
        thread::sleep(Duration::from_millis(5));
    };
    let waited = start.elapsed();
    *guard += 1;
    drop(guard);
    let cpu_time = waiter.join().unwrap();
    assert_eq!(*lock.lock_slot(slot), 2, "both holders added");
    println!("{what}: {SLEEPS} sleeps in {waited:?}, {cpu_time:?} of CPU while waiting");
    assert!(
        slept,
        "{what}: the waiter made fewer than {SLEEPS} voluntary context switches in \
         {PATIENCE:?} of waiting: it spins or yields instead of sleeping"
    );
}

#[test]
fn a_waiter_for_the_current_cpu_slot_sleeps() {
    let cpu = common::allowed_cpus()[0];
    let lock_probe = PerCpuLock::new(|_| ());
    // The slot `lock` picks on `cpu` (a CPU number, clamped to the slots).
    let slot = cpu.min(lock_probe.len() - 1);
    println!("owner {:?}, waiting on CPU {cpu}", restartable::owner());
    assert_waiter_sleeps("lock()", cpu, slot, |lock, slot| {
        let guard = lock.lock();
        assert_eq!(guard.slot(), slot, "lock() took another slot");
        guard
    });
}

#[test]
fn a_waiter_for_a_named_slot_sleeps() {
    let cpu = common::allowed_cpus()[0];
    assert_waiter_sleeps("lock_slot(0)", cpu, 0, |lock, slot| lock.lock_slot(slot));
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
