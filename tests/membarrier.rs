//! The membarrier pattern (`ActiveTable`): updaters add through a pointer
//! to the active per-CPU table; a swapper makes the other table active and
//! then expects the old one to stay still, round after round, with more
//! updaters than cores. Passes in every environment; written the plain way
//! (`cs::load_add_load_load_add_store`, then `membarrier`), the same test
//! saw updates land on the inactive table in some rounds wherever the
//! updaters took the fallbacks (`RESTARTABLE_DISABLE=1`).

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

/// A table: one pointer per possible CPU, each to that CPU's counter.
struct Table {
    entries: Box<[isize]>,
    counters: Box<[AtomicIsize]>,
}

impl Table {
    fn new() -> Box<Table> {
        let n = restartable::possible_cpus();
        let counters: Box<[AtomicIsize]> = (0..n).map(|_| AtomicIsize::new(0)).collect();
        let entries = counters.iter().map(|c| c.as_ptr() as isize).collect();
        Box::new(Table { entries, counters })
    }
    fn sum(&self) -> isize {
        self.counters.iter().map(|c| c.load(Ordering::SeqCst)).sum()
    }
}

#[test]
fn a_swapped_out_table_stays_still() {
    common::check_owner();
    let (a, b) = (Table::new(), Table::new());
    let tables = [a.entries.as_ptr() as isize, b.entries.as_ptr() as isize];
    let active = Arc::new(ActiveTable::new(tables[0] as *mut u8));
    let stop = Arc::new(AtomicBool::new(false));
    let adds = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (active, stop, adds) = (Arc::clone(&active), Arc::clone(&stop), Arc::clone(&adds));
            thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // SAFETY: both tables hold, for every CPU, a pointer
                    // to a live counter, 8 bytes apart.
                    unsafe { active.add_current(8, 1) };
                    n += 1;
                }
                adds.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();
    let mut late = 0usize;
    let tabs = [&a, &b];
    let rounds = rounds();
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
    println!("{late} of {rounds} rounds saw the inactive table move");
    assert_eq!(
        late, 0,
        "updates landed on the inactive table after the swap"
    );
}
