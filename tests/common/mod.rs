//! Helpers shared by the integration tests: the expected owner, raw
//! `rseq(2)` calls, CPU pinning and sysfs lookups.

// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

pub mod cbuild;
pub mod elf;
pub mod forked;
pub mod kernel;
pub mod sandbox;
pub mod seccomp;
pub mod uffd;

use restartable::Owner;

/// `RSEQ_SIG` of the target, as every registrant of `__rseq_abi` uses it.
pub const SIG: u32 = restartable::abi::RSEQ_SIG;
/// The length every registrant of a 32-byte area passes.
pub const LEN: u32 = 32;
/// `RSEQ_FLAG_UNREGISTER`.
pub const UNREGISTER: i32 = 1;

/// `rseq(area, len, flags, sig)`: `Ok(())` or the errno.
pub fn raw_rseq(area: *mut u8, len: u32, flags: i32, sig: u32) -> Result<(), i32> {
    // SAFETY: the callers pass null (rejected before anything is read) or
    // a 32-byte aligned area that outlives its registration.
    let ret = unsafe { libc::syscall(libc::SYS_rseq, area, len, flags, sig) };
    if ret == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap())
    }
}

/// Registers `area` for the calling thread, the classic way.
pub fn raw_register(area: *mut u8) -> Result<(), i32> {
    raw_rseq(area, LEN, 0, SIG)
}

/// Registers `area` with the length the library registered the calling
/// thread's area with (the extensible length on Linux 7.x, 32 before):
/// `EBUSY` when the library's registration is in place.
#[allow(dead_code)] // not every test binary uses it
pub fn raw_register_as_library(area: *mut u8) -> Result<(), i32> {
    raw_rseq(
        area,
        restartable::thread_registration_len().max(LEN),
        0,
        SIG,
    )
}

/// Unregisters `area` for the calling thread.
pub fn raw_unregister(area: *mut u8) -> Result<(), i32> {
    raw_rseq(area, LEN, UNREGISTER, SIG)
}

/// glibc's `__rseq_size`, looked up like the library does (0 if absent).
pub fn glibc_rseq_size() -> u32 {
    // SAFETY: dlsym with a valid C string.
    let size = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"__rseq_size".as_ptr()) };
    if size.is_null() {
        return 0;
    }
    // SAFETY: glibc defines it as `const unsigned int`.
    unsafe { *(size as *const u32) }
}

/// glibc's area of the calling thread (at `__rseq_offset` from the thread
/// pointer); only meaningful where [`glibc_rseq_size`] is not 0.
pub fn glibc_area() -> *mut u8 {
    // SAFETY: dlsym with a valid C string.
    let offset = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"__rseq_offset".as_ptr()) };
    assert!(!offset.is_null(), "glibc exports __rseq_offset");
    // SAFETY: glibc defines it as `const ptrdiff_t`.
    let offset = unsafe { *(offset as *const isize) };
    thread_pointer().wrapping_add_signed(offset) as *mut u8
}

/// The thread pointer `__rseq_offset` is relative to (`%fs` base).
#[cfg(target_arch = "x86_64")]
pub fn thread_pointer() -> usize {
    let tp: usize;
    // SAFETY: on x86_64 `%fs:0` holds the thread pointer.
    unsafe { std::arch::asm!("mov {}, qword ptr fs:0", out(reg) tp, options(nostack, readonly)) };
    tp
}

/// The thread pointer `__rseq_offset` is relative to (`tpidr_el0`).
#[cfg(target_arch = "aarch64")]
pub fn thread_pointer() -> usize {
    let tp: usize;
    // SAFETY: reading `tpidr_el0` has no effect but the read.
    unsafe { std::arch::asm!("mrs {}, tpidr_el0", out(reg) tp, options(nomem, nostack)) };
    tp
}

/// The tests read the thread pointer on x86_64 and aarch64 only.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
pub fn thread_pointer() -> usize {
    panic!("the tests read the thread pointer on x86_64 and aarch64 only")
}

/// Whether the kernel (or a filter) answers `rseq` with ENOSYS.
pub fn rseq_syscall_missing() -> bool {
    raw_rseq(std::ptr::null_mut(), 0, 0, 0) == Err(libc::ENOSYS)
}

fn disabled_by_env() -> bool {
    std::env::var_os("RESTARTABLE_DISABLE").is_some_and(|v| !v.is_empty() && v != "0")
}

/// The owner this process must have: `RESTARTABLE_EXPECT_OWNER` when set
/// (CI sets it), cross-checked against what glibc and the kernel say.
pub fn expected_owner() -> Owner {
    let derived = if disabled_by_env() || rseq_syscall_missing() {
        Owner::Unavailable
    } else if glibc_rseq_size() > 0 {
        Owner::Libc
    } else {
        Owner::Library
    };
    if let Ok(name) = std::env::var("RESTARTABLE_EXPECT_OWNER") {
        let expected = match name.as_str() {
            "libc" => Owner::Libc,
            "library" => Owner::Library,
            "unavailable" => Owner::Unavailable,
            other => panic!("RESTARTABLE_EXPECT_OWNER={other}: want libc, library or unavailable"),
        };
        assert_eq!(
            expected, derived,
            "RESTARTABLE_EXPECT_OWNER disagrees with glibc's __rseq_size and the kernel"
        );
    }
    derived
}

/// Asserts that the library's owner is the expected one; returns it.
pub fn check_owner() -> Owner {
    let expected = expected_owner();
    assert_eq!(restartable::owner(), expected);
    expected
}

/// The CPUs the calling thread may run on.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is valid for writing its size.
    let ret = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
    assert_eq!(
        ret,
        0,
        "sched_getaffinity: {}",
        std::io::Error::last_os_error()
    );
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below CPU_SETSIZE.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect()
}

/// Pins the calling thread to one CPU; the kernel migrates it before the
/// call returns.
pub fn pin_to(cpu: usize) {
    let ret = pin_thread(0, cpu);
    assert_eq!(
        ret,
        0,
        "sched_setaffinity({cpu}): {}",
        std::io::Error::last_os_error()
    );
}

/// Pins thread `tid` (0: the caller) to one CPU; returns sched_setaffinity's
/// result (a thread that has exited answers -1).
pub fn pin_thread(tid: libc::pid_t, cpu: usize) -> i32 {
    // SAFETY: an all-zero cpu_set_t is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` comes from `allowed_cpus`, below CPU_SETSIZE.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid set of its size.
    unsafe { libc::sched_setaffinity(tid, std::mem::size_of_val(&set), &set) }
}

/// `sched_getcpu()`.
pub fn sched_getcpu() -> u32 {
    // SAFETY: no preconditions.
    let cpu = unsafe { libc::sched_getcpu() };
    assert!(cpu >= 0, "sched_getcpu failed");
    cpu as u32
}

/// The NUMA node of `cpu` from `/sys/devices/system/cpu/cpuN/nodeM`.
pub fn sysfs_node_of(cpu: usize) -> Option<u32> {
    let dir = std::fs::read_dir(format!("/sys/devices/system/cpu/cpu{cpu}")).ok()?;
    dir.filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            entry
                .file_name()
                .to_str()?
                .strip_prefix("node")?
                .parse()
                .ok()
        })
        .next()
}

/// Runs `f` on a new thread and returns its result (propagating panics):
/// every registration scenario starts from a fresh thread.
pub fn on_fresh_thread<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    std::thread::spawn(f)
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// Set in a child that runs one test alone (see [`in_child_alone`]).
const ALONE: &str = "RESTARTABLE_TEST_ALONE";

/// Runs test `name` of this binary again, alone, in a child process that
/// `configure` prepares (environment, extra arguments, `pre_exec`); asserts
/// that the child ran the test and passed, and returns its output.
#[allow(dead_code)] // not every test binary runs children
pub fn run_test_in_child(
    name: &str,
    configure: impl FnOnce(&mut std::process::Command),
) -> std::process::Output {
    let mut cmd = std::process::Command::new("/proc/self/exe");
    cmd.args(["--exact", name, "--nocapture"]);
    configure(&mut cmd);
    let out = output_within(&mut cmd, child_limit());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// For tests that read process-wide tallies (abort count, registration
/// stats), which other tests of the binary move concurrently: in the
/// parent, runs test `name` alone in a child process, asserts that it
/// passed, and returns false; in that child, returns true (run the body).
#[allow(dead_code)] // not every test binary has such a test
pub fn in_child_alone(name: &str) -> bool {
    if std::env::var_os(ALONE).is_some() {
        return true;
    }
    run_test_in_child(name, |cmd| {
        cmd.env(ALONE, "1");
    });
    false
}

/// Runs `cmd` to completion like `Command::output`, but kills it and
/// panics, with what it printed, if it runs past `limit`: a regression that
/// makes a child spin fails the test instead of hanging the suite.
///
/// On an emulated machine (the arm64 suite under qemu's TCG) the limit is
/// multiplied by `RESTARTABLE_TEST_TIME_SCALE`, a whole number (default 1).
#[allow(dead_code)] // not every test binary runs children
pub fn output_within(
    cmd: &mut std::process::Command,
    limit: std::time::Duration,
) -> std::process::Output {
    use std::io::Read;
    use std::process::Stdio;
    let scale: u32 = match std::env::var("RESTARTABLE_TEST_TIME_SCALE") {
        Ok(v) => v
            .parse()
            .expect("RESTARTABLE_TEST_TIME_SCALE is a whole number"),
        Err(_) => 1,
    };
    let limit = limit * scale;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    // Readers drain both pipes, so a child that prints much never blocks.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            pipe.read_to_end(&mut bytes).unwrap();
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if start.elapsed() > limit {
            child.kill().unwrap();
            child.wait().unwrap();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    let Some(status) = status else {
        panic!(
            "{cmd:?} ran past {limit:?} and was killed:\n{}\n{}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        );
    };
    std::process::Output {
        status,
        stdout,
        stderr,
    }
}

/// How long a test's child process may run: 300 s, or what
/// [`child_limit_or`] says.
pub fn child_limit() -> std::time::Duration {
    child_limit_or(std::time::Duration::from_secs(300))
}

/// A bound on a child process that catches a hang: `default`, or
/// `RESTARTABLE_TEST_CHILD_LIMIT` seconds where that is set (the kernel
/// matrix sets it: an emulated CPU on a busy host runs valgrind, the
/// compilers and signal storms many times slower). A bad value is an
/// error, not a default.
pub fn child_limit_or(default: std::time::Duration) -> std::time::Duration {
    const VAR: &str = "RESTARTABLE_TEST_CHILD_LIMIT";
    match std::env::var(VAR) {
        Ok(v) => v
            .parse::<u64>()
            .ok()
            .filter(|&s| s > 0)
            .map(std::time::Duration::from_secs)
            .unwrap_or_else(|| panic!("{VAR}={v}: want a number of seconds above 0")),
        Err(_) => default,
    }
}
