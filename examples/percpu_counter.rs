//! The per-CPU counter demo: `cargo run --release --example percpu_counter [THREADS] [OPS]`.
//!
//! For 1, 2, ... up to THREADS threads (default: twice the CPUs), every thread
//! adds 1 OPS times (default 5 000 000) to a `PerCpuCounter` and, separately,
//! to one shared `AtomicU64`. Both sums are checked exactly; the table shows
//! ns per add and the speed-up of the per-CPU counter.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use restartable::PerCpuCounter;

fn main() {
    let mut args = std::env::args().skip(1);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let max_threads: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2 * cpus);
    let ops: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(5_000_000);

    println!("restartable per-CPU counter demo");
    println!("  owner        : {}", restartable::owner());
    println!("  feature size : {} bytes", restartable::feature_size());
    println!("  this thread  : {}", restartable::thread_state());
    println!(
        "  cpus         : {cpus} online, {} possible",
        restartable::possible_cpus()
    );
    println!("  threads      : up to {max_threads}, {ops} adds each\n");

    let mut counts = vec![1];
    while *counts.last().unwrap() < max_threads {
        counts.push((counts.last().unwrap() * 2).min(max_threads));
    }

    let mut rows = Vec::new();
    let mut ok = true;
    for &threads in &counts {
        progress(&format!("{threads} thread(s): per-CPU counter ..."));
        let counter = Arc::new(PerCpuCounter::new());
        let percpu = run(threads, {
            let counter = Arc::clone(&counter);
            move || {
                for _ in 0..ops {
                    counter.add(1);
                }
            }
        });
        progress(&format!("{threads} thread(s): shared atomic ..."));
        let atomic = Arc::new(AtomicU64::new(0));
        let shared = run(threads, {
            let atomic = Arc::clone(&atomic);
            move || {
                for _ in 0..ops {
                    atomic.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let expected = threads as u64 * ops;
        let sums_ok =
            counter.sum() as u64 == expected && atomic.load(Ordering::Relaxed) == expected;
        ok &= sums_ok;
        rows.push((threads, percpu, shared, counter.per_slot(), sums_ok));
    }
    progress("");

    println!("threads | per-CPU ns/add | atomic ns/add | speed-up | sums exact | per-CPU slots");
    println!("--------|----------------|---------------|----------|------------|--------------");
    for (threads, percpu, shared, slots, sums_ok) in rows {
        let total = (threads as u64 * ops) as f64;
        let p = percpu.as_nanos() as f64 / total * threads as f64;
        let a = shared.as_nanos() as f64 / total * threads as f64;
        println!(
            "{threads:>7} | {p:>14.2} | {a:>13.2} | {:>7.1}x | {:>10} | {slots:?}",
            a / p,
            if sums_ok { "yes" } else { "NO" }
        );
    }
    println!("\nns/add is wall time x threads / adds: the cost of one add on one thread.");
    println!(
        "critical sections aborted and retried: {}",
        restartable::cs::abort_count()
    );
    if !ok {
        eprintln!("a sum was wrong");
        std::process::exit(1);
    }
}

/// Runs `work` on `threads` threads released together; returns the wall time.
fn run(threads: usize, work: impl Fn() + Send + Sync + Clone + 'static) -> Duration {
    let barrier = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            let work = work.clone();
            std::thread::spawn(move || {
                barrier.wait();
                work();
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    for h in handles {
        h.join().expect("worker panicked");
    }
    start.elapsed()
}

fn progress(line: &str) {
    let mut err = std::io::stderr();
    let _ = write!(err, "\r\x1b[2K{line}");
    let _ = err.flush();
}
