//! Registering and unregistering the calling thread in every environment:
//! refcounting, nesting, thread exit, fork, unbalanced calls, the guard, and
//! (where the library owns the area) sharing it with classic registrants
//! (`EBUSY`) and coexisting with a private one (`EINVAL`).

mod common;

use common::{
    allowed_cpus, check_owner, on_fresh_thread, pin_to, raw_register, raw_unregister, sched_getcpu,
};
use restartable::{
    caller_holds, current_cpu, current_cpu_raw, refcount_of_current_thread,
    register_current_thread, rseq_location, stats, thread_state, unregister_current_thread, Error,
    Owner, RegistrationGuard, ThreadState,
};
use std::sync::atomic::{AtomicU32, Ordering as AtomicOrdering};

/// The state a thread with at least one hold reports, per owner.
fn held_state(owner: Owner) -> ThreadState {
    match owner {
        Owner::Libc => ThreadState::Borrowed,
        Owner::Library => ThreadState::Registered,
        Owner::Unavailable => ThreadState::Unregistered,
    }
}

/// The state of a thread that holds nothing (and never read the CPU).
fn idle_state(owner: Owner) -> ThreadState {
    match owner {
        Owner::Libc => ThreadState::Borrowed,
        Owner::Library | Owner::Unavailable => ThreadState::Unregistered,
    }
}

/// `__rseq_refcount` with `holds` holds from this thread and no lazy one.
fn refcount_for(owner: Owner, holds: u32) -> u32 {
    if owner == Owner::Library {
        holds
    } else {
        0
    }
}

#[test]
fn nested_holds_on_many_threads() {
    let owner = check_owner();
    let threads: Vec<_> = (0..16)
        .map(|t| {
            std::thread::spawn(move || {
                // Thread `t` nests 1..=50 deep, starting at a different depth
                // so that threads register and unregister at different times.
                for round in 0..50u32 {
                    let depth = (round + t * 3) % 50 + 1;
                    for k in 1..=depth {
                        assert_eq!(register_current_thread(), Ok(held_state(owner)));
                        assert_eq!(caller_holds(), k);
                        assert_eq!(thread_state(), held_state(owner));
                        assert_eq!(refcount_of_current_thread(), refcount_for(owner, k));
                        if owner != Owner::Unavailable {
                            assert!(current_cpu_raw() >= 0);
                        }
                    }
                    for k in (0..depth).rev() {
                        let state = unregister_current_thread().unwrap();
                        let expected = if k == 0 {
                            idle_state(owner)
                        } else {
                            held_state(owner)
                        };
                        assert_eq!(state, expected);
                        assert_eq!(thread_state(), expected);
                        assert_eq!(caller_holds(), k);
                        assert_eq!(refcount_of_current_thread(), refcount_for(owner, k));
                    }
                    check_really_unregistered(owner);
                }
                assert_eq!(unregister_current_thread(), Err(Error::NotRegistered));
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// After the last hold of a thread that never read the CPU lazily: in
/// `Library` mode the kernel has no area registered for it any more.
fn check_really_unregistered(owner: Owner) {
    match owner {
        Owner::Library => {
            assert_eq!(
                current_cpu_raw(),
                -1,
                "the kernel resets cpu_id on unregister"
            );
            let area = rseq_location().cast::<u8>();
            assert_eq!(raw_register(area), Ok(()), "nothing was registered");
            assert_eq!(raw_unregister(area), Ok(()));
        }
        // glibc's registration stays.
        Owner::Libc => assert!(current_cpu_raw() >= 0),
        Owner::Unavailable => assert!(current_cpu_raw() < 0),
    }
}

#[test]
fn lazy_hold_is_counted_and_released_at_thread_exit() {
    // The stats are the process's: run alone, so the counts are exact.
    if !common::in_child_alone("lazy_hold_is_counted_and_released_at_thread_exit") {
        return;
    }
    let owner = check_owner();
    let before = stats();
    let seen = on_fresh_thread(move || {
        let cpu = current_cpu();
        assert_eq!(caller_holds(), 0, "the lazy hold is not the caller's");
        let lazy = refcount_of_current_thread();
        assert_eq!(register_current_thread(), Ok(held_state(owner)));
        assert_eq!(refcount_of_current_thread(), lazy + refcount_for(owner, 1));
        assert_eq!(unregister_current_thread(), Ok(held_state(owner)));
        // The lazy hold keeps the registration.
        assert_eq!(thread_state(), held_state(owner));
        assert_eq!(unregister_current_thread(), Err(Error::NotRegistered));
        (cpu, lazy)
    });
    let after = stats();
    match owner {
        Owner::Library => {
            assert_eq!(seen.1, 1, "the first read took one lazy hold");
            assert_eq!(after.registrations, before.registrations + 1);
            assert_eq!(after.exit_releases, before.exit_releases + 1);
            assert_eq!(after.unregistrations, before.unregistrations + 1);
        }
        Owner::Libc | Owner::Unavailable => {
            assert_eq!(seen.1, 0);
            // Nothing in these modes ever makes a system call.
            assert_eq!((after.registrations, after.unregistrations), (0, 0));
        }
    }
}

#[test]
fn unbalanced_unregister_changes_nothing() {
    let owner = check_owner();
    on_fresh_thread(move || {
        let snapshot = || (caller_holds(), refcount_of_current_thread(), thread_state());
        let fresh = snapshot();
        assert_eq!(unregister_current_thread(), Err(Error::NotRegistered));
        assert_eq!(snapshot(), fresh);

        // With the lazy hold taken, an unbalanced call still cannot drop it.
        current_cpu();
        let lazy = snapshot();
        assert_eq!(lazy.0, 0);
        assert_eq!(unregister_current_thread(), Err(Error::NotRegistered));
        assert_eq!(snapshot(), lazy);
        if owner != Owner::Unavailable {
            assert!(current_cpu_raw() >= 0);
        }

        // Double unregister.
        register_current_thread().unwrap();
        unregister_current_thread().unwrap();
        assert_eq!(snapshot(), lazy);
        assert_eq!(unregister_current_thread(), Err(Error::NotRegistered));
        assert_eq!(snapshot(), lazy);
    });
}

#[test]
fn guard_balances() {
    let owner = check_owner();
    on_fresh_thread(move || {
        {
            let outer = RegistrationGuard::new().unwrap();
            assert_eq!(outer.state(), held_state(owner));
            {
                let inner = RegistrationGuard::new().unwrap();
                assert_eq!(inner.state(), held_state(owner));
                assert_eq!(caller_holds(), 2);
                assert_eq!(refcount_of_current_thread(), refcount_for(owner, 2));
            }
            assert_eq!(caller_holds(), 1);
            assert_eq!(refcount_of_current_thread(), refcount_for(owner, 1));
        }
        assert_eq!(caller_holds(), 0);
        assert_eq!(thread_state(), idle_state(owner));
        check_really_unregistered(owner);
        assert_eq!(unregister_current_thread(), Err(Error::NotRegistered));
    });
}

#[test]
fn fork_child_keeps_working() {
    let owner = check_owner();
    on_fresh_thread(move || {
        let cpus = allowed_cpus();
        register_current_thread().unwrap();
        // SAFETY: the child only makes system calls and reads its own TLS
        // before `_exit`; it allocates nothing.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            let code = match std::panic::catch_unwind(|| fork_child(owner, cpus[0])) {
                Ok(()) => 0,
                Err(_) => 1,
            };
            // SAFETY: ends the child without running the parent's exit code.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: `pid` is our child; `status` is valid for writing.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status), "child died: status {status:#x}");
        assert_eq!(libc::WEXITSTATUS(status), 0, "the child's checks failed");
        unregister_current_thread().unwrap();
        check_really_unregistered(owner);
    });
}

/// What a child of a registered thread checks; panics on failure.
fn fork_child(owner: Owner, cpu: usize) {
    // The registration and the refcount are inherited.
    assert_eq!(caller_holds(), 1);
    assert_eq!(thread_state(), held_state(owner));
    assert_eq!(refcount_of_current_thread(), refcount_for(owner, 1));
    pin_to(cpu);
    assert_eq!(current_cpu(), sched_getcpu());
    assert_eq!(register_current_thread(), Ok(held_state(owner)));
    assert_eq!(unregister_current_thread(), Ok(held_state(owner)));
    if owner == Owner::Library {
        // The kernel kept the parent's registration for the child: the
        // same area answers EBUSY.
        assert_eq!(
            common::raw_register_as_library(rseq_location().cast()),
            Err(libc::EBUSY)
        );
    }
    assert_eq!(unregister_current_thread(), Ok(idle_state(owner)));
    check_really_unregistered(owner);
    assert_eq!(unregister_current_thread(), Err(Error::NotRegistered));
}

/// Asserts that a Library-only scenario does not apply here, and why.
fn not_library(owner: Owner) -> bool {
    if owner == Owner::Library {
        return false;
    }
    assert!(matches!(owner, Owner::Libc | Owner::Unavailable));
    true
}

#[test]
fn library_registration_is_exclusive() {
    let owner = check_owner();
    if not_library(owner) {
        return;
    }
    on_fresh_thread(move || {
        assert_eq!(register_current_thread(), Ok(ThreadState::Registered));
        let area = rseq_location().cast::<u8>();
        let len = restartable::thread_registration_len();
        println!("registered with {len} bytes");
        assert_eq!(common::raw_register_as_library(area), Err(libc::EBUSY));
        // A different area, or the same one with another signature, is refused.
        assert_eq!(
            common::raw_rseq(area, len, 0, 0x1234_5678),
            Err(libc::EPERM)
        );
        unregister_current_thread().unwrap();
        check_really_unregistered(owner);
    });
}

#[test]
fn classic_registrant_first_is_borrowed_never_unregistered() {
    let owner = check_owner();
    if not_library(owner) {
        return;
    }
    let before = stats();
    on_fresh_thread(|| {
        // `rseq_location` does not register: register `__rseq_abi` the way
        // a component that knows nothing of the refcount does.
        let area = rseq_location().cast::<u8>();
        assert_eq!(current_cpu_raw(), -1);
        assert_eq!(raw_register(area), Ok(()));
        assert_eq!(refcount_of_current_thread(), 0);

        assert_eq!(thread_state(), ThreadState::Borrowed);
        assert_eq!(register_current_thread(), Ok(ThreadState::Borrowed));
        assert_eq!(thread_state(), ThreadState::Borrowed);
        assert_eq!(
            refcount_of_current_thread(),
            1,
            "the classic registrant's hold is not counted, only marked"
        );
        assert_eq!(register_current_thread(), Ok(ThreadState::Borrowed));
        assert_eq!(current_cpu(), sched_getcpu_pinned());
        current_cpu(); // no lazy hold needed: cpu_id is valid already
        assert_eq!(unregister_current_thread(), Ok(ThreadState::Borrowed));
        assert_eq!(unregister_current_thread(), Ok(ThreadState::Borrowed));
        assert_eq!(refcount_of_current_thread(), 0);
        assert_eq!(thread_state(), ThreadState::Borrowed);
        // Still registered: never unregistered by the library.
        assert!(current_cpu_raw() >= 0);
        assert_eq!(raw_register(area), Err(libc::EBUSY));
        assert_eq!(unregister_current_thread(), Err(Error::NotRegistered));

        // The classic registrant lets go while the library holds the area.
        assert_eq!(register_current_thread(), Ok(ThreadState::Borrowed));
        assert_eq!(raw_unregister(area), Ok(()));
        assert_eq!(current_cpu_raw(), -1);
        assert_eq!(thread_state(), ThreadState::Unregistered);
        // The next use registers again, and the count is the library's
        // hold alone, so the last release unregisters.
        assert_eq!(current_cpu(), sched_getcpu_pinned());
        assert!(current_cpu_raw() >= 0, "back on rseq after the first use");
        assert_eq!(thread_state(), ThreadState::Registered);
        assert_eq!(refcount_of_current_thread(), 2, "caller + lazy");
        assert_eq!(unregister_current_thread(), Ok(ThreadState::Registered));
        assert_eq!(refcount_of_current_thread(), 1, "the lazy hold");
        assert_eq!(
            common::raw_register_as_library(area),
            Err(libc::EBUSY),
            "still ours"
        );
    });
    assert!(stats().borrowed > before.borrowed);
}

/// Pins to the CPU the thread is on and returns `sched_getcpu()`, so that a
/// following read cannot see a migration.
fn sched_getcpu_pinned() -> u32 {
    pin_to(sched_getcpu() as usize);
    sched_getcpu()
}

/// A 32-byte area registered privately by "another library".
#[repr(C, align(32))]
struct PrivateArea([u32; 8]);

#[test]
fn private_registrant_first_makes_the_thread_foreign() {
    let owner = check_owner();
    if not_library(owner) {
        return;
    }
    let before = stats();
    on_fresh_thread(|| {
        // Leaked: the kernel may write the area until it is unregistered
        // below or the thread exits, and a failing assertion unwinds first.
        let private = Box::leak(Box::new(PrivateArea([0, u32::MAX, 0, 0, 0, 0, 0, 0])));
        let ptr = (private as *mut PrivateArea).cast::<u8>();
        assert_eq!(raw_register(ptr), Ok(()));

        let cpu = sched_getcpu_pinned();
        assert_eq!(current_cpu(), cpu, "falls back to sched_getcpu");
        assert_eq!(thread_state(), ThreadState::Foreign);
        assert_eq!(current_cpu_raw(), -1, "our area stays unregistered");
        assert_eq!(register_current_thread(), Ok(ThreadState::Foreign));
        assert_eq!(caller_holds(), 1);
        assert_eq!(current_cpu(), cpu);
        assert_eq!(unregister_current_thread(), Ok(ThreadState::Foreign));
        assert_eq!(unregister_current_thread(), Err(Error::NotRegistered));
        assert_eq!(restartable::node_id(), None);
        assert!(!restartable::is_available());
        assert_eq!(thread_state(), ThreadState::Foreign);

        // The private registrant lets go: the thread is no longer foreign,
        // and the next registration puts it on rseq.
        assert_eq!(raw_unregister(ptr), Ok(()));
        assert_eq!(thread_state(), ThreadState::Unregistered);
        assert_eq!(register_current_thread(), Ok(ThreadState::Registered));
        assert!(current_cpu_raw() >= 0);
        assert!(restartable::is_available());
        assert_eq!(refcount_of_current_thread(), 2, "caller + lazy");
        assert_eq!(unregister_current_thread(), Ok(ThreadState::Registered));
        assert_eq!(refcount_of_current_thread(), 1, "the lazy hold");
    });
    assert!(stats().foreign > before.foreign);
}

#[test]
fn unavailable_registration_is_a_counted_no_op() {
    let owner = check_owner();
    if owner != Owner::Unavailable {
        assert!(restartable::is_available());
        return;
    }
    on_fresh_thread(|| {
        assert_eq!(register_current_thread(), Ok(ThreadState::Unregistered));
        assert_eq!(register_current_thread(), Ok(ThreadState::Unregistered));
        assert_eq!(caller_holds(), 2);
        assert_eq!(refcount_of_current_thread(), 0);
        assert!(current_cpu_raw() < 0);
        assert_eq!(current_cpu(), sched_getcpu_pinned());
        assert_eq!(restartable::node_id(), None);
        assert_eq!(restartable::mm_cid(), None);
        unregister_current_thread().unwrap();
        unregister_current_thread().unwrap();
        assert_eq!(unregister_current_thread(), Err(Error::NotRegistered));
        let s = stats();
        assert_eq!((s.registrations, s.unregistrations, s.borrowed), (0, 0, 0));
    });
}

/// System calls the filter of [`no_syscall_outside_library_mode`] trapped,
/// by the thread that installed it: `rseq`, `rt_sigprocmask`, others.
static TRAPPED: [AtomicU32; 3] = [AtomicU32::new(0), AtomicU32::new(0), AtomicU32::new(0)];

/// Counts a trapped call and makes it return 0, as if it had done nothing.
extern "C" fn on_sigsys(_: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    // `siginfo_t._sifields._sigsys._syscall`: the int after `_call_addr`,
    // at byte 24 on 64-bit targets (`include/uapi/asm-generic/siginfo.h`).
    // SAFETY: the kernel passes a full siginfo for SIGSYS.
    let nr = unsafe { *(info as *const u8).add(24).cast::<i32>() } as u32;
    let slot = match nr {
        common::seccomp::NR_RSEQ => 0,
        common::seccomp::NR_RT_SIGPROCMASK => 1,
        _ => 2,
    };
    TRAPPED[slot].fetch_add(1, AtomicOrdering::Relaxed);
    // SAFETY: SA_SIGINFO handlers get the interrupted context; the result
    // register is written back when the handler returns.
    unsafe { set_result_register(&mut *context.cast::<libc::ucontext_t>(), 0) };
}

/// Sets the register a system call returns its result in (`rax`).
#[cfg(target_arch = "x86_64")]
fn set_result_register(context: &mut libc::ucontext_t, value: u64) {
    context.uc_mcontext.gregs[libc::REG_RAX as usize] = value as i64;
}

/// Sets the register a system call returns its result in (`x0`).
#[cfg(target_arch = "aarch64")]
fn set_result_register(context: &mut libc::ucontext_t, value: u64) {
    context.uc_mcontext.regs[0] = value;
}

/// No filter is installed on other targets (see `common::seccomp`).
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn set_result_register(_: &mut libc::ucontext_t, _: u64) {}

/// Installs [`on_sigsys`] for `SIGSYS`.
fn count_trapped_calls() {
    // SAFETY: installs a handler that only touches atomics and the context
    // it is given; no other test raises SIGSYS.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigsys as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO;
        assert_eq!(
            libc::sigaction(libc::SIGSYS, &action, std::ptr::null_mut()),
            0
        );
    }
}

#[test]
fn no_syscall_outside_library_mode() {
    let owner = check_owner();
    if owner == Owner::Library || !common::seccomp::KNOWN_ARCH {
        // Library mode registers with one `rseq` call per thread and masks
        // signals around it; the other tests count its registrations.
        return;
    }
    count_trapped_calls();
    let counts = on_fresh_thread(move || {
        use common::seccomp::{trap_syscalls, NR_RSEQ, NR_RT_SIGPROCMASK};
        trap_syscalls(&[NR_RSEQ, NR_RT_SIGPROCMASK]).unwrap();
        // The filter works: a direct call is trapped, and counted.
        // SAFETY: an empty mask change, trapped before it runs.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigprocmask,
                libc::SIG_BLOCK,
                0usize,
                0usize,
                8usize,
            )
        };
        assert_eq!(TRAPPED[1].load(AtomicOrdering::Relaxed), 1);
        TRAPPED[1].store(0, AtomicOrdering::Relaxed);

        for _ in 0..100 {
            assert_eq!(register_current_thread(), Ok(held_state(owner)));
            let guard = RegistrationGuard::new().unwrap();
            std::hint::black_box(current_cpu());
            drop(guard);
            assert_eq!(unregister_current_thread(), Ok(held_state(owner)));
        }
        assert_eq!(unregister_current_thread(), Err(Error::NotRegistered));
        let counter = restartable::PerCpuCounter::new();
        counter.add(1);
        assert_eq!(counter.sum(), 1);
        TRAPPED.each_ref().map(|t| t.load(AtomicOrdering::Relaxed))
    });
    assert_eq!(
        counts,
        [0, 0, 0],
        "rseq, rt_sigprocmask and other calls made"
    );
}

#[test]
fn library_registration_costs_one_system_call() {
    let owner = check_owner();
    if not_library(owner) || !common::seccomp::KNOWN_ARCH {
        return;
    }
    // `no_syscall_outside_library_mode` does nothing in this mode, so the
    // two never trap at once.
    count_trapped_calls();
    let (trapped, registered, stats_before, stats_after) = on_fresh_thread(|| {
        use common::seccomp::{trap_syscalls, NR_RT_SIGPROCMASK};
        // Only the signal mask is trapped: the registration itself runs.
        trap_syscalls(&[NR_RT_SIGPROCMASK]).unwrap();
        let before = stats();
        std::hint::black_box(current_cpu()); // the first use registers
        let registered = current_cpu_raw() >= 0;
        let after = stats();
        (
            TRAPPED[1].load(AtomicOrdering::Relaxed),
            registered,
            before,
            after,
        )
    });
    assert!(registered, "the first use registered the thread");
    assert_eq!(trapped, 0, "no signal-mask change around the registration");
    assert!(stats_after.registrations > stats_before.registrations);
}
