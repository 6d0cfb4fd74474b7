//! Per-CPU pool instances against `PerCpu<T>` slots: `cargo bench --bench pool`.
//!
//! The same update, `cs::load_add_store` on the current CPU's word, found
//! four ways: a `PerCpu<AtomicIsize>` slot (`get(cpu)`), a zeroed
//! `PerCpuBox` instance (`get(cpu)`: a bounds check and a multiply-add), a
//! lazily built `PerCpuBox` instance (the same plus its state word), and
//! the box's `retry_current` helper. Then the bare in-section add
//! (`cs::add_at_current_unchecked`, CPU read inside the section) on the
//! box's instances. Prints ns per update per thread at 1, 2 and 4
//! threads (the fastest of 5 runs), and the ratios to `PerCpu`. Run it again with
//! `GLIBC_TUNABLES=glibc.pthread.rseq=0` and `RESTARTABLE_DISABLE=1`.

use std::hint::black_box;
use std::sync::atomic::AtomicIsize;
use std::sync::{Arc, Barrier};
use std::time::Instant;

use restartable::cs::{self, AddResult, Index, Outcome};
use restartable::{PerCpu, PerCpuBox, PerCpuPool};

const OPS: u64 = 4_000_000;
const RUNS: usize = 5;

/// The fastest of `RUNS` runs, in ns per operation per thread: on a shared
/// machine the fastest run is the one least disturbed by other work.
fn measure<S: Send + Sync + 'static>(threads: usize, state: Arc<S>, op: fn(&S)) -> f64 {
    let mut samples: Vec<f64> = (0..RUNS)
        .map(|_| {
            let barrier = Arc::new(Barrier::new(threads + 1));
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    let (state, barrier) = (Arc::clone(&state), Arc::clone(&barrier));
                    std::thread::spawn(move || {
                        op(&state); // registers lazily outside the timing
                        barrier.wait();
                        let start = Instant::now();
                        for _ in 0..OPS {
                            op(black_box(&state));
                        }
                        start.elapsed().as_nanos() as f64 / OPS as f64
                    })
                })
                .collect();
            barrier.wait();
            let per: Vec<f64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            per.iter().sum::<f64>() / threads as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[0]
}

struct Slots(PerCpu<AtomicIsize>);
struct Boxed(PerCpuBox<AtomicIsize>);

fn percpu_slot(s: &Slots) {
    loop {
        let cpu = restartable::current_cpu();
        let w = s.0.get(cpu as usize).unwrap().as_ptr();
        // SAFETY: a live word of the slot array.
        if unsafe { cs::load_add_store(Index::Cpu, w, 1, cpu) } == Outcome::Committed {
            return;
        }
    }
}

fn box_instance(b: &Boxed) {
    loop {
        let cpu = restartable::current_cpu();
        let w = b.0.get(cpu as usize).unwrap().as_ptr();
        // SAFETY: a live word of the box.
        if unsafe { cs::load_add_store(Index::Cpu, w, 1, cpu) } == Outcome::Committed {
            return;
        }
    }
}

fn box_retry_current(b: &Boxed) {
    b.0.retry_current(|w, slot| {
        // SAFETY: a live word of the box.
        unsafe { cs::load_add_store(Index::Cpu, w.as_ptr(), 1, slot) }
    });
}

fn box_in_section(b: &Boxed) {
    let (base, stride) = b.0.raw_parts();
    if restartable::is_available() {
        loop {
            // SAFETY: a zeroed box: every instance is a live word, updated
            // only by sections here.
            match unsafe {
                cs::add_at_current_unchecked(Index::Cpu, base.cast(), stride, b.0.slots() as u32, 1)
            } {
                AddResult::Committed => return,
                AddResult::Aborted => continue,
                AddResult::NotRegistered => break,
            }
        }
    }
    box_instance(b);
}

fn main() {
    let pool = PerCpuPool::new().expect("a pool");
    println!(
        "owner {:?}, {} possible CPUs; ns per update per thread (fastest of {RUNS} x {OPS})",
        restartable::owner(),
        restartable::possible_cpus()
    );
    println!("{:<34} {:>8} {:>8} {:>8}", "", "1 thr", "2 thr", "4 thr");
    let slots = Arc::new(Slots(PerCpu::new(|_| AtomicIsize::new(0))));
    let zeroed = Arc::new(Boxed(pool.alloc_zeroed().unwrap()));
    let lazy = Arc::new(Boxed(pool.alloc_with(|_| AtomicIsize::new(0)).unwrap()));
    let threads = [1, 2, 4];
    let base: Vec<f64> = threads
        .iter()
        .map(|&t| measure(t, Arc::clone(&slots), percpu_slot))
        .collect();
    let row = |name: &str, v: &[f64]| {
        let ratios: Vec<String> = v
            .iter()
            .zip(&base)
            .map(|(a, b)| format!("{:.2}x", a / b))
            .collect();
        println!(
            "{name:<34} {:>8.2} {:>8.2} {:>8.2}   ({})",
            v[0],
            v[1],
            v[2],
            ratios.join(", ")
        );
    };
    row("PerCpu slot + load_add_store", &base);
    let run = |b: &Arc<Boxed>, op: fn(&Boxed)| -> Vec<f64> {
        threads
            .iter()
            .map(|&t| measure(t, Arc::clone(b), op))
            .collect()
    };
    row("zeroed box + load_add_store", &run(&zeroed, box_instance));
    row("lazy box + load_add_store", &run(&lazy, box_instance));
    row(
        "zeroed box, retry_current",
        &run(&zeroed, box_retry_current),
    );
    row("zeroed box, add in section", &run(&zeroed, box_in_section));
}
