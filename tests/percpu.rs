//! Per-CPU types under stress: exact sums, exclusion and no lost or
//! duplicated node, with many more threads than cores, signal storms,
//! forced migrations and (in library-owned mode) foreign threads mixing
//! their fallbacks with rseq threads. Passes in every environment: glibc
//! owns the area, the library owns it, rseq unavailable.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::thread;

use restartable::{Owner, PerCpu, PerCpuCounter, PerCpuLock, PerCpuStack, ThreadState};

const THREADS: usize = 16;

/// Runs `work(i)` on `THREADS` threads released together.
fn on_threads(work: impl Fn(usize) + Send + Sync + 'static) {
    let work = Arc::new(work);
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|i| {
            let (work, barrier) = (Arc::clone(&work), Arc::clone(&barrier));
            thread::spawn(move || {
                barrier.wait();
                work(i)
            })
        })
        .collect();
    for h in handles {
        h.join().expect("worker panicked");
    }
}

fn gettid() -> libc::pid_t {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

#[test]
fn counter_is_exact_with_many_more_threads_than_cores() {
    const OPS: i64 = 200_000;
    let counter = Arc::new(PerCpuCounter::new());
    let c = Arc::clone(&counter);
    on_threads(move |_| {
        for n in 0..OPS {
            // Mixed deltas, including negative ones.
            c.add(if n % 3 == 0 { -1 } else { 2 });
        }
    });
    let per_thread: i64 = (0..OPS).map(|n| if n % 3 == 0 { -1 } else { 2 }).sum();
    assert_eq!(counter.sum(), per_thread * THREADS as i64);
    assert_eq!(counter.per_slot().iter().sum::<i64>(), counter.sum());
    assert_eq!(counter.reset(), per_thread * THREADS as i64);
    assert_eq!(counter.sum(), 0);
    assert!(counter.per_slot().iter().all(|&n| n == 0));
}

#[test]
fn counter_reset_loses_no_concurrent_add() {
    const OPS: i64 = 200_000;
    let counter = Arc::new(PerCpuCounter::new());
    let done = Arc::new(AtomicBool::new(false));
    let resetter = {
        let (counter, done) = (Arc::clone(&counter), Arc::clone(&done));
        std::thread::spawn(move || {
            let (mut cleared, mut resets) = (0i64, 0u64);
            while !done.load(Ordering::Relaxed) || resets == 0 {
                cleared += counter.reset();
                resets += 1;
                std::thread::yield_now();
            }
            (cleared, resets)
        })
    };
    let c = Arc::clone(&counter);
    on_threads(move |_| (0..OPS).for_each(|_| c.add(1)));
    done.store(true, Ordering::Relaxed);
    let (cleared, resets) = resetter.join().unwrap();
    assert!(resets > 0);
    // Every add is in exactly one place: cleared by some reset, or still
    // counted.
    assert_eq!(cleared + counter.sum(), OPS * THREADS as i64);
}

#[test]
fn counter_by_mm_cid_is_exact() {
    const OPS: i64 = 100_000;
    let counter = Arc::new(PerCpuCounter::new_by_mm_cid());
    // Slots by mm_cid where rseq is in use and the kernel fills it (Linux
    // 6.3); by CPU number otherwise.
    let by_cid =
        common::expected_owner() != Owner::Unavailable && common::kernel::has_node_id_and_mm_cid();
    let expected = if by_cid {
        restartable::cs::Index::MmCid
    } else {
        restartable::cs::Index::Cpu
    };
    assert_eq!(counter.index(), expected);
    common::kernel::say(
        "counter_by_mm_cid_is_exact",
        &format!("slots indexed by {expected:?}, sum exact"),
    );
    let c = Arc::clone(&counter);
    on_threads(move |_| (0..OPS).for_each(|_| c.add(1)));
    assert_eq!(counter.sum(), OPS * THREADS as i64);
}

static STORM_COUNTER: OnceLock<PerCpuCounter> = OnceLock::new();
static HANDLED: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_sigusr1(_: libc::c_int) {
    if let Some(c) = STORM_COUNTER.get() {
        c.add(1);
        HANDLED.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn counter_is_exact_under_a_signal_storm_and_forced_migrations() {
    const OPS: i64 = 300_000;
    let counter = STORM_COUNTER.get_or_init(PerCpuCounter::new);
    // SAFETY: installs an async-signal-safe handler (the counter's add and
    // an atomic); SA_RESTART keeps the workers' system calls going.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigusr1 as *const () as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        assert_eq!(
            libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut()),
            0
        );
    }
    let cpus = common::allowed_cpus();
    let done = Arc::new(AtomicBool::new(false));
    let workers: Arc<Mutex<Vec<(libc::pthread_t, libc::pid_t)>>> = Arc::default();
    let barrier = Arc::new(Barrier::new(THREADS + 1));
    // Workers stay alive, past their last add, until the storm has stopped:
    // a joined thread's `pthread_t` must never reach `pthread_kill`.
    let finished = Arc::new(Barrier::new(THREADS + 1));
    let storm_over = Arc::new(Barrier::new(THREADS + 1));
    let adds = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let (workers, barrier, adds) = (
                Arc::clone(&workers),
                Arc::clone(&barrier),
                Arc::clone(&adds),
            );
            let (finished, storm_over) = (Arc::clone(&finished), Arc::clone(&storm_over));
            thread::spawn(move || {
                // The first add registers (lazily) before any signal comes.
                counter.add(1);
                // SAFETY: pthread_self has no preconditions.
                let me = unsafe { libc::pthread_self() };
                workers.lock().unwrap().push((me, gettid()));
                barrier.wait();
                let start = std::time::Instant::now();
                let mut mine: u64 = 1;
                // At least OPS adds, and on until the storm has landed a few
                // hundred signals (bounded in time).
                while mine < OPS as u64
                    || (HANDLED.load(Ordering::Relaxed) < 500
                        && start.elapsed() < std::time::Duration::from_secs(10))
                {
                    counter.add(1);
                    mine += 1;
                }
                adds.fetch_add(mine, Ordering::Relaxed);
                finished.wait();
                storm_over.wait();
            })
        })
        .collect();
    barrier.wait();
    let storm = {
        let (done, workers, cpus) = (Arc::clone(&done), Arc::clone(&workers), cpus.clone());
        thread::spawn(move || {
            let workers = workers.lock().unwrap().clone();
            let mut round = 0usize;
            while !done.load(Ordering::Relaxed) {
                for (k, &(thread, tid)) in workers.iter().enumerate() {
                    common::pin_thread(tid, cpus[(round + k) % cpus.len()]);
                    // SAFETY: the workers wait on `storm_over`, alive,
                    // until this thread has been joined.
                    unsafe { libc::pthread_kill(thread, libc::SIGUSR1) };
                }
                round += 1;
                thread::yield_now();
            }
        })
    };
    finished.wait();
    done.store(true, Ordering::Relaxed);
    storm.join().unwrap();
    storm_over.wait();
    for h in handles {
        h.join().unwrap();
    }
    let handled = HANDLED.load(Ordering::Relaxed) as i64;
    assert!(handled > 0, "the storm delivered no signal");
    assert_eq!(counter.sum(), adds.load(Ordering::Relaxed) as i64 + handled);
    eprintln!(
        "signal storm: {handled} handler adds, {} aborts",
        restartable::cs::abort_count()
    );
}

#[test]
fn lock_excludes_a_plain_payload() {
    const OPS: u64 = 50_000;
    let lock = Arc::new(PerCpuLock::new(|_| (0u64, 0u64)));
    let l = Arc::clone(&lock);
    on_threads(move |_| {
        for _ in 0..OPS {
            let mut g = l.lock();
            // Two plain read-modify-writes that must stay in step.
            let (a, b) = *g;
            assert_eq!(a, b, "two holders at once on slot {}", g.slot());
            *g = (a + 1, b + 1);
        }
    });
    let lock = Arc::try_unwrap(lock).unwrap();
    let total: u64 = lock
        .into_inner()
        .iter()
        .map(|&(a, b)| {
            assert_eq!(a, b);
            a
        })
        .sum();
    assert_eq!(total, OPS * THREADS as u64);
}

#[test]
fn lock_slot_reaches_every_slot() {
    let lock = PerCpuLock::new(|i| i);
    for i in 0..lock.len() {
        let g = lock.lock_slot(i);
        assert_eq!(*g, i);
        assert_eq!(g.slot(), i);
    }
}

#[test]
fn stack_loses_and_duplicates_no_node() {
    const PER_THREAD: usize = 20_000;
    let stack = Arc::new(PerCpuStack::new());
    let popped = Arc::new(Mutex::new(Vec::new()));
    let (s, p) = (Arc::clone(&stack), Arc::clone(&popped));
    on_threads(move |i| {
        let mut mine = Vec::new();
        for n in 0..PER_THREAD {
            s.push(i * PER_THREAD + n);
            if n % 3 == 0 {
                if let Some(v) = s.pop() {
                    mine.push(v);
                }
            }
        }
        p.lock().unwrap().extend(mine);
    });
    let mut all = Arc::try_unwrap(popped).unwrap().into_inner().unwrap();
    while let Some(v) = stack.pop_any() {
        all.push(v);
    }
    assert!(stack.is_empty());
    assert_eq!(all.len(), THREADS * PER_THREAD, "lost or duplicated nodes");
    let unique: HashSet<_> = all.iter().copied().collect();
    assert_eq!(unique.len(), all.len(), "duplicated nodes");
    assert!(all.iter().all(|&v| v < THREADS * PER_THREAD));
}

#[test]
fn stack_drops_remaining_values() {
    let marker = Arc::new(());
    let stack = PerCpuStack::new();
    for _ in 0..10 {
        stack.push(Arc::clone(&marker));
    }
    stack.push_to(0, Arc::clone(&marker));
    assert_eq!(Arc::strong_count(&marker), 12);
    drop(stack);
    assert_eq!(Arc::strong_count(&marker), 1);
}

#[test]
fn per_cpu_slots_cover_every_cpu() {
    let slots = PerCpu::new(|i| i);
    assert_eq!(slots.len(), restartable::possible_cpus());
    assert!(slots.current_index() < slots.len());
    assert_eq!(
        slots.iter().copied().collect::<Vec<_>>(),
        (0..slots.len()).collect::<Vec<_>>()
    );
}

/// Half the threads go through the sections (`lock`, `push`, `pop`), half
/// through the fence on purpose (`lock_slot`, `push_to`, `pop_from`), on
/// the same slots: the lock keeps a plain two-word payload in step, and the
/// stack loses and duplicates no value, in every mode.
fn sections_and_fence_holders_mix() {
    // Operations per thread: 20000, or RESTARTABLE_TEST_MIX_OPS where the
    // machine is emulated (the arm64 suite under qemu's TCG, where each of
    // the fence holders' membarriers waits for the other virtual CPU).
    let ops: usize = match std::env::var("RESTARTABLE_TEST_MIX_OPS") {
        Ok(v) => v.parse().expect("RESTARTABLE_TEST_MIX_OPS is a number"),
        Err(_) => 20_000,
    };
    println!("{ops} operations per thread");
    let lock = Arc::new(PerCpuLock::new(|_| (0u64, 0u64)));
    let stack = Arc::new(PerCpuStack::new());
    let popped = Arc::new(Mutex::new(Vec::new()));
    let (l, s, p) = (Arc::clone(&lock), Arc::clone(&stack), Arc::clone(&popped));
    on_threads(move |i| {
        let mut mine = Vec::new();
        let slots = l.len();
        for n in 0..ops {
            let value = i * ops + n;
            let mut g = if i % 2 == 0 {
                l.lock()
            } else {
                l.lock_slot(n % slots)
            };
            let (a, b) = *g;
            assert_eq!(a, b, "two holders at once on slot {}", g.slot());
            *g = (a + 1, b + 1);
            drop(g);
            if i % 2 == 0 {
                s.push(value);
                mine.extend(s.pop());
            } else {
                s.push_to(n % slots, value);
                mine.extend(s.pop_from((n + i) % slots));
            }
        }
        p.lock().unwrap().extend(mine);
    });
    let total: u64 = Arc::try_unwrap(lock)
        .unwrap()
        .into_inner()
        .iter()
        .map(|&(a, b)| {
            assert_eq!(a, b);
            a
        })
        .sum();
    assert_eq!(total, (ops * THREADS) as u64);
    let mut all = Arc::try_unwrap(popped).unwrap().into_inner().unwrap();
    while let Some(v) = stack.pop_any() {
        all.push(v);
    }
    assert_eq!(all.len(), ops * THREADS, "lost or duplicated values");
    let unique: HashSet<_> = all.iter().copied().collect();
    assert_eq!(unique.len(), all.len(), "duplicated values");
}

#[test]
fn sections_and_fence_holders_mix_exactly() {
    sections_and_fence_holders_mix();
}

/// Set in the environment of the child of [`lock_and_stack_without_rseq_membarrier`].
const NO_MEMBARRIER_CHILD: &str = "RESTARTABLE_TEST_NO_MEMBARRIER_CHILD";

use common::kernel::has_rseq_membarrier as kernel_has_rseq_membarrier;

/// Without the rseq membarrier (before Linux 5.10, here simulated by a
/// seccomp filter that makes `membarrier` answer `ENOSYS`), the lock and
/// the stack run no sections at all, and stay exact.
#[test]
fn lock_and_stack_without_rseq_membarrier() {
    if std::env::var_os(NO_MEMBARRIER_CHILD).is_some() {
        assert!(!kernel_has_rseq_membarrier());
        assert!(!restartable::lock_sections_enabled());
        sections_and_fence_holders_mix();
        foreign_mix();
        println!("no-membarrier child: all checks passed");
        return;
    }
    assert_eq!(
        restartable::lock_sections_enabled(),
        kernel_has_rseq_membarrier()
    );
    common::kernel::say(
        "lock_and_stack_without_rseq_membarrier",
        if kernel_has_rseq_membarrier() {
            "lock and stack sections enabled (rseq membarrier), then off under a filter"
        } else {
            "lock and stack sections off: no rseq membarrier"
        },
    );
    if !common::seccomp::KNOWN_ARCH {
        return; // the filter knows x86_64's and aarch64's system call numbers only
    }
    let out = common::run_test_in_child("lock_and_stack_without_rseq_membarrier", |cmd| {
        cmd.env(NO_MEMBARRIER_CHILD, "1");
        // SAFETY: `block_membarrier` makes only `prctl` calls, which are
        // async-signal-safe, as the code between fork and exec must be.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(cmd, common::seccomp::block_membarrier)
        };
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("all checks passed"),
        "the child did not run the checks:\n{stdout}"
    );
}

/// Registers a private area for the calling thread, so the library finds
/// the thread foreign (`EINVAL`). Returns the area, to unregister later.
fn make_foreign() -> &'static restartable::abi::Rseq {
    // SAFETY: an all-zero `struct rseq` is a valid value.
    let area: Box<restartable::abi::Rseq> = Box::new(unsafe { std::mem::zeroed() });
    // Leaked: the kernel may write the area until the thread unregisters
    // it or exits, and a failing assertion unwinds before either.
    let area: &'static restartable::abi::Rseq = Box::leak(area);
    let ret = common::raw_register(area as *const _ as *mut u8);
    assert_eq!(ret, Ok(()), "private registration failed");
    area
}

fn unmake_foreign(area: &'static restartable::abi::Rseq) {
    assert_eq!(common::raw_unregister(area as *const _ as *mut u8), Ok(()));
}

#[test]
fn foreign_threads_mix_with_rseq_threads_exactly() {
    foreign_mix();
}

fn foreign_mix() {
    if restartable::owner() != Owner::Library {
        // glibc registered every thread (no thread can be foreign), or rseq
        // is unavailable (every thread is on the fallbacks, tested above).
        assert!(matches!(
            restartable::owner(),
            Owner::Libc | Owner::Unavailable
        ));
        return;
    }
    const OPS: u64 = 20_000;
    let counter = Arc::new(PerCpuCounter::new());
    let lock = Arc::new(PerCpuLock::new(|_| 0u64));
    let stack = Arc::new(PerCpuStack::new());
    let (c, l, s) = (Arc::clone(&counter), Arc::clone(&lock), Arc::clone(&stack));
    on_threads(move |i| {
        let foreign = (i % 4 == 0).then(make_foreign);
        if foreign.is_some() {
            c.add(0);
            assert_eq!(restartable::thread_state(), ThreadState::Foreign);
            assert!(!restartable::is_available());
        }
        for n in 0..OPS {
            c.add(1);
            *l.lock() += 1;
            s.push(n);
            assert!(s.pop_any().is_some());
        }
        if let Some(area) = foreign {
            unmake_foreign(area);
        }
    });
    assert_eq!(counter.sum() as u64, OPS * THREADS as u64);
    let lock = Arc::try_unwrap(lock).unwrap();
    assert_eq!(lock.into_inner().iter().sum::<u64>(), OPS * THREADS as u64);
    assert!(stack.is_empty());
}

#[cfg(feature = "abort-stress")]
#[test]
fn delays_inside_sections_force_aborts_and_sums_stay_exact() {
    // The abort count is the process's: run alone in a child, so that no
    // other test's aborts can stand in for this one's.
    if !common::in_child_alone("delays_inside_sections_force_aborts_and_sums_stay_exact") {
        return;
    }
    const OPS: i64 = 100_000;
    let before = restartable::cs::abort_count();
    let counter = Arc::new(PerCpuCounter::new());
    let c = Arc::clone(&counter);
    on_threads(move |_| (0..OPS).for_each(|_| c.add(1)));
    assert_eq!(counter.sum(), OPS * THREADS as i64);
    let aborts = restartable::cs::abort_count() - before;
    eprintln!("abort-stress: {aborts} aborted sections");
    if restartable::is_available() {
        assert!(aborts > 0, "no section aborted despite the delays");
    } else {
        assert_eq!(aborts, 0, "fallbacks run no section");
    }
}

/// Set in the child that sees fewer possible CPUs than the kernel numbers.
const FEW_CPUS_CHILD: &str = "RESTARTABLE_TEST_FEW_CPUS_CHILD";

/// A thread on a CPU beyond the slots (containers can show fewer possible
/// CPUs than the kernel numbers) counts, locks and stacks on the fallback
/// slot, exactly, and never loops. The child runs in a mount namespace of
/// its own where `/sys/devices/system/cpu/possible` reads `0`.
#[test]
fn cpus_beyond_the_slots_fall_back() {
    if std::env::var_os(FEW_CPUS_CHILD).is_some() {
        assert_eq!(restartable::possible_cpus(), 1);
        const OPS: i64 = 100_000;
        let counter = PerCpuCounter::new();
        let lock = PerCpuLock::new(|_| 0i64);
        let stack = PerCpuStack::new();
        assert_eq!((counter.per_slot().len(), lock.len()), (1, 1));
        common::pin_to(1);
        for i in 0..OPS {
            counter.add(1);
            *lock.lock() += 1;
            stack.push(i);
        }
        assert_eq!(restartable::current_cpu(), 1);
        assert_eq!(counter.sum(), OPS);
        assert_eq!(*lock.lock(), OPS);
        let mut popped = 0;
        while stack.pop().is_some() {
            popped += 1;
        }
        assert_eq!(popped, OPS);
        println!("few-cpus child: all checks passed");
        return;
    }
    if !common::allowed_cpus().contains(&1) {
        eprintln!("skipped: CPU 1 is not allowed here");
        return;
    }
    let possible =
        std::env::temp_dir().join(format!("restartable-possible-{}", std::process::id()));
    std::fs::write(&possible, "0\n").unwrap();
    let exe = std::env::current_exe().unwrap();
    let script = format!(
        "mount --bind {} /sys/devices/system/cpu/possible && exec {} --exact \
         cpus_beyond_the_slots_fall_back --nocapture",
        possible.display(),
        exe.display()
    );
    let out = common::output_within(
        std::process::Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .env(FEW_CPUS_CHILD, "1"),
        common::child_limit_or(std::time::Duration::from_secs(60)),
    );
    std::fs::remove_file(&possible).unwrap();
    let (status, stdout, stderr) = (
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    let exec_started = stdout.contains("running 1 test");
    if !status.success() && !exec_started {
        // No mount namespace, or a read-only /sys: nothing to check here.
        eprintln!("skipped: {stderr}");
        return;
    }
    assert!(
        status.success() && stdout.contains("all checks passed"),
        "child failed ({status}):\n{stdout}\n{stderr}"
    );
}

/// A counter in a `static`: `PerCpuCounter::new` is a `const fn` that
/// allocates nothing; the first use allocates the slots, once, even when
/// threads race to it.
static HITS: PerCpuCounter = PerCpuCounter::new();

#[test]
fn static_counter_allocates_on_first_use_and_stays_exact() {
    const THREADS: usize = 8;
    const ADDS: i64 = 50_000;
    let start = std::sync::Arc::new(std::sync::Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let start = std::sync::Arc::clone(&start);
            std::thread::spawn(move || {
                start.wait(); // every thread's first add races to allocate
                (0..ADDS).for_each(|_| HITS.add(1));
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(HITS.sum(), THREADS as i64 * ADDS);
    assert_eq!(HITS.per_slot().len(), restartable::possible_cpus());
    assert_eq!(HITS.reset(), THREADS as i64 * ADDS);
    assert_eq!(HITS.sum(), 0);
}

#[test]
fn a_counter_never_used_sums_to_zero() {
    let counter = PerCpuCounter::new();
    assert_eq!(counter.sum(), 0);
    assert_eq!(counter.reset(), 0);
    let by_cid = PerCpuCounter::new_by_mm_cid();
    assert_eq!(by_cid.sum(), 0);
    // The index a counter by concurrency id reports: mm_cid where the
    // kernel provides it, else CPU numbers.
    let want = if restartable::feature_size() >= 28 {
        restartable::cs::Index::MmCid
    } else {
        restartable::cs::Index::Cpu
    };
    assert_eq!(by_cid.index(), want);
    println!("by-cid counter indexes by {want:?}");
}
