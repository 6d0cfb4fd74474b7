//! The critical-section operations, deterministically: each commits with
//! the right CPU, aborts with another CPU, fails its comparison with a
//! wrong expected value — and in the last two cases leaves memory
//! unchanged. Where rseq is unavailable the same calls take the fallbacks
//! and must give the same exact results (the CPU is then not checked).

mod common;

use restartable::cs::{self, Index, Outcome};
use restartable::{abi, rseq_asm};

/// Runs `f` on a fresh thread pinned to one allowed CPU, passing a CPU (or
/// concurrency id) the thread can never have: sections checking it abort.
fn pinned(f: impl FnOnce(u32) + Send + 'static) {
    common::on_fresh_thread(move || {
        common::pin_to(common::allowed_cpus()[0]);
        // No CPU or concurrency id is ever this large.
        f(u32::MAX - 7)
    });
}

/// The indexes to test: the CPU, and `mm_cid` where rseq is in use and the
/// kernel fills it (Linux 6.3 and later).
fn indexes() -> Vec<Index> {
    let mut v = vec![Index::Cpu];
    let rseq = common::expected_owner() != restartable::Owner::Unavailable;
    if rseq && common::kernel::has_node_id_and_mm_cid() {
        assert!(
            restartable::mm_cid().is_some(),
            "the kernel provides mm_cid"
        );
        v.push(Index::MmCid);
        common::kernel::say("cs", "sections indexed by CPU and by mm_cid");
    } else {
        assert_eq!(restartable::mm_cid(), None);
        common::kernel::say(
            "cs",
            "mm_cid() is None (no rseq, or a kernel before 6.3): sections indexed by CPU only",
        );
    }
    v
}

/// Retries while the kernel aborts (a rare preemption of the pinned
/// thread), reading the index again for each try: a pinned thread keeps
/// its CPU, but its concurrency id may be renumbered.
fn commit(index: Index, mut op: impl FnMut(u32) -> Outcome) -> Outcome {
    for _ in 0..1000 {
        let here = match index {
            Index::Cpu => restartable::current_cpu(),
            Index::MmCid => restartable::mm_cid().expect("mm_cid"),
        };
        let outcome = op(here);
        if outcome != Outcome::Aborted {
            return outcome;
        }
    }
    panic!("aborted 1000 times on the right CPU");
}

/// With rseq a wrong CPU aborts; the fallbacks do not check the CPU.
fn expect_wrong_cpu(outcome: Outcome) -> bool {
    if restartable::is_available() {
        assert_eq!(outcome, Outcome::Aborted);
        true
    } else {
        assert_ne!(outcome, Outcome::Aborted);
        false
    }
}

#[test]
fn mode_is_expected() {
    common::check_owner();
}

#[test]
fn load_cbne_store() {
    for index in indexes() {
        pinned(move |other| {
            let mut v: isize = 5;
            let p = &mut v as *mut isize;
            // SAFETY: `p` is a live local for every call below.
            unsafe {
                assert_eq!(
                    commit(index, |cpu| cs::load_cbne_store(index, p, 4, 9, cpu)),
                    Outcome::CompareFailed
                );
                assert_eq!(*p, 5);
                if expect_wrong_cpu(cs::load_cbne_store(index, p, 5, 9, other)) {
                    assert_eq!(*p, 5);
                } else {
                    *p = 5;
                }
                assert_eq!(
                    commit(index, |cpu| cs::load_cbne_store(index, p, 5, 9, cpu)),
                    Outcome::Committed
                );
                assert_eq!(*p, 9);
            }
        });
    }
}

#[test]
fn load_add_store() {
    for index in indexes() {
        pinned(move |other| {
            let mut v: isize = 40;
            let p = &mut v as *mut isize;
            // SAFETY: `p` is a live local.
            unsafe {
                if expect_wrong_cpu(cs::load_add_store(index, p, 2, other)) {
                    assert_eq!(*p, 40);
                } else {
                    *p = 40;
                }
                assert_eq!(
                    commit(index, |cpu| cs::load_add_store(index, p, 2, cpu)),
                    Outcome::Committed
                );
                assert_eq!(*p, 42);
                assert_eq!(
                    commit(index, |cpu| cs::load_add_store(index, p, -50, cpu)),
                    Outcome::Committed
                );
                assert_eq!(*p, -8);
            }
        });
    }
}

#[repr(C)]
struct Node {
    next: isize,
    value: u32,
}

#[test]
fn load_cbeq_store_add_load_store_pops_a_list() {
    for index in indexes() {
        pinned(move |other| {
            let second = Box::into_raw(Box::new(Node { next: 0, value: 2 }));
            let first = Box::into_raw(Box::new(Node {
                next: second as isize,
                value: 1,
            }));
            let mut head = first as isize;
            let h = &mut head as *mut isize;
            let mut popped: isize = 0;
            let out = &mut popped as *mut isize;
            // SAFETY: the nodes live until freed at the end; `next` is at 0.
            unsafe {
                if expect_wrong_cpu(cs::load_cbeq_store_add_load_store(
                    index, h, 0, 0, out, other,
                )) {
                    assert_eq!(*h, first as isize);
                } else {
                    *h = first as isize;
                }
                let pop = |cpu| cs::load_cbeq_store_add_load_store(index, h, 0, 0, out, cpu);
                assert_eq!(commit(index, pop), Outcome::Committed);
                assert_eq!(popped, first as isize);
                assert_eq!((*(popped as *const Node)).value, 1);
                assert_eq!(*h, second as isize);
                assert_eq!(commit(index, pop), Outcome::Committed);
                assert_eq!(popped, second as isize);
                assert_eq!(*h, 0);
                // Empty list: the comparison fails, nothing changes.
                assert_eq!(commit(index, pop), Outcome::CompareFailed);
                assert_eq!(*h, 0);
                drop(Box::from_raw(first));
                drop(Box::from_raw(second));
            }
        });
    }
}

#[test]
fn load_cbne_load_cbne_store() {
    for index in indexes() {
        pinned(move |other| {
            let (mut v, mut v2) = (1isize, 2isize);
            let (p, p2) = (&mut v as *mut isize, &mut v2 as *mut isize);
            // SAFETY: live locals.
            unsafe {
                let op = move |e, e2, c| cs::load_cbne_load_cbne_store(index, p, e, p2, e2, 7, c);
                assert_eq!(commit(index, |cpu| op(0, 2, cpu)), Outcome::CompareFailed);
                assert_eq!(commit(index, |cpu| op(1, 0, cpu)), Outcome::CompareFailed);
                assert_eq!((*p, *p2), (1, 2));
                if expect_wrong_cpu(op(1, 2, other)) {
                    assert_eq!((*p, *p2), (1, 2));
                } else {
                    *p = 1;
                }
                assert_eq!(commit(index, |cpu| op(1, 2, cpu)), Outcome::Committed);
                assert_eq!((*p, *p2), (7, 2));
            }
        });
    }
}

#[test]
fn load_cbne_store_store_and_release() {
    for index in indexes() {
        for release in [false, true] {
            pinned(move |other| {
                let (mut v, mut v2) = (1isize, 2isize);
                let (p, p2) = (&mut v as *mut isize, &mut v2 as *mut isize);
                let op = move |e, c| {
                    // SAFETY: live locals.
                    unsafe {
                        if release {
                            cs::load_cbne_store_store_release(index, p, e, p2, 20, 10, c)
                        } else {
                            cs::load_cbne_store_store(index, p, e, p2, 20, 10, c)
                        }
                    }
                };
                assert_eq!(commit(index, |cpu| op(0, cpu)), Outcome::CompareFailed);
                // SAFETY: live locals.
                unsafe {
                    assert_eq!((*p, *p2), (1, 2));
                    if expect_wrong_cpu(op(1, other)) {
                        assert_eq!(*p, 1);
                    } else {
                        (*p, *p2) = (1, 2);
                    }
                    assert_eq!(commit(index, |cpu| op(1, cpu)), Outcome::Committed);
                    assert_eq!((*p, *p2), (10, 20));
                }
            });
        }
    }
}

#[test]
fn load_cbne_memcpy_store_and_release() {
    for index in indexes() {
        for release in [false, true] {
            pinned(move |other| {
                let mut v = 3isize;
                let p = &mut v as *mut isize;
                let src: Vec<u8> = (0..100).collect();
                let mut dst = vec![0u8; 100];
                let d = dst.as_mut_ptr();
                let s = src.as_ptr();
                let op = move |e, len, c| {
                    // SAFETY: `src` and `dst` hold 100 bytes; `p` is live.
                    unsafe {
                        if release {
                            cs::load_cbne_memcpy_store_release(index, p, e, d, s, len, 4, c)
                        } else {
                            cs::load_cbne_memcpy_store(index, p, e, d, s, len, 4, c)
                        }
                    }
                };
                assert_eq!(commit(index, |cpu| op(0, 100, cpu)), Outcome::CompareFailed);
                // SAFETY: live local.
                assert_eq!(unsafe { *p }, 3);
                if expect_wrong_cpu(op(3, 100, other)) {
                    // SAFETY: live local.
                    assert_eq!(unsafe { *p }, 3);
                } else {
                    // SAFETY: live local.
                    unsafe { *p = 3 };
                }
                assert_eq!(commit(index, |cpu| op(3, 0, cpu)), Outcome::Committed);
                // SAFETY: live local.
                unsafe { *p = 3 };
                assert_eq!(commit(index, |cpu| op(3, 100, cpu)), Outcome::Committed);
                // SAFETY: live local.
                assert_eq!(unsafe { *p }, 4);
                assert_eq!(dst, src);
                // Lengths around the eight-byte steps: exactly `len` bytes.
                for len in [1usize, 7, 8, 9, 16, 17] {
                    // SAFETY: `d` holds 100 bytes; `p` is live.
                    unsafe {
                        core::ptr::write_bytes(d, 0, 100);
                        *p = 3;
                    }
                    assert_eq!(commit(index, |cpu| op(3, len, cpu)), Outcome::Committed);
                    // SAFETY: `d` holds 100 bytes, written by this thread.
                    let got = unsafe { core::slice::from_raw_parts(d, 100) };
                    assert_eq!(&got[..len], &src[..len], "{len} bytes");
                    assert!(
                        got[len..].iter().all(|&b| b == 0),
                        "copied past {len} bytes"
                    );
                }
            });
        }
    }
}

#[test]
fn memcpy_store_release_pushes_stay_exact() {
    // The buffer push of librseq's tests: each CPU's slot holds an index
    // and a ring of records; a push copies its record to the slot at the
    // index and commits the index + 1 (release). Eight threads, every push
    // counted once, every record whole.
    const THREADS: usize = 8;
    const OPS: usize = 20_000;
    const RING: usize = 64;
    #[repr(C, align(128))]
    struct Slot {
        index: std::sync::atomic::AtomicIsize,
        ring: [[std::sync::atomic::AtomicU8; 16]; RING],
    }
    let slots: Vec<Slot> = (0..restartable::possible_cpus())
        .map(|_| Slot {
            index: Default::default(),
            ring: std::array::from_fn(|_| Default::default()),
        })
        .collect();
    let slots = std::sync::Arc::new(slots);
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let slots = std::sync::Arc::clone(&slots);
            std::thread::spawn(move || {
                let record = [t as u8; 16];
                for _ in 0..OPS {
                    loop {
                        let cpu = restartable::current_cpu();
                        let slot = &slots[cpu as usize];
                        let at = slot.index.load(std::sync::atomic::Ordering::Relaxed);
                        let dst = slot.ring[at as usize % RING].as_ptr() as *mut u8;
                        // SAFETY: a live, aligned word and a 16-byte record
                        // of this CPU's slot, written only by these pushes.
                        let outcome = unsafe {
                            cs::load_cbne_memcpy_store_release(
                                Index::Cpu,
                                slot.index.as_ptr(),
                                at,
                                dst,
                                record.as_ptr(),
                                16,
                                at + 1,
                                cpu,
                            )
                        };
                        if outcome == Outcome::Committed {
                            break;
                        }
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let total: isize = slots
        .iter()
        .map(|s| s.index.load(std::sync::atomic::Ordering::Relaxed))
        .sum();
    assert_eq!(total, (THREADS * OPS) as isize);
    // Every record a push committed is one thread's whole record (the
    // copies of aborted pushes are overwritten or never counted).
    for slot in slots.iter() {
        let pushed = slot.index.load(std::sync::atomic::Ordering::Relaxed) as usize;
        for record in slot.ring.iter().take(pushed.min(RING)) {
            let bytes: Vec<u8> = record
                .iter()
                .map(|b| b.load(std::sync::atomic::Ordering::Relaxed))
                .collect();
            assert!(
                bytes.iter().all(|&b| b == bytes[0]),
                "torn record {bytes:?}"
            );
            assert!((bytes[0] as usize) < THREADS);
        }
    }
}

#[test]
fn load_add_load_load_add_store() {
    for index in indexes() {
        pinned(move |other| {
            let mut target: isize = 100;
            // An object whose second word points at `target`.
            let object: [isize; 2] = [0, &mut target as *mut isize as isize];
            let mut root = object.as_ptr() as isize;
            let r = &mut root as *mut isize;
            // SAFETY: `root` points at `object`, whose word at offset 8
            // points at the live `target`.
            unsafe {
                if expect_wrong_cpu(cs::load_add_load_load_add_store(index, r, 8, 5, other)) {
                    assert_eq!(target, 100);
                } else {
                    target = 100;
                }
                assert_eq!(
                    commit(index, |cpu| cs::load_add_load_load_add_store(
                        index, r, 8, 5, cpu
                    )),
                    Outcome::Committed
                );
            }
            assert_eq!(target, 105);
        });
    }
}

/// `if *max < value { *max = value }` on CPU `cpu`, written with the macro
/// in the target's assembly.
///
/// # Safety
/// The thread is registered.
#[cfg(target_arch = "x86_64")]
unsafe fn store_max_section(max: &mut i64, value: i64, cpu: u32) -> i32 {
    // SAFETY: `max` is live; the last instruction is the single commit.
    unsafe {
        rseq_asm!(
            area = restartable::area_offset(),
            field = abi::CPU_ID_OFFSET,
            cpu = cpu,
            body = [
                "cmp qword ptr [{p}], {v}",
                "jge 93f",
                "mov qword ptr [{p}], {v}",
            ],
            p = in(reg) max as *mut i64,
            v = in(reg) value,
        )
    }
}

/// `if *max < value { *max = value }` on CPU `cpu`, written with the macro
/// in the target's assembly.
///
/// # Safety
/// The thread is registered.
#[cfg(target_arch = "aarch64")]
unsafe fn store_max_section(max: &mut i64, value: i64, cpu: u32) -> i32 {
    // SAFETY: `max` is live; the last instruction is the single commit.
    unsafe {
        rseq_asm!(
            area = restartable::area_offset(),
            field = abi::CPU_ID_OFFSET,
            cpu = cpu,
            body = [
                "ldr {t}, [{p}]",
                "cmp {t}, {v}",
                "b.ge 93f",
                "str {v}, [{p}]",
            ],
            p = in(reg) max as *mut i64,
            v = in(reg) value,
            t = out(reg) _,
        )
    }
}

#[test]
fn a_section_written_with_the_macro() {
    pinned(|other| {
        let cpu = restartable::current_cpu(); // pinned: it stays
        if !restartable::is_available() {
            assert_eq!(restartable::owner(), restartable::Owner::Unavailable);
            return;
        }
        let mut max: i64 = 5;
        let store_max = |value: i64, cpu: u32, max: &mut i64| -> i32 {
            // SAFETY: the thread is registered; `max` is live; the last
            // instruction is the single commit store.
            unsafe { store_max_section(max, value, cpu) }
        };
        let mut outcome = -1;
        while outcome == -1 {
            outcome = store_max(3, cpu, &mut max); // aborts only if preempted
        }
        assert_eq!(outcome, 1, "3 < 5: compare failed");
        assert_eq!(max, 5);
        assert_eq!(store_max(9, other, &mut max), -1, "wrong CPU: aborted");
        assert_eq!(max, 5);
        let mut outcome = -1;
        while outcome == -1 {
            outcome = store_max(9, cpu, &mut max);
        }
        assert_eq!(outcome, 0);
        assert_eq!(max, 9);
    });
}

#[test]
fn yields_between_the_cpu_read_and_the_section_stay_exact() {
    const THREADS: usize = 8;
    const OPS: usize = 20_000;
    let slots: Vec<std::sync::atomic::AtomicIsize> = (0..restartable::possible_cpus())
        .map(|_| Default::default())
        .collect();
    let slots = std::sync::Arc::new(slots);
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let slots = std::sync::Arc::clone(&slots);
            std::thread::spawn(move || {
                for n in 0..OPS {
                    loop {
                        let cpu = restartable::current_cpu();
                        if n % 4 == 0 {
                            std::thread::yield_now(); // invites a migration
                        }
                        let word = slots[cpu as usize].as_ptr();
                        // SAFETY: a live, aligned word of the slot array.
                        if unsafe { cs::load_add_store(Index::Cpu, word, 1, cpu) }
                            == Outcome::Committed
                        {
                            break;
                        }
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let total: isize = slots
        .iter()
        .map(|s| s.load(std::sync::atomic::Ordering::Relaxed))
        .sum();
    assert_eq!(total, (THREADS * OPS) as isize);
}

/// Slots for the list operations that read the index themselves: a head
/// (0, empty) and two words no operation may touch.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
struct ListSlot {
    head: isize,
    guard: [isize; 2],
}

const GUARD: [isize; 2] = [-7, -8];

fn list_slots() -> Vec<ListSlot> {
    vec![
        ListSlot {
            head: 0,
            guard: GUARD,
        };
        restartable::possible_cpus()
    ]
}

/// The nodes linked from `slots`, list by list, each from its head.
fn listed(slots: &[ListSlot]) -> Vec<Vec<isize>> {
    slots
        .iter()
        .map(|s| {
            let mut nodes = Vec::new();
            let mut at = s.head;
            while at != 0 {
                assert!(nodes.len() < 1 << 16, "a list loops");
                nodes.push(at);
                // SAFETY: every listed node is a live `[isize; 2]`, `next` first.
                at = unsafe { *(at as *const isize) };
            }
            nodes
        })
        .collect()
}

#[test]
fn push_and_pop_at_current_use_the_list_of_the_cpu_they_run_on() {
    for index in indexes() {
        common::on_fresh_thread(move || {
            let cpu = common::allowed_cpus()[0];
            common::pin_to(cpu);
            let mut slots = list_slots();
            let (base, stride, n) = (
                slots.as_mut_ptr().cast::<u8>(),
                std::mem::size_of::<ListSlot>(),
                slots.len() as u32,
            );
            let mut nodes = [[0isize, 10], [0, 11]];
            let (a, b) = (nodes[0].as_mut_ptr(), nodes[1].as_mut_ptr());
            // Retries aborts: a pinned thread keeps its CPU, not always its
            // concurrency id, so the list of an `mm_cid` may change.
            let push = |node| {
                // SAFETY: `n` slots of `stride` bytes, each starting with a
                // head; the node is ours until linked.
                commit(index, |_| unsafe {
                    cs::push_at_current(index, base, stride, n, node)
                })
            };
            let pop = || {
                let mut popped = std::ptr::null_mut();
                let outcome = commit(index, |_| {
                    // SAFETY: as above; the listed nodes live to the end.
                    let (outcome, node) = unsafe { cs::pop_at_current(index, base, stride, n) };
                    popped = node;
                    outcome
                });
                (outcome, popped)
            };
            assert_eq!(push(a), Outcome::Committed);
            assert_eq!(push(b), Outcome::Committed);
            assert!(
                slots.iter().all(|s| s.guard == GUARD),
                "a guard word changed"
            );
            let lists = listed(&slots);
            let (a, b) = (a as isize, b as isize);
            if index == Index::Cpu {
                // On the pinned CPU's list (the fallback's too: it takes
                // the slot of the CPU the thread runs on), the second on
                // top of the first.
                for (i, list) in lists.iter().enumerate() {
                    let expected = if i == cpu { vec![b, a] } else { vec![] };
                    assert_eq!(list, &expected, "list {i}");
                }
            } else {
                let mut all: Vec<isize> = lists.concat();
                all.sort();
                assert_eq!(all, {
                    let mut v = vec![a, b];
                    v.sort();
                    v
                });
            }
            // Pops take the head of the current list; an empty list fails
            // its comparison and changes nothing.
            let mut popped = Vec::new();
            loop {
                assert!(popped.len() <= 2, "popped more nodes than pushed");
                match pop() {
                    (Outcome::Committed, node) => popped.push(node as isize),
                    (outcome, node) => {
                        assert_eq!(
                            (outcome, node),
                            (Outcome::CompareFailed, std::ptr::null_mut())
                        );
                        break;
                    }
                }
            }
            if index == Index::Cpu {
                assert_eq!(popped, vec![b, a]);
                assert!(slots.iter().all(|s| s.head == 0));
            }
            assert!(
                slots.iter().all(|s| s.guard == GUARD),
                "a guard word changed"
            );
            assert_eq!((nodes[0][1], nodes[1][1]), (10, 11), "a payload changed");
        });
    }
}

#[test]
fn list_pushes_and_pops_at_current_stay_exact() {
    // Each thread pops a node from the list it runs on and pushes it back,
    // now and then after a yield that invites a migration: no node is lost
    // or listed twice.
    const THREADS: usize = 8;
    const OPS: usize = 20_000;
    const PER_CPU: usize = 4;
    let cpus = restartable::possible_cpus();
    let nodes: Vec<[isize; 2]> = (0..cpus * PER_CPU).map(|k| [0, k as isize]).collect();
    let mut nodes = nodes.into_boxed_slice();
    let mut slots = list_slots();
    for (k, node) in nodes.iter_mut().enumerate() {
        let slot = &mut slots[k % cpus];
        node[0] = slot.head;
        slot.head = node.as_mut_ptr() as isize;
    }
    let stride = std::mem::size_of::<ListSlot>();
    let (base, n) = (slots.as_mut_ptr() as usize, cpus as u32);
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            std::thread::spawn(move || {
                let base = base as *mut u8;
                let mut held = 0;
                for op in 0..OPS {
                    let node = loop {
                        // SAFETY: `n` slots of `stride` bytes with a head
                        // each; nodes live until the end of the test.
                        match unsafe { cs::pop_at_current(Index::Cpu, base, stride, n) } {
                            (Outcome::Aborted, _) => continue,
                            (_, node) => break node,
                        }
                    };
                    if node.is_null() {
                        continue; // this CPU's list is empty just now
                    }
                    held += 1;
                    if op % 8 == 0 {
                        std::thread::yield_now();
                    }
                    // SAFETY: as above; the popped node is ours.
                    while unsafe { cs::push_at_current(Index::Cpu, base, stride, n, node) }
                        != Outcome::Committed
                    {}
                }
                held
            })
        })
        .collect();
    let held: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(held > 0, "no pop found a node");
    let mut all: Vec<isize> = listed(&slots).concat();
    all.sort();
    let mut expected: Vec<isize> = nodes.iter().map(|n| n.as_ptr() as isize).collect();
    expected.sort();
    assert_eq!(all, expected, "nodes lost or listed twice");
    assert!(nodes.iter().enumerate().all(|(k, n)| n[1] == k as isize));
    assert!(slots.iter().all(|s| s.guard == GUARD));
}

/// The text a panic carried (`panic!` with arguments gives a `String`,
/// without them a `&str`).
fn panic_message(refused: Box<dyn std::any::Any + Send>) -> String {
    refused
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_else(|| refused.downcast_ref::<&str>().unwrap().to_string())
}

#[test]
fn list_operations_at_current_refuse_too_few_slots() {
    // No slots at all: a clear panic on every path.
    let refused = std::panic::catch_unwind(|| {
        let mut head = 0isize;
        // SAFETY: never dereferenced with 0 slots.
        unsafe { cs::pop_at_current(Index::Cpu, (&mut head as *mut isize).cast(), 8, 0) }
    });
    let message = panic_message(refused.expect_err("0 slots accepted"));
    assert!(message.contains("0 slots"), "{message}");
    // Where sections run, a CPU beyond the slots given is refused too
    // (the fallback takes the CPU modulo the slots).
    let last = *common::allowed_cpus().last().unwrap();
    if restartable::is_available() && last > 0 {
        common::on_fresh_thread(move || {
            common::pin_to(last);
            let mut heads = vec![0isize; last];
            let mut node = [0isize];
            let (base, node) = (heads.as_mut_ptr() as usize, node.as_mut_ptr() as usize);
            let refused = std::panic::catch_unwind(move || {
                // SAFETY: `last` heads; the section never reaches slot `last`.
                unsafe {
                    cs::push_at_current(
                        Index::Cpu,
                        base as *mut u8,
                        8,
                        last as u32,
                        node as *mut isize,
                    )
                }
            });
            let message = panic_message(refused.expect_err("a CPU beyond the slots accepted"));
            assert!(message.contains("beyond"), "{message}");
            assert!(heads.iter().all(|&h| h == 0));
        });
    }
}

const CAPACITY: usize = 3;

/// A per-CPU buffer's slot: its count, its items, and words that no
/// operation may touch.
#[derive(Clone, Copy)]
#[repr(C)]
struct BufferSlot {
    count: isize,
    items: [isize; CAPACITY],
    guard: [isize; 2],
}

fn buffer_slots() -> Vec<BufferSlot> {
    vec![
        BufferSlot {
            count: 0,
            items: [0; CAPACITY],
            guard: GUARD,
        };
        restartable::possible_cpus()
    ]
}

/// The items each buffer holds, from the first stored.
fn buffered(slots: &[BufferSlot]) -> Vec<Vec<isize>> {
    slots
        .iter()
        .map(|s| {
            assert!(
                (0..=CAPACITY as isize).contains(&s.count),
                "count {} beyond the capacity",
                s.count
            );
            s.items[..s.count as usize].to_vec()
        })
        .collect()
}

#[test]
fn buffer_push_and_pop_at_current_use_the_buffer_of_the_cpu_they_run_on() {
    for index in indexes() {
        common::on_fresh_thread(move || {
            let cpu = common::allowed_cpus()[0];
            common::pin_to(cpu);
            let mut slots = buffer_slots();
            let (base, stride, n) = (
                slots.as_mut_ptr().cast::<u8>(),
                std::mem::size_of::<BufferSlot>(),
                slots.len() as u32,
            );
            // Retries aborts: a pinned thread keeps its CPU, not always its
            // concurrency id, so the buffer of an `mm_cid` may change.
            let push = |item| {
                // SAFETY: `n` slots of `stride` bytes, each a count and
                // `CAPACITY` items, written only by these operations.
                commit(index, |_| unsafe {
                    cs::buffer_push_at_current(index, base, stride, n, CAPACITY, item)
                })
            };
            let pop = || {
                let mut item = -1;
                let outcome = commit(index, |_| {
                    // SAFETY: as above.
                    let (outcome, popped) =
                        unsafe { cs::buffer_pop_at_current(index, base, stride, n) };
                    item = popped;
                    outcome
                });
                (outcome, item)
            };
            for item in [10, 11, 12] {
                assert_eq!(push(item), Outcome::Committed);
            }
            if index == Index::Cpu {
                // Full: refused, and nothing written past the items.
                assert_eq!(push(13), Outcome::CompareFailed);
                // On the pinned CPU's buffer (the fallback's too: it takes
                // the slot of the CPU the thread runs on), in order.
                for (i, items) in buffered(&slots).iter().enumerate() {
                    let expected = if i == cpu { vec![10, 11, 12] } else { vec![] };
                    assert_eq!(items, &expected, "buffer {i}");
                }
            } else {
                let mut all = buffered(&slots).concat();
                all.sort();
                assert_eq!(all, vec![10, 11, 12]);
            }
            assert!(
                slots.iter().all(|s| s.guard == GUARD),
                "a guard word changed"
            );
            // Pops take the last item of the current buffer; an empty
            // buffer fails its comparison and changes nothing.
            let mut popped = Vec::new();
            loop {
                assert!(popped.len() <= 3, "popped more items than pushed");
                match pop() {
                    (Outcome::Committed, item) => popped.push(item),
                    (outcome, item) => {
                        assert_eq!((outcome, item), (Outcome::CompareFailed, 0));
                        break;
                    }
                }
            }
            if index == Index::Cpu {
                assert_eq!(popped, vec![12, 11, 10]);
                assert!(slots.iter().all(|s| s.count == 0));
            }
            assert!(
                slots.iter().all(|s| s.guard == GUARD),
                "a guard word changed"
            );
        });
    }
}

#[test]
fn buffer_pushes_and_pops_at_current_stay_exact() {
    // Each thread takes an item from the buffer it runs on and stores it
    // back, now and then after a yield that invites a migration: no item
    // is lost or held twice. Every buffer can hold every item, so a push
    // never finds its buffer full.
    const THREADS: usize = 8;
    const OPS: usize = 20_000;
    const PER_CPU: usize = 4;
    let cpus = restartable::possible_cpus();
    let items = cpus * PER_CPU;
    let words = items + 1 + GUARD.len(); // a count, the items, a guard
    let mut memory = vec![0isize; cpus * words];
    for k in 0..items {
        let slot = &mut memory[(k % cpus) * words..][..words];
        slot[1 + slot[0] as usize] = 1000 + k as isize;
        slot[0] += 1;
    }
    for c in 0..cpus {
        memory[c * words + 1 + items..][..GUARD.len()].copy_from_slice(&GUARD);
    }
    let stride = words * std::mem::size_of::<isize>();
    let (base, n) = (memory.as_mut_ptr() as usize, cpus as u32);
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            std::thread::spawn(move || {
                let base = base as *mut u8;
                let mut held = 0;
                for op in 0..OPS {
                    let item = loop {
                        // SAFETY: `n` slots of `stride` bytes, each a count
                        // and `items` words, written only here.
                        match unsafe { cs::buffer_pop_at_current(Index::Cpu, base, stride, n) } {
                            (Outcome::Aborted, _) => continue,
                            (Outcome::Committed, item) => break Some(item),
                            (Outcome::CompareFailed, _) => break None,
                        }
                    };
                    let Some(item) = item else {
                        continue; // this CPU's buffer is empty just now
                    };
                    held += 1;
                    if op % 8 == 0 {
                        std::thread::yield_now();
                    }
                    let push = || {
                        // SAFETY: as above.
                        unsafe {
                            cs::buffer_push_at_current(Index::Cpu, base, stride, n, items, item)
                        }
                    };
                    let outcome = loop {
                        match push() {
                            Outcome::Aborted => continue,
                            outcome => break outcome,
                        }
                    };
                    assert_eq!(outcome, Outcome::Committed, "a buffer was full");
                }
                held
            })
        })
        .collect();
    let held: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(held > 0, "no pop found an item");
    let mut all = Vec::new();
    for c in 0..cpus {
        let slot = &memory[c * words..][..words];
        assert!((0..=items as isize).contains(&slot[0]), "count {}", slot[0]);
        all.extend_from_slice(&slot[1..][..slot[0] as usize]);
        assert_eq!(&slot[1 + items..], &GUARD, "a guard word changed");
    }
    all.sort();
    let expected: Vec<isize> = (0..items).map(|k| 1000 + k as isize).collect();
    assert_eq!(all, expected, "items lost or held twice");
}

#[test]
fn buffer_operations_at_current_refuse_bad_slots() {
    // No slots at all: a clear panic on every path.
    let refused = std::panic::catch_unwind(|| {
        let mut slot = [0isize; 2];
        // SAFETY: never dereferenced with 0 slots.
        unsafe { cs::buffer_pop_at_current(Index::Cpu, slot.as_mut_ptr().cast(), 16, 0) }
    });
    let text = panic_message(refused.expect_err("0 slots accepted"));
    assert!(text.contains("0 slots"), "{text}");
    // A capacity the slots cannot hold: refused before any store in a
    // debug build, and on the cold path (a thread's first operation where
    // the library registers it, or every operation without rseq) in any.
    common::on_fresh_thread(|| {
        let cold = cfg!(debug_assertions)
            || restartable::thread_state() == restartable::ThreadState::Unregistered;
        let mut slots = vec![[0isize; 2]; restartable::possible_cpus()];
        let (base, n) = (slots.as_mut_ptr() as usize, slots.len() as u32);
        let refused = std::panic::catch_unwind(move || {
            // SAFETY: slots of 16 bytes: a count and one item. A push on an
            // empty slot that is let through writes its first item, which
            // the slot holds.
            unsafe { cs::buffer_push_at_current(Index::Cpu, base as *mut u8, 16, n, 2, 5) }
        });
        if cold {
            let text = panic_message(refused.expect_err("a capacity beyond the slot accepted"));
            assert!(text.contains("larger than its slots"), "{text}");
            assert!(slots.iter().all(|s| *s == [0, 0]));
        }
    });
    // Where sections run, a CPU beyond the slots given is refused too.
    let last = *common::allowed_cpus().last().unwrap();
    if restartable::is_available() && last > 0 {
        common::on_fresh_thread(move || {
            common::pin_to(last);
            let mut slots = vec![[0isize; 2]; last];
            let base = slots.as_mut_ptr() as usize;
            let refused = std::panic::catch_unwind(move || {
                // SAFETY: `last` slots; the section never reaches slot `last`.
                unsafe {
                    cs::buffer_push_at_current(Index::Cpu, base as *mut u8, 16, last as u32, 1, 5)
                }
            });
            let text = panic_message(refused.expect_err("a CPU beyond the slots accepted"));
            assert!(text.contains("beyond"), "{text}");
            assert!(slots.iter().all(|s| *s == [0, 0]));
        });
    }
}
