//! The bare sections' contract where the other tests cannot reach it:
//! on an area that is not registered (the kernel never aborts sections
//! there, so they must not pass their check, whatever index they are
//! given), and what an abort may leave written. Each test runs again in
//! child processes, which may set up what they need (an area that is not
//! registered, a signal handler) without disturbing the other tests.

use super::*;
use crate::rseq_asm;

/// Set in the children; they run the checks.
const CHILD: &str = "RESTARTABLE_CS_TEST_CHILD";

/// True in a child; in the parent, runs test `name` again in one child per
/// environment of `envs` (each a variable and its value), asserts that
/// each passed and said so, and returns false.
fn in_children(name: &str, envs: &[(&str, &str)]) -> bool {
    if std::env::var_os(CHILD).is_some() {
        return true;
    }
    for (var, value) in envs {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", name, "--nocapture", "--test-threads=1"])
            .env_remove("GLIBC_TUNABLES")
            .env_remove("RESTARTABLE_DISABLE")
            .env(CHILD, "1")
            .env(var, value)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains(&format!("{name}: checked")),
            "child with {var}={value} failed ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    false
}

/// Runs `checks` in children, one with the library owning the areas and
/// one with rseq switched off, on a fresh thread whose area is not
/// registered, and in library-owned mode again on a thread that
/// registered and released its last hold.
fn on_unregistered_areas(name: &str, checks: fn()) {
    let envs = [
        ("GLIBC_TUNABLES", "glibc.pthread.rseq=0"),
        ("RESTARTABLE_DISABLE", "1"),
    ];
    if !in_children(name, &envs) {
        return;
    }
    let run = move || {
        assert!(crate::current_cpu_raw() < 0, "the area is registered");
        checks();
    };
    std::thread::spawn(run).join().unwrap();
    if crate::owner() == crate::Owner::Library {
        std::thread::spawn(move || {
            crate::register_current_thread().unwrap();
            crate::unregister_current_thread().unwrap();
            run();
        })
        .join()
        .unwrap();
    }
    println!("{name}: checked on owner {:?}", crate::owner());
}

/// Asserts that a section reported `Aborted` and wrote nothing.
fn refused(name: &str, index: Index, i: u32, outcome: Outcome, unchanged: bool) {
    assert_eq!(outcome, Outcome::Aborted, "{name} ({index:?} {i})");
    assert!(unchanged, "{name} ({index:?} {i}) wrote memory");
}

/// Runs every bare section indexed by `index` with index value `i`, each
/// on data where a commit would be harmless and visible, and asserts
/// that none committed.
fn none_commits(index: Index, i: u32) {
    let mut v = 5isize;
    // SAFETY: for every call below, the pointers name live locals laid
    // out as the operation expects; the operations may run on an area
    // that is not registered.
    unsafe {
        let o = load_cbne_store_unchecked(index, &mut v, 5, 9, i);
        refused("load_cbne_store", index, i, o, v == 5);
        let o = load_add_store_unchecked(index, &mut v, 1, i);
        refused("load_add_store", index, i, o, v == 5);

        let mut next = 0isize; // a one-node list: the node's `next` is 0
        let mut head = &mut next as *mut isize as isize;
        let before = head;
        let mut popped = 0isize;
        let o = load_cbeq_store_add_load_store_unchecked(index, &mut head, 0, 0, &mut popped, i);
        refused("pop", index, i, o, head == before && popped == 0);

        let mut v2 = 6isize;
        let o = load_cbne_load_cbne_store_unchecked(index, &mut v, 5, &mut v2, 6, 9, i);
        refused("load_cbne_load_cbne_store", index, i, o, v == 5);
        let o = load_cbne_store_store_unchecked(index, &mut v, 5, &mut v2, 8, 9, i);
        refused("load_cbne_store_store", index, i, o, (v, v2) == (5, 6));
        let mut dst = [0u8; 4];
        let src = [1u8, 2, 3, 4];
        let o = load_cbne_memcpy_store_unchecked(
            index,
            &mut v,
            5,
            dst.as_mut_ptr(),
            src.as_ptr(),
            4,
            9,
            i,
        );
        refused(
            "load_cbne_memcpy_store",
            index,
            i,
            o,
            v == 5 && dst == [0; 4],
        );
        let holder = [&mut v2 as *mut isize as isize]; // *(root + 0) -> v2
        let mut root = holder.as_ptr() as isize;
        let o = load_add_load_load_add_store_unchecked(index, &mut root, 0, 1, i);
        refused("load_add_load_load_add_store", index, i, o, v2 == 6);

        // The lock's and the stack's sections take slot indices, below
        // 2^31 by contract (they are checked against the slot array).
        // Each guarded word is followed by its fence, here free.
        if i <= i32::MAX as u32 {
            let mut word = [5usize, 0];
            let o = Outcome::from_raw(fenced_store_raw(index, word.as_mut_ptr(), 5, 9, i));
            refused("fenced_store", index, i, o, word == [5, 0]);
            let mut node = 0usize;
            let mut top = [&mut node as *mut usize as usize, 0];
            let before = top;
            let (raw, _) = fenced_pop_raw(index, top.as_mut_ptr(), i);
            refused(
                "fenced_pop",
                index,
                i,
                Outcome::from_raw(raw),
                top == before,
            );
        }

        // The macro takes `cpu` as given (the caller keeps it below
        // 2^31); indexed by `mm_cid` it never commits here either.
        if index == Index::MmCid {
            #[cfg(not(target_arch = "aarch64"))]
            let raw: i32 = rseq_asm!(
                area = crate::area::offset(),
                field = abi::MM_CID_OFFSET,
                cpu = i,
                body = ["mov qword ptr [{p}], 9"],
                p = in(reg) &mut v as *mut isize,
            );
            #[cfg(target_arch = "aarch64")]
            let raw: i32 = rseq_asm!(
                area = crate::area::offset(),
                field = abi::MM_CID_OFFSET,
                cpu = i,
                body = ["mov {t}, #9", "str {t}, [{p}]"],
                p = in(reg) &mut v as *mut isize,
                t = out(reg) _,
            );
            refused("rseq_asm!", index, i, Outcome::from_raw(raw), v == 5);
        }
    }
}

#[test]
fn a_negative_cpu_never_commits_on_an_unregistered_area() {
    on_unregistered_areas(
        "cs::tests::a_negative_cpu_never_commits_on_an_unregistered_area",
        || {
            // What the area reads before registration (-1), after a
            // failed one (-2), and another value no CPU has.
            for cpu in [-1i32, -2, i32::MIN] {
                none_commits(Index::Cpu, cpu as u32);
            }
            // Nor does a CPU in range: the area reads -1 (or -2).
            for cpu in [0, 1] {
                none_commits(Index::Cpu, cpu);
            }
            no_fast_section_commits(Index::Cpu);
        },
    );
}

/// Runs `section` (given the current CPU) until it does not abort; its
/// outcome.
fn until_not_aborted(mut section: impl FnMut(u32) -> i32) -> Outcome {
    for _ in 0..1000 {
        let outcome = Outcome::from_raw(section(crate::current_cpu()));
        if outcome != Outcome::Aborted {
            return outcome;
        }
    }
    panic!("1000 tries of a section and every one aborted");
}

#[test]
fn the_fenced_sections_read_the_fence_in_the_word_after_theirs() {
    if !crate::is_available() {
        return; // no section runs: the lock and stack take the fence path
    }
    // A word, its fence, and a third word that must not count as the fence.
    let store = |mut words: [usize; 3], expect| {
        let outcome = until_not_aborted(|cpu| {
            // SAFETY: `words` is live; its second word is the fence.
            unsafe { fenced_store_raw(Index::Cpu, words.as_mut_ptr(), expect, 7, cpu) }
        });
        (outcome, words)
    };
    assert_eq!(store([0, 0, 1], 0), (Outcome::Committed, [7, 0, 1]));
    assert_eq!(store([0, 1, 0], 0), (Outcome::CompareFailed, [0, 1, 0]));
    assert_eq!(store([5, 0, 0], 0), (Outcome::CompareFailed, [5, 0, 0]));

    let mut node = [0usize]; // a one-node list: `next` is 0
    let first = node.as_mut_ptr() as usize;
    let pop = |mut head: [usize; 3]| {
        let mut popped = 0;
        let outcome = until_not_aborted(|cpu| {
            // SAFETY: `head` is live and its list's one node readable; its
            // second word is the fence.
            let (raw, n) = unsafe { fenced_pop_raw(Index::Cpu, head.as_mut_ptr(), cpu) };
            popped = n;
            raw
        });
        (
            outcome,
            head,
            if outcome == Outcome::Committed {
                popped
            } else {
                0
            },
        )
    };
    assert_eq!(pop([first, 0, 1]), (Outcome::Committed, [0, 0, 1], first));
    assert_eq!(
        pop([first, 1, 0]),
        (Outcome::CompareFailed, [first, 1, 0], 0)
    );
    assert_eq!(pop([0, 0, 0]), (Outcome::CompareFailed, [0, 0, 0], 0));
}

/// A slot array for the lock's and stack's fast sections: `n` slots of a
/// guarded word and its fence.
fn fenced_slots(n: usize, word: usize, fence: usize) -> Vec<[usize; 2]> {
    vec![[word, fence]; n]
}

/// Runs the lock's and stack's fast sections, which read the index
/// themselves, on a slot array where each would commit on a registered
/// thread, and asserts that none did.
fn no_fast_section_commits(index: Index) {
    let n = 4;
    let mut node = [0usize];
    let mut slots = fenced_slots(n, 0, 0);
    let (base, stride) = (slots.as_mut_ptr().cast::<u8>(), 16);
    // SAFETY: `n` slots of `stride` bytes, each a word and its fence.
    let (raw, _) = unsafe { fenced_claim_at_current_raw(index, base, stride, n as u32, 7) };
    assert_eq!(raw, 1, "fenced_claim_at_current ({index:?})");
    // SAFETY: as above; `node` is ours.
    let raw =
        unsafe { fenced_push_at_current_raw(index, base, stride, n as u32, node.as_mut_ptr()) };
    assert_eq!(raw, 1, "fenced_push_at_current ({index:?})");
    assert_eq!(slots, fenced_slots(n, 0, 0), "a fast section wrote a slot");
    let first = node.as_mut_ptr() as usize;
    let mut slots = fenced_slots(n, first, 0);
    let base = slots.as_mut_ptr().cast::<u8>();
    // SAFETY: as above; every list holds `node`, whose `next` is 0.
    let (raw, _) = unsafe { fenced_pop_at_current_raw(index, base, stride, n as u32) };
    assert_eq!(raw, 1, "fenced_pop_at_current ({index:?})");
    assert_eq!(slots, fenced_slots(n, first, 0), "the pop wrote a slot");

    // The list's sections, whose `93f` means "empty": an area that is not
    // registered reads as an abort, and nothing is written, `node` included.
    let mut heads = [0isize; 4];
    let mut node = [5isize];
    let base = heads.as_mut_ptr().cast::<u8>();
    // SAFETY: four heads of 8 bytes; `node` is ours.
    let o = unsafe { push_at_current_unchecked(index, base, 8, 4, node.as_mut_ptr()) };
    refused(
        "push_at_current",
        index,
        0,
        o,
        heads == [0; 4] && node == [5],
    );
    let mut next = 0isize; // a one-node list on every head
    let top = &mut next as *mut isize as isize;
    let mut heads = [top; 4];
    let base = heads.as_mut_ptr().cast::<u8>();
    // SAFETY: as above; every list holds `next`'s node.
    let (o, popped) = unsafe { pop_at_current_unchecked(index, base, 8, 4) };
    refused(
        "pop_at_current",
        index,
        0,
        o,
        heads == [top; 4] && popped.is_null(),
    );

    // The buffer's sections, whose `93f` means "full" or "empty", likewise.
    let mut slots = [[0isize; 2]; 4];
    let base = slots.as_mut_ptr().cast::<u8>();
    // SAFETY: four slots of a count and one item.
    let o = unsafe { buffer_push_at_current_unchecked(index, base, 16, 4, 1, 5) };
    refused("buffer_push_at_current", index, 0, o, slots == [[0, 0]; 4]);
    let mut slots = [[1isize, 9]; 4];
    let base = slots.as_mut_ptr().cast::<u8>();
    // SAFETY: as above; every buffer holds one item.
    let (o, item) = unsafe { buffer_pop_at_current_unchecked(index, base, 16, 4) };
    refused(
        "buffer_pop_at_current",
        index,
        0,
        o,
        slots == [[1, 9]; 4] && item == 0,
    );
}

#[test]
fn the_fast_fenced_sections_take_the_slot_of_the_cpu_they_read() {
    if !crate::is_available() {
        return; // no section runs: the lock and stack take the fence path
    }
    crate::current_cpu(); // registers where the library owns the area
    let n = crate::possible_cpus();
    let stride = 16;
    let claim = |slots: &mut Vec<[usize; 2]>| {
        let base = slots.as_mut_ptr().cast::<u8>();
        let mut index = 0;
        let outcome = until_not_aborted(|_| {
            // SAFETY: `n` slots of `stride` bytes, each a word and its fence.
            let (raw, i) =
                unsafe { fenced_claim_at_current_raw(Index::Cpu, base, stride, n as u32, 7) };
            index = i as usize;
            raw
        });
        (outcome, index)
    };
    // Free slots: one is claimed, the one of the index it reports.
    let mut slots = fenced_slots(n, 0, 0);
    let (outcome, i) = claim(&mut slots);
    assert_eq!(outcome, Outcome::Committed);
    let mut expected = fenced_slots(n, 0, 0);
    expected[i] = [7, 0];
    assert_eq!(slots, expected);
    // Every slot taken, or every fence held: none is.
    for (word, fence) in [(3, 0), (0, 1)] {
        let mut slots = fenced_slots(n, word, fence);
        assert_eq!(claim(&mut slots).0, Outcome::CompareFailed);
        assert_eq!(slots, fenced_slots(n, word, fence));
    }

    // Push two nodes, then pop: each push links to the head it replaced.
    let mut nodes = [[9usize], [9usize]];
    let mut heads = fenced_slots(n, 0, 0);
    let base = heads.as_mut_ptr().cast::<u8>();
    for node in &mut nodes {
        let node = node.as_mut_ptr();
        // SAFETY: the heads as above; the node is ours until linked.
        let outcome = until_not_aborted(|_| unsafe {
            fenced_push_at_current_raw(Index::Cpu, base, stride, n as u32, node)
        });
        assert_eq!(outcome, Outcome::Committed);
    }
    let linked: Vec<usize> = heads.iter().map(|h| h[0]).filter(|&h| h != 0).collect();
    let addr = |k: usize| nodes[k].as_ptr() as usize;
    if linked.len() == 1 {
        // Both on one list: the second on top of the first.
        assert_eq!((linked[0], nodes[1][0], nodes[0][0]), (addr(1), addr(0), 0));
    } else {
        // The thread moved between the pushes: one node on each list.
        assert_eq!((nodes[0][0], nodes[1][0]), (0, 0));
    }
    let mut popped = 0;
    let outcome = until_not_aborted(|_| {
        // SAFETY: the heads' lists hold `nodes`, `next` at offset 0.
        let (raw, node) = unsafe { fenced_pop_at_current_raw(Index::Cpu, base, stride, n as u32) };
        popped = node;
        raw
    });
    // The current CPU's list may be empty if the thread moved.
    if outcome == Outcome::Committed {
        assert!(popped == addr(0) || popped == addr(1));
        assert!(
            heads.iter().all(|h| h[0] != popped),
            "the popped node is still linked"
        );
    } else {
        assert_eq!(outcome, Outcome::CompareFailed);
    }
    // Every fence held: no pop.
    let first = addr(0);
    let mut heads = fenced_slots(n, first, 1);
    let base = heads.as_mut_ptr().cast::<u8>();
    // SAFETY: as above.
    let outcome = until_not_aborted(|_| unsafe {
        fenced_pop_at_current_raw(Index::Cpu, base, stride, n as u32).0
    });
    assert_eq!(outcome, Outcome::CompareFailed);
    assert_eq!(heads, fenced_slots(n, first, 1));
}

#[test]
fn mm_cid_sections_never_commit_on_an_unregistered_area() {
    on_unregistered_areas(
        "cs::tests::mm_cid_sections_never_commit_on_an_unregistered_area",
        || {
            // The area reads mm_cid 0; no id passes, 0 included.
            // SAFETY: the process-wide offset names this thread's area.
            let cid = unsafe { arch::load_u32::<{ abi::MM_CID_OFFSET }>(crate::area::offset()) };
            assert_eq!(cid, 0);
            for cid in [0, 1, u32::MAX] {
                none_commits(Index::MmCid, cid);
            }
            no_fast_section_commits(Index::MmCid);
            let mut slots = [0isize; 4];
            // SAFETY: four slots of one word each.
            let added = unsafe {
                add_at_current_unchecked(Index::MmCid, slots.as_mut_ptr().cast(), 8, 4, 1)
            };
            assert_eq!(added, AddResult::NotRegistered);
            assert_eq!(slots, [0; 4]);
            // The macro's form without `cpu`: the body reads the field.
            let mut w = 5isize;
            // SAFETY: `w` is a live local; the body ends with the commit.
            #[cfg(not(target_arch = "aarch64"))]
            let raw = unsafe {
                rseq_asm!(
                    area = crate::area::offset(),
                    field = abi::MM_CID_OFFSET,
                    body = [
                        "cmp dword ptr fs:[{rseq_area} + {rseq_field}], 4",
                        "jae 93f",
                        "mov qword ptr [{p}], 9",
                    ],
                    p = in(reg) &mut w as *mut isize,
                )
            };
            // SAFETY: as above.
            #[cfg(target_arch = "aarch64")]
            let raw = unsafe {
                rseq_asm!(
                    area = crate::area::offset(),
                    field = abi::MM_CID_OFFSET,
                    body = [
                        "ldr {t:w}, [{rseq_area}, #{rseq_field}]",
                        "cmp {t:w}, #4",
                        "b.hs 93f",
                        "mov {t}, #9",
                        "str {t}, [{p}]",
                    ],
                    p = in(reg) &mut w as *mut isize,
                    t = out(reg) _,
                )
            };
            assert_ne!(raw, 0);
            assert_eq!(w, 5);
        },
    );
}

/// The page size, read before the fault handler is installed (the handler
/// may not call `sysconf`).
static PAGE: crate::sync::StaticAtomicU64 = crate::sync::StaticAtomicU64::new(0);
/// Faults the handler answered. Each hit a store inside a section, and the
/// kernel aborted that section when it delivered the signal.
static FAULTS: crate::sync::StaticAtomicU32 = crate::sync::StaticAtomicU32::new(0);

/// `SIGSEGV` handler: makes the page of the faulting address writable.
extern "C" fn make_writable(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let page = PAGE.load(Ordering::Relaxed) as usize;
    // SAFETY: the kernel passes a valid `siginfo_t` to an `SA_SIGINFO`
    // handler; `si_addr` is the faulting address.
    let addr = unsafe { (*info).si_addr() } as usize;
    // SAFETY: the only faults are the test's stores into its own mapping;
    // mprotect is async-signal-safe.
    unsafe {
        libc::mprotect(
            (addr & !(page - 1)) as *mut _,
            page,
            libc::PROT_READ | libc::PROT_WRITE,
        )
    };
    FAULTS.fetch_add(1, Ordering::Relaxed);
}

/// Two fresh pages, zeroed, unmapped on drop.
struct Pages(*mut u8, usize);

impl Pages {
    fn new(page: usize) -> Self {
        // SAFETY: an anonymous private mapping; the result is checked.
        let at = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                2 * page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(at, libc::MAP_FAILED);
        Pages(at.cast(), page)
    }
    /// Page `i` (0 or 1).
    fn page(&self, i: usize) -> *mut u8 {
        self.0.wrapping_add(i * self.1)
    }
    /// Makes page `i` read-only: a store to it faults.
    fn read_only(&self, i: usize) {
        // SAFETY: page `i` belongs to this mapping.
        let ret = unsafe { libc::mprotect(self.page(i).cast(), self.1, libc::PROT_READ) };
        assert_eq!(ret, 0);
    }
}

impl Drop for Pages {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, no longer used.
        unsafe { libc::munmap(self.0.cast(), 2 * self.1) };
    }
}

/// Runs `op` (which reads the CPU itself) after `protect`, until one try
/// takes the fault `protect` set up; tries that abort earlier (a preemption
/// before the faulting store) are run again. Returns that try's outcome.
fn until_it_faults(protect: impl Fn(), mut op: impl FnMut() -> Outcome) -> Outcome {
    for _ in 0..1000 {
        protect();
        let before = FAULTS.load(Ordering::Relaxed);
        let outcome = op();
        if FAULTS.load(Ordering::Relaxed) != before {
            return outcome;
        }
        // The store that faults comes before the commit: no try commits.
        assert_eq!(outcome, Outcome::Aborted, "committed without the fault");
    }
    panic!("1000 tries and the section never reached its faulting store");
}

#[test]
fn an_aborted_section_may_leave_its_early_stores() {
    // A signal inside a section aborts it; here the signal is the fault of
    // the commit store (or of the copy), after the stores that come before
    // it. The word the commit stores stays as it was; the early stores may
    // stay done: `*v2`, a prefix of `dst`, `*load`.
    let name = "cs::tests::an_aborted_section_may_leave_its_early_stores";
    let envs = [
        ("RESTARTABLE_TEST_AS_IS", "1"),
        ("GLIBC_TUNABLES", "glibc.pthread.rseq=0"),
    ];
    if !in_children(name, &envs) {
        return;
    }
    if !crate::is_available() {
        // No rseq here (a seccomp filter): no section runs at all.
        assert_eq!(crate::owner(), crate::Owner::Unavailable);
        println!("{name}: checked (no rseq: fallbacks only)");
        return;
    }
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    PAGE.store(page as u64, Ordering::Relaxed);
    // SAFETY: an all-zero sigaction is valid; the handler has the
    // `SA_SIGINFO` signature; this child process runs this test alone.
    unsafe {
        let mut action: libc::sigaction = core::mem::zeroed();
        let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            make_writable;
        action.sa_sigaction = handler as usize;
        action.sa_flags = libc::SA_SIGINFO;
        assert_eq!(
            libc::sigaction(libc::SIGSEGV, &action, core::ptr::null_mut()),
            0
        );
    }
    let cpu = || crate::current_cpu();

    // memcpy: `dst` straddles the two pages, the second read-only.
    let pages = Pages::new(page);
    let dst = pages.page(1).wrapping_sub(8);
    let src: Vec<u8> = (1..=16).collect();
    let mut v = 3isize;
    // SAFETY: `dst` and `src` hold 16 bytes, `v` is a live local.
    let outcome = until_it_faults(
        || pages.read_only(1),
        || unsafe {
            load_cbne_memcpy_store_unchecked(Index::Cpu, &mut v, 3, dst, src.as_ptr(), 16, 4, cpu())
        },
    );
    assert_eq!(outcome, Outcome::Aborted);
    assert_eq!(v, 3, "the commit did not happen");
    // SAFETY: 16 readable bytes of the mapping.
    let copied = unsafe { core::slice::from_raw_parts(dst, 16) };
    assert_eq!(
        &copied[..8],
        &src[..8],
        "the bytes before the fault stay copied"
    );
    assert_eq!(
        &copied[8..],
        &[0; 8],
        "the bytes after it were never written"
    );

    // Two stores: `*v` sits on a read-only page, `*v2` does not.
    let pages = Pages::new(page);
    let word = pages.page(0).cast::<isize>();
    // SAFETY: the first word of a fresh, writable page.
    unsafe { word.write(5) };
    let mut v2 = 6isize;
    // SAFETY: `word` and `v2` are live, aligned words.
    let outcome = until_it_faults(
        || pages.read_only(0),
        || unsafe { load_cbne_store_store_unchecked(Index::Cpu, word, 5, &mut v2, 8, 9, cpu()) },
    );
    assert_eq!(outcome, Outcome::Aborted);
    // SAFETY: as above.
    assert_eq!(unsafe { word.read() }, 5, "the commit did not happen");
    assert_eq!(v2, 8, "the store before the commit stays done");

    // The pop: the list head sits on a read-only page.
    let pages = Pages::new(page);
    let head = pages.page(0).cast::<isize>();
    let mut node = 0isize; // a one-node list: `next` is 0
    let first = &mut node as *mut isize as isize;
    // SAFETY: the first word of a fresh, writable page.
    unsafe { head.write(first) };
    let mut popped = 0isize;
    // SAFETY: `head` holds a node whose `next` is readable at offset 0.
    let outcome = until_it_faults(
        || pages.read_only(0),
        || unsafe {
            load_cbeq_store_add_load_store_unchecked(Index::Cpu, head, 0, 0, &mut popped, cpu())
        },
    );
    assert_eq!(outcome, Outcome::Aborted);
    // SAFETY: as above.
    assert_eq!(unsafe { head.read() }, first, "the commit did not happen");
    assert_eq!(popped, first, "the store to `*load` stays done");
    println!("{name}: checked on owner {:?}", crate::owner());
}
