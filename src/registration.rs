//! Registering the calling thread's area: refcounted, shared, signal-safe.
//!
//! In `Library` mode the thread's registration of `__rseq_abi` is shared by
//! every holder: callers of [`register_current_thread`], the lazy hold taken
//! on first use, other copies of this library, and other components that
//! follow the `__rseq_refcount` convention. The weak TLS `__rseq_refcount`
//! counts the holds; the first hold makes the system call, the last release
//! unregisters. If another component registered the area without counting
//! (`rseq(2)` answers `EBUSY`), its registration is counted as one hold that
//! is never released, so this library never unregisters it.
//!
//! Each copy of the library also keeps a private [`ThreadRecord`]: how many
//! holds its callers own (so an unbalanced unregister is refused) and whether
//! it holds the lazy registration, released at thread exit by a
//! `pthread_key_t` destructor.
//!
//! In `Library` mode all signals are blocked while the refcount and the
//! system call change, so a signal handler that reads the CPU (and
//! registers lazily) never sees a half-updated count. In `Libc` and
//! `Unavailable` modes registering changes nothing but this copy's own
//! tally of caller holds, so it makes no system call at all: not `rseq(2)`,
//! and no signal-mask change either.

use core::fmt;

use crate::abi::{self, MIN_REGISTRATION_LEN};
use crate::arch;
use crate::area::{self, Owner};
use crate::error::Error;
use crate::sync::{Ordering, StaticAtomicU64 as AtomicU64};

/// What the calling thread's registration is, as this library sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ThreadState {
    /// No area is registered for this thread (yet), or rseq is unavailable.
    Unregistered = 0,
    /// This library registered `__rseq_abi` for the thread (possibly through
    /// another copy of it); the last release unregisters it.
    Registered = 1,
    /// Another registrant of the same area owns the registration: glibc in
    /// `Libc` mode, or a component that registered `__rseq_abi` without the
    /// refcount. It is used, never unregistered.
    Borrowed = 2,
    /// Another component registered a *different* area for this thread; the
    /// kernel allows one, so this thread uses the fallbacks.
    Foreign = 3,
}

impl ThreadState {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => ThreadState::Registered,
            2 => ThreadState::Borrowed,
            3 => ThreadState::Foreign,
            _ => ThreadState::Unregistered,
        }
    }

    /// Whether the thread's area is registered with the kernel, so that the
    /// fast paths (not the fallbacks) serve it.
    pub fn uses_rseq(self) -> bool {
        matches!(self, ThreadState::Registered | ThreadState::Borrowed)
    }
}

impl fmt::Display for ThreadState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ThreadState::Unregistered => "not registered",
            ThreadState::Registered => "registered by restartable",
            ThreadState::Borrowed => "borrowed from another registrant of the same area",
            ThreadState::Foreign => {
                "another library registered a different rseq area for this thread; \
                 using sched_getcpu and atomics"
            }
        })
    }
}

/// This copy's private per-thread record, in static TLS beside the area.
///
/// Written only by the owning thread; in `Library` mode with all signals
/// blocked. In the other modes only `caller_holds` changes, by one per call,
/// and a signal handler that registers and unregisters in balance leaves it
/// as it found it. Read by the owning thread (a signal handler that
/// interrupts a read finishes its own update before the read resumes).
#[derive(Debug)]
#[repr(C, align(8))]
pub struct ThreadRecord {
    /// Holds taken by explicit `register` calls through this copy.
    caller_holds: u32,
    /// A `ThreadState` as `u8`.
    state: u8,
    /// 1 while this copy holds the lazy registration.
    lazy: u8,
    /// 1 once the thread-exit destructor is armed.
    exit_armed: u8,
    _pad: u8,
}

impl ThreadRecord {
    /// The all-zero record every thread starts with (it lives in `.tbss`).
    #[allow(dead_code)] // used by the backends that keep it in Rust TLS, and models
    pub const NEW: ThreadRecord = ThreadRecord {
        caller_holds: 0,
        state: 0,
        lazy: 0,
        exit_armed: 0,
        _pad: 0,
    };

    /// Holds taken by explicit `register` calls.
    pub fn caller_holds(&self) -> u32 {
        self.caller_holds
    }

    /// The thread's state as recorded.
    pub fn state(&self) -> ThreadState {
        ThreadState::from_u8(self.state)
    }

    /// Whether the lazy hold is taken.
    pub fn holds_lazily(&self) -> bool {
        self.lazy == 1
    }
}

/// Process-wide counters, for diagnostics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Successful `rseq(2)` registrations made by this library.
    pub registrations: u64,
    /// `rseq(2)` unregistrations made by this library.
    pub unregistrations: u64,
    /// Registrations found made by another component (`EBUSY`).
    pub borrowed: u64,
    /// Threads found with a foreign area (`EINVAL`).
    pub foreign: u64,
    /// Lazy holds released by the thread-exit destructor.
    pub exit_releases: u64,
}

static REGISTRATIONS: AtomicU64 = AtomicU64::new(0);
static UNREGISTRATIONS: AtomicU64 = AtomicU64::new(0);
static BORROWED: AtomicU64 = AtomicU64::new(0);
static FOREIGN: AtomicU64 = AtomicU64::new(0);
static EXIT_RELEASES: AtomicU64 = AtomicU64::new(0);

/// Reads the process-wide registration counters (each `Relaxed`: they are
/// independent tallies, not a consistent snapshot).
///
/// # Examples
/// ```
/// let before = restartable::stats();
/// std::thread::spawn(|| restartable::current_cpu()).join().unwrap();
/// let after = restartable::stats();
/// assert!(after.registrations >= before.registrations);
/// ```
pub fn stats() -> Stats {
    Stats {
        registrations: REGISTRATIONS.load(Ordering::Relaxed),
        unregistrations: UNREGISTRATIONS.load(Ordering::Relaxed),
        borrowed: BORROWED.load(Ordering::Relaxed),
        foreign: FOREIGN.load(Ordering::Relaxed),
        exit_releases: EXIT_RELEASES.load(Ordering::Relaxed),
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Runs `f` with every signal blocked, restoring the mask afterwards; `f`
/// gets this thread's record and `__rseq_refcount`.
fn with_signals_blocked<R>(f: impl FnOnce(&mut ThreadRecord, &mut u32) -> R) -> R {
    let mut all = core::mem::MaybeUninit::<libc::sigset_t>::uninit();
    let mut old = core::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigfillset initialises `all`; pthread_sigmask reads `all` and
    // writes `old`, both valid; it cannot fail with these arguments.
    unsafe {
        libc::sigfillset(all.as_mut_ptr());
        libc::pthread_sigmask(libc::SIG_SETMASK, all.as_ptr(), old.as_mut_ptr());
    }
    // SAFETY: the record and the refcount are this thread's, in its static
    // TLS; with signals blocked nothing else on this thread can touch them
    // while `f` runs, and no other thread ever does (see `ThreadRecord`;
    // other components sharing `__rseq_refcount` change it only on their
    // own thread, with signals blocked too).
    let result = unsafe { f(&mut *arch::own_thread_state(), &mut *arch::own_refcount()) };
    // SAFETY: `old` was initialised by the call above.
    unsafe {
        libc::pthread_sigmask(libc::SIG_SETMASK, old.as_ptr(), core::ptr::null_mut());
    }
    result
}

/// Runs `f` on this thread's record and `__rseq_refcount`: with every
/// signal blocked in `Library` mode, where the refcount and the kernel's
/// registration change; as it is in the other modes, where `f` makes no
/// system call and only moves this copy's tally of caller holds.
fn with_thread_state<R>(f: impl FnOnce(&mut ThreadRecord, &mut u32) -> R) -> R {
    if area::owner() == Owner::Library {
        return with_signals_blocked(f);
    }
    // SAFETY: this thread's record and refcount, in its static TLS, touched
    // by no other thread (see `ThreadRecord` for signal handlers).
    unsafe { f(&mut *arch::own_thread_state(), &mut *arch::own_refcount()) }
}

/// Who is taking or releasing a hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// An explicit `register` / `unregister` call.
    Caller,
    /// The library itself, on first use; released at thread exit.
    Lazy,
}

/// A tally the state machine reports (see [`Stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// `rseq(2)` registered the area.
    Registered,
    /// `rseq(2)` unregistered the area.
    Unregistered,
    /// The area was found registered by a component that did not count.
    Borrowed,
    /// A different area was found registered.
    Foreign,
}

/// What the registration state machine ([`acquire`], [`release`]) needs
/// from the world: the real one is the process and the kernel; a model
/// answers with simulated results.
pub trait Kernel {
    /// Who owns the areas of the process.
    fn owner(&self) -> Owner;
    /// `rseq(own area, 32, flags, SIG)` for the calling thread: 0 or a
    /// negated errno.
    fn rseq(&mut self, flags: u32) -> i32;
    /// The kernel refused rseq: the process becomes `Unavailable`.
    fn set_unavailable(&mut self);
    /// Counts an event.
    fn note(&mut self, event: Event);
    /// Arms the thread-exit release of the lazy hold; false if it could
    /// not be armed.
    fn arm_exit_release(&mut self) -> bool;
}

/// Takes one hold on the calling thread's registration.
///
/// `record` is this copy's record of the thread, `refcount` the thread's
/// shared `__rseq_refcount`; the caller keeps both from changing under it
/// (real code: signals blocked). Nothing changes on error.
pub fn acquire<K: Kernel + ?Sized>(
    kernel: &mut K,
    record: &mut ThreadRecord,
    refcount: &mut u32,
    holder: Holder,
) -> Result<ThreadState, Error> {
    if holder == Holder::Lazy && record.lazy == 1 {
        return Ok(ThreadState::from_u8(record.state));
    }
    if holder == Holder::Caller && record.caller_holds == u32::MAX {
        return Err(Error::TooManyHolds);
    }
    let state = match kernel.owner() {
        Owner::Libc => ThreadState::Borrowed,
        Owner::Unavailable => ThreadState::Unregistered,
        Owner::Library => library_acquire(kernel, record, refcount)?,
    };
    record.state = state as u8;
    match holder {
        Holder::Caller => record.caller_holds += 1,
        Holder::Lazy => {
            record.lazy = 1;
            if record.exit_armed == 0 && kernel.arm_exit_release() {
                record.exit_armed = 1;
            }
        }
    }
    Ok(state)
}

fn library_acquire<K: Kernel + ?Sized>(
    kernel: &mut K,
    record: &ThreadRecord,
    refcount: &mut u32,
) -> Result<ThreadState, Error> {
    let current = ThreadState::from_u8(record.state);
    if current == ThreadState::Foreign {
        return Ok(current);
    }
    if *refcount > 0 {
        *refcount = refcount.checked_add(1).ok_or(Error::TooManyHolds)?;
        return Ok(match current {
            ThreadState::Unregistered => ThreadState::Registered,
            other => other,
        });
    }
    let (state, holds) = match -kernel.rseq(0) {
        0 => {
            kernel.note(Event::Registered);
            (ThreadState::Registered, 1)
        }
        // The very same area, length and signature are registered by a
        // component that did not count: its hold is the bottom one and is
        // never released.
        libc::EBUSY => {
            kernel.note(Event::Borrowed);
            (ThreadState::Borrowed, 2)
        }
        // A different area is registered for this thread.
        libc::EINVAL => {
            kernel.note(Event::Foreign);
            (ThreadState::Foreign, 0)
        }
        // No kernel support, or a filter refuses the call.
        libc::ENOSYS | libc::EPERM => {
            kernel.set_unavailable();
            (ThreadState::Unregistered, 0)
        }
        errno => return Err(Error::Kernel { errno }),
    };
    *refcount = holds;
    Ok(state)
}

/// Releases one hold; the last one unregisters what this library
/// registered. An unbalanced caller release is refused and changes nothing.
pub fn release<K: Kernel + ?Sized>(
    kernel: &mut K,
    record: &mut ThreadRecord,
    refcount: &mut u32,
    holder: Holder,
) -> Result<ThreadState, Error> {
    match holder {
        Holder::Caller if record.caller_holds == 0 => return Err(Error::NotRegistered),
        Holder::Caller => record.caller_holds -= 1,
        Holder::Lazy if record.lazy == 0 => return Ok(ThreadState::from_u8(record.state)),
        Holder::Lazy => record.lazy = 0,
    }
    let state = ThreadState::from_u8(record.state);
    if kernel.owner() != Owner::Library || !state.uses_rseq() {
        return Ok(state);
    }
    *refcount = refcount.saturating_sub(1);
    if *refcount > 0 {
        return Ok(state);
    }
    if kernel.rseq(abi::FLAG_UNREGISTER) == 0 {
        kernel.note(Event::Unregistered);
    }
    record.state = ThreadState::Unregistered as u8;
    Ok(ThreadState::Unregistered)
}

/// The real world: this process, this thread, the kernel.
struct Process;

impl Kernel for Process {
    fn owner(&self) -> Owner {
        area::owner()
    }

    fn rseq(&mut self, flags: u32) -> i32 {
        // SAFETY: this thread's static-TLS `__rseq_abi`: 32 bytes, aligned
        // to 32, alive until the thread exits (when the kernel drops the
        // registration); unregistering passes the same arguments.
        unsafe { arch::sys_rseq(arch::own_area(), MIN_REGISTRATION_LEN, flags, arch::SIG) }
    }

    fn set_unavailable(&mut self) {
        area::set_unavailable();
    }

    fn note(&mut self, event: Event) {
        bump(match event {
            Event::Registered => &REGISTRATIONS,
            Event::Unregistered => &UNREGISTRATIONS,
            Event::Borrowed => &BORROWED,
            Event::Foreign => &FOREIGN,
        });
    }

    fn arm_exit_release(&mut self) -> bool {
        arm_exit_release()
    }
}

/// Registers the calling thread's area, or counts one more hold on it.
///
/// `Libc` and `Unavailable` modes make no system call at all (not even a
/// signal-mask change): the hold is counted so that
/// [`unregister_current_thread`] stays balanced. In `Library` mode
/// the first hold registers `__rseq_abi`; see the module docs for `EBUSY`
/// (borrowed) and `EINVAL` (foreign). Returns the thread's state afterwards;
/// a foreign or unavailable thread is counted too and served by fallbacks.
///
/// # Errors
/// [`Error::TooManyHolds`] on overflow, [`Error::Kernel`] for an errno the
/// kernel documents for none of the cases above. Nothing changes on error.
///
/// # Examples
/// ```
/// let state = restartable::register_current_thread().unwrap();
/// println!("this thread: {state}");
/// restartable::unregister_current_thread().unwrap();
/// ```
#[doc(alias = "rseq_register_current_thread")]
pub fn register_current_thread() -> Result<ThreadState, Error> {
    area::init();
    with_thread_state(|record, count| acquire(&mut Process, record, count, Holder::Caller))
}

/// Releases one hold taken by [`register_current_thread`]; the last hold in
/// the thread unregisters the area if this library registered it.
///
/// # Errors
/// [`Error::NotRegistered`] when the caller holds nothing on this thread
/// (an unbalanced unregister); nothing changes.
///
/// # Examples
/// ```
/// use restartable::{register_current_thread, unregister_current_thread, Error};
/// register_current_thread().unwrap();
/// unregister_current_thread().unwrap();
/// assert_eq!(unregister_current_thread(), Err(Error::NotRegistered));
/// ```
#[doc(alias = "rseq_unregister_current_thread")]
pub fn unregister_current_thread() -> Result<ThreadState, Error> {
    area::init();
    with_thread_state(|record, count| release(&mut Process, record, count, Holder::Caller))
}

/// The calling thread's registration state, without registering.
///
/// # Examples
/// ```
/// use restartable::{owner, thread_state, Owner, ThreadState};
/// restartable::current_cpu(); // registers lazily where rseq is usable
/// if owner() == Owner::Libc {
///     assert_eq!(thread_state(), ThreadState::Borrowed);
/// }
/// ```
pub fn thread_state() -> ThreadState {
    if area::owner() == Owner::Libc {
        return ThreadState::Borrowed;
    }
    // SAFETY: this thread's record; a plain read (see `ThreadRecord`).
    unsafe { (*arch::own_thread_state()).state() }
}

/// The number of holds callers own on this thread through this copy of the
/// library (the lazy hold is not counted).
pub fn caller_holds() -> u32 {
    // SAFETY: this thread's record; a plain read (see `ThreadRecord`).
    unsafe { (*arch::own_thread_state()).caller_holds() }
}

/// The calling thread's `__rseq_refcount`: holds of every component sharing
/// `__rseq_abi` (0 in `Libc` and `Unavailable` modes).
pub fn refcount_of_current_thread() -> u32 {
    // SAFETY: this thread's refcount; a plain read.
    unsafe { *arch::own_refcount() }
}

/// Takes the library's own hold, the one made on first use. Idempotent.
pub(crate) fn register_lazily() {
    // Errors leave the thread unregistered; the readers then fall back.
    let _ =
        with_signals_blocked(|record, count| acquire(&mut Process, record, count, Holder::Lazy));
}

/// The cold path of every reader: registers lazily if that can help, and
/// says whether the area now serves the thread.
#[cold]
#[inline(never)]
pub(crate) fn ensure_registered() -> bool {
    if area::owner() != Owner::Library {
        return false;
    }
    // SAFETY: this thread's record; a plain read (see `ThreadRecord`).
    let (lazy, state) = unsafe {
        let record = &*arch::own_thread_state();
        (record.holds_lazily(), record.state())
    };
    if state == ThreadState::Foreign {
        return false;
    }
    if !lazy {
        register_lazily();
    }
    // SAFETY: the process-wide offset names this thread's live area.
    let cpu = unsafe { arch::load_u32::<{ abi::CPU_ID_OFFSET }>(area::offset()) } as i32;
    cpu >= 0
}

/// Arms the `pthread_key_t` destructor that releases the lazy hold when
/// the thread exits.
fn arm_exit_release() -> bool {
    static KEY: once_cell::sync::OnceCell<Option<libc::pthread_key_t>> =
        once_cell::sync::OnceCell::new();
    let key = KEY.get_or_init(|| {
        let mut key: libc::pthread_key_t = 0;
        // SAFETY: `key` is valid for writing; `release_at_exit` has the
        // destructor's signature.
        let ret = unsafe { libc::pthread_key_create(&mut key, Some(release_at_exit)) };
        (ret == 0).then_some(key)
    });
    // Any non-null value makes the destructor run at thread exit.
    // SAFETY: `key` was created above.
    key.is_some_and(
        |key| unsafe { libc::pthread_setspecific(key, core::ptr::dangling::<libc::c_void>()) } == 0,
    )
}

unsafe extern "C" fn release_at_exit(_value: *mut libc::c_void) {
    let released = with_signals_blocked(|record, count| {
        record.exit_armed = 0;
        let held = record.lazy == 1;
        let _ = release(&mut Process, record, count, Holder::Lazy);
        held
    });
    if released {
        bump(&EXIT_RELEASES);
    }
}

/// Holds a registration of the calling thread for as long as it lives.
///
/// `!Send`: a registration belongs to one thread.
///
/// # Examples
/// ```
/// let guard = restartable::RegistrationGuard::new().unwrap();
/// println!("{}", guard.state());
/// drop(guard); // unregisters if this was the last hold
/// ```
#[derive(Debug)]
#[must_use = "dropping the guard releases the registration at once"]
pub struct RegistrationGuard {
    state: ThreadState,
    _not_send: core::marker::PhantomData<*mut ()>,
}

impl RegistrationGuard {
    /// Registers the calling thread (see [`register_current_thread`]).
    ///
    /// # Errors
    /// As [`register_current_thread`].
    pub fn new() -> Result<Self, Error> {
        let state = register_current_thread()?;
        Ok(RegistrationGuard {
            state,
            _not_send: core::marker::PhantomData,
        })
    }

    /// The thread's state when the guard was taken.
    pub fn state(&self) -> ThreadState {
        self.state
    }
}

impl Drop for RegistrationGuard {
    fn drop(&mut self) {
        // The guard owns exactly one caller hold, so this cannot be
        // unbalanced unless user code unregistered the guard's hold itself.
        let _ = unregister_current_thread();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Which area the simulated kernel has registered for the thread.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Area {
        Ours,
        Other,
    }

    /// A kernel that answers like `rseq(2)` for one thread.
    struct Sim {
        owner: Owner,
        registered: Option<Area>,
        /// An errno every call fails with (ENOSYS, EPERM, ...).
        forced: Option<i32>,
        events: Vec<Event>,
        syscalls: u32,
    }

    impl Sim {
        fn new(owner: Owner, registered: Option<Area>) -> Self {
            Sim {
                owner,
                registered,
                forced: None,
                events: Vec::new(),
                syscalls: 0,
            }
        }
    }

    impl Kernel for Sim {
        fn owner(&self) -> Owner {
            self.owner
        }
        fn rseq(&mut self, flags: u32) -> i32 {
            self.syscalls += 1;
            if let Some(errno) = self.forced {
                return -errno;
            }
            match (flags, self.registered) {
                (0, None) => {
                    self.registered = Some(Area::Ours);
                    0
                }
                (0, Some(Area::Ours)) => -libc::EBUSY,
                (0, Some(Area::Other)) => -libc::EINVAL,
                (abi::FLAG_UNREGISTER, Some(Area::Ours)) => {
                    self.registered = None;
                    0
                }
                _ => -libc::EINVAL,
            }
        }
        fn set_unavailable(&mut self) {
            self.owner = Owner::Unavailable;
        }
        fn note(&mut self, event: Event) {
            self.events.push(event);
        }
        fn arm_exit_release(&mut self) -> bool {
            true
        }
    }

    use Holder::{Caller, Lazy};

    #[test]
    fn last_release_unregisters() {
        let mut k = Sim::new(Owner::Library, None);
        let (mut r, mut count) = (ThreadRecord::NEW, 0);
        assert_eq!(
            acquire(&mut k, &mut r, &mut count, Caller),
            Ok(ThreadState::Registered)
        );
        assert_eq!((count, k.registered), (1, Some(Area::Ours)));
        assert_eq!(
            acquire(&mut k, &mut r, &mut count, Lazy),
            Ok(ThreadState::Registered)
        );
        assert_eq!(
            acquire(&mut k, &mut r, &mut count, Lazy),
            Ok(ThreadState::Registered)
        );
        assert_eq!((count, r.caller_holds(), r.holds_lazily()), (2, 1, true));
        assert_eq!(
            release(&mut k, &mut r, &mut count, Caller),
            Ok(ThreadState::Registered)
        );
        assert_eq!((count, k.registered), (1, Some(Area::Ours)));
        assert_eq!(
            release(&mut k, &mut r, &mut count, Lazy),
            Ok(ThreadState::Unregistered)
        );
        assert_eq!((count, k.registered), (0, None));
        assert_eq!(k.events, [Event::Registered, Event::Unregistered]);
        assert_eq!(k.syscalls, 2);
    }

    #[test]
    fn ebusy_borrows_and_never_unregisters() {
        let mut k = Sim::new(Owner::Library, Some(Area::Ours));
        let (mut r, mut count) = (ThreadRecord::NEW, 0);
        for n in 1..=3 {
            assert_eq!(
                acquire(&mut k, &mut r, &mut count, Caller),
                Ok(ThreadState::Borrowed)
            );
            assert_eq!(count, n + 1);
        }
        for n in (0..3).rev() {
            assert_eq!(
                release(&mut k, &mut r, &mut count, Caller),
                Ok(ThreadState::Borrowed)
            );
            assert_eq!(count, n + 1);
        }
        assert_eq!(k.registered, Some(Area::Ours));
        assert_eq!(k.events, [Event::Borrowed]);
        assert_eq!(k.syscalls, 1);
    }

    #[test]
    fn einval_is_foreign_and_never_counts() {
        let mut k = Sim::new(Owner::Library, Some(Area::Other));
        let (mut r, mut count) = (ThreadRecord::NEW, 0);
        assert_eq!(
            acquire(&mut k, &mut r, &mut count, Lazy),
            Ok(ThreadState::Foreign)
        );
        assert_eq!(
            acquire(&mut k, &mut r, &mut count, Caller),
            Ok(ThreadState::Foreign)
        );
        assert_eq!((count, k.syscalls), (0, 1));
        assert_eq!(
            release(&mut k, &mut r, &mut count, Caller),
            Ok(ThreadState::Foreign)
        );
        assert_eq!(
            release(&mut k, &mut r, &mut count, Lazy),
            Ok(ThreadState::Foreign)
        );
        assert_eq!((count, k.syscalls, k.registered), (0, 1, Some(Area::Other)));
        assert_eq!(k.events, [Event::Foreign]);
    }

    #[test]
    fn enosys_and_eperm_make_the_process_unavailable() {
        for errno in [libc::ENOSYS, libc::EPERM] {
            let mut k = Sim::new(Owner::Library, None);
            k.forced = Some(errno);
            let (mut r, mut count) = (ThreadRecord::NEW, 0);
            let state = acquire(&mut k, &mut r, &mut count, Caller);
            assert_eq!(state, Ok(ThreadState::Unregistered));
            assert_eq!(
                (k.owner, count, r.caller_holds()),
                (Owner::Unavailable, 0, 1)
            );
            assert_eq!(acquire(&mut k, &mut r, &mut count, Caller), state);
            assert_eq!(release(&mut k, &mut r, &mut count, Caller), state);
            assert_eq!(release(&mut k, &mut r, &mut count, Caller), state);
            assert_eq!(k.syscalls, 1);
        }
    }

    #[test]
    fn unexpected_errno_changes_nothing() {
        let mut k = Sim::new(Owner::Library, None);
        k.forced = Some(libc::EFAULT);
        let (mut r, mut count) = (ThreadRecord::NEW, 0);
        let err = Err(Error::Kernel {
            errno: libc::EFAULT,
        });
        assert_eq!(acquire(&mut k, &mut r, &mut count, Caller), err);
        assert_eq!(
            (count, r.caller_holds(), r.state()),
            (0, 0, ThreadState::Unregistered)
        );
    }

    #[test]
    fn unbalanced_release_changes_nothing() {
        for owner in [Owner::Libc, Owner::Library, Owner::Unavailable] {
            let mut k = Sim::new(owner, None);
            let (mut r, mut count) = (ThreadRecord::NEW, 0);
            let none = Err(Error::NotRegistered);
            assert_eq!(release(&mut k, &mut r, &mut count, Caller), none);
            acquire(&mut k, &mut r, &mut count, Lazy).unwrap();
            let before = (count, r.caller_holds(), r.state(), k.registered);
            assert_eq!(release(&mut k, &mut r, &mut count, Caller), none);
            assert_eq!(before, (count, r.caller_holds(), r.state(), k.registered));
        }
    }

    #[test]
    fn libc_mode_makes_no_syscall() {
        let mut k = Sim::new(Owner::Libc, Some(Area::Ours));
        let (mut r, mut count) = (ThreadRecord::NEW, 0);
        assert_eq!(
            acquire(&mut k, &mut r, &mut count, Caller),
            Ok(ThreadState::Borrowed)
        );
        assert_eq!(
            release(&mut k, &mut r, &mut count, Caller),
            Ok(ThreadState::Borrowed)
        );
        assert_eq!((count, k.syscalls), (0, 0));
    }

    #[test]
    fn two_copies_share_one_registration() {
        let mut k = Sim::new(Owner::Library, None);
        let (mut a, mut b, mut count) = (ThreadRecord::NEW, ThreadRecord::NEW, 0);
        acquire(&mut k, &mut a, &mut count, Caller).unwrap();
        assert_eq!(
            acquire(&mut k, &mut b, &mut count, Lazy),
            Ok(ThreadState::Registered)
        );
        assert_eq!((count, k.syscalls), (2, 1));
        // Copy `b` cannot release `a`'s caller hold.
        assert_eq!(
            release(&mut k, &mut b, &mut count, Caller),
            Err(Error::NotRegistered)
        );
        release(&mut k, &mut a, &mut count, Caller).unwrap();
        assert_eq!(k.registered, Some(Area::Ours));
        release(&mut k, &mut b, &mut count, Lazy).unwrap();
        assert_eq!((count, k.registered), (0, None));
    }
}
