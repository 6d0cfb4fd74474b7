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
//! `RESTARTABLE_DISABLE=1` (the fallback path). `-- shape` runs only the
//! comparison with the librseq shape, `-- counter` only the counter's table,
//! `-- tables` the tables before that comparison.
//!
//! Code placement alone moves these nanosecond loops by up to a third from
//! one build to the next; the README's tables come from a build with
//! `RUSTFLAGS="-C llvm-args=-align-loops=64"`, which starts every loop on a
//! cache line and makes the figures repeat from build to build. The
//! comparison with the librseq shape times each loop at 16 placements
//! instead (see `placed_pair`), from a build that aligns functions and not
//! loops: `RUSTFLAGS="-C llvm-args=-align-all-functions=6 -C
//! llvm-args=-align-loops=1"`.

use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Instant;

use criterion::Criterion;
use restartable::cs::{self, Index, Outcome};
use restartable::{PerCpu, PerCpuCounter, PerCpuLock, PerCpuStack};

const OPS: u64 = 4_000_000;
const CHUNKS: u64 = 20;
const RUNS: usize = 5;

/// One run: `threads` threads doing `OPS` operations each, as ns per
/// operation per thread (each thread's fastest slice of `OPS / CHUNKS`).
/// `op` is a generic parameter, so each benchmark's loop is compiled for
/// its own operation: no call through a function pointer. Every operation,
/// ours and each baseline alike, is `#[inline(always)]`, so that both sides
/// of a comparison run inlined in their loops, as in a caller's code.
fn sample<S, F>(threads: usize, state: &Arc<S>, op: F) -> f64
where
    S: Send + Sync + 'static,
    F: Fn(&S) + Copy + Send + 'static,
{
    sample_at::<0, S, F>(threads, state, op)
}

/// [`sample`] with its timed loop `K * STEP` bytes further into its code:
/// the padding runs once per thread, before the loop (see [`placed_pair`]).
fn sample_at<const K: usize, S, F>(threads: usize, state: &Arc<S>, op: F) -> f64
where
    S: Send + Sync + 'static,
    F: Fn(&S) + Copy + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (state, barrier) = (Arc::clone(state), Arc::clone(&barrier));
            std::thread::spawn(move || {
                // Registers the thread where the library owns the area: a
                // shape operation has no cold path to do it, and would
                // retry forever on an unregistered thread.
                black_box(restartable::current_cpu());
                op(&state); // warms up outside the timing
                barrier.wait();
                // SAFETY: no-ops only.
                unsafe {
                    core::arch::asm!(
                        ".rept {n}",
                        "nop",
                        ".endr",
                        n = const K * STEP / NOP_BYTES,
                        options(nomem, nostack, preserves_flags)
                    )
                };
                // The fastest of `CHUNKS` slices of the run: a slice in
                // which another process took the CPU drops out.
                (0..CHUNKS)
                    .map(|_| {
                        let start = Instant::now();
                        for _ in 0..OPS / CHUNKS {
                            op(black_box(&state));
                        }
                        start.elapsed().as_nanos() as f64 / (OPS / CHUNKS) as f64
                    })
                    .fold(f64::INFINITY, f64::min)
            })
        })
        .collect();
    barrier.wait();
    let per_thread: Vec<f64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    per_thread.iter().sum::<f64>() / threads as f64
}

/// The placements of [`placed_pair`]: loops `STEP` bytes apart across a
/// cache line.
const PLACEMENTS: usize = 16;
const STEP: usize = 4;
/// The size of one `nop`.
const NOP_BYTES: usize = if cfg!(target_arch = "x86_64") { 1 } else { 4 };
/// Runs per placement in [`placed_pair`].
const PLACED_RUNS: usize = 5;

/// Two operations, ours and a baseline, at each side's best placement of
/// its timed loop and the median over all placements, in ns.
struct Placed {
    ours: f64,
    base: f64,
    ours_median: f64,
    base_median: f64,
}

/// Where a loop of a nanosecond or so lies against the fetch and op-cache
/// boundaries moves it by up to 2x, and a change of one byte in the code
/// before it moves it from one placement to another, so that one build's
/// ratio of two such loops says more about their placement than about
/// their code. This times each side at `PLACEMENTS` placements: each a
/// copy of its loop that starts `STEP` bytes after the one before (with
/// functions aligned to cache lines and loops not aligned, as the README's
/// build for this comparison does), each placement's figure the median
/// of `PLACED_RUNS` runs of both sides interleaved.
fn placed_pair<S, F, G>(threads: usize, state: Arc<S>, ours: F, base: G) -> Placed
where
    S: Send + Sync + 'static,
    F: Fn(&S) + Copy + Send + 'static,
    G: Fn(&S) + Copy + Send + 'static,
{
    macro_rules! copies {
        ($t:ty, $($k:literal)*) => {
            [$(sample_at::<$k, S, $t> as fn(usize, &Arc<S>, $t) -> f64),*]
        };
    }
    let ours_at: [_; PLACEMENTS] = copies!(F, 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
    let base_at: [_; PLACEMENTS] = copies!(G, 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
    let (a, b): (Vec<f64>, Vec<f64>) = (0..PLACEMENTS)
        .map(|k| {
            interleaved(
                PLACED_RUNS,
                k,
                || ours_at[k](threads, &state, ours),
                || base_at[k](threads, &state, base),
            )
        })
        .unzip();
    let ((ours, ours_median), (base, base_median)) = (best_and_median(a), best_and_median(b));
    Placed {
        ours,
        base,
        ours_median,
        base_median,
    }
}

/// The lowest and the median of `samples`.
fn best_and_median(mut samples: Vec<f64>) -> (f64, f64) {
    samples.sort_by(f64::total_cmp);
    (samples[0], samples[samples.len() / 2])
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Median over `RUNS` runs of [`sample`].
fn measure<S, F>(threads: usize, state: Arc<S>, op: F) -> f64
where
    S: Send + Sync + 'static,
    F: Fn(&S) + Copy + Send + 'static,
{
    median((0..RUNS).map(|_| sample(threads, &state, op)).collect())
}

/// Medians over `RUNS` runs of two operations measured in turn, run by
/// run (the order alternating), so that both see the same machine.
fn measure_pair<S, F, G>(threads: usize, state: Arc<S>, ours: F, base: G) -> (f64, f64)
where
    S: Send + Sync + 'static,
    F: Fn(&S) + Copy + Send + 'static,
    G: Fn(&S) + Copy + Send + 'static,
{
    interleaved(
        RUNS,
        0,
        || sample(threads, &state, ours),
        || sample(threads, &state, base),
    )
}

/// The medians of `runs` runs of `a` and of `b`, run in turn, the order
/// alternating from run to run (`b` first where `first + run` is odd).
fn interleaved(
    runs: usize,
    first: usize,
    mut a: impl FnMut() -> f64,
    mut b: impl FnMut() -> f64,
) -> (f64, f64) {
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for run in 0..runs {
        if (first + run) % 2 == 0 {
            x.push(a());
            y.push(b());
        } else {
            y.push(b());
            x.push(a());
        }
    }
    (median(x), median(y))
}

#[inline(always)]
fn percpu_add(c: &PerCpuCounter) {
    c.add(1);
}

struct Slots(PerCpu<AtomicU64>);

#[inline(always)]
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

#[inline(always)]
fn shared_atomic(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

#[inline(always)]
fn atomic_on_percpu_slot(s: &Slots) {
    s.0.current().fetch_add(1, Ordering::Relaxed);
}

#[inline(always)]
fn mutex_add(m: &Mutex<u64>) {
    *m.lock().unwrap() += 1;
}

#[inline(always)]
fn percpu_lock(l: &PerCpuLock<u64>) {
    *l.lock() += 1;
}

/// The path a thread that cannot run sections takes: fence, membarrier.
#[inline(always)]
fn percpu_lock_fenced(l: &PerCpuLock<u64>) {
    *l.lock_slot(restartable::current_cpu() as usize % l.len()) += 1;
}

#[inline(always)]
fn mutex_per_cpu(m: &PerCpu<Mutex<u64>>) {
    *m.current().lock().unwrap() += 1;
}

#[inline(always)]
fn percpu_push_pop(s: &PerCpuStack<u64>) {
    s.push(1);
    black_box(s.pop());
}

/// The stack's fence path: the slot named, as a thread without rseq pushes.
#[inline(always)]
fn percpu_push_pop_fenced(s: &PerCpuStack<u64>) {
    let i = restartable::current_cpu() as usize % s.slot_count();
    s.push_to(i, 1);
    black_box(s.pop_from(i));
}

// Boxed like the stack's nodes, so both sides allocate and free per value.
#[allow(clippy::vec_box)]
#[inline(always)]
fn mutex_vec_push_pop(m: &Mutex<Vec<Box<u64>>>) {
    m.lock().unwrap().push(Box::new(1));
    black_box(m.lock().unwrap().pop());
}

/// The words one CPU's operations work on: a compare word, a second word,
/// a copy buffer, a list head over nodes of `NODES`, and a buffer of
/// words (its count, then its items).
#[derive(Default)]
#[repr(C)] // `bitems` follows `bcount`, as the buffer operations take them
struct CsSlot {
    v: AtomicIsize,
    v2: AtomicIsize,
    buf: [AtomicU8; 16],
    head: AtomicIsize,
    bcount: AtomicIsize,
    bitems: [AtomicIsize; BUFFER],
}

/// The capacity of a slot's buffer, which starts half full: a push then a
/// pop finds room and an item, even after migrations moved a few.
const BUFFER: usize = 8;

/// Per-CPU words for the `cs` operations, and the list nodes: each node is
/// two words, `next` first.
struct CsState {
    slots: PerCpu<CsSlot>,
    _nodes: Box<[CpuNodes]>,
}

/// One CPU's four list nodes, each on cache lines of its own: a node that
/// migrations moved to another CPU's list is written from there, and nodes
/// sharing a line would time the line's moves.
type CpuNodes = [Node; 4];

/// A list node: `next`, then a word of payload.
#[derive(Default)]
#[repr(align(128))]
struct Node([AtomicIsize; 2]);

fn cs_state() -> Arc<CsState> {
    let cpus = restartable::possible_cpus();
    let nodes: Box<[CpuNodes]> = (0..cpus).map(|_| Default::default()).collect();
    let slots = PerCpu::new(|cpu| {
        let slot = CsSlot::default();
        // Four nodes per CPU, linked: the pop always finds one.
        for node in &nodes[cpu] {
            node.0[0].store(slot.head.load(Ordering::Relaxed), Ordering::Relaxed);
            slot.head.store(node.0.as_ptr() as isize, Ordering::Relaxed);
        }
        slot.bcount.store(BUFFER as isize / 2, Ordering::Relaxed);
        slot
    });
    Arc::new(CsState {
        slots,
        _nodes: nodes,
    })
}

/// Retries `op` on the current CPU's slot until it commits (`current_cpu()`,
/// then the checked operation, on any thread: a CPU beyond the slots, as a
/// fallback may report, takes `PerCpu::current`).
#[inline(always)]
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

#[inline(always)]
fn cs_cbne_store(s: &CsState) {
    on_current(s, |slot, cpu| {
        let v = slot.v.load(Ordering::Relaxed);
        // SAFETY: a live, aligned word of this CPU's slot.
        unsafe { cs::load_cbne_store(Index::Cpu, slot.v.as_ptr(), v, v + 1, cpu) }
    });
}

#[inline(always)]
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

#[inline(always)]
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

#[inline(always)]
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

/// Pops a node and pushes it back (the push is a `load_cbne_store`), each
/// retried by `$on`. A list found empty (migrations move nodes between
/// lists) skips the push, as a caller would, rather than wait for a node.
macro_rules! pop_push {
    ($s:expr, $on:ident) => {{
        let s = $s;
        let mut node = 0isize;
        $on(s, |slot, cpu| {
            // SAFETY: the list holds nodes of `_nodes`, `next` at offset 0;
            // `node` receives the head.
            match unsafe {
                cs::load_cbeq_store_add_load_store(
                    Index::Cpu,
                    slot.head.as_ptr(),
                    0,
                    0,
                    &mut node,
                    cpu,
                )
            } {
                Outcome::CompareFailed => Outcome::Committed, // empty: done
                outcome => outcome,
            }
        });
        if node == 0 {
            return;
        }
        $on(s, |slot, cpu| {
            let head = slot.head.load(Ordering::Relaxed);
            // SAFETY: `node` is ours until the commit links it again.
            unsafe { (*(node as *const AtomicIsize)).store(head, Ordering::Relaxed) };
            // SAFETY: a live, aligned word of this CPU's slot.
            unsafe { cs::load_cbne_store(Index::Cpu, slot.head.as_ptr(), head, node, cpu) }
        });
    }};
}

#[inline(always)]
fn cs_pop_push(s: &CsState) {
    pop_push!(s, on_current)
}

/// A node popped from the current CPU's list and pushed back, with the
/// operations that read the CPU inside their section (an empty list skips
/// the push).
#[inline(always)]
fn cs_pop_push_at_current(s: &CsState) {
    let (base, stride, n) = s.slots.slot_array();
    // SAFETY: `head` lies at this offset in every slot.
    let heads = unsafe { base.add(core::mem::offset_of!(CsSlot, head)) };
    let node = loop {
        // SAFETY: `n` slots of `stride` bytes, a head in each; the lists
        // hold nodes of `_nodes`, `next` at offset 0.
        match unsafe { cs::pop_at_current(Index::Cpu, heads, stride, n) } {
            (Outcome::Aborted, _) => continue,
            (_, node) => break node,
        }
    };
    if node.is_null() {
        return;
    }
    // SAFETY: as above; `node` is ours until the push links it again.
    while unsafe { cs::push_at_current(Index::Cpu, heads, stride, n, node) } != Outcome::Committed {
    }
}

/// An item stored in the current CPU's buffer and taken back, with the
/// operations that read the CPU inside their section. A full or empty
/// buffer (migrations can move items) skips its half.
#[inline(always)]
fn cs_buffer_push_pop_at_current(s: &CsState) {
    let (base, stride, n) = s.slots.slot_array();
    // SAFETY: the buffer's count lies at this offset in every slot.
    let buffers = unsafe { base.add(core::mem::offset_of!(CsSlot, bcount)) };
    // SAFETY: `n` slots of `stride` bytes, each a count and `BUFFER` items
    // that only these operations write.
    while unsafe { cs::buffer_push_at_current(Index::Cpu, buffers, stride, n, BUFFER, 7) }
        == Outcome::Aborted
    {}
    loop {
        // SAFETY: as above.
        match unsafe { cs::buffer_pop_at_current(Index::Cpu, buffers, stride, n) } {
            (Outcome::Aborted, _) => continue,
            (_, item) => {
                black_box(item);
                break;
            }
        }
    }
}

/// The buffer's push and pop done librseq's way, with the operations that
/// take the CPU, each retried by `$on`: the push a `load_cbne_store_store`
/// (the item, then the count), the pop a `load_cbne_load_cbne_store` (the
/// count and the item it read, then the count). A full or empty buffer
/// skips its half.
macro_rules! buffer_push_pop {
    ($s:expr, $on:ident, $done:expr, [$($pre:expr)?], $store_store:path, $cbne_cbne:path) => {{
        let s = $s;
        $on(s, |slot, cpu| {
            let n = slot.bcount.load(Ordering::Relaxed);
            let Some(item) = slot.bitems.get(n as usize) else {
                return $done; // full
            };
            // SAFETY: live, aligned words of this CPU's slot.
            unsafe { $store_store($($pre,)? slot.bcount.as_ptr(), n, item.as_ptr(), 7, n + 1, cpu) }
        });
        let mut taken = 0;
        $on(s, |slot, cpu| {
            let n = slot.bcount.load(Ordering::Relaxed);
            let Some(item) = slot.bitems.get((n as usize).wrapping_sub(1)) else {
                return $done; // empty
            };
            taken = item.load(Ordering::Relaxed);
            // SAFETY: as above.
            unsafe { $cbne_cbne($($pre,)? slot.bcount.as_ptr(), n, item.as_ptr(), taken, n - 1, cpu) }
        });
        black_box(taken);
    }};
}

/// [`cs_buffer_push_pop_at_current`] with the operations that take the CPU,
/// retried as the comparison with the shape retries.
#[inline(always)]
fn cs_buffer_push_pop_ours(s: &CsState) {
    buffer_push_pop!(
        s,
        on_current_ours,
        Outcome::Committed,
        [Index::Cpu],
        cs::load_cbne_store_store,
        cs::load_cbne_load_cbne_store
    )
}

/// [`cs_pop_push`] retried as the comparison with the shape retries.
#[inline(always)]
fn cs_pop_push_ours(s: &CsState) {
    pop_push!(s, on_current_ours)
}

/// The same operations written the way librseq's users write them: read
/// `cpu_id_start` (one load, no check), run the section, which compares
/// `cpu_id` with it and aborts on a mismatch, and retry until it commits.
/// Our own code in that shape, the baseline of the comparison table; it
/// runs only on registered threads (it has no fallback).
mod shape {
    use restartable::{abi, rseq_asm};

    extern "C" {
        /// The area's offset from the thread pointer, as C code reads it
        /// (`include/restartable.h`): one plain load, as librseq reads its
        /// copy of `__rseq_offset`.
        static restartable_area_offset: isize;
    }

    #[inline(always)]
    fn area() -> isize {
        // SAFETY: an 8-byte variable the library defines; read only.
        unsafe { core::ptr::addr_of!(restartable_area_offset).read_volatile() }
    }

    /// librseq's `rseq_current_cpu()`: `cpu_id`, or `sched_getcpu()` where
    /// it is negative (the thread not registered).
    #[inline(always)]
    pub fn current_cpu() -> u32 {
        let cpu = field::<{ abi::CPU_ID_OFFSET }>();
        if (cpu as i32) < 0 {
            return fallback_cpu();
        }
        cpu
    }

    #[cold]
    #[inline(never)]
    fn fallback_cpu() -> u32 {
        // SAFETY: no arguments; returns a CPU or -1.
        unsafe { libc::sched_getcpu() }.max(0) as u32
    }

    /// `cpu_id_start`: one load, no check.
    #[inline(always)]
    pub fn cpu() -> u32 {
        field::<{ abi::CPU_ID_START_OFFSET }>()
    }

    /// The 32-bit field at `OFFSET` of this thread's area: one load.
    #[inline(always)]
    fn field<const OFFSET: usize>() -> u32 {
        let v: u32;
        // SAFETY: `area()` names this thread's live area; a 4-byte load.
        unsafe {
            core::arch::asm!(
                "mov {v:e}, dword ptr fs:[{a} + {f}]",
                a = in(reg) area(),
                f = const OFFSET,
                v = lateout(reg) v,
                options(nostack, readonly, preserves_flags)
            );
        }
        v
    }

    /// `*v += count`.
    ///
    /// # Safety
    /// `v` is a live, aligned word; the thread is registered.
    #[inline(always)]
    pub unsafe fn add(v: *mut isize, count: isize, cpu: u32) -> i32 {
        // SAFETY: the caller's; the body ends with the commit.
        unsafe {
            rseq_asm!(
                area = area(),
                field = abi::CPU_ID_OFFSET,
                cpu = cpu,
                body = ["add qword ptr [{v}], {count}"],
                v = in(reg) v,
                count = in(reg) count,
            )
        }
    }

    /// `if *v == expect { *v = newv }`.
    ///
    /// # Safety
    /// As [`add`].
    #[inline(always)]
    pub unsafe fn cbne_store(v: *mut isize, expect: isize, newv: isize, cpu: u32) -> i32 {
        // SAFETY: the caller's; the body ends with the commit.
        unsafe {
            rseq_asm!(
                area = area(),
                field = abi::CPU_ID_OFFSET,
                cpu = cpu,
                body = [
                    "cmp qword ptr [{v}], {expect}",
                    "jne 93f",
                    "mov qword ptr [{v}], {newv}",
                ],
                v = in(reg) v,
                expect = in(reg) expect,
                newv = in(reg) newv,
            )
        }
    }

    /// `if *v == expect && *v2 == expect2 { *v = newv }`.
    ///
    /// # Safety
    /// As [`add`].
    #[inline(always)]
    pub unsafe fn cbne_cbne_store(
        v: *mut isize,
        expect: isize,
        v2: *mut isize,
        expect2: isize,
        newv: isize,
        cpu: u32,
    ) -> i32 {
        // SAFETY: the caller's; the body ends with the commit.
        unsafe {
            rseq_asm!(
                area = area(),
                field = abi::CPU_ID_OFFSET,
                cpu = cpu,
                body = [
                    "cmp qword ptr [{v}], {expect}",
                    "jne 93f",
                    "cmp qword ptr [{v2}], {expect2}",
                    "jne 93f",
                    "mov qword ptr [{v}], {newv}",
                ],
                v = in(reg) v,
                expect = in(reg) expect,
                v2 = in(reg) v2,
                expect2 = in(reg) expect2,
                newv = in(reg) newv,
            )
        }
    }

    /// `if *v == expect { *v2 = newv2; *v = newv }` (release too, on x86).
    ///
    /// # Safety
    /// As [`add`].
    #[inline(always)]
    pub unsafe fn cbne_store_store(
        v: *mut isize,
        expect: isize,
        v2: *mut isize,
        newv2: isize,
        newv: isize,
        cpu: u32,
    ) -> i32 {
        // SAFETY: the caller's; the body ends with the commit.
        unsafe {
            rseq_asm!(
                area = area(),
                field = abi::CPU_ID_OFFSET,
                cpu = cpu,
                body = [
                    "cmp qword ptr [{v}], {expect}",
                    "jne 93f",
                    "mov qword ptr [{v2}], {newv2}",
                    "mov qword ptr [{v}], {newv}",
                ],
                v = in(reg) v,
                expect = in(reg) expect,
                v2 = in(reg) v2,
                newv2 = in(reg) newv2,
                newv = in(reg) newv,
            )
        }
    }

    /// `if *v == expect { memcpy(dst, src, len); *v = newv }`.
    ///
    /// # Safety
    /// As [`add`]; `dst` and `src` hold `len` bytes.
    #[inline(always)]
    pub unsafe fn cbne_memcpy_store(
        v: *mut isize,
        expect: isize,
        dst: *mut u8,
        src: *const u8,
        len: usize,
        newv: isize,
        cpu: u32,
    ) -> i32 {
        // SAFETY: the caller's; the body ends with the commit.
        unsafe {
            rseq_asm!(
                area = area(),
                field = abi::CPU_ID_OFFSET,
                cpu = cpu,
                body = [
                    "cmp qword ptr [{v}], {expect}",
                    "jne 93f",
                    "test {len}, {len}",
                    "jz 21f",
                    "20:",
                    "mov {b}, byte ptr [{src}]",
                    "mov byte ptr [{dst}], {b}",
                    "inc {src}",
                    "inc {dst}",
                    "dec {len}",
                    "jnz 20b",
                    "21:",
                    "mov qword ptr [{v}], {newv}",
                ],
                v = in(reg) v,
                expect = in(reg) expect,
                dst = inout(reg) dst => _,
                src = inout(reg) src => _,
                len = inout(reg) len => _,
                b = out(reg_byte) _,
                newv = in(reg) newv,
            )
        }
    }

    /// The list pop: `head = *v`; fails if `head == expectnot`; else
    /// `*load = head; *v = *(head + voffp)`.
    ///
    /// # Safety
    /// As [`add`]; every head in `*v` other than `expectnot` is a node.
    #[inline(always)]
    pub unsafe fn cbeq_store_add_load_store(
        v: *mut isize,
        expectnot: isize,
        voffp: isize,
        load: *mut isize,
        cpu: u32,
    ) -> i32 {
        // SAFETY: the caller's; the body ends with the commit.
        unsafe {
            rseq_asm!(
                area = area(),
                field = abi::CPU_ID_OFFSET,
                cpu = cpu,
                body = [
                    "mov {t}, qword ptr [{v}]",
                    "cmp {t}, {expectnot}",
                    "je 93f",
                    "mov qword ptr [{load}], {t}",
                    "mov {t}, qword ptr [{t} + {voffp}]",
                    "mov qword ptr [{v}], {t}",
                ],
                v = in(reg) v,
                expectnot = in(reg) expectnot,
                voffp = in(reg) voffp,
                load = in(reg) load,
                t = out(reg) _,
            )
        }
    }
}

/// Ours in the comparison: `current_cpu()`, then the checked `cs`
/// operation, retried, finding the slot as the shape does (`get(cpu)`,
/// unwrapped: the comparison runs only where rseq serves the thread, so
/// every CPU has a slot).
#[inline(always)]
fn on_current_ours(s: &CsState, mut op: impl FnMut(&CsSlot, u32) -> Outcome) {
    loop {
        let cpu = restartable::current_cpu();
        if op(s.slots.get(cpu as usize).unwrap(), cpu) == Outcome::Committed {
            return;
        }
    }
}

/// The librseq shape: `cpu_id_start`, then the bare section, retried.
#[inline(always)]
fn on_current_shape(s: &CsState, mut op: impl FnMut(&CsSlot, u32) -> i32) {
    loop {
        let cpu = shape::cpu();
        if op(s.slots.get(cpu as usize).unwrap(), cpu) == 0 {
            return;
        }
    }
}

/// One operation of the comparison table: ours and the librseq shape.
macro_rules! pair {
    ($ours:expr, $shape:expr) => {
        ($ours, $shape)
    };
}

// `pair!` keeps each closure's type its own, so each loop is compiled for
// its operation.
fn shape_table(threads: usize) {
    let mut rows: Vec<(&str, Placed)> = Vec::new();
    let cpus = Arc::new(());
    let p = placed_pair(
        threads,
        cpus,
        |_| {
            black_box(restartable::current_cpu());
        },
        |_| {
            black_box(shape::current_cpu());
        },
    );
    rows.push(("CPU read (current_cpu / rseq_current_cpu)", p));
    let (ours, base) = pair!(
        |s: &CsState| on_current_ours(s, |slot, cpu| {
            // SAFETY: a live, aligned word of this CPU's slot.
            unsafe { cs::load_add_store(Index::Cpu, slot.v.as_ptr(), 1, cpu) }
        }),
        |s: &CsState| on_current_shape(s, |slot, cpu| {
            // SAFETY: as above; the thread is registered.
            unsafe { shape::add(slot.v.as_ptr(), 1, cpu) }
        })
    );
    let p = placed_pair(threads, cs_state(), ours, base);
    rows.push(("load_add_store", p));
    let (ours, base) = pair!(
        |s: &CsState| on_current_ours(s, |slot, cpu| {
            let v = slot.v.load(Ordering::Relaxed);
            // SAFETY: a live, aligned word of this CPU's slot.
            unsafe { cs::load_cbne_store(Index::Cpu, slot.v.as_ptr(), v, v + 1, cpu) }
        }),
        |s: &CsState| on_current_shape(s, |slot, cpu| {
            let v = slot.v.load(Ordering::Relaxed);
            // SAFETY: as above; the thread is registered.
            unsafe { shape::cbne_store(slot.v.as_ptr(), v, v + 1, cpu) }
        })
    );
    let p = placed_pair(threads, cs_state(), ours, base);
    rows.push(("load_cbne_store", p));
    let (ours, base) = pair!(
        |s: &CsState| on_current_ours(s, |slot, cpu| {
            let (v, v2) = (
                slot.v.load(Ordering::Relaxed),
                slot.v2.load(Ordering::Relaxed),
            );
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
        }),
        |s: &CsState| on_current_shape(s, |slot, cpu| {
            let (v, v2) = (
                slot.v.load(Ordering::Relaxed),
                slot.v2.load(Ordering::Relaxed),
            );
            // SAFETY: as above; the thread is registered.
            unsafe { shape::cbne_cbne_store(slot.v.as_ptr(), v, slot.v2.as_ptr(), v2, v + 1, cpu) }
        })
    );
    let p = placed_pair(threads, cs_state(), ours, base);
    rows.push(("load_cbne_load_cbne_store", p));
    let (ours, base) = pair!(
        |s: &CsState| on_current_ours(s, |slot, cpu| {
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
        }),
        |s: &CsState| on_current_shape(s, |slot, cpu| {
            let v = slot.v.load(Ordering::Relaxed);
            // SAFETY: as above; the thread is registered.
            unsafe { shape::cbne_store_store(slot.v.as_ptr(), v, slot.v2.as_ptr(), v, v + 1, cpu) }
        })
    );
    let p = placed_pair(threads, cs_state(), ours, base);
    rows.push(("load_cbne_store_store", p));
    let (ours, base) = pair!(
        |s: &CsState| on_current_ours(s, |slot, cpu| {
            let v = slot.v.load(Ordering::Relaxed);
            // SAFETY: live, aligned words of this CPU's slot.
            unsafe {
                cs::load_cbne_store_store_release(
                    Index::Cpu,
                    slot.v.as_ptr(),
                    v,
                    slot.v2.as_ptr(),
                    v,
                    v + 1,
                    cpu,
                )
            }
        }),
        |s: &CsState| on_current_shape(s, |slot, cpu| {
            let v = slot.v.load(Ordering::Relaxed);
            // SAFETY: as above; the thread is registered.
            unsafe { shape::cbne_store_store(slot.v.as_ptr(), v, slot.v2.as_ptr(), v, v + 1, cpu) }
        })
    );
    let p = placed_pair(threads, cs_state(), ours, base);
    rows.push(("load_cbne_store_store_release", p));
    let (ours, base) = pair!(
        move |s: &CsState| on_current_ours(s, |slot, cpu| {
            let v = slot.v.load(Ordering::Relaxed);
            // SAFETY: `buf` is 16 bytes of this CPU's slot, written only
            // by these operations.
            unsafe {
                cs::load_cbne_memcpy_store(
                    Index::Cpu,
                    slot.v.as_ptr(),
                    v,
                    slot.buf.as_ptr() as *mut u8,
                    SRC.as_ptr(),
                    SRC.len(),
                    v + 1,
                    cpu,
                )
            }
        }),
        move |s: &CsState| on_current_shape(s, |slot, cpu| {
            let v = slot.v.load(Ordering::Relaxed);
            // SAFETY: as above; the thread is registered.
            unsafe {
                shape::cbne_memcpy_store(
                    slot.v.as_ptr(),
                    v,
                    slot.buf.as_ptr() as *mut u8,
                    SRC.as_ptr(),
                    SRC.len(),
                    v + 1,
                    cpu,
                )
            }
        })
    );
    let p = placed_pair(threads, cs_state(), ours, base);
    rows.push(("load_cbne_memcpy_store (16 B)", p));
    let (ours, base) = pair!(
        move |s: &CsState| on_current_ours(s, |slot, cpu| {
            let v = slot.v.load(Ordering::Relaxed);
            // SAFETY: as for the plain form.
            unsafe {
                cs::load_cbne_memcpy_store_release(
                    Index::Cpu,
                    slot.v.as_ptr(),
                    v,
                    slot.buf.as_ptr() as *mut u8,
                    SRC.as_ptr(),
                    SRC.len(),
                    v + 1,
                    cpu,
                )
            }
        }),
        move |s: &CsState| on_current_shape(s, |slot, cpu| {
            let v = slot.v.load(Ordering::Relaxed);
            // SAFETY: as above; the thread is registered.
            unsafe {
                shape::cbne_memcpy_store(
                    slot.v.as_ptr(),
                    v,
                    slot.buf.as_ptr() as *mut u8,
                    SRC.as_ptr(),
                    SRC.len(),
                    v + 1,
                    cpu,
                )
            }
        })
    );
    let p = placed_pair(threads, cs_state(), ours, base);
    rows.push(("load_cbne_memcpy_store_release (16 B)", p));
    let p = placed_pair(
        threads,
        cs_state(),
        |s: &CsState| cs_pop_push_at_current(s),
        |s: &CsState| shape_pop_push(s),
    );
    rows.push(("list pop + push (at_current)", p));
    let p = placed_pair(
        threads,
        cs_state(),
        |s: &CsState| cs_pop_push_ours(s),
        |s: &CsState| shape_pop_push(s),
    );
    rows.push(("list pop + push (CPU passed)", p));
    let p = placed_pair(
        threads,
        cs_state(),
        |s: &CsState| cs_buffer_push_pop_at_current(s),
        |s: &CsState| shape_buffer_push_pop(s),
    );
    rows.push(("buffer push + pop (at_current)", p));
    let p = placed_pair(
        threads,
        cs_state(),
        |s: &CsState| cs_buffer_push_pop_ours(s),
        |s: &CsState| shape_buffer_push_pop(s),
    );
    rows.push(("buffer push + pop (CPU passed)", p));
    let p = placed_pair(
        threads,
        Arc::new(Counters {
            counter: PerCpuCounter::new(),
            slots: cs_state(),
            by_cpu: slots(),
        }),
        |c: &Counters| c.counter.add(1),
        |c: &Counters| {
            on_current_shape(&c.slots, |slot, cpu| {
                // SAFETY: a live, aligned word; the thread is registered.
                unsafe { shape::add(slot.v.as_ptr(), 1, cpu) }
            })
        },
    );
    rows.push(("PerCpuCounter::add / shape add", p));
    let p = placed_pair(
        threads,
        Arc::new(Locks {
            lock: PerCpuLock::new(|_| 0u64),
            slots: cs_state(),
        }),
        |l: &Locks| *l.lock.lock() += 1,
        |l: &Locks| shape_lock(l),
    );
    rows.push(("PerCpuLock lock + unlock", p));
    for (name, p) in rows {
        println!(
            "{threads:>7} | {name:<38} | {:>7.2} ns | {:>7.2} ns | {:>5.2}x | {:>7.2} ns | {:>7.2} ns | {:>5.2}x",
            p.ours,
            p.base,
            p.ours / p.base,
            p.ours_median,
            p.base_median,
            p.ours_median / p.base_median
        );
    }
}

fn shape_tables() {
    if !restartable::is_available() {
        println!("\nno rseq on this thread: the librseq shape has no fallback to compare");
        return;
    }
    println!(
        "\nours against the librseq shape (cpu_id_start, section with CPU compare, retry), owner {}, {} placements, median of {} runs each, interleaved",
        restartable::owner(),
        PLACEMENTS,
        PLACED_RUNS
    );
    println!(
        "threads | operation                              | ours best  | shape best | ratio  | ours median | shape median | ratio"
    );
    for threads in [1, 2] {
        shape_table(threads);
    }
}

static SRC: [u8; 16] = [7; 16];

struct Counters {
    counter: PerCpuCounter,
    slots: Arc<CsState>,
    by_cpu: Arc<Slots>,
}

struct Locks {
    lock: PerCpuLock<u64>,
    slots: Arc<CsState>,
}

/// The per-CPU lock of librseq's tests in its shape: a section sets the
/// slot's lock word 0 -> 1, the holder updates its data, a release store
/// clears the word. (`v2` is the data.)
#[inline(always)]
fn shape_lock(l: &Locks) {
    let slot = loop {
        let cpu = shape::cpu();
        let slot = l.slots.slots.get(cpu as usize).unwrap();
        // SAFETY: a live, aligned word; the thread is registered.
        if unsafe { shape::cbne_store(slot.v.as_ptr(), 0, 1, cpu) } == 0 {
            break slot;
        }
    };
    slot.v2
        .store(slot.v2.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    slot.v.store(0, Ordering::Release);
}

/// [`cs_buffer_push_pop_ours`] in the librseq shape.
#[inline(always)]
fn shape_buffer_push_pop(s: &CsState) {
    buffer_push_pop!(
        s,
        on_current_shape,
        0,
        [],
        shape::cbne_store_store,
        shape::cbne_cbne_store
    )
}

/// [`cs_pop_push`] in the librseq shape.
#[inline(always)]
fn shape_pop_push(s: &CsState) {
    let mut node = 0isize;
    on_current_shape(s, |slot, cpu| {
        // SAFETY: the list holds nodes of `_nodes`; the thread is registered.
        match unsafe { shape::cbeq_store_add_load_store(slot.head.as_ptr(), 0, 0, &mut node, cpu) }
        {
            1 => 0, // empty: done
            r => r,
        }
    });
    if node == 0 {
        return;
    }
    on_current_shape(s, |slot, cpu| {
        let head = slot.head.load(Ordering::Relaxed);
        // SAFETY: `node` is ours until the commit links it again.
        unsafe { (*(node as *const AtomicIsize)).store(head, Ordering::Relaxed) };
        // SAFETY: a live, aligned word; the thread is registered.
        unsafe { shape::cbne_store(slot.head.as_ptr(), head, node, cpu) }
    });
}

fn slots() -> Arc<Slots> {
    Arc::new(Slots(PerCpu::new(|_| AtomicU64::new(0))))
}

fn main() {
    // `cargo bench --bench percpu -- shape`: the comparison with the
    // librseq shape alone.
    if std::env::args().skip(1).any(|a| a == "shape") {
        shape_tables();
        return;
    }
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
        // Interleaved, run by run: the ratio compares one machine state.
        let (p, l) = measure_pair(
            threads,
            Arc::new(Counters {
                counter: PerCpuCounter::new(),
                slots: cs_state(),
                by_cpu: slots(),
            }),
            |c: &Counters| percpu_add(&c.counter),
            |c: &Counters| librseq_style_add(&c.by_cpu),
        );
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
    // `cargo bench --bench percpu -- counter`: the counter's table alone.
    if std::env::args().skip(1).any(|a| a == "counter") {
        return;
    }

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
    println!("threads | cbne_store | cbne_cbne_store | cbne_store_store | memcpy_store (16 B) | pop + push | pop + push at_current | buffer push + pop at_current");
    for threads in [1, 2] {
        let a = measure(threads, cs_state(), cs_cbne_store);
        let b = measure(threads, cs_state(), cs_cbne_cbne_store);
        let c = measure(threads, cs_state(), cs_store_store);
        let d = measure(threads, cs_state(), cs_memcpy_store);
        let e = measure(threads, cs_state(), cs_pop_push);
        let f = measure(threads, cs_state(), cs_pop_push_at_current);
        let g = measure(threads, cs_state(), cs_buffer_push_pop_at_current);
        println!(
            "{threads:>7} | {a:>7.2} ns | {b:>12.2} ns | {c:>13.2} ns | {d:>16.2} ns | {e:>7.2} ns | {f:>18.2} ns | {g:>26.2} ns"
        );
    }

    // `cargo bench --bench percpu -- tables`: the tables above alone.
    if std::env::args().skip(1).any(|a| a == "tables") {
        return;
    }
    shape_tables();

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
