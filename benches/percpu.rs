//! Per-CPU counter against its alternatives: `cargo bench --bench percpu`.
//!
//! Measured side by side in one run, at 1 thread, 2 threads and more threads
//! than cores: `PerCpuCounter::add`, the same add written librseq's way
//! (read the CPU, then `cs::load_add_store` with a CPU compare), one shared
//! `AtomicU64::fetch_add`, `fetch_add` on the current CPU's padded slot, and
//! a `Mutex<u64>`. Prints ns per add per thread and the ratios the README
//! reports; then the per-CPU lock (against its own fence path, a `Mutex` per
//! CPU and one `Mutex`) and the per-CPU stack (against its own fence path
//! and a `Mutex<Vec>`);
//! then the multi-word critical-section operations of `cs` on the current
//! CPU's slot (sections, or their fallbacks where rseq is not used); then
//! runs criterion on the single-thread cases. Run it again
//! with `GLIBC_TUNABLES=glibc.pthread.rseq=0` (library-owned area) and
//! `RESTARTABLE_DISABLE=1` (the fallback path).

use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Instant;

use criterion::Criterion;
use restartable::cs::{self, Index, Outcome};
use restartable::{PerCpu, PerCpuCounter, PerCpuLock, PerCpuStack};

const OPS: u64 = 4_000_000;
const RUNS: usize = 5;

/// Median over `RUNS` of the wall time of `threads` threads doing `OPS`
/// operations each, as ns per operation per thread.
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
            let per_thread: Vec<f64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            per_thread.iter().sum::<f64>() / threads as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[RUNS / 2]
}

fn percpu_add(c: &PerCpuCounter) {
    c.add(1);
}

struct Slots(PerCpu<AtomicU64>);

fn librseq_style_add(s: &Slots) {
    loop {
        let cpu = restartable::current_cpu();
        let slot = s.0.get(cpu as usize).unwrap();
        // SAFETY: a live, aligned word of this thread's slot array.
        match unsafe { cs::load_add_store(Index::Cpu, slot.as_ptr() as *mut isize, 1, cpu) } {
            Outcome::Committed => return,
            _ => continue,
        }
    }
}

fn shared_atomic(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

fn atomic_on_percpu_slot(s: &Slots) {
    s.0.current().fetch_add(1, Ordering::Relaxed);
}

fn mutex_add(m: &Mutex<u64>) {
    *m.lock().unwrap() += 1;
}

fn percpu_lock(l: &PerCpuLock<u64>) {
    *l.lock() += 1;
}

/// The path a thread that cannot run sections takes: fence, membarrier.
fn percpu_lock_fenced(l: &PerCpuLock<u64>) {
    *l.lock_slot(restartable::current_cpu() as usize % l.len()) += 1;
}

fn mutex_per_cpu(m: &PerCpu<Mutex<u64>>) {
    *m.current().lock().unwrap() += 1;
}

fn percpu_push_pop(s: &PerCpuStack<u64>) {
    s.push(1);
    black_box(s.pop());
}

/// The stack's fence path: the slot named, as a thread without rseq pushes.
fn percpu_push_pop_fenced(s: &PerCpuStack<u64>) {
    let i = restartable::current_cpu() as usize % s.slot_count();
    s.push_to(i, 1);
    black_box(s.pop_from(i));
}

// Boxed like the stack's nodes, so both sides allocate and free per value.
#[allow(clippy::vec_box)]
fn mutex_vec_push_pop(m: &Mutex<Vec<Box<u64>>>) {
    m.lock().unwrap().push(Box::new(1));
    black_box(m.lock().unwrap().pop());
}

/// The words one CPU's operations work on: a compare word, a second word,
/// a copy buffer and a list head over nodes of `NODES`.
#[derive(Default)]
struct CsSlot {
    v: AtomicIsize,
    v2: AtomicIsize,
    buf: [AtomicU8; 16],
    head: AtomicIsize,
}

/// Per-CPU words for the `cs` operations, and the list nodes: each node is
/// two words, `next` first.
struct CsState {
    slots: PerCpu<CsSlot>,
    _nodes: Box<[[AtomicIsize; 2]]>,
}

fn cs_state() -> Arc<CsState> {
    let cpus = restartable::possible_cpus();
    let nodes: Box<[[AtomicIsize; 2]]> = (0..cpus * 4).map(|_| Default::default()).collect();
    let slots = PerCpu::new(|cpu| {
        let slot = CsSlot::default();
        // Four nodes per CPU, linked: the pop always finds one.
        for k in 0..4 {
            let node = &nodes[cpu * 4 + k];
            node[0].store(slot.head.load(Ordering::Relaxed), Ordering::Relaxed);
            slot.head.store(node.as_ptr() as isize, Ordering::Relaxed);
        }
        slot
    });
    Arc::new(CsState {
        slots,
        _nodes: nodes,
    })
}

/// Retries `op` on the current CPU's slot until it commits.
fn on_current(s: &CsState, mut op: impl FnMut(&CsSlot, u32) -> Outcome) {
    loop {
        let cpu = restartable::current_cpu();
        let slot = s
            .slots
            .get(cpu as usize)
            .unwrap_or_else(|| s.slots.current());
        if op(slot, cpu) == Outcome::Committed {
            return;
        }
    }
}

fn cs_cbne_store(s: &CsState) {
    on_current(s, |slot, cpu| {
        let v = slot.v.load(Ordering::Relaxed);
        // SAFETY: a live, aligned word of this CPU's slot.
        unsafe { cs::load_cbne_store(Index::Cpu, slot.v.as_ptr(), v, v + 1, cpu) }
    });
}

fn cs_cbne_cbne_store(s: &CsState) {
    on_current(s, |slot, cpu| {
        let v = slot.v.load(Ordering::Relaxed);
        let v2 = slot.v2.load(Ordering::Relaxed);
        // SAFETY: live, aligned words of this CPU's slot.
        unsafe {
            cs::load_cbne_load_cbne_store(
                Index::Cpu,
                slot.v.as_ptr(),
                v,
                slot.v2.as_ptr(),
                v2,
                v + 1,
                cpu,
            )
        }
    });
}

fn cs_store_store(s: &CsState) {
    on_current(s, |slot, cpu| {
        let v = slot.v.load(Ordering::Relaxed);
        // SAFETY: live, aligned words of this CPU's slot.
        unsafe {
            cs::load_cbne_store_store(
                Index::Cpu,
                slot.v.as_ptr(),
                v,
                slot.v2.as_ptr(),
                v,
                v + 1,
                cpu,
            )
        }
    });
}

fn cs_memcpy_store(s: &CsState) {
    let src = [7u8; 16];
    on_current(s, |slot, cpu| {
        let v = slot.v.load(Ordering::Relaxed);
        // SAFETY: `buf` is 16 bytes of this CPU's slot, atomics that only
        // these operations write (the benchmark never reads them).
        unsafe {
            cs::load_cbne_memcpy_store(
                Index::Cpu,
                slot.v.as_ptr(),
                v,
                slot.buf.as_ptr() as *mut u8,
                src.as_ptr(),
                src.len(),
                v + 1,
                cpu,
            )
        }
    });
}

/// Pops a node and pushes it back (the push is a `load_cbne_store`).
fn cs_pop_push(s: &CsState) {
    let mut node = 0isize;
    on_current(s, |slot, cpu| {
        // SAFETY: the list holds nodes of `_nodes`, `next` at offset 0;
        // `node` receives the head.
        unsafe {
            cs::load_cbeq_store_add_load_store(Index::Cpu, slot.head.as_ptr(), 0, 0, &mut node, cpu)
        }
    });
    on_current(s, |slot, cpu| {
        let head = slot.head.load(Ordering::Relaxed);
        // SAFETY: `node` is ours until the commit links it again.
        unsafe { (*(node as *const AtomicIsize)).store(head, Ordering::Relaxed) };
        // SAFETY: a live, aligned word of this CPU's slot.
        unsafe { cs::load_cbne_store(Index::Cpu, slot.head.as_ptr(), head, node, cpu) }
    });
}

fn slots() -> Arc<Slots> {
    Arc::new(Slots(PerCpu::new(|_| AtomicU64::new(0))))
}

fn main() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "owner: {} | {} CPUs | {} adds per thread, median of {} runs",
        restartable::owner(),
        cpus,
        OPS,
        RUNS
    );
    println!(
        "threads | PerCpuCounter | librseq-style | shared atomic | atomic per-CPU | Mutex   | vs librseq-style | vs shared | vs per-CPU atomic"
    );
    for threads in [1, 2, 2 * cpus.max(2)] {
        let p = measure(threads, Arc::new(PerCpuCounter::new()), percpu_add);
        let l = measure(threads, slots(), librseq_style_add);
        let a = measure(threads, Arc::new(AtomicU64::new(0)), shared_atomic);
        let s = measure(threads, slots(), atomic_on_percpu_slot);
        let m = measure(threads, Arc::new(Mutex::new(0)), mutex_add);
        println!(
            "{threads:>7} | {p:>10.2} ns | {l:>10.2} ns | {a:>10.2} ns | {s:>11.2} ns | {m:>5.1} ns | {:>15.2}x | {:>8.1}x | {:>16.1}x",
            p / l,
            a / p,
            s / p
        );
    }
    println!("aborted sections: {}", cs::abort_count());

    println!(
        "\nlock, add, unlock / push then pop (lock sections: {})",
        restartable::lock_sections_enabled()
    );
    println!(
        "threads | PerCpuLock | fence path | Mutex per CPU | one Mutex | PerCpuStack | fence path | Mutex<Vec> | lock: per-CPU Mutex / ours | stack: Mutex<Vec> / ours"
    );
    for threads in [1, 2, 2 * cpus.max(2)] {
        let new_lock = || Arc::new(PerCpuLock::new(|_| 0u64));
        let l = measure(threads, new_lock(), percpu_lock);
        let f = measure(threads, new_lock(), percpu_lock_fenced);
        let pm = measure(
            threads,
            Arc::new(PerCpu::new(|_| Mutex::new(0))),
            mutex_per_cpu,
        );
        let m = measure(threads, Arc::new(Mutex::new(0)), mutex_add);
        let st = measure(threads, Arc::new(PerCpuStack::new()), percpu_push_pop);
        let sf = measure(
            threads,
            Arc::new(PerCpuStack::new()),
            percpu_push_pop_fenced,
        );
        let v = measure(
            threads,
            Arc::new(Mutex::new(Vec::new())),
            mutex_vec_push_pop,
        );
        println!(
            "{threads:>7} | {l:>7.2} ns | {f:>7.0} ns | {pm:>10.2} ns | {m:>6.1} ns | {st:>8.2} ns | {sf:>7.0} ns | {v:>7.1} ns | {:>26.1}x | {:>24.1}x",
            pm / l,
            v / st
        );
    }

    println!(
        "\ncs operations on the current CPU's slot (sections: {})",
        restartable::is_available()
    );
    println!("threads | cbne_store | cbne_cbne_store | cbne_store_store | memcpy_store (16 B) | pop + push");
    for threads in [1, 2] {
        let a = measure(threads, cs_state(), cs_cbne_store);
        let b = measure(threads, cs_state(), cs_cbne_cbne_store);
        let c = measure(threads, cs_state(), cs_store_store);
        let d = measure(threads, cs_state(), cs_memcpy_store);
        let e = measure(threads, cs_state(), cs_pop_push);
        println!(
            "{threads:>7} | {a:>7.2} ns | {b:>12.2} ns | {c:>13.2} ns | {d:>16.2} ns | {e:>7.2} ns"
        );
    }

    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group("add, 1 thread");
    let counter = PerCpuCounter::new();
    group.bench_function("PerCpuCounter::add", |b| {
        b.iter(|| counter.add(black_box(1)))
    });
    let s = slots();
    group.bench_function("librseq-style load_add_store", |b| {
        b.iter(|| librseq_style_add(&s))
    });
    let a = AtomicU64::new(0);
    group.bench_function("AtomicU64::fetch_add", |b| {
        b.iter(|| shared_atomic(black_box(&a)))
    });
    group.bench_function("fetch_add on per-CPU slot", |b| {
        b.iter(|| atomic_on_percpu_slot(black_box(&s)))
    });
    let m = Mutex::new(0);
    group.bench_function("Mutex<u64>", |b| b.iter(|| mutex_add(black_box(&m))));
    group.finish();
    c.final_summary();
}
