//! The crate's one error type.

use core::fmt;

/// What went wrong, in words a user can act on.
///
/// # Examples
/// ```
/// use restartable::{unregister_current_thread, Error};
/// // Nothing registered on this thread by the caller: the call is refused
/// // and changes nothing.
/// assert_eq!(unregister_current_thread(), Err(Error::NotRegistered));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Error {
    /// `unregister` without a matching `register` on this thread.
    NotRegistered,
    /// The per-thread hold count would overflow `u32`.
    TooManyHolds,
    /// rseq cannot be used in this process: no kernel support, a seccomp
    /// filter, an architecture without rseq code, or `RESTARTABLE_DISABLE`.
    Unavailable,
    /// Another component registered a different rseq area for this thread.
    ForeignArea,
    /// Called from a signal handler that interrupted a registration change
    /// on the same thread; nothing was changed, and the fallbacks serve the
    /// handler.
    Busy,
    /// `rseq(2)` failed with an errno this library does not expect.
    Kernel {
        /// The positive errno.
        errno: i32,
    },
}

impl Error {
    /// The negative errno the C ABI returns for this error.
    ///
    /// # Examples
    /// ```
    /// // A release without a hold is refused, and says so to C as -EINVAL.
    /// std::thread::spawn(|| {
    ///     let err = restartable::unregister_current_thread().unwrap_err();
    ///     assert_eq!(err.to_errno(), -libc::EINVAL);
    /// })
    /// .join()
    /// .unwrap();
    /// ```
    pub fn to_errno(self) -> i32 {
        -match self {
            Error::NotRegistered => libc::EINVAL,
            Error::TooManyHolds => libc::EOVERFLOW,
            Error::Unavailable => libc::ENOSYS,
            Error::ForeignArea => libc::EBUSY,
            Error::Busy => libc::EAGAIN,
            Error::Kernel { errno } => errno,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotRegistered => f.write_str(
                "unbalanced unregister: this thread holds no registration from this caller; \
                 nothing was changed (pair every register with one unregister, or use the guard)",
            ),
            Error::TooManyHolds => f.write_str(
                "too many registrations held on this thread (u32 overflow); \
                 release some before registering again",
            ),
            Error::Unavailable => f.write_str(
                "rseq is unavailable in this process (no kernel support, a seccomp filter, \
                 or RESTARTABLE_DISABLE); falling back to sched_getcpu and atomics",
            ),
            Error::ForeignArea => f.write_str(
                "another library registered a different rseq area for this thread; \
                 falling back to sched_getcpu and atomics (let glibc own rseq, or make \
                 that library use __rseq_abi)",
            ),
            Error::Busy => f.write_str(
                "a registration change is in progress on this thread (this call comes from a \
                 signal handler that interrupted it); nothing was changed, and the fallbacks \
                 serve the call: register outside the handler",
            ),
            Error::Kernel { errno } => write!(
                f,
                "rseq(2) failed with errno {errno} ({}); falling back to sched_getcpu",
                std::io::Error::from_raw_os_error(*errno)
            ),
        }
    }
}

impl std::error::Error for Error {}
