//! Running a check in a `fork(2)` child of a multi-threaded test, under a
//! time limit: the child holds only the forking thread, whatever the other
//! threads were doing, so a lock held by one of them stays held there.

use std::time::{Duration, Instant};

/// Writes `msg` to stderr with one `write(2)`: no lock that another thread
/// may have held at the fork.
pub fn say(msg: &str) {
    // SAFETY: writes a valid buffer to fd 2.
    unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
}

/// Forks; the child runs `check` and exits 0 if it returned (1 if it
/// panicked), without returning into the test harness. The parent waits up
/// to `limit`, calling `while_waiting` every few milliseconds, and kills the
/// child past it. `Err` says what went wrong.
pub fn fork_within(
    limit: Duration,
    check: impl FnOnce(),
    mut while_waiting: impl FnMut(),
) -> Result<(), String> {
    // SAFETY: the child only runs `check` and `_exit`s; the allocator
    // (glibc's) stays usable across fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(check)).is_ok();
        if !ok {
            say("forked child: a check panicked\n");
        }
        // SAFETY: ends the child without running the parent's exit code.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    let start = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: `pid` is our child; `status` is valid.
        let ret = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if ret == pid {
            return if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
                Ok(())
            } else {
                Err(format!("forked child failed (wait status {status:#x})"))
            };
        }
        if start.elapsed() > limit {
            // SAFETY: kills and reaps our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return Err(format!("forked child still running after {limit:?}: hung"));
        }
        while_waiting();
        std::thread::sleep(Duration::from_millis(5));
    }
}
