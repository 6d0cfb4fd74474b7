//! A sandbox that tightens while the process runs: a seccomp filter that
//! denies `membarrier(2)` to every thread, installed after the per-CPU lock
//! and stack have started fencing with it, then one that denies
//! `sched_setaffinity(2)` too. Threads keep locking, pushing and popping
//! through sections and through the fence (and, where the library owns
//! the area, from a foreign thread) across both switches; nothing may
//! abort, and every result stays exact.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use restartable::{ByMmCid, IndexKind, Owner, PerCpuLock, PerCpuStack};

const WORKERS: usize = 4;
const IDS: usize = 1 << 22;

/// A lock and a stack indexed the same way.
struct Pair<I: IndexKind> {
    lock: PerCpuLock<(u64, u64), I>,
    stack: PerCpuStack<usize, I>,
}

/// The objects the workers share, by CPU and by concurrency id.
struct Objects {
    by_cpu: Pair<restartable::ByCpu>,
    by_cid: Pair<ByMmCid>,
    lock_ops: AtomicU64,
    next_id: AtomicUsize,
    /// Per value: +1 when pushed, +16 when popped.
    marks: Box<[AtomicU8]>,
}

impl Objects {
    fn new() -> Self {
        Objects {
            by_cpu: Pair {
                lock: PerCpuLock::new(|_| (0, 0)),
                stack: PerCpuStack::new(),
            },
            by_cid: Pair {
                lock: PerCpuLock::new_by_mm_cid(|_| (0, 0)),
                stack: PerCpuStack::new_by_mm_cid(),
            },
            lock_ops: AtomicU64::new(0),
            next_id: AtomicUsize::new(0),
            marks: (0..IDS).map(|_| AtomicU8::new(0)).collect(),
        }
    }

    fn popped(&self, v: Option<usize>) {
        if let Some(v) = v {
            self.marks[v].fetch_add(16, Ordering::Relaxed);
        }
    }

    /// One round of work: `fenced` threads name their slots (the fence
    /// path), the others take the current CPU's (sections, where the
    /// thread can run them).
    fn work(&self, fenced: bool, n: usize) {
        self.work_on(&self.by_cpu, fenced, n);
        self.work_on(&self.by_cid, fenced, n);
    }

    fn work_on<I: IndexKind>(&self, pair: &Pair<I>, fenced: bool, n: usize) {
        let (lock, stack) = (&pair.lock, &pair.stack);
        {
            let mut g = if fenced {
                lock.lock_slot(n % lock.len())
            } else {
                lock.lock()
            };
            let (a, b) = *g;
            assert_eq!(a, b, "two holders at once on slot {}", g.slot());
            *g = (a + 1, b + 1);
            drop(g);
            self.lock_ops.fetch_add(1, Ordering::Relaxed);
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            if id >= IDS {
                return;
            }
            self.marks[id].fetch_add(1, Ordering::Relaxed);
            if fenced {
                stack.push_to(id % stack.slot_count(), id);
                self.popped(stack.pop_from((id + 1) % stack.slot_count()));
            } else {
                stack.push(id);
                self.popped(stack.pop());
            }
        }
    }

    fn check(&self) {
        self.check_on(&self.by_cpu);
        self.check_on(&self.by_cid);
        for (id, mark) in self.marks.iter().enumerate() {
            let mark = mark.load(Ordering::Relaxed);
            assert!(
                mark == 0 || mark == 17,
                "value {id}: pushed and popped {mark:#x}"
            );
        }
    }

    fn check_on<I: IndexKind>(&self, pair: &Pair<I>) {
        let (lock, stack) = (&pair.lock, &pair.stack);
        {
            let total: u64 = (0..lock.len())
                .map(|i| {
                    let (a, b) = *lock.lock_slot(i);
                    assert_eq!(a, b);
                    a
                })
                .sum();
            assert_eq!(total, self.lock_ops.load(Ordering::Relaxed) / 2);
        }
        while let Some(v) = stack.pop_any() {
            self.marks[v].fetch_add(16, Ordering::Relaxed);
        }
    }
}

/// Registers a private area for the calling thread, so the library finds
/// it foreign (leaked: the kernel may write it until the thread exits).
fn make_foreign() {
    // SAFETY: an all-zero `struct rseq` is a valid value.
    let area: &'static restartable::abi::Rseq = Box::leak(Box::new(unsafe { std::mem::zeroed() }));
    assert_eq!(common::raw_register(area as *const _ as *mut u8), Ok(()));
    assert!(!restartable::is_available());
}

/// Runs the workers on `objects` for `before`, calls `tighten`, runs them
/// for `after`, then checks every result.
fn round(objects: Arc<Objects>, before: Duration, tighten: impl FnOnce(), after: Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Arc::new(Barrier::new(WORKERS + 1));
    let foreign_one = restartable::owner() == Owner::Library;
    let handles: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (objects, stop, started) = (
                Arc::clone(&objects),
                Arc::clone(&stop),
                Arc::clone(&started),
            );
            thread::spawn(move || {
                if foreign_one && w == 0 {
                    make_foreign();
                }
                started.wait();
                let mut n = w;
                while !stop.load(Ordering::Relaxed) {
                    objects.work(w % 2 == 1, n);
                    n += 1;
                }
            })
        })
        .collect();
    started.wait();
    thread::sleep(before);
    tighten();
    thread::sleep(after);
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().expect("worker panicked");
    }
    objects.check();
}

/// Set in the child of [`membarrier_denied_later_neither_aborts_nor_loses_updates`].
const SANDBOX_CHILD: &str = "RESTARTABLE_TEST_SANDBOX_CHILD";

#[test]
fn membarrier_denied_later_neither_aborts_nor_loses_updates() {
    if std::env::var_os(SANDBOX_CHILD).is_none() {
        if !common::seccomp::KNOWN_ARCH {
            println!("skipped: the filters know x86_64's and aarch64's system call numbers only");
            return;
        }
        // The filters cannot be removed: a child of its own takes them.
        let out = common::run_test_in_child(
            "membarrier_denied_later_neither_aborts_nor_loses_updates",
            |cmd| {
                cmd.env(SANDBOX_CHILD, "1");
            },
        );
        print!("{}", String::from_utf8_lossy(&out.stdout));
        return;
    }
    let fencing =
        restartable::lock_sections_enabled() && (restartable::owner() != Owner::Unavailable);
    assert_eq!(
        fencing,
        common::expected_owner() != Owner::Unavailable && common::kernel::has_rseq_membarrier(),
        "the lock and stack fence where rseq and its membarrier (Linux 5.10) exist"
    );
    common::kernel::say(
        "membarrier_denied_later_neither_aborts_nor_loses_updates",
        if fencing {
            "sections fence with membarrier, then turn off when it is refused"
        } else {
            "no fencing sections to turn off (no rseq or no rseq membarrier)"
        },
    );
    // Round 1: membarrier works, then answers EPERM to every thread.
    round(
        Arc::new(Objects::new()),
        Duration::from_millis(100),
        || {
            common::sandbox::deny_on_every_thread(&[common::seccomp::NR_MEMBARRIER], libc::EPERM)
                .expect("install the membarrier filter")
        },
        Duration::from_millis(200),
    );
    if fencing {
        assert!(
            !restartable::lock_sections_enabled(),
            "a refused membarrier turns the lock and stack sections off"
        );
    }
    // Round 2, on objects no one fenced yet: sched_setaffinity refused too.
    round(
        Arc::new(Objects::new()),
        Duration::from_millis(30),
        || {
            common::sandbox::deny_on_every_thread(
                &[common::sandbox::NR_SCHED_SETAFFINITY],
                libc::EPERM,
            )
            .expect("install the sched_setaffinity filter")
        },
        Duration::from_millis(150),
    );
    println!(
        "sandbox child ({}, fencing with membarrier at first: {fencing}): all checks passed",
        restartable::owner()
    );
}
