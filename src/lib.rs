//! One restartable-sequences (rseq) area per thread, shared by everyone in
//! the process; the fastest CPU-number read there is; critical sections with
//! abort handlers; and per-CPU data without atomics.
//!
//! # Overview
//!
//! The kernel lets each thread register one `struct rseq` area. It writes
//! the thread's CPU number there on every return to user space, and aborts a
//! *critical section* — a short instruction sequence ending in a single
//! commit store — if the thread is preempted, migrated or signalled inside
//! it. With that, per-CPU data can be updated without atomic instructions
//! and stay exact.
//!
//! Because a thread has only one area, every component of a process must
//! share it. This crate finds the area that is already registered (glibc's),
//! or registers one that every other component can find (`__rseq_abi`,
//! refcounted through `__rseq_refcount`), and falls back to
//! `sched_getcpu()` and atomics wherever rseq cannot be used.
//!
//! # Example
//!
//! ```
//! use restartable::PerCpuCounter;
//! use std::sync::Arc;
//!
//! let requests = Arc::new(PerCpuCounter::new());
//! let handles: Vec<_> = (0..4)
//!     .map(|_| {
//!         let requests = Arc::clone(&requests);
//!         std::thread::spawn(move || {
//!             for _ in 0..10_000 {
//!                 requests.add(1); // no atomic instruction on the fast path
//!             }
//!         })
//!     })
//!     .collect();
//! for h in handles {
//!     h.join().unwrap();
//! }
//! assert_eq!(requests.sum(), 40_000);
//! println!("on CPU {} (area owned by {:?})", restartable::current_cpu(), restartable::owner());
//! ```
//!
//! # Which type do I want
//!
//! | you want | use | on the fast path |
//! |---|---|---|
//! | a statistic many threads bump (requests, bytes, hits) and someone reads now and then | [`PerCpuCounter`]: [`add`](PerCpuCounter::add), [`sum`](PerCpuCounter::sum), [`reset`](PerCpuCounter::reset) | one critical section, no atomic instruction |
//! | one value per CPU that you update yourself with atomics (a histogram, a flag per CPU) | [`PerCpu<T>`](PerCpu): [`current`](PerCpu::current), [`iter`](PerCpu::iter) | a CPU read, then your own atomics |
//! | a per-CPU cache or queue touched by several fields at once (`Vec`, `HashMap`) | [`PerCpuLock<T>`](PerCpuLock): [`lock`](PerCpuLock::lock), [`try_lock`](PerCpuLock::try_lock) | a section takes the CPU's lock; `&mut T` under the guard |
//! | a per-CPU free list of objects (buffers, connections) to push and pop | [`PerCpuStack<T>`](PerCpuStack): [`push`](PerCpuStack::push), [`pop`](PerCpuStack::pop) | one section per push or pop, no ABA problem |
//! | only the CPU number (to pick a shard, for logging) | [`current_cpu`] (and [`node_id`], [`mm_cid`]) | one load |
//! | a bare per-CPU list of your own nodes, as librseq's users keep one (exact as [`cs`]'s operations are: see its "Exactness") | [`cs::push_at_current`], [`cs::pop_at_current`] over a [`PerCpu`]'s [`slot_array`](PerCpu::slot_array) | one section, which reads the CPU itself |
//! | a bare per-CPU buffer of words (pointers, indexes), librseq's per-CPU buffer (exact as the list is) | [`cs::buffer_push_at_current`], [`cs::buffer_pop_at_current`] over slots of a count and its items | one section, which reads the CPU itself |
//! | an operation of your own on per-CPU words | [`cs`]'s operations ([`cs::load_cbne_store`], ...) or your own sequence with [`rseq_asm!`] | what you write, restarted on preemption |
//!
//! Every one of them is exact in every mode: without rseq (valgrind, a
//! seccomp sandbox, `RESTARTABLE_DISABLE=1`) each takes its fallback, as
//! described in [Per-CPU data without rseq](#per-cpu-data-without-rseq).
//! Which mode the process is in, and why, is what [`report()`] says.
//!
//! # Who owns the area
//!
//! Decided once per process, normally by an ELF constructor before `main`
//! (or when the library is `dlopen`ed), and reported by [`owner()`]:
//!
//! | [`Owner`] | when | area | register / unregister |
//! |---|---|---|---|
//! | `Libc` | glibc >= 2.35 registered (`__rseq_size > 0`) | glibc's, at `__rseq_offset` | counted, no system call |
//! | `Library` | the kernel has rseq, libc did not register | the weak TLS `__rseq_abi` | refcounted: first hold registers, last unregisters |
//! | `Unavailable` | `ENOSYS`/`EPERM` (old kernel, valgrind, seccomp, another signature on `__rseq_abi`), another architecture, or `RESTARTABLE_DISABLE=1` | an inert one, never registered (`cpu_id` -1) | counted; fallbacks |
//!
//! `GLIBC_TUNABLES=glibc.pthread.rseq=0` stops glibc from registering, so
//! the library registers its own area: that is how the `Library` mode is
//! tested. glibc's registration is found in static executables too, and a
//! program's own stand-in `__rseq_*` definitions do not hide it.
//!
//! No thread is registered before it uses the library: threads register
//! lazily on first use and release that hold at thread exit, so a private
//! registrant (librseq, say) keeps working on threads that never call
//! this crate. [`register_current_thread`], [`unregister_current_thread`]
//! and [`RegistrationGuard`] give explicit control. In `Library` mode a
//! thread may also find its area registered by a component that does not
//! count (`EBUSY`: [`ThreadState::Borrowed`], never unregistered), a
//! *different* area registered (`EINVAL`: [`ThreadState::Foreign`], served
//! by the fallbacks until that area goes), or its `rseq(2)` refused by a
//! filter on that thread alone ([`ThreadState::Refused`]). A registration
//! that vanishes (its owner unregisters it) is made again on the next use.
//!
//! Code that runs before the constructor (a `.preinit_array` function, an
//! earlier constructor, an `LD_PRELOAD` malloc interposer called during
//! another library's initialisation) may call every API: until the owner
//! is decided the active area is an inert one, so the first call decides
//! on the spot (or, called from inside the decision, takes the fallbacks).
//!
//! # Sharing the area with components loaded later
//!
//! Every copy of this library in a process (a Rust binary, a plugin that
//! links `librestartable.a`, `librestartable.so` loaded `RTLD_LOCAL`) finds
//! and uses the same area, whether or not any symbol is exported. A
//! *classic* component that defines `__rseq_abi` itself and is loaded
//! later (a plugin built on older rseq code) shares it only if the
//! executable exports the symbol: a shared library does, `pkg-config
//! --static restartable` adds the flags for a C program linked with the
//! archive, and a Rust executable needs one line in its
//! `.cargo/config.toml`:
//!
//! ```toml
//! [target.x86_64-unknown-linux-gnu]
//! rustflags = ["-C", "link-arg=-Wl,--export-dynamic-symbol=__rseq_abi,--export-dynamic-symbol=__rseq_refcount"]
//! ```
//!
//! [`area_is_exported`] (and `cargo run --example rseq_info`) says whether
//! a classic component loaded later would share the area.
//!
//! On a kernel whose rseq feature size exceeds 32 (Linux 7.x) the library
//! registers its own area with [`registration_len`] = `max(32,
//! AT_RSEQ_FEATURE_SIZE)` bytes (the area is 64 bytes aligned to 64), which
//! the kernel needs to offer [`slice`](mod@crate::slice)'s time-slice extension. The kernel
//! answers `EBUSY` to a second registration only with the same length, so:
//! where a classic component registered `__rseq_abi` with 32 bytes first,
//! the library's longer attempt gets `EINVAL`, it asks again with 32, gets
//! `EBUSY` and shares that registration ([`thread_registration_len`] says
//! 32 on that thread); a classic component that comes after the library
//! shares it through `__rseq_refcount` (a count above 0 means "registered:
//! count your hold, make no system call"), while one that ignores the count
//! and registers 32 bytes gets `EINVAL` (`RESTARTABLE_CLASSIC_LENGTH=1` in
//! the environment makes the library register 32 bytes for processes with
//! such components, giving up the extension). Whichever copy of the library
//! releases the last hold unregisters with the length recorded in the
//! shared TLS header.
//!
//! # Critical sections
//!
//! [`cs`] has the operations (`load_cbne_store`, `load_add_store`, the
//! per-CPU list pop, ...) and the [`rseq_asm!`] macro to write one's own,
//! with the descriptor in `__rseq_cs`, the abort handler in
//! `__rseq_failure` behind the signature, and the commit as the single final
//! store. [`PerCpuCounter`], [`PerCpuLock`] and [`PerCpuStack`] are built on
//! them, in safe Rust.
//!
//! # Per-CPU memory and the membarrier pattern
//!
//! [`PerCpuPool`] reserves one slot per possible CPU (or concurrency id)
//! and hands out objects ([`PerCpuBox`]) with one instance per slot at a
//! fixed stride, committed only where written: instances for the current
//! slot go straight into the [`cs`] operations. [`ActiveTable`] is the
//! swap of librseq's membarrier pattern, exact on fallback threads too.
//! [`current_mm_cid`] is a concurrency id that is always a usable index, and
//! [`register_for_sections`] says whether a thread runs sections, and why
//! not.
//!
//! # Fallbacks
//!
//! Every API works without rseq. [`current_cpu`] returns `sched_getcpu()`;
//! the operations use atomics on the slot of that CPU; the per-CPU types
//! keep results exact even when rseq and fallback threads mix (see
//! below). [`is_available`] says which path the calling thread takes, and
//! [`report()`] why.
//!
//! # Per-CPU data without rseq
//!
//! Threads that cannot use rseq (the process is `Unavailable`, or another
//! library registered a different area for the thread) take fallbacks that
//! stay exact alongside rseq users of the same object:
//! - [`PerCpuCounter`] gives each slot a second, atomic word that only
//!   fallback threads add to, and [`PerCpuCounter::sum`] adds both words;
//! - [`PerCpuLock`] and [`PerCpuStack`] give each slot a *fence* word. A
//!   fallback thread takes the fence with an atomic compare-exchange, then
//!   (if rseq is in use in the process) runs
//!   `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ)` so that every
//!   critical section in flight on that CPU is either committed or aborted,
//!   and every later one sees the fence and backs off. On kernels without
//!   that membarrier command (before Linux 5.10) every thread takes the
//!   fence path of the lock and the stack instead, and so does every
//!   thread from the moment `membarrier` starts failing (a seccomp filter
//!   installed later); see [`lock_sections_enabled`].
//!
//! # Signal handlers and `fork`
//!
//! Every operation may be called from a signal handler, on the thread it
//! interrupted, in every mode: an interrupted section aborts, and the
//! library's own fallback regions (the striped locks of multi-word
//! fallbacks, the fences of the lock and the stack) run with signals
//! blocked. A handler that locks a [`PerCpuLock`] slot whose guard the
//! interrupted code holds deadlocks, as with any lock. A `fork` child can
//! use every API: no one-time initialisation waits for another thread, and
//! `pthread_atfork` handlers free what a vanished thread held inside the
//! library (a guard user code held stays held, as with any lock).
//! If a sandbox later refuses `membarrier`, the lock and the stack stop
//! running sections for the whole process ([`lock_sections_enabled`] turns
//! false) and stay exact.
//!
//! # Crate features
//!
//! - `abort-stress` (test-only): spins inside every critical section so that
//!   preemption aborts it often. Never enable it in production.
//! - `loom` (test-only): the loom dependency of the model-checking build,
//!   used together with `--cfg restartable_loom` (see below).
//!
//! # Minimum Rust and Linux versions
//!
//! Rust 1.85 (the `rust-version` of `Cargo.toml`): CI builds and tests the
//! crate with Rust 1.85 as well as with the current stable release. rseq
//! needs Linux 4.18; `node_id` and `mm_cid` need
//! Linux 6.3 (`AT_RSEQ_FEATURE_SIZE` >= 28); the time-slice extension
//! needs Linux 7.0 built with `CONFIG_RSEQ_SLICE_EXTENSION`; fallback threads mixing with
//! rseq threads on a [`PerCpuLock`] or [`PerCpuStack`] need
//! `MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ`, Linux 5.10; without it those two
//! types use an atomic compare-exchange in every thread
//! ([`lock_sections_enabled`] says which). Tested on Linux 6.18
//! with glibc 2.36, x86_64; other architectures build and run through the
//! fallbacks.
//!
//! # Testing with loom
//!
//! ```text
//! RUSTFLAGS="--cfg restartable_loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release --features loom --test loom
//! ```
//!
//! The `loom` feature brings in the optional loom dependency (so that it is
//! absent from every user's lock file); the cfg switches the crate to it.
//!
//! Under `cfg(restartable_loom)` the architecture layer is a simulation in
//! which loom chooses the CPU a thread runs on and whether each critical
//! section commits or aborts.
//!
//! # Limitations
//!
//! - rseq code exists for x86_64 and aarch64 Linux; every other target runs
//!   on the fallbacks.
//! - On musl (no IFUNC support) the area offset names the inert area only
//!   once the constructor ran: code in an earlier constructor of the same
//!   object must not call this crate there.
//! - A component that registers the shared `__rseq_abi` with a signature
//!   other than `RSEQ_SIG` makes the library turn the process
//!   `Unavailable` (the active area becomes the inert one) as soon as it
//!   finds out on some thread; until then a thread where that component
//!   registered first runs sections, which the kernel kills on their first
//!   abort. The classic registrants (kernel selftests, librseq, tcmalloc)
//!   all use `RSEQ_SIG`.
//! - A thread found [`ThreadState::Foreign`] tries to register again on
//!   every explicit registration and on every 32nd use, so it returns to
//!   rseq shortly after the other area is unregistered, not at once.

pub mod abi;
mod arch;
mod area;
mod cid;
mod cpu;
pub mod cs;
mod error;
mod ffi;
mod ffi_pool;
mod file;
mod fork;
mod percpu;
mod registration;
mod report;
mod sections;
pub mod slice;
mod sync;

pub use area::{
    area_is_exported, area_offset, feature_size, kernel_area_align, kernel_feature_size,
    libc_rseq_size, owner, registration_len, rseq_location, Owner,
};
pub use cid::current_mm_cid;
pub use cpu::{
    cpu_id_start, current_cpu, current_cpu_raw, fallback_cpu, is_available, mm_cid, node_id,
    possible_cpus,
};
/// Which per-CPU number selects a slot (re-exported from [`cs`]).
pub use cs::Index;
pub use error::Error;
/// Loom models only: makes the calling model thread take the fallbacks.
#[cfg(restartable_loom)]
#[doc(hidden)]
pub use percpu::run_as_fallback;
#[cfg(not(restartable_loom))]
pub use percpu::ActiveTable;
pub use percpu::{
    lock_sections_enabled, CachePadded, PerCpu, PerCpuCounter, PerCpuLock, PerCpuLockGuard,
    PerCpuStack,
};
pub use percpu::{ByCpu, ByMmCid, IndexKind};
pub use percpu::{PerCpuBox, PerCpuPool, PoolError, Zeroable};
pub use registration::{
    caller_holds, refcount_of_current_thread, register_current_thread, stats,
    thread_registration_len, thread_state, unregister_current_thread, RegistrationGuard, Stats,
    ThreadState, UNCOUNTED_OWNER,
};
pub use report::{report, KernelRseq, Report};
pub use sections::{register_for_sections, sections, Sections};

/// The README's Rust examples, compiled and run as doctests, so that they
/// work as pasted.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeExamples;

/// The pure state machines behind registration and ownership, driven by
/// simulated kernels in the loom model (`tests/loom.rs`).
#[cfg(restartable_loom)]
#[doc(hidden)]
pub mod model {
    pub use crate::area::{choose, publish, read_owner, Decision, Probe, Published};
    pub use crate::registration::{acquire, release, Event, Holder, Kernel, ThreadRecord};
}
