//! Registering the calling thread's area: refcounted, shared, signal-safe.
//!
//! In `Library` mode the thread's registration of the shared `__rseq_abi`
//! is shared by every holder: callers of [`register_current_thread`], the
//! lazy hold taken on first use, other copies of this library, and other
//! components that follow the `__rseq_refcount` convention. The shared TLS
//! `__rseq_refcount` counts the holds; a hold finds the area registered
//! (and only counts) or registers it; the last release unregisters it.
//!
//! The kernel, not the count, says whether the area is registered: a
//! registered area reads `cpu_id >= 0`. So a registration that vanished
//! under the holders (a classic registrant unregistered the area it had
//! registered, or the private area that made this thread
//! [`ThreadState::Foreign`] was unregistered) is made again on the next
//! use, with the count as it was. When the area was found registered by a
//! component that does not count (`rseq(2)` answers `EBUSY` for the very
//! same area, length and signature), the count carries
//! [`UNCOUNTED_OWNER`]: the library then never unregisters it, and drops
//! the mark when that registration is gone.
//!
//! The length: the library registers its own area with the extensible
//! length where the kernel's feature size exceeds 32 (see
//! [`crate::registration_len`]), and records the length it registered
//! with in the shared TLS header, so that whichever copy releases the last
//! hold unregisters with it. `rseq(2)` answers `EBUSY` only for the very
//! same area, length and signature, and `EINVAL` for another length as
//! for another area; so when the longer attempt gets `EINVAL`, the library
//! asks again with the classic 32 bytes: `EBUSY` then means a classic
//! component registered this area first (borrowed, as above), and `EINVAL`
//! again a different area ([`ThreadState::Foreign`]). A registration the
//! header says nothing of was made by a classic component that counts its
//! holds: it has the classic length.
//!
//! Each copy of the library also keeps a private [`ThreadRecord`]: how many
//! holds its callers own (so an unbalanced unregister is refused), whether
//! it holds the lazy registration (released at thread exit by a
//! `pthread_key_t` destructor), and what it last learnt of the thread.
//!
//! Signal safety in `Library` mode: while the count or the kernel's
//! registration changes, the shared busy word is set. A signal handler that
//! interrupts the change and calls into the library finds it set, leaves
//! everything alone and takes the fallbacks (an explicit register call
//! answers [`Error::Busy`]). So a first registration costs one system call,
//! `rseq(2)`, and nothing blocks signals. In `Libc` and `Unavailable`
//! modes registering changes nothing but this copy's own tally of caller
//! holds, so it makes no system call at all.

use core::fmt;
use core::sync::atomic::{compiler_fence, Ordering as Fence};

use crate::abi::{self, MIN_REGISTRATION_LEN};
use crate::arch;
use crate::area::{self, Owner};
use crate::error::Error;
use crate::sync::{Ordering, StaticAtomicU64 as AtomicU64};

/// The mark in `__rseq_refcount` that says a component that does not count
/// holds registered the area: the library never unregisters it. The low
/// 31 bits count the holds of the components that do count.
///
/// # Examples
/// ```
/// let holds = restartable::refcount_of_current_thread();
/// let uncounted = holds & restartable::UNCOUNTED_OWNER != 0;
/// println!("{} counted holds{}", holds & !restartable::UNCOUNTED_OWNER,
///          if uncounted { ", and a registrant that does not count" } else { "" });
/// ```
pub const UNCOUNTED_OWNER: u32 = 1 << 31;

/// How many uses of a [`ThreadState::Foreign`] thread pass between two
/// attempts to register (the other area may have been unregistered since).
const FOREIGN_RETRY_EVERY: u8 = 32;

/// What the calling thread's registration is, as this library sees it.
///
/// Exhaustive on purpose (no `#[non_exhaustive]`): the variants are the
/// answers `rseq(2)` can give a registration (success, `EBUSY`, `EINVAL`,
/// a refusal) plus "not asked yet", fixed by the kernel ABI; code that
/// matches should handle each. A new variant would be a breaking change,
/// made in a new major version. [`uses_rseq`](Self::uses_rseq) answers the
/// common question without a `match`.
///
/// # Examples
/// ```
/// use restartable::ThreadState;
/// match restartable::thread_state() {
///     ThreadState::Registered | ThreadState::Borrowed => println!("rseq in use"),
///     ThreadState::Unregistered => println!("not registered yet, or no rseq"),
///     ThreadState::Foreign | ThreadState::Refused => println!("fallbacks on this thread"),
/// }
/// ```
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
    /// kernel allows one, so this thread uses the fallbacks, and tries
    /// again now and then (the other area may be unregistered).
    Foreign = 3,
    /// The kernel refused `rseq(2)` to this thread (a seccomp filter
    /// installed on it); the other threads are not affected. This thread
    /// uses the fallbacks.
    Refused = 4,
}

impl ThreadState {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => ThreadState::Registered,
            2 => ThreadState::Borrowed,
            3 => ThreadState::Foreign,
            4 => ThreadState::Refused,
            _ => ThreadState::Unregistered,
        }
    }

    /// Whether the thread's area is registered with the kernel, so that the
    /// fast paths (not the fallbacks) serve it.
    ///
    /// # Examples
    /// ```
    /// use restartable::ThreadState;
    /// assert!(ThreadState::Borrowed.uses_rseq());
    /// assert!(!ThreadState::Foreign.uses_rseq());
    /// ```
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
            ThreadState::Refused => {
                "the kernel refused rseq to this thread (a seccomp filter); \
                 using sched_getcpu and atomics"
            }
        })
    }
}

/// This copy's private per-thread record, in static TLS beside the area.
///
/// Written only by the owning thread, in `Library` mode while the shared
/// busy word is set (or, for `retry_in`, at any time: a hint). In the other
/// modes only `caller_holds` changes, by one per call, and a signal
/// handler that registers and unregisters in balance leaves it as it found
/// it. Read by the owning thread (a signal handler that interrupts a read
/// finishes its own update before the read resumes).
#[derive(Debug)]
#[repr(C, align(8))]
pub struct ThreadRecord {
    /// Holds taken by explicit `register` calls through this copy.
    caller_holds: u32,
    /// A `ThreadState` as `u8`: what this copy last learnt.
    state: u8,
    /// 1 while this copy holds the lazy registration.
    lazy: u8,
    /// 1 once the thread-exit destructor is armed.
    exit_armed: u8,
    /// Uses left before a foreign thread tries to register again.
    retry_in: u8,
}

impl ThreadRecord {
    /// The all-zero record every thread starts with (it lives in `.tbss`).
    #[allow(dead_code)] // used by the backends that keep it in Rust TLS, and models
    pub const NEW: ThreadRecord = ThreadRecord {
        caller_holds: 0,
        state: 0,
        lazy: 0,
        exit_armed: 0,
        retry_in: 0,
    };

    /// Holds taken by explicit `register` calls.
    pub fn caller_holds(&self) -> u32 {
        self.caller_holds
    }

    /// The thread's state as last recorded.
    pub fn state(&self) -> ThreadState {
        ThreadState::from_u8(self.state)
    }

    /// Whether the lazy hold is taken.
    #[allow(dead_code)] // read by the unit tests and the loom model
    pub fn holds_lazily(&self) -> bool {
        self.lazy == 1
    }
}

/// Process-wide counters, for diagnostics and tests.
///
/// # Examples
/// ```
/// let stats: restartable::Stats = restartable::stats();
/// assert!(stats.unregistrations <= stats.registrations);
/// ```
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

/// The calling thread's instances of the shared block's words.
struct Words {
    area: *mut abi::Rseq,
    refcount: *mut u32,
    busy: *mut u32,
    len: *mut u32,
}

fn words() -> Words {
    let block = area::shared();
    let tp = arch::thread_pointer();
    Words {
        area: tp.wrapping_add_signed(block.area) as *mut abi::Rseq,
        refcount: tp.wrapping_add_signed(block.refcount) as *mut u32,
        busy: tp.wrapping_add_signed(block.busy) as *mut u32,
        len: tp.wrapping_add_signed(block.len) as *mut u32,
    }
}

/// Runs `f` on this thread's record and the shared `__rseq_refcount`. In
/// `Library` mode, where the count and the kernel's registration change,
/// the shared busy word is set while `f` runs, and a call that finds it
/// set already (a signal handler that interrupted a change) runs nothing
/// and answers [`Error::Busy`]. In the other modes `f` makes no system call
/// and only moves this copy's tally of caller holds.
fn with_thread_state<R>(
    owner: Owner,
    f: impl FnOnce(&mut ThreadRecord, &mut u32) -> R,
) -> Result<R, Error> {
    let words = words();
    // SAFETY: the record is this copy's, in the calling thread's static
    // TLS; no other thread ever touches it (see `ThreadRecord`).
    let record = unsafe { &mut *arch::own_thread_state() };
    if owner != Owner::Library {
        // SAFETY: the thread's refcount, in its static TLS; `f` reads it
        // at most (no registration changes outside `Library` mode).
        return Ok(f(record, unsafe { &mut *words.refcount }));
    }
    // SAFETY: the busy word and the refcount are the calling thread's, in
    // static TLS, and only this thread (and its signal handlers) touch
    // them: other copies of the library and other components change them
    // only on their own thread.
    unsafe {
        if words.busy.read_volatile() != 0 {
            return Err(Error::Busy);
        }
        words.busy.write_volatile(1);
        // A handler that runs from here on sees the word set: the compiler
        // may not move the changes below above the store, nor the clear
        // below above them.
        compiler_fence(Fence::SeqCst);
        let result = f(record, &mut *words.refcount);
        compiler_fence(Fence::SeqCst);
        words.busy.write_volatile(0);
        Ok(result)
    }
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
    /// Whether the thread's area is registered now: its `cpu_id` reads a
    /// CPU (the kernel writes it on every return to user space).
    fn area_registered(&self) -> bool;
    /// `rseq(shared area, len, flags, SIG)` for the calling thread: 0 or a
    /// negated errno.
    fn rseq(&mut self, len: u32, flags: u32) -> i32;
    /// The length to register the shared area with first: the extensible
    /// length where the area and the kernel allow one (see
    /// [`crate::registration_len`]), else the classic 32.
    fn extended_len(&self) -> u32 {
        MIN_REGISTRATION_LEN
    }
    /// The length the thread's registration of the shared area was made
    /// with, as the shared length word says; 32 when no copy of this
    /// library made it (a classic component that counts its holds did).
    fn registered_len(&self) -> u32 {
        MIN_REGISTRATION_LEN
    }
    /// Records the length of the thread's registration in the shared
    /// length word (0: none).
    fn set_registered_len(&mut self, _len: u32) {}
    /// The shared area is registered with another signature: no section
    /// may run on it, so the process becomes `Unavailable`.
    fn set_unavailable(&mut self);
    /// Counts an event.
    fn note(&mut self, event: Event);
    /// Arms the thread-exit release of the lazy hold; false if it could
    /// not be armed.
    fn arm_exit_release(&mut self) -> bool;
}

/// Takes one hold on the calling thread's registration; a lazy hold that
/// is already taken is not taken twice, but the registration is checked
/// again (and made again if it vanished).
///
/// `record` is this copy's record of the thread, `refcount` the thread's
/// shared `__rseq_refcount`; the caller keeps both from changing under it
/// (real code: the busy word). Nothing changes on error.
pub fn acquire<K: Kernel + ?Sized>(
    kernel: &mut K,
    record: &mut ThreadRecord,
    refcount: &mut u32,
    holder: Holder,
) -> Result<ThreadState, Error> {
    let new_hold = holder == Holder::Caller || record.lazy == 0;
    if holder == Holder::Caller && record.caller_holds == u32::MAX {
        return Err(Error::TooManyHolds);
    }
    let state = match kernel.owner() {
        Owner::Libc if kernel.area_registered() => ThreadState::Borrowed,
        Owner::Libc | Owner::Unavailable => ThreadState::Unregistered,
        Owner::Library => library_acquire(kernel, record, refcount, new_hold)?,
    };
    record.state = state as u8;
    if new_hold {
        match holder {
            Holder::Caller => record.caller_holds += 1,
            Holder::Lazy => {
                record.lazy = 1;
                if record.exit_armed == 0 && kernel.arm_exit_release() {
                    record.exit_armed = 1;
                }
            }
        }
    }
    Ok(state)
}

fn library_acquire<K: Kernel + ?Sized>(
    kernel: &mut K,
    record: &ThreadRecord,
    refcount: &mut u32,
    new_hold: bool,
) -> Result<ThreadState, Error> {
    let holds = *refcount & !UNCOUNTED_OWNER;
    let holds = if new_hold {
        Some(holds + 1)
            .filter(|h| h & UNCOUNTED_OWNER == 0)
            .ok_or(Error::TooManyHolds)?
    } else {
        holds
    };
    if record.state() == ThreadState::Refused {
        // A filter on this thread: it stays.
        *refcount = (*refcount & UNCOUNTED_OWNER) | holds;
        return Ok(ThreadState::Refused);
    }
    if kernel.area_registered() {
        if *refcount != 0 {
            // Registered by one of the counting holders, or by the
            // uncounted owner already found: count the hold.
            let uncounted = *refcount & UNCOUNTED_OWNER;
            *refcount = uncounted | holds;
            return Ok(if uncounted != 0 {
                ThreadState::Borrowed
            } else {
                ThreadState::Registered
            });
        }
        // Registered, and no one counts: a component that does not follow
        // the refcount registered it. Before any section runs on it, the
        // kernel confirms that it used this library's signature (and
        // says which length: `EBUSY` needs the very same one).
        let (errno, len) = negotiate(kernel);
        return Ok(match errno {
            libc::EBUSY => {
                kernel.note(Event::Borrowed);
                kernel.set_registered_len(len);
                *refcount = UNCOUNTED_OWNER | holds;
                ThreadState::Borrowed
            }
            // Another signature (EPERM) or another length (EINVAL): the
            // kernel would kill the thread at the first abort.
            _ => {
                kernel.set_unavailable();
                ThreadState::Unregistered
            }
        });
    }
    // Not registered: never yet, or the registration vanished, and with
    // it any uncounted owner.
    let (errno, len) = negotiate(kernel);
    let state = match errno {
        0 => {
            kernel.note(Event::Registered);
            kernel.set_registered_len(len);
            ThreadState::Registered
        }
        // A different area is registered for this thread.
        libc::EINVAL => {
            kernel.note(Event::Foreign);
            ThreadState::Foreign
        }
        // The decision found the kernel answering: a filter refuses this
        // thread.
        libc::ENOSYS | libc::EPERM => ThreadState::Refused,
        errno => return Err(Error::Kernel { errno }),
    };
    *refcount = holds;
    Ok(state)
}

/// Registers the shared area with the extensible length, then, if the
/// kernel refuses it with `EINVAL`, with the classic 32 bytes: the errno
/// (0 on success) and the length of the attempt that answered it.
///
/// The second attempt is how the library shares an area that a classic
/// component registered first, with 32 bytes: `rseq(2)` answers `EBUSY`
/// only for the very same area, length and signature, and `EINVAL` for a
/// different length as for a different area. So `EINVAL` to the long
/// length and `EBUSY` to the classic one means "this area, registered the
/// classic way"; `EINVAL` to both means another area.
fn negotiate<K: Kernel + ?Sized>(kernel: &mut K) -> (i32, u32) {
    let len = kernel.extended_len();
    let errno = -kernel.rseq(len, 0);
    if errno == libc::EINVAL && len > MIN_REGISTRATION_LEN {
        return (-kernel.rseq(MIN_REGISTRATION_LEN, 0), MIN_REGISTRATION_LEN);
    }
    (errno, len)
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
    match kernel.owner() {
        Owner::Library => {}
        Owner::Libc if kernel.area_registered() => return Ok(ThreadState::Borrowed),
        _ => return Ok(ThreadState::Unregistered),
    }
    let uncounted = *refcount & UNCOUNTED_OWNER;
    let holds = (*refcount & !UNCOUNTED_OWNER).saturating_sub(1);
    *refcount = uncounted | holds;
    let registered = kernel.area_registered();
    let state = match (registered, uncounted != 0) {
        (true, true) => ThreadState::Borrowed,
        (true, false) if holds > 0 => ThreadState::Registered,
        (true, false) => {
            let len = kernel.registered_len();
            if kernel.rseq(len, abi::FLAG_UNREGISTER) == 0 {
                kernel.note(Event::Unregistered);
                kernel.set_registered_len(0);
            }
            ThreadState::Unregistered
        }
        (false, _) => match record.state() {
            s @ (ThreadState::Foreign | ThreadState::Refused) => s,
            _ => ThreadState::Unregistered,
        },
    };
    record.state = state as u8;
    Ok(state)
}

/// The real world: this process, this thread, the kernel.
struct Process;

impl Kernel for Process {
    fn owner(&self) -> Owner {
        area::owner()
    }

    fn area_registered(&self) -> bool {
        let offset = match area::owner() {
            Owner::Libc => area::offset(),
            _ => area::shared().area,
        };
        // SAFETY: glibc's area or the shared `__rseq_abi`: a live area of
        // the calling thread, in static TLS.
        (unsafe { arch::load_u32::<{ abi::CPU_ID_OFFSET }>(offset) } as i32) >= 0
    }

    fn rseq(&mut self, len: u32, flags: u32) -> i32 {
        debug_assert!(len == MIN_REGISTRATION_LEN || len <= area::registration_len());
        // SAFETY: this thread's static-TLS shared `__rseq_abi`, alive until
        // the thread exits (when the kernel drops the registration): at
        // least 32 bytes aligned to 32, and `AREA_CAPACITY` bytes aligned
        // to the kernel's alignment when `len` exceeds 32 (the decision
        // allows a longer length only for such an area); unregistering
        // passes the length of the registration.
        unsafe { arch::sys_rseq(words().area, len, flags, arch::SIG) }
    }

    fn extended_len(&self) -> u32 {
        area::registration_len().max(MIN_REGISTRATION_LEN)
    }

    fn registered_len(&self) -> u32 {
        // SAFETY: the thread's length word, in its static TLS; only this
        // thread (under the busy word) writes it.
        match unsafe { words().len.read_volatile() } {
            0 => MIN_REGISTRATION_LEN,
            len => len,
        }
    }

    fn set_registered_len(&mut self, len: u32) {
        // SAFETY: as in `registered_len`; called under the busy word.
        unsafe { words().len.write_volatile(len) }
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
/// `Libc` and `Unavailable` modes make no system call at all: the hold is
/// counted so that [`unregister_current_thread`] stays balanced. In
/// `Library` mode the hold registers the shared `__rseq_abi` unless it is
/// registered already; see [Who owns the area](crate#who-owns-the-area)
/// for `EBUSY` (borrowed) and `EINVAL` (foreign; a foreign thread tries again on every call). Returns
/// the thread's state afterwards; a foreign, refused or unavailable thread
/// is counted too and served by fallbacks.
///
/// # Errors
/// [`Error::TooManyHolds`] on overflow; [`Error::Busy`] when called from a
/// signal handler that interrupted a registration change on this thread;
/// [`Error::Kernel`] for an errno the kernel documents for none of the
/// cases above. Nothing changes on error.
///
/// # Examples
/// ```
/// let state = restartable::register_current_thread().unwrap();
/// println!("this thread: {state}");
/// restartable::unregister_current_thread().unwrap();
/// ```
#[doc(alias = "rseq_register_current_thread")]
pub fn register_current_thread() -> Result<ThreadState, Error> {
    let owner = area::owner();
    with_thread_state(owner, |record, count| {
        acquire(&mut Process, record, count, Holder::Caller)
    })?
}

/// Releases one hold taken by [`register_current_thread`]; the last hold in
/// the thread unregisters the area if this library registered it.
///
/// # Errors
/// [`Error::NotRegistered`] when the caller holds nothing on this thread
/// (an unbalanced unregister); [`Error::Busy`] from a signal handler that
/// interrupted a registration change. Nothing changes on error.
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
    let owner = area::owner();
    with_thread_state(owner, |record, count| {
        release(&mut Process, record, count, Holder::Caller)
    })?
}

/// The calling thread's registration state, as the kernel has it now,
/// without registering.
///
/// # Examples
/// ```
/// use restartable::{owner, thread_state, Owner, ThreadState};
/// restartable::current_cpu(); // registers lazily where rseq is usable
/// if owner() == Owner::Unavailable {
///     assert_eq!(thread_state(), ThreadState::Unregistered);
/// }
/// ```
pub fn thread_state() -> ThreadState {
    let owner = area::owner();
    if owner != Owner::Library {
        return if owner == Owner::Libc && Process.area_registered() {
            ThreadState::Borrowed
        } else {
            ThreadState::Unregistered
        };
    }
    let words = words();
    if Process.area_registered() {
        // SAFETY: the thread's shared refcount; a plain read.
        let count = unsafe { words.refcount.read_volatile() };
        return if count == 0 || count & UNCOUNTED_OWNER != 0 {
            ThreadState::Borrowed
        } else {
            ThreadState::Registered
        };
    }
    // SAFETY: this thread's record; a plain read (see `ThreadRecord`).
    match unsafe { (*arch::own_thread_state()).state() } {
        ThreadState::Foreign => foreign_still(),
        ThreadState::Refused => ThreadState::Refused,
        _ => ThreadState::Unregistered,
    }
}

/// The length the calling thread's area is registered with: in `Library`
/// mode what the library registered (or found registered) on this thread,
/// the extensible [`crate::registration_len`] or the classic 32 where a
/// classic component registered the shared area first; in `Libc` mode
/// glibc's length; 0 where the thread uses no rseq area (not registered
/// yet, foreign, refused, unavailable).
///
/// # Examples
/// ```
/// restartable::current_cpu(); // registers lazily where rseq is usable
/// let len = restartable::thread_registration_len();
/// assert!(len == 0 || len >= 32);
/// ```
pub fn thread_registration_len() -> u32 {
    match (area::owner(), thread_state()) {
        (Owner::Libc, ThreadState::Borrowed) => area::registration_len(),
        (Owner::Library, ThreadState::Borrowed | ThreadState::Registered) => {
            Process.registered_len()
        }
        _ => 0,
    }
}

/// Asks the kernel whether the other area that made this thread foreign is
/// still registered: registering the shared area succeeds only if not, and
/// is then undone at once.
fn foreign_still() -> ThreadState {
    let asked = with_thread_state(Owner::Library, |record, _| match negotiate(&mut Process) {
        (libc::EINVAL, _) => ThreadState::Foreign,
        (0, len) => {
            Process.rseq(len, abi::FLAG_UNREGISTER);
            record.state = ThreadState::Unregistered as u8;
            ThreadState::Unregistered
        }
        _ => record.state(),
    });
    asked.unwrap_or(ThreadState::Foreign)
}

/// The number of holds callers own on this thread through this copy of the
/// library (the lazy hold is not counted).
///
/// # Examples
/// ```
/// let before = restartable::caller_holds();
/// let guard = restartable::RegistrationGuard::new().unwrap();
/// assert_eq!(restartable::caller_holds(), before + 1);
/// drop(guard);
/// ```
pub fn caller_holds() -> u32 {
    // SAFETY: this thread's record; a plain read (see `ThreadRecord`).
    unsafe { (*arch::own_thread_state()).caller_holds() }
}

/// The holds on the calling thread's registration counted in the shared
/// `__rseq_refcount`, by every component sharing `__rseq_abi` (0 in
/// `Libc` and `Unavailable` modes); [`UNCOUNTED_OWNER`] is not included.
///
/// # Examples
/// ```
/// let guard = restartable::RegistrationGuard::new().unwrap();
/// if restartable::owner() == restartable::Owner::Library {
///     assert!(restartable::refcount_of_current_thread() >= 1);
/// }
/// drop(guard);
/// ```
pub fn refcount_of_current_thread() -> u32 {
    // SAFETY: this thread's refcount; a plain read.
    unsafe { words().refcount.read_volatile() & !UNCOUNTED_OWNER }
}

/// The cold path of every reader: registers lazily (or again, where the
/// registration vanished) if that can help, and says whether the area now
/// serves the thread. Never waits: while the owner is being decided, or
/// from a signal handler that interrupted a registration change, it
/// answers false (the fallbacks serve the call).
#[cold]
#[inline(never)]
pub(crate) fn ensure_registered() -> bool {
    if area::owner_now() != Some(Owner::Library) {
        return false;
    }
    let record = arch::own_thread_state();
    // SAFETY: this thread's record; single-byte reads and a write of the
    // retry hint, which a handler may race harmlessly (see `ThreadRecord`).
    unsafe {
        match ThreadState::from_u8((*record).state) {
            ThreadState::Refused => return false,
            ThreadState::Foreign => {
                let left = (*record).retry_in;
                if left > 0 {
                    (*record).retry_in = left - 1;
                    return false;
                }
                (*record).retry_in = FOREIGN_RETRY_EVERY - 1;
            }
            _ => {}
        }
    }
    let _ = with_thread_state(Owner::Library, |record, count| {
        acquire(&mut Process, record, count, Holder::Lazy)
    });
    // SAFETY: the process-wide offset names this thread's live area.
    let cpu = unsafe { arch::load_u32::<{ abi::CPU_ID_OFFSET }>(area::offset()) } as i32;
    cpu >= 0
}

/// Arms the `pthread_key_t` destructor that releases the lazy hold when
/// the thread exits.
///
/// The key is created on first need and published with a compare-exchange
/// (a racing loser deletes its own): nothing waits for another thread, so
/// a `fork` child never inherits a half-made key it would wait for.
fn arm_exit_release() -> bool {
    /// The key plus one; 0 while none is published. `Relaxed`: the key is
    /// a plain number, and pthread orders its own data.
    static KEY: crate::sync::StaticAtomicU64 = crate::sync::StaticAtomicU64::new(0);
    let mut key = KEY.load(Ordering::Relaxed);
    if key == 0 {
        let mut made: libc::pthread_key_t = 0;
        // SAFETY: `made` is valid for writing; `release_at_exit` has the
        // destructor's signature.
        if unsafe { libc::pthread_key_create(&mut made, Some(release_at_exit)) } != 0 {
            return false;
        }
        key = u64::from(made) + 1;
        if let Err(first) = KEY.compare_exchange(0, key, Ordering::Relaxed, Ordering::Relaxed) {
            // SAFETY: `made` was created above and never handed out.
            unsafe { libc::pthread_key_delete(made) };
            key = first;
        }
    }
    // Any non-null value makes the destructor run at thread exit.
    // SAFETY: the key was created above or by the first caller.
    unsafe {
        libc::pthread_setspecific(
            (key - 1) as libc::pthread_key_t,
            core::ptr::dangling::<libc::c_void>(),
        ) == 0
    }
}

unsafe extern "C" fn release_at_exit(_value: *mut libc::c_void) {
    let released = with_thread_state(area::owner(), |record, count| {
        record.exit_armed = 0;
        let held = record.lazy == 1;
        let _ = release(&mut Process, record, count, Holder::Lazy);
        held
    });
    if released == Ok(true) {
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
/// // Debug shows what the guard holds, and nothing private.
/// assert_eq!(format!("{guard:?}"), format!("RegistrationGuard {{ state: {:?} }}", guard.state()));
/// drop(guard); // unregisters if this was the last hold
/// ```
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
    ///
    /// # Examples
    /// ```
    /// std::thread::spawn(|| {
    ///     let _guard = restartable::RegistrationGuard::new().unwrap();
    ///     assert_eq!(restartable::caller_holds(), 1);
    /// })
    /// .join()
    /// .unwrap();
    /// ```
    pub fn new() -> Result<Self, Error> {
        let state = register_current_thread()?;
        Ok(RegistrationGuard {
            state,
            _not_send: core::marker::PhantomData,
        })
    }

    /// The thread's state when the guard was taken.
    ///
    /// # Examples
    /// ```
    /// let guard = restartable::RegistrationGuard::new().unwrap();
    /// assert_eq!(guard.state().uses_rseq(), restartable::is_available());
    /// ```
    pub fn state(&self) -> ThreadState {
        self.state
    }
}

impl core::fmt::Debug for RegistrationGuard {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RegistrationGuard")
            .field("state", &self.state)
            .finish()
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
        /// The shared `__rseq_abi`, with `RSEQ_SIG`.
        Ours,
        /// The shared `__rseq_abi`, with another signature.
        OursOtherSig,
        /// A private area of another component.
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
        /// The length the library tries first.
        ext_len: u32,
        /// The length the kernel has the registration with.
        kernel_len: u32,
        /// The shared length word.
        len_word: u32,
    }

    impl Sim {
        fn new(owner: Owner, registered: Option<Area>) -> Self {
            Sim {
                owner,
                registered,
                forced: None,
                events: Vec::new(),
                syscalls: 0,
                ext_len: MIN_REGISTRATION_LEN,
                kernel_len: MIN_REGISTRATION_LEN,
                len_word: 0,
            }
        }
    }

    impl Kernel for Sim {
        fn owner(&self) -> Owner {
            self.owner
        }
        fn area_registered(&self) -> bool {
            self.owner == Owner::Libc
                || matches!(self.registered, Some(Area::Ours | Area::OursOtherSig))
        }
        fn rseq(&mut self, len: u32, flags: u32) -> i32 {
            self.syscalls += 1;
            if let Some(errno) = self.forced {
                return -errno;
            }
            let same_len = len == self.kernel_len;
            match (flags, self.registered) {
                (0, None) => {
                    self.registered = Some(Area::Ours);
                    self.kernel_len = len;
                    0
                }
                (0, Some(Area::Ours)) if same_len => -libc::EBUSY,
                (0, Some(Area::OursOtherSig)) if same_len => -libc::EPERM,
                (abi::FLAG_UNREGISTER, Some(Area::Ours)) if same_len => {
                    self.registered = None;
                    0
                }
                _ => -libc::EINVAL,
            }
        }
        fn extended_len(&self) -> u32 {
            self.ext_len
        }
        fn registered_len(&self) -> u32 {
            match self.len_word {
                0 => MIN_REGISTRATION_LEN,
                len => len,
            }
        }
        fn set_registered_len(&mut self, len: u32) {
            self.len_word = len;
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
    fn the_library_first_registers_the_extensible_length() {
        let mut k = Sim::new(Owner::Library, None);
        k.ext_len = 33;
        let (mut r, mut count) = (ThreadRecord::NEW, 0);
        assert_eq!(
            acquire(&mut k, &mut r, &mut count, Caller),
            Ok(ThreadState::Registered)
        );
        assert_eq!((k.kernel_len, k.len_word, k.syscalls), (33, 33, 1));
        // A classic registrant that ignores the count now gets EINVAL: the
        // kernel answers EBUSY only for the same length.
        assert_eq!(k.rseq(32, 0), -libc::EINVAL);
        assert_eq!(
            release(&mut k, &mut r, &mut count, Caller),
            Ok(ThreadState::Unregistered)
        );
        assert_eq!((k.registered, k.len_word), (None, 0));
        assert_eq!(k.events, [Event::Registered, Event::Unregistered]);
    }

    #[test]
    fn a_classic_registrant_first_is_shared_with_the_classic_length() {
        // Registered with 32 bytes by a component that does not count.
        let mut k = Sim::new(Owner::Library, Some(Area::Ours));
        k.ext_len = 33;
        let (mut r, mut count) = (ThreadRecord::NEW, 0);
        assert_eq!(
            acquire(&mut k, &mut r, &mut count, Caller),
            Ok(ThreadState::Borrowed)
        );
        // EINVAL to 33, EBUSY to 32: the same area, the classic way.
        assert_eq!((k.syscalls, k.len_word), (2, 32));
        assert_eq!(count, UNCOUNTED_OWNER | 1);
        assert_eq!(
            release(&mut k, &mut r, &mut count, Caller),
            Ok(ThreadState::Borrowed)
        );
        assert_eq!(k.registered, Some(Area::Ours), "never unregistered");
        assert_eq!(k.events, [Event::Borrowed]);
    }

    #[test]
    fn a_counting_classic_registrant_first_is_unregistered_with_its_length() {
        // A classic component that counts registered with 32 bytes and
        // left the length word alone.
        let mut k = Sim::new(Owner::Library, Some(Area::Ours));
        k.ext_len = 33;
        let (mut r, mut count) = (ThreadRecord::NEW, 1);
        assert_eq!(
            acquire(&mut k, &mut r, &mut count, Caller),
            Ok(ThreadState::Registered)
        );
        assert_eq!((count, k.syscalls), (2, 0));
        count -= 1; // the classic component releases its hold
        assert_eq!(
            release(&mut k, &mut r, &mut count, Caller),
            Ok(ThreadState::Unregistered)
        );
        assert_eq!(k.registered, None, "unregistered with 32 bytes");
    }

    #[test]
    fn a_foreign_area_is_refused_at_both_lengths() {
        let mut k = Sim::new(Owner::Library, Some(Area::Other));
        k.ext_len = 33;
        let (mut r, mut count) = (ThreadRecord::NEW, 0);
        assert_eq!(
            acquire(&mut k, &mut r, &mut count, Caller),
            Ok(ThreadState::Foreign)
        );
        assert_eq!((k.syscalls, k.len_word), (2, 0));
    }

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
            assert_eq!(count, UNCOUNTED_OWNER | n);
        }
        for n in (0..3).rev() {
            assert_eq!(
                release(&mut k, &mut r, &mut count, Caller),
                Ok(ThreadState::Borrowed)
            );
            assert_eq!(count, UNCOUNTED_OWNER | n);
        }
        assert_eq!(k.registered, Some(Area::Ours));
        assert_eq!(k.events, [Event::Borrowed]);
        assert_eq!(k.syscalls, 1);
    }

    #[test]
    fn a_vanished_borrowed_registration_is_made_again() {
        let mut k = Sim::new(Owner::Library, Some(Area::Ours));
        let (mut r, mut count) = (ThreadRecord::NEW, 0);
        acquire(&mut k, &mut r, &mut count, Lazy).unwrap();
        acquire(&mut k, &mut r, &mut count, Caller).unwrap();
        assert_eq!(count, UNCOUNTED_OWNER | 2);
        // The classic registrant unregisters the area it registered.
        k.registered = None;
        assert_eq!(
            acquire(&mut k, &mut r, &mut count, Lazy),
            Ok(ThreadState::Registered)
        );
        assert_eq!((count, k.registered), (2, Some(Area::Ours)));
        release(&mut k, &mut r, &mut count, Caller).unwrap();
        assert_eq!(
            release(&mut k, &mut r, &mut count, Lazy),
            Ok(ThreadState::Unregistered)
        );
        assert_eq!((count, k.registered), (0, None));
    }

    #[test]
    fn einval_is_foreign_until_the_other_area_goes() {
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
        assert_eq!((count, k.syscalls), (2, 2));
        // The private registrant unregisters its area: the next attempt
        // registers, and the count covers both holds.
        k.registered = None;
        assert_eq!(
            acquire(&mut k, &mut r, &mut count, Lazy),
            Ok(ThreadState::Registered)
        );
        assert_eq!((count, k.registered), (2, Some(Area::Ours)));
        release(&mut k, &mut r, &mut count, Caller).unwrap();
        release(&mut k, &mut r, &mut count, Lazy).unwrap();
        assert_eq!((count, k.registered), (0, None));
        assert_eq!(
            k.events,
            [
                Event::Foreign,
                Event::Foreign,
                Event::Registered,
                Event::Unregistered
            ]
        );
    }

    #[test]
    fn a_refusal_affects_only_this_thread() {
        for errno in [libc::ENOSYS, libc::EPERM] {
            let mut k = Sim::new(Owner::Library, None);
            k.forced = Some(errno);
            let (mut r, mut count) = (ThreadRecord::NEW, 0);
            let state = acquire(&mut k, &mut r, &mut count, Caller);
            assert_eq!(state, Ok(ThreadState::Refused));
            assert_eq!((k.owner, r.caller_holds()), (Owner::Library, 1));
            assert_eq!(acquire(&mut k, &mut r, &mut count, Caller), state);
            assert_eq!(release(&mut k, &mut r, &mut count, Caller), state);
            assert_eq!(release(&mut k, &mut r, &mut count, Caller), state);
            assert_eq!((k.syscalls, count), (1, 0));
        }
    }

    #[test]
    fn another_signature_makes_the_process_unavailable() {
        let mut k = Sim::new(Owner::Library, Some(Area::OursOtherSig));
        let (mut r, mut count) = (ThreadRecord::NEW, 0);
        assert_eq!(
            acquire(&mut k, &mut r, &mut count, Lazy),
            Ok(ThreadState::Unregistered)
        );
        assert_eq!(k.owner, Owner::Unavailable);
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
        let mut k = Sim::new(Owner::Libc, None);
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
