//! Seccomp filters for the tests, with only `libc`:
//! - [`block_rseq`] makes `rseq(2)` fail with `ENOSYS`, as it does under
//!   valgrind, qemu-user or an old kernel (shared by
//!   `examples/without_rseq.rs` and `tests/unavailable.rs`);
//! - [`block_membarrier`] does the same to `membarrier(2)`, leaving the
//!   per-CPU lock and stack without their rseq fence (`tests/percpu.rs`);
//! - [`trap_syscalls`] turns chosen system calls of one thread into
//!   `SIGSYS`, so that a test can count the calls a piece of code makes.

use std::io;

/// `struct sock_filter` from `linux/filter.h`: one classic BPF instruction.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SockFilter {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

/// `struct sock_fprog` from `linux/filter.h`.
#[repr(C)]
pub struct SockFprog {
    /// Instructions in the program.
    pub len: u16,
    /// The first instruction.
    pub filter: *const SockFilter,
}

// Classic BPF opcodes (`linux/bpf_common.h`).
const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD (0) | BPF_W (0) | BPF_ABS (0x20)
const BPF_JMP_JEQ_K: u16 = 0x15; // BPF_JMP (5) | BPF_JEQ (0x10) | BPF_K (0)
const BPF_RET_K: u16 = 0x06; // BPF_RET (6) | BPF_K (0)

// `linux/seccomp.h` and `linux/audit.h`.
const SECCOMP_MODE_FILTER: libc::c_ulong = 2;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const SECCOMP_RET_TRAP: u32 = 0x0003_0000;
/// Offsets in `struct seccomp_data`.
const NR_OFFSET: u32 = 0;
const ARCH_OFFSET: u32 = 4;

/// The architecture the filters match (`AUDIT_ARCH_*` from `linux/audit.h`)
/// and its system call numbers (`asm/unistd.h`; aarch64 uses the generic
/// table). The filters know x86_64 and aarch64; elsewhere they refuse to
/// install ([`KNOWN_ARCH`] is false).
#[cfg(target_arch = "x86_64")]
mod numbers {
    pub const AUDIT_ARCH: u32 = 0xc000_003e; // EM_X86_64 | 64-bit | LE
    pub const NR_RSEQ: u32 = 334;
    pub const NR_MEMBARRIER: u32 = 324;
    pub const NR_RT_SIGPROCMASK: u32 = 14;
    pub const NR_SCHED_SETAFFINITY: u32 = 203;
}
#[cfg(target_arch = "aarch64")]
mod numbers {
    pub const AUDIT_ARCH: u32 = 0xc000_00b7; // EM_AARCH64 | 64-bit | LE
    pub const NR_RSEQ: u32 = 293;
    pub const NR_MEMBARRIER: u32 = 283;
    pub const NR_RT_SIGPROCMASK: u32 = 135;
    pub const NR_SCHED_SETAFFINITY: u32 = 122;
}
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
mod numbers {
    // Never installed (see `install`); values no kernel table uses.
    pub const AUDIT_ARCH: u32 = 0;
    pub const NR_RSEQ: u32 = u32::MAX;
    pub const NR_MEMBARRIER: u32 = u32::MAX - 1;
    pub const NR_RT_SIGPROCMASK: u32 = u32::MAX - 2;
    pub const NR_SCHED_SETAFFINITY: u32 = u32::MAX - 3;
}
use numbers::AUDIT_ARCH;
/// `__NR_rseq` of the target.
pub const NR_RSEQ: u32 = numbers::NR_RSEQ;
/// `__NR_membarrier` of the target.
pub const NR_MEMBARRIER: u32 = numbers::NR_MEMBARRIER;
/// `__NR_rt_sigprocmask` of the target.
pub const NR_RT_SIGPROCMASK: u32 = numbers::NR_RT_SIGPROCMASK;
/// `__NR_sched_setaffinity` of the target.
pub const NR_SCHED_SETAFFINITY: u32 = numbers::NR_SCHED_SETAFFINITY;
/// Whether the filters know the target's system call numbers.
pub const KNOWN_ARCH: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

const fn insn(code: u16, jt: u8, jf: u8, k: u32) -> SockFilter {
    SockFilter { code, jt, jf, k }
}

/// A program under which system call `nr` of the target answers `-errno`
/// and everything else runs.
const fn deny(nr: u32, errno: i32) -> [SockFilter; 6] {
    [
        insn(BPF_LD_W_ABS, 0, 0, ARCH_OFFSET),
        // Another architecture (such as x86_64's i386 entry points): allow.
        insn(BPF_JMP_JEQ_K, 0, 3, AUDIT_ARCH),
        insn(BPF_LD_W_ABS, 0, 0, NR_OFFSET),
        insn(BPF_JMP_JEQ_K, 0, 1, nr),
        insn(BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | errno as u32),
        insn(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
    ]
}

static NO_RSEQ: [SockFilter; 6] = deny(NR_RSEQ, libc::ENOSYS);
static NO_MEMBARRIER: [SockFilter; 6] = deny(NR_MEMBARRIER, libc::ENOSYS);

/// Makes `rseq(2)` answer `ENOSYS`. Installs the filter on the calling
/// thread (inherited by `fork` and kept across `exec`), after
/// `PR_SET_NO_NEW_PRIVS`, which an unprivileged process needs.
///
/// Only `prctl` is called, so this is async-signal-safe and may run
/// between `fork` and `exec`.
pub fn block_rseq() -> io::Result<()> {
    install(&NO_RSEQ)
}

/// Makes `rseq(2)` answer `-errno` on the calling thread (and the threads
/// it creates later), installed as [`block_rseq`] is: a sandbox that
/// refuses rseq to one thread.
pub fn refuse_rseq(errno: i32) -> io::Result<()> {
    install(&deny(NR_RSEQ, errno))
}

/// Makes `membarrier(2)` answer `ENOSYS`, as on a kernel built without it;
/// like a kernel before Linux 5.10, it then offers no rseq fence. Installed
/// as [`block_rseq`] is.
pub fn block_membarrier() -> io::Result<()> {
    install(&NO_MEMBARRIER)
}

/// Makes each of the system calls `nrs` raise `SIGSYS` instead of
/// running, on the calling thread only (and threads it creates later). The
/// handler finds the number in `siginfo` and sets the result register.
/// Nothing can remove the filter: use a thread of its own.
pub fn trap_syscalls(nrs: &[u32]) -> io::Result<()> {
    install(&program(nrs, SECCOMP_RET_TRAP))
}

/// A program that answers `action` (a `SECCOMP_RET_*` value) to each of
/// the system calls `nrs` and allows everything else.
pub fn program(nrs: &[u32], action: u32) -> Vec<SockFilter> {
    assert!(nrs.len() < 200, "jump offsets are one byte");
    let n = nrs.len() as u8;
    let mut prog = vec![
        insn(BPF_LD_W_ABS, 0, 0, ARCH_OFFSET),
        insn(BPF_JMP_JEQ_K, 0, n + 1, AUDIT_ARCH),
        insn(BPF_LD_W_ABS, 0, 0, NR_OFFSET),
    ];
    for (i, &nr) in nrs.iter().enumerate() {
        // A match jumps to the action after the remaining tests and the allow.
        prog.push(insn(BPF_JMP_JEQ_K, n - i as u8, 0, nr));
    }
    prog.push(insn(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW));
    prog.push(insn(BPF_RET_K, 0, 0, action));
    prog
}

fn install(filter: &[SockFilter]) -> io::Result<()> {
    if !KNOWN_ARCH {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the filters know system call numbers on x86_64 and aarch64 only",
        ));
    }
    let prog = SockFprog {
        len: filter.len() as u16,
        filter: filter.as_ptr(),
    };
    // SAFETY: PR_SET_NO_NEW_PRIVS takes plain integers.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `prog` points to a valid program of `len` instructions, which
    // the kernel copies before returning.
    let ret = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            SECCOMP_MODE_FILTER,
            &prog as *const SockFprog,
            0,
            0,
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
