//! Seccomp filters installed while the process runs, as a sandbox that
//! tightens after start-up does, with only `libc`:
//! - [`deny_on_every_thread`] makes chosen system calls answer an
//!   errno on every thread of the process at once (`SECCOMP_FILTER_FLAG_TSYNC`);
//! - [`stop_on_this_thread`] makes one system call of the calling thread
//!   wait for a supervisor (`SECCOMP_RET_USER_NOTIF`): the supervisor sees
//!   the call arrive ([`Listener::next_call`]) and lets it run later
//!   ([`Listener::resume`]), so a test can hold a thread still at a known
//!   point.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::seccomp::{program, SockFilter, SockFprog};

/// `__NR_sched_setaffinity` of the target.
pub const NR_SCHED_SETAFFINITY: u32 = super::seccomp::NR_SCHED_SETAFFINITY;

/// `seccomp(SECCOMP_SET_MODE_FILTER, flags, prog)` after
/// `PR_SET_NO_NEW_PRIVS`; returns the call's result.
fn install(prog: &[SockFilter], flags: libc::c_ulong) -> io::Result<libc::c_long> {
    if !super::seccomp::KNOWN_ARCH {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the filters know system call numbers on x86_64 and aarch64 only",
        ));
    }
    let fprog = SockFprog {
        len: prog.len() as u16,
        filter: prog.as_ptr(),
    };
    // SAFETY: PR_SET_NO_NEW_PRIVS takes plain integers.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fprog` points to a valid program, which the kernel copies.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &fprog as *const SockFprog,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret)
}

/// Makes each system call of `nrs` fail with `errno` on every thread
/// of the process, from now on (and in threads created later). Nothing can
/// remove the filter: run it in a child process of its own.
pub fn deny_on_every_thread(nrs: &[u32], errno: i32) -> io::Result<()> {
    let prog = program(nrs, libc::SECCOMP_RET_ERRNO | errno as u32);
    match install(&prog, libc::SECCOMP_FILTER_FLAG_TSYNC)? {
        0 => Ok(()),
        tid => Err(io::Error::other(format!(
            "thread {tid} could not take the filter"
        ))),
    }
}

/// The supervisor's end of a [`stop_on_this_thread`] filter.
#[derive(Debug)]
pub struct Listener(OwnedFd);

/// Makes system call `nr` of the calling thread (and of threads it creates
/// later) wait until the returned listener lets it run.
pub fn stop_on_this_thread(nr: u32) -> io::Result<Listener> {
    let prog = program(&[nr], libc::SECCOMP_RET_USER_NOTIF);
    let fd = install(&prog, libc::SECCOMP_FILTER_FLAG_NEW_LISTENER)?;
    // SAFETY: the kernel returned a new file descriptor that nothing else
    // owns.
    Ok(Listener(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
}

/// One stopped system call.
#[derive(Debug, Clone, Copy)]
pub struct Call {
    /// The kernel's id of the notification.
    pub id: u64,
    /// The system call number.
    pub nr: i32,
    /// Its first argument.
    pub arg0: u64,
}

impl Listener {
    /// Waits until a filtered thread makes its call; the thread stays
    /// stopped in it.
    pub fn next_call(&self) -> io::Result<Call> {
        // SAFETY: an all-zero `seccomp_notif` is valid, and the kernel
        // wants it zeroed.
        let mut notif: libc::seccomp_notif = unsafe { std::mem::zeroed() };
        loop {
            // SAFETY: `notif` is valid for the kernel to fill.
            let ret = unsafe {
                libc::ioctl(
                    self.0.as_raw_fd(),
                    libc::SECCOMP_IOCTL_NOTIF_RECV,
                    &mut notif as *mut libc::seccomp_notif,
                )
            };
            if ret == 0 {
                return Ok(Call {
                    id: notif.id,
                    nr: notif.data.nr,
                    arg0: notif.data.args[0],
                });
            }
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EINTR) {
                return Err(err);
            }
        }
    }

    /// Lets the stopped call run as if no filter were there.
    pub fn resume(&self, call: Call) -> io::Result<()> {
        let resp = libc::seccomp_notif_resp {
            id: call.id,
            val: 0,
            error: 0,
            flags: libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32,
        };
        // SAFETY: `resp` is a valid response for the kernel to read.
        let ret = unsafe {
            libc::ioctl(
                self.0.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_SEND,
                &resp as *const libc::seccomp_notif_resp,
            )
        };
        if ret == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}
