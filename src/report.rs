//! A diagnostic report: who owns the area, and *why*, with what a user
//! debugging rseq needs beside it (versions, seccomp mode, counters).
//!
//! The report reads what the decision recorded (`area`) and the calling
//! thread's registration (`registration`), and asks the system a few
//! questions of its own (`uname`, `/proc/self/status`, one `rseq(2)` call
//! that registers nothing). It is for people, not for hot paths.

use core::fmt;
use std::fmt::Write as _;

use crate::area::{self, Owner};
use crate::registration::{self, Stats, ThreadState};

/// How the kernel answers `rseq(2)` on the calling thread, asked without
/// registering anything.
///
/// # Examples
/// ```
/// use restartable::KernelRseq;
/// match restartable::report().kernel_rseq {
///     KernelRseq::Supported => println!("the kernel has rseq"),
///     KernelRseq::NoSys => println!("no rseq: old kernel, emulator or filter"),
///     KernelRseq::Refused(errno) => println!("refused with errno {errno}"),
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KernelRseq {
    /// The kernel implements `rseq(2)`.
    Supported,
    /// `ENOSYS`: a kernel older than 4.18, an emulator or sandbox that does
    /// not implement it (valgrind, qemu-user, gVisor), or a seccomp filter
    /// that answers `ENOSYS`.
    NoSys,
    /// Another errno, almost always from a seccomp filter (`EPERM`).
    Refused(i32),
}

/// Everything [`report`] found, with a [`Display`](fmt::Display) that
/// states each verdict with its cause.
///
/// # Examples
/// ```
/// let report = restartable::report();
/// assert_eq!(report.owner, restartable::owner());
/// assert!(!report.reasons.is_empty());
/// println!("{report}");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// Who owns the areas of the process's threads.
    pub owner: Owner,
    /// Why the owner is what it is, and what else matters for it: one
    /// sentence each, in the order they apply.
    pub reasons: Vec<String>,
    /// The calling thread's registration.
    pub thread_state: ThreadState,
    /// Whether the calling thread runs critical sections now (its area is
    /// registered; a thread that has not used the library yet is not).
    pub thread_uses_rseq: bool,
    /// The kernel's answer to `rseq(2)` now, on this thread.
    pub kernel_rseq: KernelRseq,
    /// The kernel's release (`uname -r`).
    pub kernel_release: String,
    /// The C library's version (`glibc 2.36`), if it says (glibc does).
    pub libc_version: Option<String>,
    /// The process's seccomp mode from `/proc/self/status` (0 none,
    /// 1 strict, 2 filter), if the kernel reports it.
    pub seccomp_mode: Option<u32>,
    /// glibc's `__rseq_size`, 0 when it did not register (or is absent).
    pub libc_rseq_size: u32,
    /// Whether the C library exports `__rseq_size` at all (glibc >= 2.35).
    pub libc_has_rseq_symbols: bool,
    /// The kernel's `AT_RSEQ_FEATURE_SIZE` (20 when it predates it).
    pub kernel_feature_size: u32,
    /// The feature size this process can read (0 without rseq).
    pub feature_size: u32,
    /// Whether the executable is statically linked (no `PT_INTERP`).
    pub static_executable: bool,
    /// Whether a classic `__rseq_abi` component loaded later would share
    /// the area (see [`area_is_exported`](crate::area_is_exported)).
    pub area_exported: bool,
    /// Whether the per-CPU lock and stack run critical sections (see
    /// [`lock_sections_enabled`](crate::lock_sections_enabled)).
    pub lock_sections: bool,
    /// Critical sections aborted and retried so far
    /// ([`cs::abort_count`](crate::cs::abort_count)).
    pub abort_count: u64,
    /// The registration counters ([`stats`](crate::stats)).
    pub stats: Stats,
}

/// Builds the diagnostic report for the process and the calling thread:
/// the owner of the area and the reasons for it (`RESTARTABLE_DISABLE`,
/// `ENOSYS` from an old kernel, valgrind, qemu-user or a seccomp filter,
/// glibc's tunable, a static executable, a foreign registrant, an
/// executable that does not export the shared symbols), with the kernel
/// and C library versions, the seccomp mode and the abort count.
///
/// It does not register the thread (it reports the state as it finds it)
/// and makes a few system calls; call it from `main` on, not from a
/// signal handler. `cargo run --example rseq_info` prints it; C callers
/// have `restartable_report(buf, len)`.
///
/// # Examples
/// ```
/// let report = restartable::report();
/// if report.owner == restartable::Owner::Unavailable {
///     eprintln!("running without rseq:\n{report}");
/// }
/// ```
pub fn report() -> Report {
    let owner = area::owner();
    let thread_state = registration::thread_state();
    let mut report = Report {
        owner,
        reasons: Vec::new(),
        thread_state,
        // Not `is_available`, which would register the thread.
        thread_uses_rseq: crate::current_cpu_raw() >= 0,
        kernel_rseq: kernel_rseq(),
        kernel_release: kernel_release(),
        libc_version: libc_version(),
        seccomp_mode: seccomp_mode(),
        libc_rseq_size: area::libc_rseq_size(),
        libc_has_rseq_symbols: area::libc_has_rseq_symbols(),
        kernel_feature_size: area::kernel_feature_size(),
        feature_size: area::feature_size(),
        static_executable: static_executable(),
        area_exported: area::area_is_exported(),
        lock_sections: crate::lock_sections_enabled(),
        abort_count: crate::cs::abort_count(),
        stats: registration::stats(),
    };
    report.reasons = reasons(&report);
    report
}

/// The sentences of [`Report::reasons`].
fn reasons(r: &Report) -> Vec<String> {
    let mut out = Vec::new();
    let libc = r.libc_version.as_deref().unwrap_or("the C library");
    match r.owner {
        Owner::Libc => out.push(format!(
            "{libc} registered every thread's area (__rseq_size = {}); restartable reads it \
             at __rseq_offset and never registers or unregisters it",
            r.libc_rseq_size
        )),
        Owner::Library => {
            out.push(format!(
                "{} so restartable registers its own __rseq_abi, refcounted and shared \
                 with every component that uses the symbol",
                why_libc_did_not_register(r)
            ));
            if r.area_exported {
                out.push(
                    "__rseq_abi is exported: a classic __rseq_abi component loaded later \
                     shares the area"
                        .into(),
                );
            } else if r.static_executable {
                out.push(
                    "the executable is static: a classic __rseq_abi component cannot be \
                     loaded into it to share the area (copies of restartable share it)"
                        .into(),
                );
            } else {
                out.push(
                    "the executable does not export __rseq_abi and __rseq_refcount: a \
                     classic __rseq_abi component loaded later registers its own area and \
                     gets EINVAL (copies of restartable still share it); link with \
                     -Wl,--export-dynamic-symbol=__rseq_abi,--export-dynamic-symbol=__rseq_refcount"
                        .into(),
                );
            }
        }
        Owner::Unavailable => out.push(why_unavailable(r)),
    }
    if r.static_executable && r.owner == Owner::Libc {
        out.push(
            "the executable is static: glibc's registration was found through its link-time \
             symbols"
                .into(),
        );
    }
    match r.thread_state {
        ThreadState::Foreign => out.push(
            "another component registered a different rseq area for this thread (EINVAL): \
             a foreign registrant such as librseq or a private area; this thread uses \
             sched_getcpu and atomics, and tries again every 32nd use"
                .into(),
        ),
        ThreadState::Refused => out.push(format!(
            "the kernel refused rseq(2) to this thread alone ({}): a seccomp filter \
             installed on it; this thread uses sched_getcpu and atomics",
            kernel_answer(r.kernel_rseq)
        )),
        ThreadState::Unregistered if r.owner != Owner::Unavailable => {
            out.push("this thread has not used the library yet: it registers on first use".into())
        }
        _ => {}
    }
    if r.stats.foreign > 0 && r.thread_state != ThreadState::Foreign {
        out.push(format!(
            "{} thread(s) found a foreign registrant's area (EINVAL) and used the fallbacks",
            r.stats.foreign
        ));
    }
    if r.owner != Owner::Unavailable && !r.lock_sections {
        out.push(
            "the per-CPU lock and stack use an atomic compare-exchange in every thread: the \
             kernel lacks membarrier's rseq fence (Linux 5.10) or a filter refuses it"
                .into(),
        );
    }
    out
}

/// Why glibc left the area to the library.
fn why_libc_did_not_register(r: &Report) -> String {
    if tunable_disables_rseq() {
        "glibc did not register: GLIBC_TUNABLES contains glibc.pthread.rseq=0,".into()
    } else if !r.libc_has_rseq_symbols {
        format!(
            "{} exports no __rseq_size (glibc older than 2.35, or another C library): it \
             does not register,",
            r.libc_version.as_deref().unwrap_or("the C library")
        )
    } else {
        "glibc did not register (__rseq_size = 0) although the kernel has rseq:".into()
    }
}

/// The sentence for an `Unavailable` process.
fn why_unavailable(r: &Report) -> String {
    match area::unavailable_cause() {
        area::CAUSE_DISABLED => format!(
            "RESTARTABLE_DISABLE is set in the environment ({}): every API takes its \
             fallback (sched_getcpu and atomics)",
            std::env::var("RESTARTABLE_DISABLE")
                .map(|v| format!("RESTARTABLE_DISABLE={v}"))
                .unwrap_or_else(|_| "since changed or removed".into())
        ),
        area::CAUSE_NO_ARCH => format!(
            "restartable has no rseq code for this architecture ({}): every API takes its \
             fallback",
            std::env::consts::ARCH
        ),
        area::CAUSE_SIGNATURE => "another component registered the shared __rseq_abi with a \
             signature other than RSEQ_SIG, so no critical section may run (the kernel would \
             kill the thread at its first abort): every API takes its fallback"
            .into(),
        _ => format!(
            "the kernel does not serve rseq(2): {}; every API takes its fallback \
             (sched_getcpu and atomics)",
            why_no_kernel_rseq(r)
        ),
    }
}

/// The likeliest cause of a kernel that does not answer `rseq(2)`.
fn why_no_kernel_rseq(r: &Report) -> String {
    let answer = kernel_answer(r.kernel_rseq);
    if r.kernel_rseq == KernelRseq::Supported {
        return "it did not when the owner was decided (a filter installed before, and \
                lifted since, or the decision ran on a thread that was refused)"
            .into();
    }
    if under_valgrind() {
        return format!("{answer} under valgrind, which does not implement rseq");
    }
    if r.seccomp_mode == Some(2) {
        return format!("{answer} from a seccomp filter (Seccomp: 2 in /proc/self/status)");
    }
    if let KernelRseq::Refused(_) = r.kernel_rseq {
        return format!("{answer}, refused by a security policy");
    }
    if kernel_older_than(&r.kernel_release, (4, 18)) {
        return format!(
            "{answer}: kernel {} predates rseq (Linux 4.18)",
            r.kernel_release
        );
    }
    format!(
        "{answer} although kernel {} has rseq and no seccomp filter is installed: an \
         emulator or sandbox that does not implement it (qemu-user, gVisor)",
        r.kernel_release
    )
}

fn kernel_answer(k: KernelRseq) -> String {
    match k {
        KernelRseq::Supported => "supported".into(),
        KernelRseq::NoSys => "ENOSYS".into(),
        KernelRseq::Refused(libc::EPERM) => "EPERM".into(),
        KernelRseq::Refused(e) => format!("errno {e}"),
    }
}

fn kernel_rseq() -> KernelRseq {
    // Unregistering a null area: `EINVAL` from every kernel that has rseq,
    // registered or not; nothing is read or changed.
    // SAFETY: the kernel rejects a null area before touching memory.
    let ret = unsafe {
        crate::arch::sys_rseq(
            core::ptr::null_mut(),
            crate::abi::MIN_REGISTRATION_LEN,
            crate::abi::FLAG_UNREGISTER,
            crate::arch::SIG,
        )
    };
    match -ret {
        libc::EINVAL => KernelRseq::Supported,
        libc::ENOSYS => KernelRseq::NoSys,
        e => KernelRseq::Refused(e),
    }
}

fn tunable_disables_rseq() -> bool {
    std::env::var("GLIBC_TUNABLES")
        .is_ok_and(|t| t.split(':').any(|kv| kv.trim() == "glibc.pthread.rseq=0"))
}

fn under_valgrind() -> bool {
    // valgrind preloads its `vgpreload_*.so` into the programs it runs.
    std::env::var("LD_PRELOAD").is_ok_and(|p| p.contains("vgpreload"))
}

fn kernel_release() -> String {
    // SAFETY: an all-zero utsname is a valid value to overwrite.
    let mut uts: libc::utsname = unsafe { core::mem::zeroed() };
    // SAFETY: `uts` is valid for writing.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return "unknown".into();
    }
    // SAFETY: uname NUL-terminates each field.
    unsafe { core::ffi::CStr::from_ptr(uts.release.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// `(major, minor)` of a release like `6.18.0-1-amd64`, compared with
/// `min`; false when it cannot be read.
fn kernel_older_than(release: &str, min: (u32, u32)) -> bool {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>());
    match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => (major, minor) < min,
        _ => false,
    }
}

fn libc_version() -> Option<String> {
    #[cfg(target_env = "gnu")]
    {
        let mut buf = [0u8; 64];
        // SAFETY: `buf` is valid for writing its length; confstr writes at
        // most that many bytes, NUL included.
        let n = unsafe {
            libc::confstr(
                libc::_CS_GNU_LIBC_VERSION,
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n > 0 && n <= buf.len() {
            return Some(String::from_utf8_lossy(&buf[..n - 1]).into_owned());
        }
    }
    None
}

fn seccomp_mode() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp:"))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(target_pointer_width = "64")]
type Phdr = libc::Elf64_Phdr;
#[cfg(not(target_pointer_width = "64"))]
type Phdr = libc::Elf32_Phdr;

/// Whether the executable has no `PT_INTERP`: no dynamic loader runs it.
fn static_executable() -> bool {
    // SAFETY: getauxval has no preconditions.
    let (phdr, phnum) = unsafe {
        (
            libc::getauxval(libc::AT_PHDR),
            libc::getauxval(libc::AT_PHNUM),
        )
    };
    if phdr == 0 {
        return false;
    }
    // SAFETY: the kernel's AT_PHDR and AT_PHNUM describe the executable's
    // program headers, mapped for the life of the process.
    let headers = unsafe { core::slice::from_raw_parts(phdr as *const Phdr, phnum as usize) };
    !headers.iter().any(|h| h.p_type == libc::PT_INTERP)
}

impl fmt::Display for KernelRseq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelRseq::Supported => f.write_str("supported"),
            KernelRseq::NoSys => f.write_str("not implemented (ENOSYS)"),
            KernelRseq::Refused(e) => {
                write!(f, "refused ({})", kernel_answer(KernelRseq::Refused(*e)))
            }
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = match self.owner {
            Owner::Libc => "rseq in use; glibc owns the area",
            Owner::Library => "rseq in use; restartable owns the area",
            Owner::Unavailable => "rseq unavailable; fallbacks in use",
        };
        writeln!(f, "verdict          : {verdict}")?;
        for reason in &self.reasons {
            writeln!(f, "  because        : {reason}")?;
        }
        writeln!(f, "owner            : {}", self.owner)?;
        writeln!(f, "this thread      : {}", self.thread_state)?;
        writeln!(f, "sections here    : {}", yes_no(self.thread_uses_rseq))?;
        writeln!(f, "kernel           : {}", self.kernel_release)?;
        writeln!(f, "kernel rseq(2)   : {}", self.kernel_rseq)?;
        writeln!(
            f,
            "C library        : {}",
            self.libc_version
                .as_deref()
                .unwrap_or("unknown (not glibc)")
        )?;
        writeln!(
            f,
            "glibc __rseq_size: {}{}",
            self.libc_rseq_size,
            if self.libc_has_rseq_symbols {
                ""
            } else {
                " (no such symbol)"
            }
        )?;
        let seccomp = match self.seccomp_mode {
            Some(0) => "0 (none)".to_string(),
            Some(1) => "1 (strict)".to_string(),
            Some(2) => "2 (filter)".to_string(),
            Some(m) => m.to_string(),
            None => "unknown".to_string(),
        };
        writeln!(f, "seccomp mode     : {seccomp}")?;
        writeln!(
            f,
            "feature size     : {} usable, {} from the kernel",
            self.feature_size, self.kernel_feature_size
        )?;
        writeln!(
            f,
            "executable       : {}",
            if self.static_executable {
                "static"
            } else {
                "dynamic"
            }
        )?;
        writeln!(
            f,
            "area exported    : {}",
            match self.owner {
                Owner::Library => yes_no(self.area_exported),
                _ => "not applicable (restartable registers nothing)",
            }
        )?;
        writeln!(f, "lock/stack cs    : {}", yes_no(self.lock_sections))?;
        writeln!(f, "aborted sections : {}", self.abort_count)?;
        let s = &self.stats;
        let mut stats = String::new();
        let _ = write!(
            stats,
            "{} registered, {} unregistered, {} borrowed, {} foreign, {} released at exit",
            s.registrations, s.unregistrations, s.borrowed, s.foreign, s.exit_releases
        );
        write!(f, "registrations    : {stats}")
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

#[cfg(test)]
mod tests {
    use super::kernel_older_than;

    #[test]
    fn kernel_releases_compare_by_major_and_minor() {
        assert!(kernel_older_than("4.17.0", (4, 18)));
        assert!(kernel_older_than("3.10.0-1160.el7.x86_64", (4, 18)));
        assert!(!kernel_older_than("4.18.0", (4, 18)));
        assert!(!kernel_older_than("6.18.0-1-amd64", (4, 18)));
        assert!(!kernel_older_than("weird", (4, 18)));
    }
}
