//! The membarrier pattern (`ActiveTable`): updaters add through a pointer
//! to the active per-CPU table; a swapper makes the other table active and
//! then expects the old one to stay still, round after round, with more
//! updaters than cores. Passes in every environment; written the plain way
//! (`cs::load_add_load_load_add_store`, then `membarrier`), the same test
//! saw updates land on the inactive table in some rounds wherever the
//! updaters took the fallbacks (`RESTARTABLE_DISABLE=1`).

// The loom build simulates sections and has no `membarrier`.
#![cfg(not(restartable_loom))]

mod common;

use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use restartable::ActiveTable;

const WORKERS: usize = 4;
/// Rounds of a run; `RESTARTABLE_MEMBARRIER_ROUNDS` asks for more.
fn rounds() -> usize {
    std::env::var("RESTARTABLE_MEMBARRIER_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000)
}
const STILL: Duration = Duration::from_micros(200);

/// A table: one pointer per possible CPU, each to that CPU's counter, then
/// one per worker, for workers that name their entry themselves.
struct Table {
    entries: Box<[isize]>,
    counters: Box<[AtomicIsize]>,
}

impl Table {
    fn new() -> Box<Table> {
        let n = restartable::possible_cpus();
        let counters: Box<[AtomicIsize]> = (0..n + WORKERS).map(|_| AtomicIsize::new(0)).collect();
        let entries = counters.iter().map(|c| c.as_ptr() as isize).collect();
        Box::new(Table { entries, counters })
    }
    fn sum(&self) -> isize {
        self.counters.iter().map(|c| c.load(Ordering::SeqCst)).sum()
    }
}

/// A 32-byte area registered privately by "another library".
#[repr(C, align(32))]
struct PrivateArea([u32; 8]);

/// Makes the calling thread foreign where the library owns the area (its
/// area is not registered yet): true if it is.
fn make_foreign() -> bool {
    // Leaked: the kernel may write it until the thread exits.
    let private = Box::leak(Box::new(PrivateArea([0, u32::MAX, 0, 0, 0, 0, 0, 0])));
    common::raw_register((private as *mut PrivateArea).cast()).is_ok()
        && restartable::sections() == restartable::Sections::Foreign
}

#[test]
fn a_swapped_out_table_stays_still() {
    common::check_owner();
    stress(0, rounds());
}

#[test]
fn a_swapped_out_table_stays_still_with_foreign_threads_mixed_in() {
    if common::check_owner() != restartable::Owner::Library {
        println!("not library-owned: no thread can be made foreign here");
        return;
    }
    stress(2, rounds() / 2);
}

/// `WORKERS` updaters, the first `foreign` of them with another area
/// registered (each on its own entry), against `rounds` swaps.
fn stress(foreign: usize, rounds: usize) {
    let (a, b) = (Table::new(), Table::new());
    let tables = [a.entries.as_ptr() as isize, b.entries.as_ptr() as isize];
    let active = Arc::new(ActiveTable::new(tables[0] as *mut u8));
    let stop = Arc::new(AtomicBool::new(false));
    let adds = Arc::new(AtomicU64::new(0));
    let n = restartable::possible_cpus();
    let workers: Vec<_> = (0..WORKERS)
        .map(|k| {
            let (active, stop, adds) = (Arc::clone(&active), Arc::clone(&stop), Arc::clone(&adds));
            thread::spawn(move || {
                let own = k < foreign;
                if own {
                    assert!(make_foreign(), "worker {k} is foreign");
                }
                let mut done = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // SAFETY: both tables hold, for every CPU and then for
                    // every worker, a pointer to a live counter, 8 bytes
                    // apart.
                    unsafe {
                        if own {
                            active.add(((n + k) * 8) as isize, 1);
                        } else {
                            active.add_current(8, 1);
                        }
                    }
                    done += 1;
                }
                adds.fetch_add(done, Ordering::Relaxed);
            })
        })
        .collect();
    let mut late = 0usize;
    let tabs = [&a, &b];
    for round in 0..rounds {
        let next = (round + 1) % 2;
        let was = active.swap(tables[next] as *mut u8);
        assert_eq!(was as isize, tables[round % 2]);
        let old = tabs[round % 2];
        let before = old.sum();
        let end = Instant::now() + STILL;
        while Instant::now() < end {
            std::hint::spin_loop();
        }
        if old.sum() != before {
            late += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let total = adds.load(Ordering::Relaxed) as isize;
    assert_eq!(a.sum() + b.sum(), total);
    println!(
        "{foreign} foreign of {WORKERS}: {late} of {rounds} rounds saw the inactive table move"
    );
    assert_eq!(
        late, 0,
        "updates landed on the inactive table after the swap"
    );
}

#[test]
fn a_fork_child_swaps_whatever_the_updaters_were_doing() {
    common::check_owner();
    let (a, b) = (Table::new(), Table::new());
    let tables = [a.entries.as_ptr() as isize, b.entries.as_ptr() as isize];
    let active = Arc::new(ActiveTable::new(tables[0] as *mut u8));
    let pool = restartable::PerCpuPool::with_layout(restartable::Index::Cpu, 4, 4096).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (active, stop, pool) = (Arc::clone(&active), Arc::clone(&stop), pool.clone());
            thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // SAFETY: both tables hold a live counter per CPU.
                    unsafe { active.add_current(8, 1) };
                    n += 1;
                    if n % 64 == 0 {
                        // Allocations in flight at the forks, too.
                        drop(pool.alloc_zeroed::<u64>().unwrap());
                    }
                }
            })
        })
        .collect();
    // Fallback updaters spend much of their time counted in flight: some
    // fork below catches one there, which the child must not wait for.
    for round in 0..20 {
        let (active, pool) = (Arc::clone(&active), pool.clone());
        let next = tables[(round + 1) % 2];
        common::forked::fork_within(
            Duration::from_secs(20),
            move || {
                active.swap(next as *mut u8);
                active.swap(next as *mut u8);
                drop(pool.alloc_zeroed::<u64>().unwrap());
            },
            || {},
        )
        .unwrap_or_else(|e| panic!("fork {round}: {e}"));
        thread::sleep(Duration::from_millis(2));
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
}
