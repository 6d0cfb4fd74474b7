//! A seccomp filter that makes `rseq(2)` fail with `ENOSYS`, as it does
//! under valgrind, qemu-user or an old kernel. Shared by
//! `examples/without_rseq.rs` and `tests/unavailable.rs`; only `libc`.

use std::io;

/// `struct sock_filter` from `linux/filter.h`: one classic BPF instruction.
#[repr(C)]
#[derive(Clone, Copy)]
struct SockFilter {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

/// `struct sock_fprog` from `linux/filter.h`.
#[repr(C)]
struct SockFprog {
    len: u16,
    filter: *const SockFilter,
}

// Classic BPF opcodes (`linux/bpf_common.h`).
const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD (0) | BPF_W (0) | BPF_ABS (0x20)
const BPF_JMP_JEQ_K: u16 = 0x15; // BPF_JMP (5) | BPF_JEQ (0x10) | BPF_K (0)
const BPF_RET_K: u16 = 0x06; // BPF_RET (6) | BPF_K (0)

// `linux/seccomp.h` and `linux/audit.h`.
const SECCOMP_MODE_FILTER: libc::c_ulong = 2;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// Offsets in `struct seccomp_data`.
const NR_OFFSET: u32 = 0;
const ARCH_OFFSET: u32 = 4;
/// `__NR_rseq` on x86_64.
const NR_RSEQ_X86_64: u32 = 334;

const fn insn(code: u16, jt: u8, jf: u8, k: u32) -> SockFilter {
    SockFilter { code, jt, jf, k }
}

/// The program: on x86_64, `rseq` answers `-ENOSYS`; everything else runs.
static FILTER: [SockFilter; 6] = [
    insn(BPF_LD_W_ABS, 0, 0, ARCH_OFFSET),
    // Another architecture (or the i386 entry points): allow.
    insn(BPF_JMP_JEQ_K, 0, 3, AUDIT_ARCH_X86_64),
    insn(BPF_LD_W_ABS, 0, 0, NR_OFFSET),
    insn(BPF_JMP_JEQ_K, 0, 1, NR_RSEQ_X86_64),
    insn(BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
    insn(BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
];

/// Installs the filter on the calling thread (inherited by `fork` and kept
/// across `exec`), after `PR_SET_NO_NEW_PRIVS`, which an unprivileged
/// process needs.
///
/// Only `prctl` is called, so this is async-signal-safe and may run
/// between `fork` and `exec`.
pub fn block_rseq() -> io::Result<()> {
    if !cfg!(target_arch = "x86_64") {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "the filter knows rseq's number on x86_64 only",
        ));
    }
    let prog = SockFprog {
        len: FILTER.len() as u16,
        filter: FILTER.as_ptr(),
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
