//! CPU-number reads side by side: `current_cpu()`, glibc's `sched_getcpu()`,
//! the `getcpu` system call and a bare thread-local `u32` load, in one run.
//! Run with `cargo bench --bench cpu`, and with
//! `GLIBC_TUNABLES=glibc.pthread.rseq=0 cargo bench --bench cpu` for the
//! library-owned area. Prints a ratio table at the end.

use std::cell::Cell;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;

std::thread_local! {
    static BARE: Cell<u32> = const { Cell::new(0) };
}

/// One load from a thread-local `u32`: the floor a CPU read can reach.
#[inline(always)]
fn bare_tls() -> u32 {
    // A volatile read, like the area's: the load cannot leave the loop.
    BARE.with(|cell| {
        // SAFETY: `cell` is this thread's live `Cell<u32>`.
        unsafe { cell.as_ptr().read_volatile() }
    })
}

fn sched_getcpu() -> u32 {
    // SAFETY: no preconditions.
    unsafe { libc::sched_getcpu() as u32 }
}

fn getcpu_syscall() -> u32 {
    let mut cpu = 0u32;
    // SAFETY: getcpu writes one u32 through the first pointer; the others
    // may be null.
    unsafe {
        libc::syscall(
            libc::SYS_getcpu,
            &mut cpu as *mut u32,
            std::ptr::null_mut::<u32>(),
            std::ptr::null_mut::<u8>(),
        );
    }
    cpu
}

/// The reads of the ratio table, in `median_ns` order, with how many
/// iterations one timed run makes.
const READS: [(&str, u32); 4] = [
    ("current_cpu", 10_000_000),
    ("sched_getcpu", 10_000_000),
    ("getcpu syscall", 200_000),
    ("bare TLS load", 10_000_000),
];

fn criterion_groups(c: &mut Criterion) {
    let mut group = c.benchmark_group("cpu_read");
    group
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20);
    group.bench_function("current_cpu", |b| {
        b.iter(|| black_box(restartable::current_cpu()))
    });
    group.bench_function("sched_getcpu", |b| b.iter(|| black_box(sched_getcpu())));
    group.bench_function("getcpu_syscall", |b| b.iter(|| black_box(getcpu_syscall())));
    group.bench_function("bare_tls", |b| b.iter(|| black_box(bare_tls())));
    group.finish();
}

/// `iters` calls of `read`, inlined into the loop, in ns per call.
#[inline(always)]
fn time_loop(read: impl Fn() -> u32, iters: u32) -> f64 {
    let start = Instant::now();
    for _ in 0..iters {
        black_box(read());
    }
    start.elapsed().as_nanos() as f64 / f64::from(iters)
}

/// Median of several timed runs of one read.
fn median_ns(index: usize, iters: u32) -> f64 {
    let mut runs: Vec<f64> = (0..7)
        .map(|_| match index {
            // Each arm names its function so that it is inlined in the loop.
            0 => time_loop(restartable::current_cpu, iters),
            1 => time_loop(sched_getcpu, iters),
            2 => time_loop(getcpu_syscall, iters),
            _ => time_loop(bare_tls, iters),
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[runs.len() / 2]
}

fn ratio_table() {
    // Register (or find glibc's area) before timing.
    restartable::current_cpu();
    println!();
    println!("owner: {}", restartable::owner());
    println!("{:<16} {:>10}", "read", "ns/op");
    let ns: Vec<f64> = READS
        .iter()
        .enumerate()
        .map(|(i, (name, iters))| {
            let ns = median_ns(i, *iters);
            println!("{name:<16} {ns:>10.3}");
            ns
        })
        .collect();
    let (cpu, sched, syscall, bare) = (ns[0], ns[1], ns[2], ns[3]);
    println!("current_cpu / bare TLS load  : {:.2}x", cpu / bare);
    println!("sched_getcpu / current_cpu   : {:.2}x", sched / cpu);
    println!("getcpu syscall / current_cpu : {:.0}x", syscall / cpu);
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    criterion_groups(&mut c);
    c.final_summary();
    // `cargo test --benches` runs benches in test mode: skip the table.
    if !std::env::args().any(|a| a == "--test" || a == "--list") {
        ratio_table();
    }
}
