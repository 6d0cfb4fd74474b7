//! The `Unavailable` mode, covered by a plain `cargo test`: each test runs
//! itself again as a child process, with rseq blocked by a seccomp filter
//! (installed between `fork` and `exec`) or with `RESTARTABLE_DISABLE=1`,
//! and the child asserts that every read falls back correctly.

mod common;

use std::os::unix::process::CommandExt;

use common::{on_fresh_thread, pin_to, sched_getcpu};
use restartable::{
    caller_holds, current_cpu, current_cpu_raw, feature_size, is_available, mm_cid, node_id, owner,
    refcount_of_current_thread, register_current_thread, stats, thread_state,
    unregister_current_thread, Error, Owner, ThreadState,
};

/// Set in the child's environment: the child runs the checks.
const CHILD: &str = "RESTARTABLE_TEST_UNAVAILABLE_CHILD";
/// What the child prints once every check passed.
const DONE: &str = "unavailable-child: all checks passed";

/// How the child loses rseq.
#[derive(Clone, Copy)]
enum Block {
    Seccomp,
    Disable,
    /// The library owns the areas (glibc told not to register), and a
    /// component registers `__rseq_abi` with another signature.
    ForeignSignature,
}

/// Runs test `name` of this binary again in a child, blocked by `block`;
/// asserts that it ran the checks and passed.
fn run_child(name: &str, block: Block) {
    let out = common::run_test_in_child(name, |cmd| {
        cmd.arg("--test-threads=1")
            .env(CHILD, "1")
            .env_remove("RESTARTABLE_EXPECT_OWNER")
            .env_remove("RESTARTABLE_DISABLE");
        match block {
            Block::Seccomp => {
                // SAFETY: `block_rseq` makes only `prctl` calls, which are
                // async-signal-safe, as the code between fork and exec must
                // be.
                unsafe { cmd.pre_exec(common::seccomp::block_rseq) };
            }
            Block::Disable => {
                cmd.env("RESTARTABLE_DISABLE", "1");
            }
            Block::ForeignSignature => {
                cmd.env("GLIBC_TUNABLES", "glibc.pthread.rseq=0");
            }
        }
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(DONE),
        "the child did not run the checks:\n{stdout}"
    );
}

/// Everything a process without rseq must do; panics on failure.
fn child_checks(seccomp: bool) {
    assert_eq!(owner(), Owner::Unavailable);
    assert_eq!(feature_size(), 0);
    if seccomp {
        assert!(common::rseq_syscall_missing(), "the filter answers ENOSYS");
        // glibc could not register either.
        assert_eq!(common::glibc_rseq_size(), 0);
    }
    let check_thread = || {
        assert!(current_cpu_raw() < 0);
        for cpu in common::allowed_cpus() {
            pin_to(cpu);
            assert_eq!(current_cpu() as usize, cpu);
            assert_eq!(sched_getcpu() as usize, cpu);
        }
        assert!(!is_available());
        assert!(current_cpu_raw() < 0);
        assert_eq!(node_id(), None);
        assert_eq!(mm_cid(), None);
        assert_eq!(thread_state(), ThreadState::Unregistered);
        assert_eq!(unregister_current_thread(), Err(Error::NotRegistered));
        assert_eq!(register_current_thread(), Ok(ThreadState::Unregistered));
        assert_eq!(register_current_thread(), Ok(ThreadState::Unregistered));
        assert_eq!((caller_holds(), refcount_of_current_thread()), (2, 0));
        assert_eq!(unregister_current_thread(), Ok(ThreadState::Unregistered));
        assert_eq!(unregister_current_thread(), Ok(ThreadState::Unregistered));
        assert_eq!(unregister_current_thread(), Err(Error::NotRegistered));
        assert_eq!(caller_holds(), 0);
    };
    check_thread();
    on_fresh_thread(check_thread);
    let s = stats();
    assert_eq!((s.registrations, s.unregistrations), (0, 0));
    assert_eq!((s.borrowed, s.foreign), (0, 0));
    println!("{DONE}");
}

#[test]
fn rseq_blocked_by_seccomp() {
    if std::env::var_os(CHILD).is_some() {
        child_checks(true);
    } else {
        run_child("rseq_blocked_by_seccomp", Block::Seccomp);
    }
}

#[test]
fn disabled_by_environment() {
    if std::env::var_os(CHILD).is_some() {
        child_checks(false);
    } else {
        run_child("disabled_by_environment", Block::Disable);
    }
}

/// A signature no abort handler of this library is preceded by.
const OTHER_SIG: u32 = 0x1234_5678;

/// A component registered the shared `__rseq_abi` with another signature:
/// the library's registration is refused (`EPERM`), the process turns
/// `Unavailable`, and from then on no thread runs a section on that area.
/// One would be fatal: the kernel kills a thread whose section aborts into
/// a handler not preceded by the registered signature.
fn foreign_signature_checks() {
    if owner() != Owner::Library {
        // No rseq in this environment at all: nothing to check.
        assert_eq!(owner(), Owner::Unavailable);
        println!("{DONE}");
        return;
    }
    let counter = std::sync::Arc::new(restartable::PerCpuCounter::new());
    let cpu = common::allowed_cpus()[0];
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // A spinner sharing the CPU makes the scheduler preempt the counting
    // thread, inside its sections as often as not.
    let spinner = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            pin_to(cpu);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        })
    };
    let c = std::sync::Arc::clone(&counter);
    let adds = on_fresh_thread(move || {
        pin_to(cpu);
        let area = restartable::rseq_location().cast::<u8>();
        assert_eq!(current_cpu_raw(), -1, "not registered yet");
        assert_eq!(common::raw_rseq(area, 32, 0, OTHER_SIG), Ok(()));
        assert!(current_cpu_raw() >= 0, "the kernel fills the shared area");
        assert_eq!(register_current_thread(), Ok(ThreadState::Unregistered));
        assert_eq!(owner(), Owner::Unavailable);
        assert_ne!(restartable::rseq_location().cast::<u8>(), area);
        assert!(current_cpu_raw() < 0, "the active area is never registered");
        assert!(!is_available());
        assert_eq!(current_cpu() as usize, cpu);
        let start = std::time::Instant::now();
        let mut adds = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(300) {
            for _ in 0..1000 {
                c.add(1);
            }
            adds += 1000;
        }
        assert_eq!(
            common::raw_rseq(area, 32, common::UNREGISTER, OTHER_SIG),
            Ok(())
        );
        adds
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    spinner.join().unwrap();
    // The main thread registered before the change; it falls back too.
    assert!(current_cpu_raw() < 0);
    counter.add(1);
    assert_eq!(counter.sum(), adds as i64 + 1);
    println!("{DONE}");
}

#[test]
fn foreign_signature_on_the_shared_area() {
    if std::env::var_os(CHILD).is_some() {
        foreign_signature_checks();
    } else {
        run_child(
            "foreign_signature_on_the_shared_area",
            Block::ForeignSignature,
        );
    }
}
