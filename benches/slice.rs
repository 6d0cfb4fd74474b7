//! Lock hold-time tails under oversubscription, with and without the
//! time-slice extension: `cargo bench --bench slice`.
//!
//! `4 x CPUs` threads take one spin lock in turn, hold it for a short
//! fixed amount of work and release it. A holder preempted inside the
//! region stretches its hold time to a scheduler tick or more, and every
//! waiter spins meanwhile; the extension asks the scheduler to let the
//! holder finish first. Prints the hold-time percentiles (p50, p99,
//! p99.9, p99.99, max) and the throughput of each variant. Where the kernel does
//! not offer the extension (see `rseq_info`), the run says why and the
//! "with" variant measures the guard's no-op cost only. Run it again with
//! `GLIBC_TUNABLES=glibc.pthread.rseq=0`: glibc before 2.40 registers the
//! classic 32-byte length, which the kernel gives no extension.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use restartable::slice::{self, SliceGuard, SliceStatus};

/// Work inside the region, in iterations of a dependent multiply chain
/// (about 2 µs here: long enough for ticks to land inside holds, short
/// enough for one extension, some microseconds set by
/// `/proc/sys/kernel/rseq_slice_extension_nsec`, to cover one).
const WORK: u64 = 10_000;
/// How long each variant runs.
const RUN: Duration = Duration::from_secs(2);

/// A test-and-test-and-set spin lock that yields while it waits, so that
/// oversubscribed waiters let the holder run.
struct SpinLock {
    held: AtomicBool,
}

impl SpinLock {
    fn lock(&self) {
        loop {
            // `Acquire`: pairs with the `Release` in `unlock`.
            if !self.held.swap(true, Ordering::Acquire) {
                return;
            }
            while self.held.load(Ordering::Relaxed) {
                std::thread::yield_now();
            }
        }
    }

    fn unlock(&self) {
        self.held.store(false, Ordering::Release);
    }
}

fn work(seed: u64) -> u64 {
    let mut x = seed | 1;
    for _ in 0..WORK {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
    }
    x
}

/// Runs one variant; returns the sorted hold times (ns) and the number of
/// holds per second.
fn run(threads: usize, with_extension: bool) -> (Vec<u64>, f64) {
    let lock = Arc::new(SpinLock {
        held: AtomicBool::new(false),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let total = Arc::new(AtomicU64::new(0));
    let barrier = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (lock, stop, total, barrier) = (
                Arc::clone(&lock),
                Arc::clone(&stop),
                Arc::clone(&total),
                Arc::clone(&barrier),
            );
            std::thread::spawn(move || {
                if with_extension {
                    let _ = slice::enable();
                }
                let mut holds = Vec::with_capacity(1 << 16);
                barrier.wait();
                let mut seed = t as u64;
                while !stop.load(Ordering::Relaxed) {
                    let guard = with_extension.then(SliceGuard::new);
                    lock.lock();
                    let start = Instant::now();
                    seed = black_box(work(seed));
                    let held = start.elapsed();
                    lock.unlock();
                    drop(guard);
                    holds.push(held.as_nanos() as u64);
                }
                total.fetch_add(holds.len() as u64, Ordering::Relaxed);
                holds
            })
        })
        .collect();
    barrier.wait();
    let started = Instant::now();
    std::thread::sleep(RUN);
    stop.store(true, Ordering::Relaxed);
    let mut all: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let secs = started.elapsed().as_secs_f64();
    all.sort_unstable();
    (all, total.load(Ordering::Relaxed) as f64 / secs)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn main() {
    // `cargo test --benches` runs benchmarks with `--bench` absent: keep
    // that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = 4 * cpus;
    let status = std::thread::spawn(|| {
        let _ = slice::enable();
        slice::status()
    })
    .join()
    .unwrap();
    println!(
        "kernel feature size {}, registration length {}, owner {:?}",
        restartable::kernel_feature_size(),
        restartable::registration_len(),
        restartable::owner()
    );
    match status {
        SliceStatus::Enabled => println!("time-slice extension: enabled"),
        other => println!(
            "time-slice extension {other}: the \"with\" variant measures the guard's no-op cost only"
        ),
    }
    if quick {
        let (holds, _) = run(2, true);
        println!("quick run (not a benchmark): {} holds", holds.len());
        return;
    }
    println!("{threads} threads on {cpus} CPUs, {WORK} multiply steps per hold");
    println!(
        "{:<22} {:>9} {:>9} {:>10} {:>11} {:>12} {:>12}",
        "variant", "p50 ns", "p99 ns", "p99.9 ns", "p99.99 ns", "max ns", "holds/s"
    );
    for (name, with) in [("without extension", false), ("with extension", true)] {
        let (holds, rate) = run(threads, with);
        println!(
            "{:<22} {:>9} {:>9} {:>10} {:>11} {:>12} {:>12.0}",
            name,
            percentile(&holds, 0.5),
            percentile(&holds, 0.99),
            percentile(&holds, 0.999),
            percentile(&holds, 0.9999),
            holds.last().copied().unwrap_or(0),
            rate
        );
    }
}
