//! The per-CPU memory pool: exact sums through critical sections on pool
//! instances with many more threads than cores (by CPU and by concurrency
//! id), lazily initialised instances, memory committed only where written
//! (1024 possible slots, 2 used), reuse of freed ranges, errors. Passes in
//! every environment: glibc owns the area, the library owns it, rseq
//! unavailable.

mod common;

use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use restartable::cs::{self, Index, Outcome};
use restartable::{PerCpuBox, PerCpuPool, PoolError};

const THREADS: usize = 16;

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

/// Two words per instance, each updated by its own operation.
#[derive(Default)]
#[repr(C)]
struct Pair {
    adds: AtomicIsize,
    stores: AtomicIsize,
}

// SAFETY: two atomics: zero is valid.
unsafe impl restartable::Zeroable for Pair {}

fn add_one(b: &PerCpuBox<Pair>) {
    let outcome = b.retry_current(|p, slot| {
        // SAFETY: a live word of the box, updated only by these operations.
        unsafe { cs::load_add_store(b.index(), p.adds.as_ptr(), 1, slot) }
    });
    assert_eq!(outcome, Outcome::Committed);
}

/// `stores += 1` by compare-and-store, retried on a failed compare.
fn bump_stores(b: &PerCpuBox<Pair>) {
    loop {
        let outcome = b.retry_current(|p, slot| {
            let old = p.stores.load(Ordering::Relaxed);
            // SAFETY: as in `add_one`.
            unsafe { cs::load_cbne_store(b.index(), p.stores.as_ptr(), old, old + 1, slot) }
        });
        if outcome == Outcome::Committed {
            return;
        }
    }
}

fn exact_on(index: Index) {
    const OPS: isize = 100_000;
    let pool = PerCpuPool::with_layout(index, restartable::possible_cpus(), 4096).unwrap();
    let zeroed = Arc::new(pool.alloc_zeroed::<Pair>().unwrap());
    let lazy = Arc::new(pool.alloc_with(|_| Pair::default()).unwrap());
    let (z, l) = (Arc::clone(&zeroed), Arc::clone(&lazy));
    on_threads(move |_| {
        for _ in 0..OPS {
            add_one(&z);
            bump_stores(&l);
        }
    });
    let adds: isize = zeroed
        .iter()
        .map(|(_, p)| p.adds.load(Ordering::Relaxed))
        .sum();
    let stores: isize = lazy
        .iter()
        .map(|(_, p)| p.stores.load(Ordering::Relaxed))
        .sum();
    assert_eq!(adds, OPS * THREADS as isize);
    assert_eq!(stores, OPS * THREADS as isize);
    println!(
        "{index:?}: {} of {} lazy slots initialised",
        lazy.iter().count(),
        lazy.slots()
    );
}

#[test]
fn sums_are_exact_by_cpu() {
    common::check_owner();
    exact_on(Index::Cpu);
}

#[test]
fn sums_are_exact_by_mm_cid() {
    common::check_owner();
    exact_on(Index::MmCid);
}

#[test]
fn instances_sit_at_a_fixed_stride() {
    let pool = PerCpuPool::with_layout(Index::Cpu, 8, 8192).unwrap();
    let a = pool.alloc_zeroed::<u64>().unwrap();
    let b = pool.alloc_zeroed::<[u8; 3]>().unwrap();
    let (base, stride) = a.raw_parts();
    assert_eq!(stride, 8192);
    for i in 0..8 {
        assert_eq!(
            a.get(i).unwrap() as *const u64,
            base.wrapping_byte_add(i * stride)
        );
        assert_eq!(*a.get(i).unwrap(), 0);
        assert_eq!(*b.get(i).unwrap(), [0; 3]);
    }
    assert!(a.get(8).is_none());
    // Distinct objects never overlap within a slot.
    let (bb, _) = b.raw_parts();
    assert!(bb as usize >= base as usize + 8 || bb as usize + 3 <= base as usize);
}

#[test]
fn lazy_instances_are_built_once_on_first_access() {
    static BUILT: AtomicUsize = AtomicUsize::new(0);
    let pool = PerCpuPool::with_layout(Index::Cpu, 64, 4096).unwrap();
    let b = Arc::new(
        pool.alloc_with(|slot| {
            BUILT.fetch_add(1, Ordering::Relaxed);
            AtomicIsize::new(1000 + slot as isize)
        })
        .unwrap(),
    );
    assert_eq!(b.iter().count(), 0, "nothing built before an access");
    let b2 = Arc::clone(&b);
    // Many threads race for the first access to the same slots.
    on_threads(move |t| {
        for slot in [3, 5, 63, t % 4] {
            b2.get(slot).unwrap().fetch_add(1, Ordering::Relaxed);
        }
    });
    let built: Vec<usize> = b.iter().map(|(i, _)| i).collect();
    assert_eq!(built, vec![0, 1, 2, 3, 5, 63]);
    assert_eq!(
        BUILT.load(Ordering::Relaxed),
        6,
        "each slot built exactly once"
    );
    assert_eq!(
        b.get(63).unwrap().load(Ordering::Relaxed),
        1063 + THREADS as isize
    );
    assert_eq!(
        b.get(3).unwrap().load(Ordering::Relaxed),
        1003 + THREADS as isize + 4
    );
}

#[test]
fn drop_runs_for_built_instances_only_and_freed_ranges_read_zero() {
    static DROPPED: AtomicUsize = AtomicUsize::new(0);
    struct Noisy(u64);
    impl Drop for Noisy {
        fn drop(&mut self) {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
    let pool = PerCpuPool::with_layout(Index::Cpu, 16, 4096).unwrap();
    let b = pool
        .alloc_with(|slot| Noisy(u64::MAX - slot as u64))
        .unwrap();
    let (first, _) = b.raw_parts();
    assert_eq!(b.get(2).unwrap().0, u64::MAX - 2);
    assert_eq!(b.get(9).unwrap().0, u64::MAX - 9);
    drop(b);
    assert_eq!(DROPPED.load(Ordering::Relaxed), 2);
    // The same range again, zeroed: the old values were cleared.
    let z = pool.alloc_zeroed::<u64>().unwrap();
    assert_eq!(z.raw_parts().0 as usize, first as usize);
    assert!(z.iter().all(|(_, v)| *v == 0));
}

#[test]
fn errors_are_reported() {
    assert_eq!(
        PerCpuPool::with_layout(Index::Cpu, 0, 4096).unwrap_err(),
        PoolError::NoSlots
    );
    assert_eq!(
        PerCpuPool::with_layout(Index::Cpu, 4, 0).unwrap_err(),
        PoolError::BadStride
    );
    assert_eq!(
        PerCpuPool::with_layout(Index::Cpu, 4, 4097).unwrap_err(),
        PoolError::BadStride
    );
    assert_eq!(
        PerCpuPool::with_layout(Index::Cpu, usize::MAX / 4096, 8192).unwrap_err(),
        PoolError::BadStride
    );
    let pool = PerCpuPool::with_layout(Index::Cpu, 2, 4096).unwrap();
    assert_eq!(
        pool.alloc_zeroed::<[u8; 4097]>().unwrap_err(),
        PoolError::BadLayout
    );
    #[derive(Debug)]
    #[repr(align(8192))]
    struct Huge(#[allow(dead_code)] u8);
    assert_eq!(
        pool.alloc_with(|_| Huge(0)).unwrap_err(),
        PoolError::BadLayout
    );
    let whole = pool.alloc_zeroed::<[u8; 4096]>().unwrap();
    assert_eq!(pool.alloc_zeroed::<u8>().unwrap_err(), PoolError::Exhausted);
    drop(whole);
    let small = pool.alloc_zeroed::<u8>().unwrap();
    assert_eq!(*small.get(1).unwrap(), 0);
    assert!(PoolError::Exhausted.to_string().contains("larger stride"));
}

/// Resident kilobytes of the mapping that starts at `addr`, from
/// `/proc/self/smaps`; asserts that the mapping is `len` bytes (that the
/// kernel merged no neighbour into it).
fn rss_kb_of_mapping(addr: usize, len: usize) -> usize {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut inside = false;
    for line in smaps.lines() {
        if let Some((range, _)) = line.split_once(' ') {
            if let Some((start, _)) = range.split_once('-') {
                if let Ok(start) = usize::from_str_radix(start, 16) {
                    if !line.starts_with("Rss") && range.contains('-') {
                        inside = start == addr;
                        continue;
                    }
                }
            }
        }
        if inside {
            if let Some(kb) = line.strip_prefix("Size:") {
                let kb: usize = kb.trim().trim_end_matches(" kB").trim().parse().unwrap();
                assert_eq!(kb * 1024, len, "the pool's mapping alone");
            }
            if let Some(kb) = line.strip_prefix("Rss:") {
                return kb.trim().trim_end_matches(" kB").trim().parse().unwrap();
            }
        }
    }
    panic!("no mapping at {addr:#x} in /proc/self/smaps");
}

#[test]
fn memory_is_committed_only_where_written() {
    // Alone in a child: other tests' pools could be mapped next to this
    // one, and the kernel merges neighbouring mappings of the same kind.
    if std::env::var_os("POOL_RSS_CHILD").is_none() {
        let out = common::run_test_in_child("memory_is_committed_only_where_written", |cmd| {
            cmd.env("POOL_RSS_CHILD", "1");
        });
        let text = String::from_utf8_lossy(&out.stdout);
        for line in text.lines().filter(|l| l.starts_with("pool of")) {
            println!("{line}");
        }
        return;
    }
    const SLOTS: usize = 1024;
    const OBJECTS: usize = 64;
    let pool = PerCpuPool::with_layout(Index::Cpu, SLOTS, 64 * 1024).unwrap();
    let proto = [7u64; 8];
    let zeroed: Vec<PerCpuBox<[AtomicIsize; 8]>> =
        (0..OBJECTS).map(|_| pool.alloc_zeroed().unwrap()).collect();
    let lazy: Vec<PerCpuBox<[u64; 8]>> = (0..OBJECTS)
        .map(|_| pool.alloc_with(move |_| proto).unwrap())
        .collect();
    let map = zeroed[0].raw_parts().0 as usize;
    assert_eq!(
        rss_kb_of_mapping(map, SLOTS * 64 * 1024),
        0,
        "allocation touches nothing"
    );
    // Two "online" CPUs: slots 0 and 1 written, the 1022 others only read.
    for slot in [0, 1] {
        for z in &zeroed {
            z.get(slot).unwrap()[0].fetch_add(1, Ordering::Relaxed);
        }
        for l in &lazy {
            assert_eq!(l.get(slot).unwrap()[7], 7);
        }
    }
    let sum: isize = zeroed
        .iter()
        .flat_map(|z| z.iter().map(|(_, v)| v[0].load(Ordering::Relaxed)))
        .sum();
    assert_eq!(sum, 2 * OBJECTS as isize);
    assert_eq!(lazy[0].iter().count(), 2);
    let used = 2 * OBJECTS * 64; // bytes of each slot in use
    let per_slot_kb = used.div_ceil(4096) * 4;
    let rss = rss_kb_of_mapping(map, SLOTS * 64 * 1024);
    println!(
        "pool of {SLOTS} slots x 64 KiB ({} MiB reserved), {} objects of 64 bytes, \
         2 slots written: {rss} kB resident (bound {} kB)",
        SLOTS * 64 / 1024,
        2 * OBJECTS,
        2 * per_slot_kb
    );
    assert!(rss <= 2 * per_slot_kb, "{rss} kB resident");
    drop(zeroed);
    drop(lazy);
    assert!(
        rss_kb_of_mapping(map, SLOTS * 64 * 1024) <= 2 * per_slot_kb,
        "freeing touches no other slot"
    );
    drop(pool);
}

#[test]
fn current_mm_cid_is_always_a_usable_index() {
    let owner = common::check_owner();
    // The kernel may hand the thread another id between two reads (it was
    // preempted and the process's ids were compacted): compare with a raw
    // id read on both sides of the call, the same both times.
    let (cid, raw) = (0..1000)
        .find_map(|_| {
            let before = restartable::mm_cid();
            let cid = restartable::current_mm_cid();
            (restartable::mm_cid() == before).then_some((cid, before))
        })
        .expect("mm_cid stays the same across one call at least once in 1000 tries");
    assert!((cid as usize) < restartable::possible_cpus());
    match raw {
        Some(raw) => assert_eq!(cid, raw, "the kernel's id where there is one"),
        None => {
            println!("no mm_cid ({owner:?}): current_mm_cid() stands in with the CPU");
            assert!(owner == restartable::Owner::Unavailable || restartable::feature_size() < 28);
        }
    }
    // Exact through the _mm_cid operation on every thread.
    let slots = Arc::new(restartable::PerCpu::new(|_| AtomicIsize::new(0)));
    let s = Arc::clone(&slots);
    on_threads(move |_| {
        for _ in 0..20_000 {
            loop {
                let cid = restartable::current_mm_cid();
                let word = s.get(cid as usize).unwrap().as_ptr();
                // SAFETY: a live word of the slot array.
                if unsafe { cs::load_add_store(Index::MmCid, word, 1, cid) } == Outcome::Committed {
                    break;
                }
            }
        }
    });
    let sum: isize = slots.iter().map(|s| s.load(Ordering::Relaxed)).sum();
    assert_eq!(sum, 20_000 * THREADS as isize);
}

#[test]
fn a_fork_child_builds_a_slot_a_vanished_thread_was_building() {
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;
    static ENTERED: AtomicBool = AtomicBool::new(false);
    static RELEASE: AtomicBool = AtomicBool::new(false);
    let pool = PerCpuPool::with_layout(Index::Cpu, 8, 4096).unwrap();
    let b = Arc::new(
        pool.alloc_with(|slot| {
            if thread::current().name() == Some("builder") {
                // Stays inside the initialiser until released.
                ENTERED.store(true, Ordering::SeqCst);
                while !RELEASE.load(Ordering::SeqCst) {
                    thread::sleep(Duration::from_millis(1));
                }
            }
            AtomicIsize::new(slot as isize * 10)
        })
        .unwrap(),
    );
    let b2 = Arc::clone(&b);
    let builder = thread::Builder::new()
        .name("builder".into())
        .spawn(move || b2.get(5).unwrap().load(Ordering::Relaxed))
        .unwrap();
    while !ENTERED.load(Ordering::SeqCst) {
        thread::sleep(Duration::from_millis(1));
    }
    // The child has no builder: it must build slot 5 itself, not wait.
    let child = common::forked::fork_within(
        Duration::from_secs(20),
        || {
            assert_eq!(b.get(5).unwrap().load(Ordering::Relaxed), 50);
            assert_eq!(b.get(6).unwrap().load(Ordering::Relaxed), 60);
        },
        || {},
    );
    RELEASE.store(true, Ordering::SeqCst);
    assert_eq!(builder.join().unwrap(), 50);
    child.unwrap();
    assert_eq!(b.iter().map(|(i, _)| i).collect::<Vec<_>>(), vec![5]);
}

struct Storm {
    zeroed: PerCpuBox<Pair>,
    lazy: PerCpuBox<Pair>,
}

static STORM: std::sync::OnceLock<Storm> = std::sync::OnceLock::new();
static HANDLED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

extern "C" fn on_sigusr1(_: libc::c_int) {
    if let Some(s) = STORM.get() {
        add_one(&s.zeroed);
        bump_stores(&s.lazy);
        HANDLED.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn sums_are_exact_under_a_signal_storm_and_forced_migrations() {
    use std::sync::atomic::{AtomicBool, AtomicU64};
    use std::sync::Mutex;
    const OPS: u64 = 100_000;
    common::check_owner();
    let pool = PerCpuPool::new().unwrap();
    let storm = STORM.get_or_init(|| Storm {
        zeroed: pool.alloc_zeroed().unwrap(),
        lazy: pool.alloc_with(|_| Pair::default()).unwrap(),
    });
    // SAFETY: installs an async-signal-safe handler (critical sections on
    // pool instances, whose first access is behind blocked signals, and an
    // atomic); SA_RESTART keeps the workers' system calls going.
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
    let workers: Arc<Mutex<Vec<(libc::pthread_t, libc::pid_t)>>> = Arc::default();
    let (ready, finished, storm_over) = (
        Arc::new(Barrier::new(THREADS + 1)),
        Arc::new(Barrier::new(THREADS + 1)),
        Arc::new(Barrier::new(THREADS + 1)),
    );
    let ops = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let (workers, ops) = (Arc::clone(&workers), Arc::clone(&ops));
            let (ready, finished, storm_over) = (
                Arc::clone(&ready),
                Arc::clone(&finished),
                Arc::clone(&storm_over),
            );
            thread::spawn(move || {
                add_one(&storm.zeroed);
                bump_stores(&storm.lazy);
                // SAFETY: pthread_self and gettid have no preconditions.
                let me = unsafe { (libc::pthread_self(), libc::gettid()) };
                workers.lock().unwrap().push(me);
                ready.wait();
                let start = std::time::Instant::now();
                let mut mine = 1;
                // At least OPS updates, and on until the storm has landed a
                // hundred signals (bounded in time).
                while mine < OPS
                    || (HANDLED.load(Ordering::Relaxed) < 100
                        && start.elapsed() < std::time::Duration::from_secs(10))
                {
                    add_one(&storm.zeroed);
                    bump_stores(&storm.lazy);
                    mine += 1;
                }
                ops.fetch_add(mine, Ordering::Relaxed);
                finished.wait();
                storm_over.wait(); // alive until no signal can target it
            })
        })
        .collect();
    ready.wait();
    let done = Arc::new(AtomicBool::new(false));
    let stormer = {
        let (done, workers) = (Arc::clone(&done), Arc::clone(&workers));
        thread::spawn(move || {
            let workers = workers.lock().unwrap().clone();
            let mut round = 0usize;
            while !done.load(Ordering::Relaxed) {
                for (k, &(thread, tid)) in workers.iter().enumerate() {
                    common::pin_thread(tid, cpus[(round + k) % cpus.len()]);
                    // SAFETY: the workers stay alive until this thread has
                    // been joined.
                    unsafe { libc::pthread_kill(thread, libc::SIGUSR1) };
                }
                round += 1;
                thread::yield_now();
            }
        })
    };
    finished.wait();
    done.store(true, Ordering::Relaxed);
    stormer.join().unwrap();
    storm_over.wait();
    for h in handles {
        h.join().unwrap();
    }
    let handled = HANDLED.load(Ordering::Relaxed);
    assert!(handled > 0, "the storm delivered no signal");
    let want = (ops.load(Ordering::Relaxed) + handled) as isize;
    let adds: isize = storm
        .zeroed
        .iter()
        .map(|(_, p)| p.adds.load(Ordering::Relaxed))
        .sum();
    let stores: isize = storm
        .lazy
        .iter()
        .map(|(_, p)| p.stores.load(Ordering::Relaxed))
        .sum();
    assert_eq!(adds, want);
    assert_eq!(stores, want);
    println!("signal storm: {handled} handler updates");
}
