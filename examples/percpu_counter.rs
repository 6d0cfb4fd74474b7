//! The per-CPU counter demo: `cargo run --release --example percpu_counter [THREADS] [ADDS] [--runs N] [--csv FILE]`.
//!
//! For 1, 2, 4, ... up to THREADS threads (default: twice the CPUs, so that
//! the last rows show oversubscription), every thread adds 1 to a counter
//! ADDS times (default 5 000 000), in four ways: a `PerCpuCounter`, one
//! shared `AtomicU64`, an `AtomicU64` per CPU (`PerCpu<AtomicU64>`, the
//! slot of `current_cpu()`), and one `Mutex<u64>`. Every sum is checked
//! exactly.
//!
//! Each worker times itself: it reads its own CPU-time clock
//! (`CLOCK_THREAD_CPUTIME_ID`) when it is released and after its last add.
//! ns per add is the workers' CPU time over all their adds, so no figure
//! can be shorter than the adds it covers, the main thread's scheduling
//! plays no part, and other programs on the machine do not inflate it. A
//! thread asleep waiting for the `Mutex` spends no CPU time, so that column
//! understates how long the Mutex's adds take to finish. Every measurement
//! is repeated (default 5 runs) and the table shows the median.
//! `--csv FILE` also writes every median, for `examples/plot_percpu.py`,
//! which draws the README's plot.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use restartable::{PerCpu, PerCpuCounter};

/// The ways of counting, in table order.
const METHODS: [&str; 4] = [
    "PerCpuCounter",
    "shared AtomicU64",
    "AtomicU64 per CPU",
    "Mutex<u64>",
];

fn main() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let opts = Options::parse(cpus);

    println!("restartable per-CPU counter demo");
    println!("  machine      : {}", machine(cpus));
    println!("  area owner   : {}", restartable::owner());
    println!(
        "  threads      : 1 to {}, {} adds each, median of {} runs",
        opts.max_threads, opts.adds, opts.runs
    );
    println!();

    let mut counts = vec![1];
    while *counts.last().unwrap() < opts.max_threads {
        counts.push((counts.last().unwrap() * 2).min(opts.max_threads));
    }

    let mut rows = Vec::new();
    let mut all_exact = true;
    for &threads in &counts {
        let mut medians = [0.0f64; METHODS.len()];
        for (m, name) in METHODS.iter().enumerate() {
            let mut samples = Vec::with_capacity(opts.runs);
            for run in 0..opts.runs {
                progress(&format!(
                    "{threads} thread(s), {name}, run {} of {}",
                    run + 1,
                    opts.runs
                ));
                let (ns_per_add, exact) = measure(m, threads, opts.adds);
                all_exact &= exact;
                samples.push(ns_per_add);
            }
            medians[m] = median(&mut samples);
        }
        rows.push((threads, medians));
    }
    progress("");

    println!("ns per add: the CPU time the workers spent (each reads its own thread clock from");
    println!(
        "its release to its last add) / all their adds; the median of {} runs.\n",
        opts.runs
    );
    println!(
        "threads | {:>13} | {:>16} | {:>17} | {:>10} | atomic / ours | per-CPU atomic / ours",
        METHODS[0], METHODS[1], METHODS[2], METHODS[3]
    );
    println!(
        "--------|---------------|------------------|-------------------|------------|---------------|----------------------"
    );
    for (threads, m) in &rows {
        let mark = if *threads > cpus { " *" } else { "  " };
        println!(
            "{threads:>5}{mark} | {:>13.2} | {:>16.2} | {:>17.2} | {:>10.1} | {:>12.1}x | {:>20.1}x",
            m[0],
            m[1],
            m[2],
            m[3],
            m[1] / m[0],
            m[2] / m[0],
        );
    }
    println!();
    println!(
        "* oversubscribed: more threads than the {cpus} CPU(s), so threads take turns on them;"
    );
    println!("  a thread preempted holding the Mutex stalls the others (asleep, they spend no CPU");
    println!("  time, so the Mutex column understates the delay); a per-CPU add never waits.");
    println!("\"atomic / ours\" is how many times longer an add takes on one shared AtomicU64");
    println!(
        "than on the PerCpuCounter, with the same threads; \"per-CPU atomic / ours\" the same"
    );
    println!("against fetch_add on the current CPU's own AtomicU64.");
    println!(
        "sums exact: {}; critical sections aborted and retried: {}",
        if all_exact { "yes" } else { "NO" },
        restartable::cs::abort_count()
    );

    if let Some(path) = &opts.csv {
        let mut csv = String::from("threads,cpus");
        for name in METHODS {
            csv.push(',');
            csv.push_str(name);
        }
        csv.push('\n');
        for (threads, m) in &rows {
            csv.push_str(&format!("{threads},{cpus}"));
            for v in m {
                csv.push_str(&format!(",{v:.3}"));
            }
            csv.push('\n');
        }
        let header = format!("# {}; {}\n", machine(cpus), restartable::owner());
        if let Err(e) = std::fs::write(path, header + &csv) {
            eprintln!("cannot write {path}: {e}");
            std::process::exit(1);
        }
        println!("medians written to {path}");
    }
    if !all_exact {
        eprintln!("a sum was wrong");
        std::process::exit(1);
    }
}

/// The command line.
struct Options {
    max_threads: usize,
    adds: u64,
    runs: usize,
    csv: Option<String>,
}

impl Options {
    fn parse(cpus: usize) -> Self {
        let mut opts = Options {
            max_threads: 2 * cpus,
            adds: 5_000_000,
            runs: 5,
            csv: None,
        };
        let mut positional = 0;
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = |what: &str| {
                args.next()
                    .unwrap_or_else(|| usage(&format!("{arg} needs {what}")))
            };
            match arg.as_str() {
                "--runs" => opts.runs = number(&value("a count")),
                "--csv" => opts.csv = Some(value("a file name")),
                _ if positional == 0 => {
                    opts.max_threads = number(&arg);
                    positional += 1;
                }
                _ if positional == 1 => {
                    opts.adds = number(&arg);
                    positional += 1;
                }
                _ => usage(&format!("unexpected argument {arg:?}")),
            }
        }
        opts
    }
}

fn number<T: std::str::FromStr + PartialOrd + From<u8>>(s: &str) -> T {
    match s.parse::<T>() {
        Ok(n) if n >= T::from(1) => n,
        _ => usage(&format!("{s:?} is not a positive number")),
    }
}

fn usage(why: &str) -> ! {
    eprintln!("percpu_counter: {why}");
    eprintln!("usage: percpu_counter [THREADS] [ADDS] [--runs N] [--csv FILE]");
    std::process::exit(2);
}

/// One run of method `m` on `threads` threads: ns per add (see [`run`])
/// and whether the sum came out exact.
fn measure(m: usize, threads: usize, adds: u64) -> (f64, bool) {
    let expected = threads as u64 * adds;
    match m {
        0 => {
            let c = Arc::new(PerCpuCounter::new());
            let t = run(threads, adds, {
                let c = Arc::clone(&c);
                move || c.add(1)
            });
            (t, c.sum() as u64 == expected)
        }
        1 => {
            let a = Arc::new(AtomicU64::new(0));
            let t = run(threads, adds, {
                let a = Arc::clone(&a);
                move || {
                    a.fetch_add(1, Ordering::Relaxed);
                }
            });
            (t, a.load(Ordering::Relaxed) == expected)
        }
        2 => {
            let slots = Arc::new(PerCpu::new(|_| AtomicU64::new(0)));
            let t = run(threads, adds, {
                let slots = Arc::clone(&slots);
                move || {
                    slots.current().fetch_add(1, Ordering::Relaxed);
                }
            });
            let sum: u64 = slots.iter().map(|s| s.load(Ordering::Relaxed)).sum();
            (t, sum == expected)
        }
        _ => {
            let l = Arc::new(Mutex::new(0u64));
            let t = run(threads, adds, {
                let l = Arc::clone(&l);
                move || *l.lock().unwrap() += 1
            });
            let sum = *l.lock().unwrap();
            (t, sum == expected)
        }
    }
}

/// Runs `add` `adds` times on each of `threads` threads released together.
/// Each worker reads its own CPU-time clock around its loop; returns the
/// workers' CPU time / all the adds, in ns.
fn run<F: Fn() + Send + Sync + Clone + 'static>(threads: usize, adds: u64, add: F) -> f64 {
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            let add = add.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let start = thread_cpu_time();
                for _ in 0..adds {
                    add();
                }
                thread_cpu_time() - start
            })
        })
        .collect();
    let cpu: Duration = handles
        .into_iter()
        .map(|h| h.join().expect("worker panicked"))
        .sum();
    cpu.as_nanos() as f64 / (threads as u64 * adds) as f64
}

/// The calling thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`).
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is valid for writing; the clock exists on every Linux.
    let ret = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(ret, 0, "clock_gettime: {}", std::io::Error::last_os_error());
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    if n % 2 == 1 {
        samples[n / 2]
    } else {
        (samples[n / 2 - 1] + samples[n / 2]) / 2.0
    }
}

/// The CPU model, the CPU count and the kernel.
fn machine(cpus: usize) -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let report = restartable::report();
    // Other work on the machine takes CPU time from the workers: say how
    // much there was.
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into());
    format!(
        "{model}, {cpus} CPU(s) available, Linux {}, {}, load average {load} at start",
        report.kernel_release,
        report
            .libc_version
            .as_deref()
            .unwrap_or("unknown C library")
    )
}

/// A progress line on stderr, only where stderr is a terminal (never in a
/// log or a pipe).
fn progress(line: &str) {
    let mut err = std::io::stderr();
    if err.is_terminal() {
        let _ = write!(err, "\r\x1b[2K{line}");
        let _ = err.flush();
    }
}
