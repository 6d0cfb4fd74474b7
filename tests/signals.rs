//! Every operation called from a signal handler on the thread it
//! interrupted, on the very words and slots that thread was working on:
//! a storm of `pthread_kill`s (with forced migrations) lands handlers in
//! the middle of multi-word critical sections, their fallbacks, and the
//! fence regions of the per-CPU lock and stack. Nothing may deadlock, and
//! every result stays exact, in every mode; where rseq is in use the storm
//! also runs again with `RESTARTABLE_DISABLE=1`, so the fallbacks always
//! face it.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use restartable::cs::{self, Index, Outcome};
use restartable::{Owner, PerCpuCounter, PerCpuLock, PerCpuStack};

/// Blocks every signal while `f` runs.
fn signals_blocked<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: sigfillset initialises `all`; pthread_sigmask reads `all`
    // and writes `old`, both valid.
    let old = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old);
        old
    };
    let result = f();
    // SAFETY: restores the mask read above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    result
}

/// The system allocator with signals blocked around every call, so that a
/// handler may allocate (`PerCpuStack::push` does): no handler can run on a
/// thread that is inside `malloc`.
struct SignalSafeAlloc;

// SAFETY: forwards to `System`, which upholds the contract.
unsafe impl GlobalAlloc for SignalSafeAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded from the caller.
        signals_blocked(|| unsafe { System.alloc(layout) })
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded from the caller.
        signals_blocked(|| unsafe { System.dealloc(ptr, layout) })
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded from the caller.
        signals_blocked(|| unsafe { System.realloc(ptr, layout, new_size) })
    }
}

#[global_allocator]
static ALLOC: SignalSafeAlloc = SignalSafeAlloc;

const WORKERS: usize = 4;
/// Entries of each slot's log and record table.
const CAP: usize = 1 << 15;
/// Ids per kind of operation.
const IDS: usize = 1 << 20;
/// List nodes per set of words.
const NODES: usize = 64;
const RECORD: usize = 16;

/// Fresh ids for one kind of operation, and a mark per id.
struct Ids {
    next: AtomicUsize,
    marks: Box<[AtomicU8]>,
}

impl Ids {
    fn new() -> Self {
        Ids {
            next: AtomicUsize::new(1),
            marks: (0..IDS).map(|_| AtomicU8::new(0)).collect(),
        }
    }
    /// A fresh id (ids start at 1: 0 is an empty entry).
    fn fresh(&self) -> Option<usize> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        (id < IDS).then_some(id)
    }
    fn mark(&self, id: usize, weight: u8) {
        self.marks[id].fetch_add(weight, Ordering::Relaxed);
    }
}

/// One CPU's words for the `cs` operations.
struct Slot {
    /// Entries used in `log`; appended to with `load_cbne_store_store`.
    log_len: AtomicIsize,
    log: Box<[AtomicIsize]>,
    /// Records used in `records`; appended to with `load_cbne_memcpy_store`.
    rec_len: AtomicIsize,
    records: Box<[AtomicU8]>,
    /// A list of `Words::nodes`: popped with `load_cbeq_store_add_load_store`,
    /// pushed with `load_cbne_store`.
    head: AtomicIsize,
}

/// The words one path works on: threads that run sections use one set,
/// threads on the fallbacks another (the two paths are not exact on one
/// word, see `cs`).
struct Words {
    slots: Vec<Slot>,
    /// Two words per node, `next` first.
    nodes: Box<[[AtomicIsize; 2]]>,
}

impl Words {
    fn new() -> Self {
        let slots: Vec<Slot> = (0..restartable::possible_cpus())
            .map(|_| Slot {
                log_len: AtomicIsize::new(0),
                log: (0..CAP).map(|_| AtomicIsize::new(0)).collect(),
                rec_len: AtomicIsize::new(0),
                records: (0..CAP * RECORD).map(|_| AtomicU8::new(0)).collect(),
                head: AtomicIsize::new(0),
            })
            .collect();
        let nodes: Box<[[AtomicIsize; 2]]> = (0..NODES).map(|_| Default::default()).collect();
        for node in nodes.iter() {
            node[0].store(slots[0].head.load(Ordering::Relaxed), Ordering::Relaxed);
            slots[0]
                .head
                .store(node.as_ptr() as isize, Ordering::Relaxed);
        }
        Words { slots, nodes }
    }
}

struct State {
    sections: Words,
    fallback: Words,
    log_ids: Ids,
    record_ids: Ids,
    stack_ids: Ids,
    stack: PerCpuStack<usize>,
    stack_by_cid: PerCpuStack<usize, restartable::ByMmCid>,
    lock: PerCpuLock<(u64, u64)>,
    lock_ops: AtomicU64,
    counter: PerCpuCounter,
    adds: AtomicU64,
    handled: AtomicU64,
}

static STATE: OnceLock<State> = OnceLock::new();

/// Runs `op` on the current CPU's slot until it commits (true) or its
/// compare fails (false).
fn on_slot(words: &Words, mut op: impl FnMut(&Slot, u32) -> Outcome) -> bool {
    loop {
        let cpu = restartable::current_cpu();
        let slot = &words.slots[cpu as usize % words.slots.len()];
        match op(slot, cpu) {
            Outcome::Committed => return true,
            Outcome::CompareFailed => return false,
            Outcome::Aborted => continue,
        }
    }
}

/// Operation `k` of the rotation, on the words of the calling thread's path.
fn operation(s: &State, k: usize) {
    let words = if restartable::is_available() {
        &s.sections
    } else {
        &s.fallback
    };
    match k % 7 {
        0 => {
            let Some(id) = s.log_ids.fresh() else { return };
            // Appends `id`: the entry is the speculative store, the length
            // the commit. A full log takes nothing.
            loop {
                let mut full = false;
                let committed = on_slot(words, |slot, cpu| {
                    let n = slot.log_len.load(Ordering::Acquire);
                    if n as usize >= CAP {
                        full = true;
                        return Outcome::CompareFailed;
                    }
                    // SAFETY: live, aligned words of this slot.
                    unsafe {
                        cs::load_cbne_store_store(
                            Index::Cpu,
                            slot.log_len.as_ptr(),
                            n,
                            slot.log[n as usize].as_ptr(),
                            id as isize,
                            n + 1,
                            cpu,
                        )
                    }
                });
                if committed {
                    s.log_ids.mark(id, 1);
                }
                if committed || full {
                    break;
                }
            }
        }
        1 => {
            let Some(id) = s.record_ids.fresh() else {
                return;
            };
            let mut bytes = [0u8; RECORD];
            bytes[..8].copy_from_slice(&(id as u64).to_le_bytes());
            bytes[8..].copy_from_slice(&(id as u64).to_le_bytes());
            loop {
                let mut full = false;
                let committed = on_slot(words, |slot, cpu| {
                    let n = slot.rec_len.load(Ordering::Acquire);
                    if n as usize >= CAP {
                        full = true;
                        return Outcome::CompareFailed;
                    }
                    let dst = slot.records[n as usize * RECORD..].as_ptr() as *mut u8;
                    // SAFETY: `dst` has `RECORD` bytes of this slot;
                    // `bytes` as many.
                    unsafe {
                        cs::load_cbne_memcpy_store(
                            Index::Cpu,
                            slot.rec_len.as_ptr(),
                            n,
                            dst,
                            bytes.as_ptr(),
                            RECORD,
                            n + 1,
                            cpu,
                        )
                    }
                });
                if committed {
                    s.record_ids.mark(id, 1);
                }
                if committed || full {
                    break;
                }
            }
        }
        2 => {
            // Pops a node and pushes it back: nodes are neither lost nor
            // duplicated.
            let mut node = 0isize;
            let popped = on_slot(words, |slot, cpu| {
                // SAFETY: the list links nodes of `words.nodes`, `next` at
                // offset 0, never freed; `node` receives the head.
                unsafe {
                    cs::load_cbeq_store_add_load_store(
                        Index::Cpu,
                        slot.head.as_ptr(),
                        0,
                        0,
                        &mut node,
                        cpu,
                    )
                }
            });
            if !popped {
                return; // the list of this CPU is empty
            }
            // SAFETY: `node` is a node of the pool, ours until pushed.
            let next = unsafe { &*(node as *const AtomicIsize) };
            while !on_slot(words, |slot, cpu| {
                let head = slot.head.load(Ordering::Acquire);
                next.store(head, Ordering::Relaxed);
                // SAFETY: a live, aligned word of this slot.
                unsafe { cs::load_cbne_store(Index::Cpu, slot.head.as_ptr(), head, node, cpu) }
            }) {}
        }
        3 => {
            let Some(id) = s.stack_ids.fresh() else {
                return;
            };
            s.stack_ids.mark(id, 1);
            s.stack.push(id);
            if let Some(v) = s.stack.pop() {
                s.stack_ids.mark(v, 16);
            }
        }
        4 => {
            let Some(id) = s.stack_ids.fresh() else {
                return;
            };
            let lists = s.stack.slot_count();
            s.stack_ids.mark(id, 1);
            s.stack.push_to(id % lists, id);
            if let Some(v) = s.stack.pop_from((id + 1) % lists) {
                s.stack_ids.mark(v, 16);
            }
        }
        5 => {
            let Some(id) = s.stack_ids.fresh() else {
                return;
            };
            s.stack_ids.mark(id, 1);
            s.stack_by_cid.push(id);
            if let Some(v) = s.stack_by_cid.pop_from(id % s.stack_by_cid.slot_count()) {
                s.stack_ids.mark(v, 16);
            }
            s.counter.add(1);
            s.adds.fetch_add(1, Ordering::Relaxed);
        }
        _ => {
            let mut g = s.lock.lock();
            let (a, b) = *g;
            assert_eq!(a, b, "two holders at once on slot {}", g.slot());
            *g = (a + 1, b + 1);
            s.lock_ops.fetch_add(1, Ordering::Relaxed);
        }
    }
}

extern "C" fn on_signal(_: libc::c_int) {
    static TURN: AtomicUsize = AtomicUsize::new(0);
    if let Some(s) = STATE.get() {
        let k = TURN.fetch_add(1, Ordering::Relaxed);
        operation(s, k);
        s.handled.fetch_add(1, Ordering::Relaxed);
    }
}

/// Registers a private area for the calling thread, so the library finds
/// it foreign and serves it through the fallbacks (leaked: the kernel may
/// write it until the thread exits).
fn make_foreign() {
    // SAFETY: an all-zero `struct rseq` is a valid value.
    let area: &'static restartable::abi::Rseq = Box::leak(Box::new(unsafe { std::mem::zeroed() }));
    assert_eq!(
        common::raw_register(area as *const _ as *mut u8),
        Ok(()),
        "private registration failed"
    );
    assert!(!restartable::is_available());
}

/// The storm: `WORKERS` threads run the rotation of operations (the lock
/// with signals blocked around its guard, as a handler that takes the same
/// slot requires) while a storm thread signals and migrates them; every
/// handler runs the rotation too.
fn storm() {
    let s = STATE.get_or_init(|| State {
        sections: Words::new(),
        fallback: Words::new(),
        log_ids: Ids::new(),
        record_ids: Ids::new(),
        stack_ids: Ids::new(),
        stack: PerCpuStack::new(),
        stack_by_cid: PerCpuStack::new_by_mm_cid(),
        lock: PerCpuLock::new(|_| (0, 0)),
        lock_ops: AtomicU64::new(0),
        counter: PerCpuCounter::new(),
        adds: AtomicU64::new(0),
        handled: AtomicU64::new(0),
    });
    // SAFETY: the handler runs library operations only, through an
    // allocator that blocks signals.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_signal as *const () as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        assert_eq!(
            libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut()),
            0
        );
    }
    let foreign_one = restartable::owner() == Owner::Library;
    let cpus = common::allowed_cpus();
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Arc<Mutex<Vec<(libc::pthread_t, libc::pid_t)>>> = Arc::default();
    let ready = Arc::new(Barrier::new(WORKERS + 1));
    let storm_over = Arc::new(Barrier::new(WORKERS + 1));
    let handles: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (stop, workers) = (Arc::clone(&stop), Arc::clone(&workers));
            let (ready, storm_over) = (Arc::clone(&ready), Arc::clone(&storm_over));
            thread::spawn(move || {
                if foreign_one && w == 0 {
                    make_foreign();
                }
                let _ = restartable::current_cpu(); // registers before any signal
                                                    // SAFETY: pthread_self and gettid have no preconditions.
                let me = unsafe { (libc::pthread_self(), libc::gettid()) };
                workers.lock().unwrap().push(me);
                ready.wait();
                let mut k = w;
                while !stop.load(Ordering::Relaxed) {
                    if k % 7 == 6 {
                        signals_blocked(|| operation(s, k));
                    } else {
                        operation(s, k);
                    }
                    k += 1;
                }
                // Alive until the storm is over: a joined thread's
                // `pthread_t` must never reach `pthread_kill`.
                storm_over.wait();
            })
        })
        .collect();
    ready.wait();
    let storm = {
        let (stop, workers) = (Arc::clone(&stop), Arc::clone(&workers));
        thread::spawn(move || {
            let workers = workers.lock().unwrap().clone();
            let start = Instant::now();
            let mut round = 0usize;
            while start.elapsed() < Duration::from_millis(1500)
                && (s.handled.load(Ordering::Relaxed) < 10_000
                    || start.elapsed() < Duration::from_millis(200))
            {
                for (k, &(thread, tid)) in workers.iter().enumerate() {
                    if round % 16 == 0 {
                        common::pin_thread(tid, cpus[(round + k) % cpus.len()]);
                    }
                    // SAFETY: the workers wait on `storm_over`, alive,
                    // until this thread has been joined.
                    unsafe { libc::pthread_kill(thread, libc::SIGUSR1) };
                }
                round += 1;
                std::hint::spin_loop();
            }
            stop.store(true, Ordering::Relaxed);
        })
    };
    storm.join().unwrap();
    storm_over.wait();
    for h in handles {
        h.join().unwrap();
    }
    let handled = s.handled.load(Ordering::Relaxed);
    assert!(handled > 0, "the storm delivered no signal");
    check(s);
    println!(
        "signal storm ({}): {handled} handlers, all checks passed",
        restartable::owner()
    );
}

/// Every result is exact: logs and records hold each committed id once,
/// the lists every node once, the stacks gave back every value once, and
/// the counter and the lock counted every operation.
fn check(s: &State) {
    let (mut logged, mut recorded) = (0usize, 0usize);
    for words in [&s.sections, &s.fallback] {
        for slot in &words.slots {
            let n = slot.log_len.load(Ordering::Relaxed) as usize;
            for entry in &slot.log[..n] {
                let id = entry.load(Ordering::Relaxed) as usize;
                assert!(id > 0 && id < IDS, "log entry {id} never written");
                assert_eq!(
                    s.log_ids.marks[id].swap(2, Ordering::Relaxed),
                    1,
                    "log entry {id} not committed once"
                );
            }
            logged += n;
            let n = slot.rec_len.load(Ordering::Relaxed) as usize;
            for record in slot.records[..n * RECORD].chunks(RECORD) {
                let bytes: Vec<u8> = record.iter().map(|b| b.load(Ordering::Relaxed)).collect();
                assert_eq!(bytes[..8], bytes[8..], "a torn record");
                let id = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
                assert!(id > 0 && id < IDS, "record {id} never written");
                assert_eq!(
                    s.record_ids.marks[id].swap(2, Ordering::Relaxed),
                    1,
                    "record {id} not committed once"
                );
            }
            recorded += n;
        }
        let mut nodes = HashSet::new();
        for slot in &words.slots {
            let mut p = slot.head.load(Ordering::Relaxed);
            while p != 0 {
                assert!(nodes.insert(p), "node {p:#x} linked twice");
                // SAFETY: a node of the pool.
                p = unsafe { (*(p as *const AtomicIsize)).load(Ordering::Relaxed) };
            }
        }
        let pool: HashSet<isize> = words.nodes.iter().map(|n| n.as_ptr() as isize).collect();
        assert_eq!(nodes, pool, "list nodes lost or duplicated");
    }
    let committed = |ids: &Ids, mark: u8| {
        ids.marks
            .iter()
            .filter(|m| m.load(Ordering::Relaxed) == mark)
            .count()
    };
    assert_eq!(
        committed(&s.log_ids, 1),
        0,
        "committed appends missing from the logs"
    );
    assert_eq!(committed(&s.record_ids, 1), 0, "committed records missing");
    assert!(logged > 0 && recorded > 0);
    while let Some(v) = s.stack.pop_any().or_else(|| s.stack_by_cid.pop_any()) {
        s.stack_ids.mark(v, 16);
    }
    for (id, mark) in s.stack_ids.marks.iter().enumerate() {
        let mark = mark.load(Ordering::Relaxed);
        assert!(
            mark == 0 || mark == 17,
            "stack value {id}: pushed and popped {mark:#x}"
        );
    }
    assert_eq!(s.counter.sum() as u64, s.adds.load(Ordering::Relaxed));
    let mut total = 0;
    for i in 0..s.lock.len() {
        let (a, b) = *s.lock.lock_slot(i);
        assert_eq!(a, b);
        total += a;
    }
    assert_eq!(total, s.lock_ops.load(Ordering::Relaxed));
}

/// Set in the children of [`handlers_run_every_operation_on_the_words_they_interrupt`].
const STORM_CHILD: &str = "RESTARTABLE_TEST_STORM_CHILD";

fn run_storm_child(disable: bool) {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = std::process::Command::new(exe);
    cmd.args([
        "--exact",
        "handlers_run_every_operation_on_the_words_they_interrupt",
        "--nocapture",
    ])
    .env(STORM_CHILD, "1");
    if disable {
        cmd.env("RESTARTABLE_DISABLE", "1");
    }
    // A deadlock shows as a child that runs past the limit.
    let out = common::output_within(&mut cmd, common::child_limit_or(Duration::from_secs(60)));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("all checks passed"),
        "storm child failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    print!("{stdout}");
}

#[test]
fn handlers_run_every_operation_on_the_words_they_interrupt() {
    if std::env::var_os(STORM_CHILD).is_some() {
        storm();
        return;
    }
    run_storm_child(false);
    if restartable::is_available() {
        run_storm_child(true);
    }
}

/// The fallback copies the way the section does: byte by byte, forward,
/// so overlapping ranges come out the same on both paths.
#[test]
fn memcpy_store_copies_forward_byte_by_byte_on_every_path() {
    /// `(dst, src, len)` as offsets into a 32-byte buffer: `dst` 1 to 7
    /// bytes above `src` (short and long), far above it, and below it.
    const LAYOUTS: [(usize, usize, usize); 7] = [
        (1, 0, 5),
        (1, 0, 20),
        (7, 0, 20),
        (8, 0, 20),
        (9, 1, 20),
        (0, 3, 20),
        (0, 0, 20),
    ];
    fn copy_overlapping() -> Vec<Vec<u8>> {
        LAYOUTS
            .iter()
            .map(|&(dst, src, len)| {
                let v = AtomicIsize::new(0);
                let buf: Vec<AtomicU8> = (1..=32).map(AtomicU8::new).collect();
                loop {
                    let cpu = restartable::current_cpu();
                    let base = buf.as_ptr() as *mut u8;
                    // SAFETY: `buf` has 32 bytes; every layout stays inside.
                    let outcome = unsafe {
                        cs::load_cbne_memcpy_store(
                            Index::Cpu,
                            v.as_ptr(),
                            0,
                            base.add(dst),
                            base.add(src),
                            len,
                            1,
                            cpu,
                        )
                    };
                    if outcome == Outcome::Committed {
                        break;
                    }
                }
                buf.iter().map(|b| b.load(Ordering::Relaxed)).collect()
            })
            .collect()
    }
    // Forward, byte by byte: every byte written is read again next.
    let expected: Vec<Vec<u8>> = LAYOUTS
        .iter()
        .map(|&(dst, src, len)| {
            let mut buf: Vec<u8> = (1..=32).collect();
            for i in 0..len {
                buf[dst + i] = buf[src + i];
            }
            buf
        })
        .collect();
    assert_eq!(expected[0][..8], [1, 1, 1, 1, 1, 1, 7, 8]);
    assert_eq!(copy_overlapping(), expected, "this thread's path");
    if restartable::is_available() {
        let theirs = thread::spawn(|| {
            make_foreign_if_possible();
            copy_overlapping()
        });
        assert_eq!(theirs.join().unwrap(), expected, "a foreign thread's path");
        if std::env::var_os(STORM_CHILD).is_none() {
            common::run_test_in_child(
                "memcpy_store_copies_forward_byte_by_byte_on_every_path",
                |cmd| {
                    cmd.env("RESTARTABLE_DISABLE", "1").env(STORM_CHILD, "1");
                },
            );
        }
    }
}

/// In `Library` mode, makes the thread foreign (fallbacks); elsewhere
/// leaves it as it is.
fn make_foreign_if_possible() {
    if restartable::owner() == Owner::Library {
        make_foreign();
    }
}
