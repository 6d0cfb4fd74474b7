//! `fork(2)` while another thread is inside the library: the child holds
//! only the forking thread, so nothing the other threads held may stay held
//! there. Each scenario stops a thread at a known point inside the library
//! (a first CPU count reading a FIFO, a fallback copy faulting on a
//! `userfaultfd` page, a fence holder stopped in `membarrier` by a seccomp
//! supervisor), forks, and has the child use every API under a time limit.
//! A scenario the machine cannot set up says so and is skipped.

mod common;

use std::collections::HashSet;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicIsize, AtomicU8, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use common::forked::{fork_within, say};
use restartable::cs::{self, Index, Outcome};
use restartable::{PerCpuCounter, PerCpuLock, PerCpuStack};

/// How long a forked child may take to use every API.
fn child_limit() -> Duration {
    common::child_limit_or(Duration::from_secs(20))
}

/// Retries a critical section on the current CPU until it commits or its
/// compare fails.
fn until_decided(mut op: impl FnMut(u32) -> Outcome) -> Outcome {
    loop {
        match op(restartable::current_cpu()) {
            Outcome::Aborted => continue,
            decided => return decided,
        }
    }
}

/// What a forked child checks: every public API works and answers exactly.
fn use_every_api() {
    assert!(restartable::possible_cpus() >= 1);
    assert!((restartable::current_cpu() as usize) < restartable::possible_cpus());
    let _ = restartable::is_available();
    let held = restartable::register_current_thread();
    assert!(held.is_ok(), "register: {held:?}");
    assert!(restartable::unregister_current_thread().is_ok());

    fn use_counter<I: restartable::IndexKind>(counter: PerCpuCounter<I>) {
        counter.add(3);
        counter.add(-1);
        assert_eq!(counter.sum(), 2);
        assert_eq!(counter.reset(), 2);
    }
    use_counter(PerCpuCounter::new());
    use_counter(PerCpuCounter::new_by_mm_cid());
    fn use_lock_and_stack<I: restartable::IndexKind>(
        lock: PerCpuLock<u32, I>,
        stack: PerCpuStack<u32, I>,
    ) {
        *lock.lock() += 1;
        for i in 0..lock.len() {
            *lock.lock_slot(i) += 1;
        }
        let total: u32 = (0..lock.len()).map(|i| *lock.lock_slot(i)).sum();
        assert_eq!(total as usize, 1 + lock.len());

        stack.push(1u32);
        stack.push_to(0, 2);
        let mut seen: Vec<u32> = std::iter::from_fn(|| stack.pop_any()).collect();
        seen.sort();
        assert_eq!(seen, [1, 2]);
        assert!(stack.pop().is_none());
    }
    use_lock_and_stack(PerCpuLock::new(|_| 0), PerCpuStack::new());
    use_lock_and_stack(
        PerCpuLock::new_by_mm_cid(|_| 0),
        PerCpuStack::new_by_mm_cid(),
    );

    // One word per CPU for the sections, so that they check the CPU.
    let words: Vec<[AtomicIsize; 4]> = (0..restartable::possible_cpus())
        .map(|_| Default::default())
        .collect();
    let committed = until_decided(|cpu| {
        let w = &words[cpu as usize];
        let v = w[0].load(Ordering::Relaxed);
        // SAFETY: live, aligned words of this CPU's entry.
        unsafe { cs::load_cbne_store(Index::Cpu, w[0].as_ptr(), v, v + 1, cpu) }
    });
    assert_eq!(committed, Outcome::Committed);
    let committed = until_decided(|cpu| {
        let w = &words[cpu as usize];
        let v = w[0].load(Ordering::Relaxed);
        // SAFETY: as above.
        unsafe {
            cs::load_cbne_store_store(Index::Cpu, w[0].as_ptr(), v, w[1].as_ptr(), 9, v + 1, cpu)
        }
    });
    assert_eq!(committed, Outcome::Committed);
    let src = [7u8; 8];
    let committed = until_decided(|cpu| {
        let w = &words[cpu as usize];
        let v = w[0].load(Ordering::Relaxed);
        // SAFETY: `w[2]` is 8 writable bytes; `src` 8 readable ones.
        unsafe {
            cs::load_cbne_memcpy_store(
                Index::Cpu,
                w[0].as_ptr(),
                v,
                w[2].as_ptr().cast(),
                src.as_ptr(),
                8,
                v + 1,
                cpu,
            )
        }
    });
    assert_eq!(committed, Outcome::Committed);
    let total: isize = words.iter().map(|w| w[0].load(Ordering::Relaxed)).sum();
    assert_eq!(total, 3);
}

/// Set, to the FIFO's path, in the process of
/// [`fork_during_the_first_cpu_count_leaves_a_working_child`] that runs in
/// a mount namespace of its own.
const FIFO_CHILD: &str = "RESTARTABLE_TEST_FIFO_CHILD";

fn open_fifo_for_writing(fifo: &Path) -> Option<i32> {
    let path = CString::new(fifo.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid path; non-blocking, so this fails (ENXIO) while no
    // reader has the FIFO open.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_NONBLOCK) };
    (fd >= 0).then_some(fd)
}

/// Gives the readers of the FIFO a CPU list, then end of file.
fn serve(fd: i32) {
    let list = b"0-1\n";
    // SAFETY: writes a valid buffer to our descriptor, then closes it.
    unsafe {
        libc::write(fd, list.as_ptr().cast(), list.len());
        libc::close(fd);
    }
}

/// The body run inside the mount namespace, where
/// `/sys/devices/system/cpu/possible` is the FIFO: the first reader of the
/// CPU count blocks until this process writes it.
fn fork_while_counting_cpus(fifo: &Path) {
    // The first per-CPU object counts the CPUs, reading the FIFO.
    let first = std::thread::spawn(|| PerCpuCounter::new().per_slot().len());
    let start = Instant::now();
    let writer = loop {
        if let Some(fd) = open_fifo_for_writing(fifo) {
            break fd;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no thread opened the CPU list"
        );
        std::thread::sleep(Duration::from_millis(1));
    };
    // That thread now waits for the list, inside the one-time count.
    let child = move || {
        // The child must not hold the FIFO open for writing itself, or its
        // own count would never read to the end of the list.
        // SAFETY: closes the child's copy of our descriptor.
        unsafe { libc::close(writer) };
        use_every_api();
    };
    let mut writer = Some(writer);
    let result = fork_within(child_limit(), child, || {
        // Feed the parent's reader once, then every later reader (the
        // child's own count, and the `sysconf` fallback of either).
        if let Some(fd) = writer.take() {
            serve(fd);
        }
        if let Some(fd) = open_fifo_for_writing(fifo) {
            serve(fd);
        }
    });
    if let Some(fd) = writer.take() {
        serve(fd);
    }
    while !first.is_finished() {
        if let Some(fd) = open_fifo_for_writing(fifo) {
            serve(fd);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(first.join().unwrap() >= 1);
    if let Err(e) = result {
        panic!("fork during the first CPU count: {e}");
    }
    use_every_api();
    println!("cpu-count fork child: all checks passed");
}

/// A fork while another thread is in the middle of the one-time count of
/// the CPUs leaves a child that counts them itself and uses every API. The
/// count is held open on purpose: the test runs in a mount namespace of its
/// own where `/sys/devices/system/cpu/possible` is a FIFO.
#[test]
fn fork_during_the_first_cpu_count_leaves_a_working_child() {
    if let Some(fifo) = std::env::var_os(FIFO_CHILD) {
        fork_while_counting_cpus(Path::new(&fifo));
        return;
    }
    let fifo = std::env::temp_dir().join(format!("restartable-fifo-{}", std::process::id()));
    let path = CString::new(fifo.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid path.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0, "mkfifo");
    let exe = std::env::current_exe().unwrap();
    let script = format!(
        "mount --bind {} /sys/devices/system/cpu/possible && exec {} --exact \
         fork_during_the_first_cpu_count_leaves_a_working_child --nocapture",
        fifo.display(),
        exe.display()
    );
    let out = common::output_within(
        std::process::Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .env(FIFO_CHILD, &fifo),
        common::child_limit_or(Duration::from_secs(60)),
    );
    std::fs::remove_file(&fifo).unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    if !out.status.success() && !stdout.contains("running 1 test") {
        println!("skipped: no private mount namespace to put a FIFO over the CPU list: {stderr}");
        return;
    }
    assert!(
        out.status.success() && stdout.contains("all checks passed"),
        "child failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}

/// Set in the child of [`fork_while_a_fallback_copy_holds_its_stripe`].
const STRIPE_CHILD: &str = "RESTARTABLE_TEST_STRIPE_CHILD";

/// Words of one stripe of the fallbacks' locks: the stripe is chosen by
/// address, in steps of 8 bytes over 64 stripes, so words 0 and 64 share
/// one.
static STRIPE_WORDS: [AtomicIsize; 65] = [const { AtomicIsize::new(0) }; 65];

/// A fork while another thread is inside a fallback copy
/// (`load_cbne_memcpy_store`, which holds a stripe lock) leaves a child that
/// runs every operation on words of that stripe. The copy is held still on
/// purpose: its source is a page that faults into `userfaultfd`. Runs
/// where every thread takes the fallbacks (`RESTARTABLE_DISABLE=1`).
#[test]
fn fork_while_a_fallback_copy_holds_its_stripe() {
    if std::env::var_os(STRIPE_CHILD).is_none() {
        let out = common::run_test_in_child("fork_while_a_fallback_copy_holds_its_stripe", |cmd| {
            cmd.env(STRIPE_CHILD, "1").env("RESTARTABLE_DISABLE", "1");
        });
        print!("{}", String::from_utf8_lossy(&out.stdout));
        return;
    }
    assert!(!restartable::is_available(), "RESTARTABLE_DISABLE=1 is set");
    let page = match common::uffd::MissingPage::new() {
        Ok(page) => Arc::new(page),
        Err(e) => {
            println!("skipped: userfaultfd is not available here: {e}");
            return;
        }
    };
    static DST: [AtomicU8; 16] = [const { AtomicU8::new(0) }; 16];
    let holder = {
        let page = Arc::clone(&page);
        std::thread::spawn(move || {
            // SAFETY: the word is live and aligned; `DST` is 16 writable
            // bytes; the page is 16 readable ones (once filled).
            unsafe {
                cs::load_cbne_memcpy_store(
                    Index::Cpu,
                    STRIPE_WORDS[0].as_ptr(),
                    0,
                    DST.as_ptr() as *mut u8,
                    page.addr(),
                    16,
                    1,
                    0,
                )
            }
        })
    };
    page.wait_for_fault().unwrap();
    // The holder is stopped in the copy, its stripe held.
    let result = fork_within(
        child_limit(),
        || {
            let (v, other) = (STRIPE_WORDS[0].as_ptr(), STRIPE_WORDS[64].as_ptr());
            let src = [3u8; 16];
            let mut buf = [0u8; 16];
            // SAFETY: live, aligned words; `buf`/`src` 16 bytes each.
            unsafe {
                let copied = cs::load_cbne_memcpy_store(
                    Index::Cpu,
                    v,
                    0,
                    buf.as_mut_ptr(),
                    src.as_ptr(),
                    16,
                    5,
                    0,
                );
                assert_eq!(copied, Outcome::Committed);
                assert_eq!(buf, src);
                let stored = cs::load_cbne_store_store(Index::Cpu, other, 0, v, 6, 1, 0);
                assert_eq!(stored, Outcome::Committed);
                assert_eq!(
                    cs::load_cbne_store(Index::Cpu, v, 6, 7, 0),
                    Outcome::Committed
                );
            }
            assert_eq!(STRIPE_WORDS[0].load(Ordering::Relaxed), 7);
            use_every_api();
            say("stripe fork child: all checks passed\n");
        },
        || {},
    );
    page.fill(0x5a).unwrap();
    assert_eq!(holder.join().unwrap(), Outcome::Committed);
    assert_eq!(STRIPE_WORDS[0].load(Ordering::Relaxed), 1);
    assert!(DST.iter().all(|b| b.load(Ordering::Relaxed) == 0x5a));
    if let Err(e) = result {
        panic!("fork while a fallback copy holds its stripe: {e}");
    }
}

/// Set in the child of [`fork_while_fence_holders_wait_in_membarrier`].
const FENCE_CHILD: &str = "RESTARTABLE_TEST_FENCE_CHILD";

/// One thread that takes the fence of slot 0 and is stopped in the
/// `membarrier` call that follows, inside the fence region.
fn stopped_holder(
    work: impl FnOnce() + Send + 'static,
) -> Result<(std::thread::JoinHandle<()>, common::sandbox::Listener), std::io::Error> {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        let listener = common::sandbox::stop_on_this_thread(common::seccomp::NR_MEMBARRIER);
        let ok = listener.is_ok();
        tx.send(listener).unwrap();
        if ok {
            work();
        }
    });
    match rx.recv().unwrap() {
        Ok(listener) => Ok((handle, listener)),
        Err(e) => {
            handle.join().unwrap();
            Err(e)
        }
    }
}

/// Waits for the holder's fence `membarrier` (`PRIVATE_EXPEDITED_RSEQ`),
/// letting any other call through.
fn wait_for_fence(listener: &common::sandbox::Listener) -> common::sandbox::Call {
    const PRIVATE_EXPEDITED_RSEQ: u64 = 1 << 7;
    loop {
        let call = listener.next_call().unwrap();
        if call.arg0 == PRIVATE_EXPEDITED_RSEQ {
            return call;
        }
        listener.resume(call).unwrap();
    }
}

/// A fork while other threads hold the fences of a `PerCpuStack` and a
/// `PerCpuLock` slot, in the middle of taking them, leaves a child that
/// uses those very slots. The holders are held still on purpose: a seccomp
/// supervisor stops their `membarrier` call. Needs rseq and its membarrier.
#[test]
fn fork_while_fence_holders_wait_in_membarrier() {
    if std::env::var_os(FENCE_CHILD).is_none() {
        let out = common::run_test_in_child("fork_while_fence_holders_wait_in_membarrier", |cmd| {
            cmd.env(FENCE_CHILD, "1");
        });
        print!("{}", String::from_utf8_lossy(&out.stdout));
        return;
    }
    let fencing = restartable::is_available() && restartable::lock_sections_enabled();
    assert_eq!(
        fencing,
        common::expected_owner() != restartable::Owner::Unavailable
            && common::kernel::has_rseq_membarrier(),
        "the lock and stack fence where rseq and its membarrier (Linux 5.10) exist"
    );
    if !fencing {
        println!(
            "skipped: without rseq and its membarrier a fence is taken with no system call \
             to stop its holder in"
        );
        return;
    }
    let stack = Arc::new(PerCpuStack::new());
    let lock = Arc::new(PerCpuLock::new(|_| 0u64));
    let s = Arc::clone(&stack);
    let (pusher, push_listener) = match stopped_holder(move || s.push_to(0, 42u64)) {
        Ok(holder) => holder,
        Err(e) => {
            println!("skipped: no seccomp user notification here: {e}");
            return;
        }
    };
    let push_call = wait_for_fence(&push_listener);
    let l = Arc::clone(&lock);
    let (locker, lock_listener) = stopped_holder(move || *l.lock_slot(0) += 1).unwrap();
    let lock_call = wait_for_fence(&lock_listener);
    // Both holders are stopped with the fence of slot 0 taken.
    let result = fork_within(
        child_limit(),
        || {
            stack.push_to(0, 7);
            stack.push(8);
            let seen: HashSet<u64> = std::iter::from_fn(|| stack.pop_any()).collect();
            assert_eq!(seen, HashSet::from([7, 8]));
            *lock.lock_slot(0) += 10;
            *lock.lock() += 100;
            let total: u64 = (0..lock.len()).map(|i| *lock.lock_slot(i)).sum();
            assert_eq!(total, 110);
            use_every_api();
            say("fence fork child: all checks passed\n");
        },
        || {},
    );
    push_listener.resume(push_call).unwrap();
    lock_listener.resume(lock_call).unwrap();
    pusher.join().unwrap();
    locker.join().unwrap();
    assert_eq!(stack.pop_from(0), Some(42));
    assert_eq!(*lock.lock_slot(0), 1);
    if let Err(e) = result {
        panic!("fork while fence holders wait: {e}");
    }
    println!("fence fork: all checks passed");
}
