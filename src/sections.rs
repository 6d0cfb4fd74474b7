//! Whether the calling thread runs critical sections, and if not, why: the
//! answer a "register, then run sections" caller needs.

use core::fmt;

use crate::area::{self, Owner};
use crate::error::Error;
use crate::registration::{self, ThreadState};

/// What serves the calling thread's critical sections: the kernel
/// ([`Sections::Run`]) or the fallbacks, and why.
///
/// Every API stays exact on the fallbacks; this says which path a thread
/// is on, for callers that need rseq itself (their own sections written
/// with [`rseq_asm!`](crate::rseq_asm) or the C macros, which never commit
/// on a thread that does not run sections) or want to log it.
///
/// The C form returns the discriminant (`RESTARTABLE_SECTIONS_*`) from
/// `restartable_sections()` and `restartable_register_sections()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
#[non_exhaustive]
#[doc(alias = "restartable_sections")]
///
/// # Examples
/// ```
/// use restartable::{sections, Sections};
/// let now = sections();
/// assert_eq!(now.run(), restartable::is_available());
/// if now != Sections::Run {
///     println!("this thread uses the fallbacks: {now}");
/// }
/// ```
pub enum Sections {
    /// The thread's area is registered: critical sections run, on glibc's
    /// area or the library's.
    Run = 0,
    /// Another component registered a different rseq area for this thread
    /// ([`ThreadState::Foreign`]); retried now and then.
    Foreign = 1,
    /// The kernel refused `rseq(2)` to this thread alone (a seccomp filter
    /// installed on it, [`ThreadState::Refused`]).
    Refused = 2,
    /// `RESTARTABLE_DISABLE` is set: the process uses the fallbacks.
    Disabled = 3,
    /// The kernel refused rseq to the process: no support (`ENOSYS`: an
    /// old kernel, valgrind, qemu-user, gVisor, a seccomp filter) or, in
    /// the shared `__rseq_abi`, another component's signature.
    Unavailable = 4,
    /// The library has no rseq code for this architecture.
    Unsupported = 5,
    /// Not decided now: the call ran while the owner was being decided
    /// (from code that runs before the library's constructor, inside that
    /// decision) or from a signal handler that interrupted a registration
    /// change on this thread. A later call decides.
    NotYet = 6,
}

impl Sections {
    /// Whether critical sections run on the thread.
    ///
    /// # Examples
    /// ```
    /// use restartable::Sections;
    /// assert!(Sections::Run.run());
    /// assert!(!Sections::Foreign.run());
    /// ```
    pub fn run(self) -> bool {
        self == Sections::Run
    }
}

impl fmt::Display for Sections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Sections::Run => "critical sections run (the thread's rseq area is registered)",
            Sections::Foreign => {
                "another library registered a different rseq area for this thread; \
                 using the fallbacks"
            }
            Sections::Refused => {
                "the kernel refused rseq to this thread (a seccomp filter); using the fallbacks"
            }
            Sections::Disabled => "RESTARTABLE_DISABLE is set; using the fallbacks",
            Sections::Unavailable => {
                "the kernel refused rseq to the process (no support, a seccomp filter, \
                 or another signature on __rseq_abi); using the fallbacks"
            }
            Sections::Unsupported => "no rseq code for this architecture; using the fallbacks",
            Sections::NotYet => {
                "not decided yet (called during the library's start-up or from a signal \
                 handler inside a registration); using the fallbacks for now"
            }
        })
    }
}

/// Whether the calling thread runs critical sections now, and if not,
/// why. Registers lazily where that helps, as every API does; takes no
/// hold of its own.
///
/// # Examples
/// ```
/// use restartable::{sections, Owner, Sections};
/// match sections() {
///     Sections::Run => assert!(restartable::is_available()),
///     why => println!("fallbacks: {why}"),
/// }
/// if restartable::owner() == Owner::Unavailable {
///     assert!(!sections().run());
/// }
/// ```
pub fn sections() -> Sections {
    if crate::is_available() {
        return Sections::Run;
    }
    match area::owner() {
        Owner::Unavailable => {
            if area::env_disabled() {
                Sections::Disabled
            } else if !crate::arch::AVAILABLE {
                Sections::Unsupported
            } else {
                Sections::Unavailable
            }
        }
        Owner::Libc | Owner::Library => match registration::thread_state() {
            ThreadState::Foreign => Sections::Foreign,
            ThreadState::Refused => Sections::Refused,
            _ => Sections::NotYet,
        },
    }
}

/// [`register_current_thread`](crate::register_current_thread), then
/// [`sections`]: takes one hold on the thread's registration (release it
/// with [`unregister_current_thread`](crate::unregister_current_thread))
/// and says whether sections now run on the thread. The hold is taken
/// whatever the answer, so the calls stay balanced.
///
/// # Errors
/// As [`register_current_thread`](crate::register_current_thread); no
/// hold is taken then.
///
/// # Examples
/// ```
/// let runs = restartable::register_for_sections().unwrap();
/// println!("this thread: {runs}");
/// restartable::unregister_current_thread().unwrap();
/// ```
#[doc(alias = "rseq_register_current_thread")]
pub fn register_for_sections() -> Result<Sections, Error> {
    crate::register_current_thread()?;
    Ok(sections())
}
