//! `restartable::report()`: in each mode it states the cause of its verdict
//! (glibc registered; glibc's tunable; `RESTARTABLE_DISABLE`; `ENOSYS` from
//! a seccomp filter), and the C call `restartable_report` keeps
//! `snprintf`'s contract. The mode tests run here in whatever environment
//! the suite runs in, and again in child processes made to run in each.

mod common;

use std::ffi::c_char;
use std::os::unix::process::CommandExt;

use restartable::{KernelRseq, Owner, ThreadState};

extern "C" {
    fn restartable_report(buf: *mut c_char, len: usize) -> usize;
}

/// The reason the report must give for this process's environment.
fn expected_reason(owner: Owner) -> &'static str {
    let env_has = |name: &str, what: &str| std::env::var(name).is_ok_and(|v| v.contains(what));
    match owner {
        Owner::Libc => "registered every thread's area",
        Owner::Library if env_has("GLIBC_TUNABLES", "glibc.pthread.rseq=0") => {
            "GLIBC_TUNABLES contains glibc.pthread.rseq=0"
        }
        Owner::Library => "restartable registers its own __rseq_abi",
        Owner::Unavailable
            if std::env::var_os("RESTARTABLE_DISABLE")
                .is_some_and(|v| !v.is_empty() && v != "0") =>
        {
            "RESTARTABLE_DISABLE is set in the environment (RESTARTABLE_DISABLE="
        }
        Owner::Unavailable if common::rseq_syscall_missing() && seccomp_mode() == 2 => {
            "ENOSYS from a seccomp filter (Seccomp: 2 in /proc/self/status)"
        }
        Owner::Unavailable => "ENOSYS",
    }
}

fn seccomp_mode() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp:"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap()
}

#[test]
fn the_report_gives_the_reason_for_this_process() {
    let owner = common::check_owner();
    restartable::current_cpu(); // registers, so the thread's state is settled
    let report = restartable::report();
    let text = report.to_string();
    println!("{text}");
    assert_eq!(report.owner, owner);
    let reason = expected_reason(owner);
    assert!(
        report.reasons[0].contains(reason),
        "first reason {:?} lacks {reason:?}\n{text}",
        report.reasons[0]
    );
    assert!(text.contains(&report.reasons[0]));
    assert!(text.starts_with("verdict"), "{text}");
    assert_eq!(report.seccomp_mode, Some(seccomp_mode()));
    assert!(!report.kernel_release.is_empty());
    assert!(
        report
            .libc_version
            .as_deref()
            .is_some_and(|v| v.starts_with("glibc ")),
        "{:?}",
        report.libc_version
    );
    assert!(text.contains(report.libc_version.as_deref().unwrap()));
    assert!(text.contains(&format!("aborted sections : {}", report.abort_count)));
    assert_eq!(
        report.kernel_rseq == KernelRseq::Supported,
        !common::rseq_syscall_missing()
    );
    assert_eq!(report.thread_uses_rseq, owner != Owner::Unavailable);
    assert_eq!(
        report.thread_state,
        match owner {
            Owner::Libc => ThreadState::Borrowed,
            Owner::Library => ThreadState::Registered,
            Owner::Unavailable => ThreadState::Unregistered,
        }
    );
    assert!(!report.static_executable, "a test binary is dynamic");
    if owner == Owner::Library {
        // A test executable exports nothing: the report says so, and how.
        assert!(!report.area_exported);
        assert!(
            text.contains("--export-dynamic-symbol=__rseq_abi"),
            "{text}"
        );
    }
}

/// Runs the test above in a child whose environment `configure` sets.
fn in_child(configure: impl FnOnce(&mut std::process::Command)) -> String {
    let out = common::run_test_in_child("the_report_gives_the_reason_for_this_process", |cmd| {
        // The child's own mode, not the one CI expects of this process.
        cmd.env_remove("RESTARTABLE_EXPECT_OWNER");
        configure(cmd);
    });
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn with_restartable_disable_set() {
    let out = in_child(|cmd| {
        cmd.env("RESTARTABLE_DISABLE", "1");
    });
    assert!(out.contains("RESTARTABLE_DISABLE is set"), "{out}");
}

#[test]
fn with_glibc_s_tunable() {
    let out = in_child(|cmd| {
        cmd.env_remove("RESTARTABLE_DISABLE")
            .env("GLIBC_TUNABLES", "glibc.pthread.rseq=0");
    });
    let want = if common::rseq_syscall_missing() {
        "ENOSYS"
    } else {
        "GLIBC_TUNABLES contains glibc.pthread.rseq=0"
    };
    assert!(out.contains(want), "{out}");
}

#[test]
fn with_rseq_blocked_by_seccomp() {
    let out = in_child(|cmd| {
        cmd.env_remove("RESTARTABLE_DISABLE");
        // SAFETY: the filter program is static and installing it makes two
        // system calls: nothing in the child allocates or takes a lock.
        unsafe {
            cmd.pre_exec(common::seccomp::block_rseq);
        }
    });
    assert!(out.contains("ENOSYS from a seccomp filter"), "{out}");
    assert!(out.contains("seccomp mode     : 2 (filter)"), "{out}");
}

#[test]
fn the_c_call_keeps_snprintf_s_contract() {
    common::on_fresh_thread(|| {
        restartable::current_cpu();
        // SAFETY: a null buffer with length 0 is allowed.
        let n = unsafe { restartable_report(std::ptr::null_mut(), 0) };
        assert!(n > 16);
        let mut small = [b'x' as c_char; 16];
        // SAFETY: `small` is valid for its length.
        assert_eq!(unsafe { restartable_report(small.as_mut_ptr(), 1) }, n);
        assert_eq!((small[0], small[1]), (0, b'x' as c_char));
        // SAFETY: as above.
        assert_eq!(unsafe { restartable_report(small.as_mut_ptr(), 16) }, n);
        let cut: Vec<u8> = small.iter().map(|&c| c as u8).collect();
        assert_eq!(cut[15], 0);
        assert_eq!(&cut[..7], b"verdict");
        assert!(!cut[..15].contains(&0));
        // A null buffer with a length writes nothing either.
        // SAFETY: a null buffer is never written.
        assert_eq!(unsafe { restartable_report(std::ptr::null_mut(), 8) }, n);
        let mut whole = vec![b'x' as c_char; n + 1];
        // SAFETY: `whole` is valid for its length.
        let again = unsafe { restartable_report(whole.as_mut_ptr(), whole.len()) };
        let whole: Vec<u8> = whole.iter().map(|&c| c as u8).collect();
        // Other tests' threads may move the counters between calls; the
        // first line is fixed.
        assert_eq!(whole.iter().position(|&b| b == 0), Some(again.min(n)));
        let text = String::from_utf8_lossy(&whole[..again.min(n)]).into_owned();
        let first = restartable::report().to_string();
        assert_eq!(text.lines().next(), first.lines().next());
    });
}

#[test]
fn the_report_registers_nothing() {
    common::on_fresh_thread(|| {
        let before = restartable::thread_state();
        let refcount = restartable::refcount_of_current_thread();
        let report = restartable::report();
        assert_eq!(report.thread_state, before);
        assert_eq!(restartable::thread_state(), before);
        assert_eq!(restartable::refcount_of_current_thread(), refcount);
        if restartable::owner() == Owner::Library {
            assert_eq!(before, ThreadState::Unregistered);
            assert!(!report.thread_uses_rseq);
            assert!(
                report.to_string().contains("has not used the library yet"),
                "{report}"
            );
        }
    });
}
