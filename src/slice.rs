//! The scheduler's time-slice extension (Linux 7.0+, `CONFIG_RSEQ_SLICE_EXTENSION`).
//!
//! A thread that holds a lock briefly can ask the scheduler not to preempt
//! it for a few microseconds more if its slice ends inside the region, so
//! that the threads waiting for the lock are not stuck behind a holder that
//! was scheduled out. The protocol lives in the rseq area:
//!
//! 1. the thread enables the extension once, `prctl(PR_RSEQ_SLICE_EXTENSION,
//!    PR_RSEQ_SLICE_EXTENSION_SET, PR_RSEQ_SLICE_EXT_ENABLE, 0, 0)`
//!    ([`enable`]); the kernel then sets `RSEQ_CS_FLAG_SLICE_EXT_ENABLED` in
//!    the area's `flags`;
//! 2. entering the region, it sets `slice_ctrl.request` ([`SliceGuard::new`]);
//! 3. leaving it, it clears `request`, and if the kernel set
//!    `slice_ctrl.granted` meanwhile (it extended the slice), it gives the
//!    CPU back at once with `rseq_slice_yield(2)` ([`SliceGuard`]'s drop).
//!
//! The kernel offers the extension only where it was built with
//! `CONFIG_RSEQ_SLICE_EXTENSION` and not told otherwise on its command line
//! (`rseq_slice_ext=0`), and says at registration, in the area's `flags`
//! (`RSEQ_CS_FLAG_SLICE_EXT_AVAILABLE`), whether it offers it to that
//! registration; kernels that tell classic from extensible registrations
//! offer it only to the extensible ones (longer than 32 bytes, see
//! [`crate::registration_len`]). Everywhere else the guard is a no-op that
//! costs one load, and [`status`] says why.
//!
//! The library writes `slice_ctrl.request` only while the kernel's enabled
//! bit is set in the thread's area; it never writes `granted`, `flags` or
//! any other field the kernel owns.
//!
//! # References
//! `include/uapi/linux/rseq.h` (`struct rseq_slice_ctrl`),
//! `include/uapi/linux/prctl.h` (`PR_RSEQ_SLICE_EXTENSION`),
//! `Documentation/userspace-api/rseq.rst` of Linux 7.0.

use core::fmt;

use crate::abi;
use crate::arch;
use crate::area::{self, Owner};

/// Why the time-slice extension cannot be used on the calling thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
///
/// # Examples
/// ```
/// use restartable::slice::{SliceStatus, SliceUnavailable};
/// match restartable::slice::status() {
///     SliceStatus::Unavailable(SliceUnavailable::KernelTooOld) => println!("needs Linux 7.0"),
///     SliceStatus::Unavailable(why) => println!("no extension: {why}"),
///     status => println!("{status}"),
/// }
/// ```
pub enum SliceUnavailable {
    /// The thread uses no rseq area (rseq unavailable, or the thread is
    /// foreign or refused).
    NoRseq,
    /// The kernel predates the extension: its rseq feature size is below
    /// 33 (Linux < 7.0).
    KernelTooOld,
    /// The area is registered with the classic 32-byte length (glibc
    /// before 2.40 registers so, and so does the library on a thread where
    /// a classic component registered the shared area first): the kernel
    /// offers the extension only to longer registrations.
    ClassicRegistration,
    /// The kernel answered `ENOTSUPP` (524): it was built without
    /// `CONFIG_RSEQ_SLICE_EXTENSION` (no Debian kernel up to 7.3 enables
    /// it), or the extension is off on its command line.
    NotConfigured,
    /// `prctl` failed with another errno.
    Kernel {
        /// The errno.
        errno: i32,
    },
}

impl SliceUnavailable {
    /// The reason's code in the C ABI (`RESTARTABLE_SLICE_*`, negative).
    ///
    /// # Examples
    /// ```
    /// use restartable::slice::SliceUnavailable;
    /// assert_eq!(SliceUnavailable::NoRseq.code(), -1);
    /// assert!(SliceUnavailable::Kernel { errno: 1 }.code() < 0);
    /// ```
    pub fn code(self) -> i32 {
        match self {
            SliceUnavailable::NoRseq => -1,
            SliceUnavailable::KernelTooOld => -2,
            SliceUnavailable::ClassicRegistration => -3,
            SliceUnavailable::NotConfigured => -4,
            SliceUnavailable::Kernel { .. } => -5,
        }
    }
}

impl fmt::Display for SliceUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SliceUnavailable::NoRseq => f.write_str("this thread uses no rseq area"),
            SliceUnavailable::KernelTooOld => f.write_str(
                "the kernel predates the time-slice extension (rseq feature size below 33)",
            ),
            SliceUnavailable::ClassicRegistration => f.write_str(
                "the rseq area is registered with the classic 32-byte length, \
                 which the kernel gives no time-slice extension",
            ),
            SliceUnavailable::NotConfigured => f.write_str(
                "the kernel answers ENOTSUPP: built without CONFIG_RSEQ_SLICE_EXTENSION \
                 or the extension is off on its command line",
            ),
            SliceUnavailable::Kernel { errno } => {
                write!(
                    f,
                    "prctl(PR_RSEQ_SLICE_EXTENSION) failed with errno {errno}"
                )
            }
        }
    }
}

/// The time-slice extension on the calling thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
///
/// # Examples
/// ```
/// use restartable::slice::SliceStatus;
/// let usable = matches!(restartable::slice::status(), SliceStatus::Enabled);
/// println!("slice extension enabled here: {usable}");
/// ```
pub enum SliceStatus {
    /// Enabled: [`SliceGuard`] asks the scheduler for extensions.
    Enabled,
    /// Offered by the kernel to this thread's registration, not enabled
    /// yet (see [`enable`]).
    Available,
    /// Not usable, for the reason given.
    Unavailable(SliceUnavailable),
}

impl fmt::Display for SliceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SliceStatus::Enabled => f.write_str("enabled"),
            SliceStatus::Available => f.write_str("available, not enabled"),
            SliceStatus::Unavailable(why) => write!(f, "unavailable: {why}"),
        }
    }
}

/// The calling thread's area's `flags` word, or `None` when the thread
/// uses no area (registering it lazily first).
fn area_flags() -> Option<u32> {
    crate::current_cpu();
    if !crate::thread_state().uses_rseq() {
        return None;
    }
    // SAFETY: the process-wide offset names the calling thread's live area.
    Some(unsafe { arch::load_u32::<{ abi::FLAGS_OFFSET }>(area::offset()) })
}

/// Whether the calling thread uses no area at all.
fn no_rseq() -> bool {
    area::owner() == Owner::Unavailable || crate::thread_registration_len() == 0
}

/// Whether the thread's area is registered with the classic length.
fn classic() -> bool {
    crate::thread_registration_len() <= abi::MIN_REGISTRATION_LEN
}

fn prctl_slice(op: libc::c_ulong, arg: libc::c_ulong) -> Result<i32, i32> {
    let zero: libc::c_ulong = 0;
    // SAFETY: prctl with integer arguments only; the kernel reads no user
    // memory for this option.
    let ret = unsafe { libc::prctl(abi::PR_RSEQ_SLICE_EXTENSION, op, arg, zero, zero) };
    if ret < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(ret)
    }
}

/// What the kernel's errno means for this thread.
fn reason_of(errno: i32) -> SliceUnavailable {
    let kernel_has_it = area::kernel_feature_size() >= abi::SLICE_CTRL_FEATURE_SIZE;
    match errno {
        // A kernel with the extension refuses a classic registration too.
        abi::ENOTSUPP if kernel_has_it && classic() => SliceUnavailable::ClassicRegistration,
        abi::ENOTSUPP => SliceUnavailable::NotConfigured,
        // Before Linux 7.0 the option is unknown.
        libc::EINVAL if !kernel_has_it => SliceUnavailable::KernelTooOld,
        libc::ENXIO => SliceUnavailable::NoRseq,
        errno => SliceUnavailable::Kernel { errno },
    }
}

/// Whether the time-slice extension is enabled, available or unavailable
/// (and why) on the calling thread; registers the thread lazily first.
///
/// # Examples
/// ```
/// use restartable::slice::{status, SliceStatus};
/// match status() {
///     SliceStatus::Enabled => println!("slice extension on"),
///     SliceStatus::Available => println!("offered; call slice::enable()"),
///     SliceStatus::Unavailable(why) => println!("no slice extension: {why}"),
/// }
/// ```
#[doc(alias = "PR_RSEQ_SLICE_EXTENSION_GET")]
pub fn status() -> SliceStatus {
    let flags = area_flags();
    if let Some(flags) = flags {
        if flags & abi::AREA_FLAG_SLICE_EXT_ENABLED != 0 {
            return SliceStatus::Enabled;
        }
        if flags & abi::AREA_FLAG_SLICE_EXT_AVAILABLE != 0 {
            return SliceStatus::Available;
        }
    }
    if no_rseq() {
        return SliceStatus::Unavailable(SliceUnavailable::NoRseq);
    }
    // The kernel's own word: the flags say nothing where it was built
    // without the extension.
    match prctl_slice(abi::PR_RSEQ_SLICE_EXTENSION_GET, 0) {
        Ok(v) if v as libc::c_ulong & abi::PR_RSEQ_SLICE_EXT_ENABLE != 0 => SliceStatus::Enabled,
        Ok(_) if classic() => SliceStatus::Unavailable(SliceUnavailable::ClassicRegistration),
        Ok(_) => SliceStatus::Available,
        Err(errno) => SliceStatus::Unavailable(reason_of(errno)),
    }
}

/// `prctl(PR_RSEQ_SLICE_EXTENSION, PR_RSEQ_SLICE_EXTENSION_SET,
/// PR_RSEQ_SLICE_EXT_ENABLE, 0, 0)`: enables the time-slice extension for
/// the calling thread, registering it lazily first.
///
/// Per thread: each thread that wants extensions enables them. Enabling
/// twice is fine.
///
/// # Errors
/// The reason the extension cannot be used; nothing changes then, and
/// [`SliceGuard`] stays a no-op.
///
/// # Examples
/// ```
/// match restartable::slice::enable() {
///     Ok(()) => println!("slice extension enabled"),
///     Err(why) => println!("running without it: {why}"),
/// }
/// ```
#[doc(alias = "PR_RSEQ_SLICE_EXTENSION_SET")]
pub fn enable() -> Result<(), SliceUnavailable> {
    if area_flags().is_some_and(|f| f & abi::AREA_FLAG_SLICE_EXT_ENABLED != 0) {
        return Ok(());
    }
    if no_rseq() {
        return Err(SliceUnavailable::NoRseq);
    }
    prctl_slice(
        abi::PR_RSEQ_SLICE_EXTENSION_SET,
        abi::PR_RSEQ_SLICE_EXT_ENABLE,
    )
    .map(drop)
    .map_err(reason_of)
}

/// Asks the scheduler for a short extension of the current time slice
/// while it lives; on drop, gives the CPU back at once if one was granted.
///
/// A no-op (one load) where the extension is not enabled on the thread
/// (see [`status`], [`enable`]). Nested guards leave the request to the
/// outermost one. Keep the region short: the kernel grants some
/// microseconds (`/proc/sys/kernel/rseq_slice_extension_nsec`), and a
/// system call inside the region ends the grant.
///
/// # Examples
/// ```
/// use std::sync::Mutex;
/// let _ = restartable::slice::enable();
/// let lock = Mutex::new(0);
/// {
///     let _slice = restartable::slice::SliceGuard::new();
///     *lock.lock().unwrap() += 1;
/// } // lock released first, then the slice request
/// ```
#[derive(Debug)]
#[must_use = "dropping the guard ends the request at once"]
pub struct SliceGuard {
    /// Whether this guard set `request` (and must clear it).
    requested: bool,
    _not_send: core::marker::PhantomData<*mut ()>,
}

impl SliceGuard {
    /// Sets `slice_ctrl.request` if the extension is enabled on the thread.
    #[inline]
    ///
    /// # Examples
    /// ```
    /// let guard = restartable::slice::SliceGuard::new();
    /// // ... the short critical region ...
    /// drop(guard); // clears the request, yielding if the kernel granted time
    /// ```
    pub fn new() -> Self {
        SliceGuard {
            requested: request(),
            _not_send: core::marker::PhantomData,
        }
    }

    /// Whether this guard asked the scheduler for an extension.
    ///
    /// # Examples
    /// ```
    /// use restartable::slice::{SliceGuard, SliceStatus};
    /// let guard = SliceGuard::new();
    /// if restartable::slice::status() != SliceStatus::Enabled {
    ///     assert!(!guard.requested()); // a no-op where the extension is not enabled
    /// }
    /// ```
    pub fn requested(&self) -> bool {
        self.requested
    }
}

impl Default for SliceGuard {
    fn default() -> Self {
        SliceGuard::new()
    }
}

impl Drop for SliceGuard {
    #[inline]
    fn drop(&mut self) {
        if self.requested {
            release();
        }
    }
}

/// The calling thread's `slice_ctrl` byte at `FIELD`.
#[inline(always)]
fn ctrl_byte<const FIELD: usize>() -> *mut u8 {
    arch::thread_pointer()
        .wrapping_add_signed(area::offset())
        .wrapping_add(FIELD) as *mut u8
}

/// Sets the request if the extension is enabled and no request is pending;
/// true if it did.
#[inline]
fn request() -> bool {
    // SAFETY: the process-wide offset names the calling thread's live area
    // (the inert one, whose flags are 0, where rseq is not used).
    let flags = unsafe { arch::load_u32::<{ abi::FLAGS_OFFSET }>(area::offset()) };
    if flags & abi::AREA_FLAG_SLICE_EXT_ENABLED == 0 {
        return false;
    }
    let request = ctrl_byte::<{ abi::SLICE_REQUEST_OFFSET }>();
    // SAFETY: the enabled bit says the kernel registered this area with a
    // length that covers `slice_ctrl`; `request` is the byte user space
    // owns, and only this thread touches it.
    unsafe {
        if request.read_volatile() != 0 {
            return false; // an outer guard asked already
        }
        request.write_volatile(1);
    }
    true
}

/// Ends a request a [`SliceGuard`] made and forgot (the C ABI's
/// `restartable_slice_end`).
pub(crate) fn end_request() {
    release();
}

/// Clears the request, then yields if the kernel granted an extension.
#[inline]
fn release() {
    let request = ctrl_byte::<{ abi::SLICE_REQUEST_OFFSET }>();
    let granted = ctrl_byte::<{ abi::SLICE_GRANTED_OFFSET }>();
    // SAFETY: as in `request`, which set the byte on this thread; `granted`
    // is only read.
    let was_granted = unsafe {
        request.write_volatile(0);
        granted.read_volatile() != 0
    };
    if was_granted {
        // The grant ends with any system call; this one also gives the CPU
        // to whoever the kernel held back.
        // SAFETY: takes no arguments and touches no user memory.
        unsafe { libc::syscall(arch::SYS_RSEQ_SLICE_YIELD) };
    }
}
