//! Where the calling thread's area lives, decided once per process.
//!
//! The decision looks for glibc's registration, then for kernel support,
//! and fixes the process-wide values: the [`Owner`], the usable feature
//! size, the block every copy of the library shares (area, refcount, busy
//! word; see [`probe`]), and `restartable_area_offset`, the distance from
//! the thread pointer to the active area. That offset is the same for every
//! thread in both `Libc` and `Library` mode, because both areas live in
//! static TLS, so the hot path is one load of the offset and one
//! `%fs`-relative load of `cpu_id`.
//!
//! At every moment of the process's life the offset names a real area of
//! the calling thread: from relocation time (the `arch` layer sets it
//! before any code of the process runs) until the decision, it names the
//! inert area, whose `cpu_id` is -1, so every reader takes its cold path,
//! and the cold path decides on the spot. The decision is normally made by
//! an ELF constructor (priority 101), before `main`; code that runs earlier
//! (a `.preinit_array` function, an earlier constructor, a `malloc`
//! interposer called by another library's initialisation) makes it itself
//! on first use. A call made *while* the decision runs on the same thread
//! (the decision's own `dlopen` calling an interposed `malloc`, say) gets
//! the fallbacks instead of waiting for itself.

mod probe;

use core::fmt;

use crate::abi::{self, Rseq};
use crate::arch;
use crate::sync::{
    Ordering, StaticAtomicIsize as AtomicIsize, StaticAtomicU32 as AtomicU32,
    StaticAtomicU8 as AtomicU8,
};

/// Who registered the areas of this process's threads.
///
/// Exhaustive on purpose (no `#[non_exhaustive]`): a thread's area is
/// registered by the C library, by this library, or by no one, and code
/// that matches on the owner should handle each answer. Another C library
/// that registers (musl, say) is `Libc`; a new variant would be a breaking
/// change, made in a new major version.
///
/// # Examples
/// ```
/// use restartable::Owner;
/// let rseq = match restartable::owner() {
///     Owner::Libc | Owner::Library => "in use",
///     Owner::Unavailable => "unavailable",
/// };
/// println!("rseq {rseq}: {}", restartable::owner());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Owner {
    /// The C library (glibc >= 2.35) registered every thread; the library
    /// reads glibc's area and never registers or unregisters it.
    Libc = 1,
    /// The kernel supports rseq and the C library did not register: this
    /// library registers its own `__rseq_abi`, refcounted and shared with
    /// every component that uses the same symbol.
    Library = 2,
    /// rseq cannot be used (no kernel support, a seccomp filter, an
    /// architecture without rseq code, or `RESTARTABLE_DISABLE=1`); every
    /// API takes its fallback.
    Unavailable = 3,
}

impl Owner {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Owner::Libc,
            2 => Owner::Library,
            _ => Owner::Unavailable,
        }
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Owner::Libc => "libc (glibc registered the area of every thread)",
            Owner::Library => "library (restartable registers __rseq_abi)",
            Owner::Unavailable => "unavailable (rseq cannot be used; fallbacks in use)",
        })
    }
}

static OWNER: AtomicU8 = AtomicU8::new(0);
static FEATURE_SIZE: AtomicU32 = AtomicU32::new(0);
static KERNEL_FEATURE_SIZE: AtomicU32 = AtomicU32::new(0);
static LIBC_RSEQ_SIZE: AtomicU32 = AtomicU32::new(0);
/// The length the library registers its area with (`Library` mode) or the
/// one glibc registered (`Libc` mode); 0 when unavailable. Stored before
/// the owner is published, like the shared block below.
static REGISTRATION_LEN: AtomicU32 = AtomicU32::new(0);
static SHARED_LEN: AtomicIsize = AtomicIsize::new(0);
static SHARED_EXTENSIBLE: AtomicU8 = AtomicU8::new(0);
/// The shared block's TP offsets, stored before the owner is published
/// (`Release`, see [`publish`]) and never changed afterwards.
static SHARED_AREA: AtomicIsize = AtomicIsize::new(0);
static SHARED_REFCOUNT: AtomicIsize = AtomicIsize::new(0);
static SHARED_BUSY: AtomicIsize = AtomicIsize::new(0);
/// The thread pointer of the thread making the decision; 0 when none is.
/// Claimed with `Acquire` and released with `Release`, so a thread that
/// claims it after a release sees the owner that release published.
static DECIDER: AtomicIsize = AtomicIsize::new(0);

/// The offset of the calling thread's active area from the thread pointer.
///
/// The inert area's from relocation time until the decision (the `arch`
/// layer sees to it), then the one [`publish`] wrote; read without ordering:
/// a thread that reads a stale value reads the inert area, whose `cpu_id`
/// is -1, and takes the cold path, which synchronises with the decision.
#[inline(always)]
pub(crate) fn offset() -> isize {
    arch::area_offset()
}

/// Who owns the areas of this process's threads.
///
/// Decided once, normally before `main`. Only one change can follow:
/// `Library` becomes `Unavailable` if another component registered the
/// shared `__rseq_abi` with a signature other than `RSEQ_SIG` (the kernel
/// would kill a thread at its first abort). Called during the decision on
/// the same thread (from an interposed `malloc` the decision itself
/// calls), it answers `Unavailable` for the time being.
///
/// # Examples
/// ```
/// use restartable::{owner, Owner};
/// match owner() {
///     Owner::Libc => println!("glibc registered rseq"),
///     Owner::Library => println!("restartable registers __rseq_abi"),
///     Owner::Unavailable => println!("no rseq: fallbacks"),
/// }
/// ```
pub fn owner() -> Owner {
    read_owner(&Statics, || {
        decided(true);
    })
}

/// The owner if it is decided, deciding now if no thread is doing so;
/// never waits. `None` while the decision runs (on this thread or, for
/// the cold paths, which then take their fallbacks, on another).
#[inline]
pub(crate) fn owner_now() -> Option<Owner> {
    let v = OWNER.load(Ordering::Acquire);
    if v != 0 {
        return Some(Owner::from_u8(v));
    }
    decided(false)
}

/// Decides the owner unless another thread is doing it (then waits, if
/// `wait`) or this very thread is (then returns `None` at once).
#[cold]
fn decided(wait: bool) -> Option<Owner> {
    let me = arch::thread_pointer() as isize;
    let mut spins = 0;
    loop {
        let v = OWNER.load(Ordering::Acquire);
        if v != 0 {
            return Some(Owner::from_u8(v));
        }
        match DECIDER.compare_exchange(0, me, Ordering::Acquire, Ordering::Acquire) {
            Ok(_) => {
                if OWNER.load(Ordering::Acquire) == 0 {
                    decide();
                }
                DECIDER.store(0, Ordering::Release);
            }
            Err(holder) if holder == me || !wait => return None,
            Err(_) => crate::sync::backoff(&mut spins),
        }
    }
}

/// Why the process is `Unavailable`, as the decision saw it (for the
/// report, `report.rs`): one of the `CAUSE_*` values, 0 when it is not.
/// Stored before the owner is published (`Release`), never reset.
static CAUSE: AtomicU8 = AtomicU8::new(0);
/// `RESTARTABLE_DISABLE` was set.
pub(crate) const CAUSE_DISABLED: u8 = 1;
/// The architecture layer has no rseq code.
pub(crate) const CAUSE_NO_ARCH: u8 = 2;
/// The kernel did not answer `rseq(2)` (or a filter refused it).
pub(crate) const CAUSE_KERNEL: u8 = 3;
/// Another component registered the shared area with another signature.
pub(crate) const CAUSE_SIGNATURE: u8 = 4;

/// Why the process is `Unavailable` (a `CAUSE_*` value, 0 if it is not).
pub(crate) fn unavailable_cause() -> u8 {
    owner();
    CAUSE.load(Ordering::Relaxed)
}

/// Whether the C library exports `__rseq_size` and `__rseq_offset`.
pub(crate) fn libc_has_rseq_symbols() -> bool {
    probe::libc_symbols().is_some()
}

/// Turns `Library` into `Unavailable`: a component registered the shared
/// area with another signature.
pub(crate) fn set_unavailable() {
    CAUSE.store(CAUSE_SIGNATURE, Ordering::Relaxed);
    publish(
        &Statics,
        Decision {
            owner: Owner::Unavailable,
            offset: arch::inert_area_offset(),
            feature_size: 0,
            registration_len: 0,
        },
    );
}

/// Size in bytes of the rseq fields this process can read: 0 when rseq is
/// unavailable, 20 for kernels that predate `AT_RSEQ_FEATURE_SIZE`, 28 with
/// `node_id` and `mm_cid` (Linux 6.3+), 33 with `slice_ctrl` (Linux 7.0+)
/// where the area is registered with an extensible length (see
/// [`registration_len`]). A classic 32-byte registration gets no field past
/// `mm_cid` from the kernel, so it reports at most 28. A thread whose
/// shared area a classic component registered first uses the classic
/// length: [`thread_registration_len`](crate::thread_registration_len) says which one a thread has.
///
/// # Examples
/// ```
/// let size = restartable::feature_size();
/// assert!(size == 0 || size >= 20);
/// ```
#[doc(alias = "AT_RSEQ_FEATURE_SIZE")]
pub fn feature_size() -> u32 {
    owner();
    Statics.feature_size(Ordering::Relaxed)
}

/// The length of the process's registrations: what the library passes to
/// `rseq(2)` in `Library` mode (`max(32, AT_RSEQ_FEATURE_SIZE)` when the
/// kernel's feature size exceeds 32 and its alignment fits the library's
/// 64-byte area, 32 otherwise), what glibc registered in `Libc` mode
/// (`max(32, __rseq_size)`: glibc before 2.40 reports the registered 32
/// bytes there, later releases the kernel's feature size), 0 when
/// unavailable.
///
/// `RESTARTABLE_CLASSIC_LENGTH=1` in the environment makes the library
/// register 32 bytes whatever the kernel: for a process that loads classic
/// components which register the exported `__rseq_abi` themselves without
/// looking at `__rseq_refcount` (the kernel answers such a 32-byte
/// registration `EBUSY`, "shared", only while the area is registered with
/// 32 bytes, and `EINVAL` after an extensible registration). The
/// time-slice extension is then unavailable.
///
/// # Examples
/// ```
/// let len = restartable::registration_len();
/// assert!(len == 0 || len >= 32);
/// ```
pub fn registration_len() -> u32 {
    owner();
    REGISTRATION_LEN.load(Ordering::Relaxed)
}

/// The kernel's feature size from `getauxval(AT_RSEQ_FEATURE_SIZE)`, or 20
/// when the kernel predates it, whatever the owner.
///
/// # Examples
/// ```
/// assert!(restartable::kernel_feature_size() >= 20);
/// ```
pub fn kernel_feature_size() -> u32 {
    owner();
    KERNEL_FEATURE_SIZE.load(Ordering::Relaxed)
}

/// glibc's `__rseq_size`: 0 when glibc did not register (or is not glibc).
///
/// # Examples
/// ```
/// if restartable::owner() == restartable::Owner::Libc {
///     assert!(restartable::libc_rseq_size() >= 20);
/// }
/// ```
pub fn libc_rseq_size() -> u32 {
    owner();
    LIBC_RSEQ_SIZE.load(Ordering::Relaxed)
}

/// The alignment the kernel requires of the area (`AT_RSEQ_ALIGN`), or 32.
///
/// # Examples
/// ```
/// assert!(restartable::kernel_area_align() >= 32);
/// ```
pub fn kernel_area_align() -> usize {
    // SAFETY: getauxval has no preconditions.
    let align = unsafe { libc::getauxval(abi::AT_RSEQ_ALIGN) } as usize;
    if align == 0 {
        abi::AREA_ALIGN
    } else {
        align
    }
}

/// Offset of the active area from the thread pointer (the value of the
/// exported `restartable_area_offset`).
///
/// # Examples
/// ```
/// let offset = restartable::area_offset();
/// assert_eq!(offset % 32, 0);
/// ```
#[inline]
pub fn area_offset() -> isize {
    // Inlined into hand-written sections: one load and a predicted branch
    // on top of the offset's own load once the owner is decided (normally
    // before `main`); the decision itself stays out of line.
    if OWNER.load(Ordering::Acquire) == 0 {
        decide_owner();
    }
    offset()
}

#[cold]
#[inline(never)]
fn decide_owner() {
    owner();
}

/// Whether a classic `__rseq_abi` user loaded later (a plugin that
/// registers the symbol itself) would share this process's area.
///
/// True in `Library` mode when `__rseq_abi` in the global scope is the
/// area the library registers: the library is a shared object, or the
/// executable exports the symbol. A Rust executable, or a C program linked
/// with `librestartable.a`, keeps its symbols private unless linked with
/// `-Wl,--export-dynamic-symbol=__rseq_abi,--export-dynamic-symbol=__rseq_refcount`
/// (`pkg-config --static restartable` adds it; for Rust, see the crate
/// docs). Other copies of this library find the area either way. False in
/// the other modes, where the library registers nothing. It asks the
/// dynamic linker (`dlopen(NULL)`): call it from `main` on, not from a
/// `.preinit_array` function.
///
/// # Examples
/// ```
/// if restartable::owner() != restartable::Owner::Library {
///     assert!(!restartable::area_is_exported());
/// }
/// ```
pub fn area_is_exported() -> bool {
    owner() == Owner::Library && probe::area_is_global(shared().area)
}

/// The block shared by every copy of the library: the one the decision
/// found, or this copy's own before it.
pub(crate) fn shared() -> probe::Block {
    if OWNER.load(Ordering::Acquire) == 0 {
        return probe::Block::own();
    }
    probe::Block {
        area: SHARED_AREA.load(Ordering::Relaxed),
        refcount: SHARED_REFCOUNT.load(Ordering::Relaxed),
        busy: SHARED_BUSY.load(Ordering::Relaxed),
        len: SHARED_LEN.load(Ordering::Relaxed),
        extensible: SHARED_EXTENSIBLE.load(Ordering::Relaxed) != 0,
    }
}

/// The calling thread's active area: glibc's in `Libc` mode, the shared
/// `__rseq_abi` in `Library` mode (it reads `cpu_id < 0` until
/// registered), and an inert area no one registers in `Unavailable` mode.
/// Never null; exported to C under the same name.
///
/// # Examples
/// ```
/// let area = restartable::rseq_location();
/// assert!(!area.is_null());
/// ```
#[doc(alias = "__rseq_abi")]
#[inline]
pub fn rseq_location() -> *mut Rseq {
    owner();
    arch::thread_pointer().wrapping_add_signed(offset()) as *mut Rseq
}

/// `RESTARTABLE_CLASSIC_LENGTH` is set: register the classic 32 bytes
/// even where the kernel offers more.
fn classic_length_forced() -> bool {
    probe::env_var_set(c"RESTARTABLE_CLASSIC_LENGTH")
}

pub(crate) fn env_disabled() -> bool {
    probe::env_var_set(c"RESTARTABLE_DISABLE")
}

fn kernel_feature_size_from_auxv() -> u32 {
    // SAFETY: getauxval has no preconditions.
    let size = unsafe { libc::getauxval(abi::AT_RSEQ_FEATURE_SIZE) } as u32;
    if size == 0 {
        abi::ORIGINAL_FEATURE_SIZE
    } else {
        size
    }
}

/// In a `fork` child (see `fork.rs`): if another thread was deciding, the
/// decision is the child's to make again.
pub(crate) fn after_fork_in_child() {
    if OWNER.load(Ordering::Relaxed) == 0 {
        DECIDER.store(0, Ordering::Relaxed);
    }
}

fn decide() {
    crate::fork::register_child_handler();
    let kernel = kernel_feature_size_from_auxv();
    KERNEL_FEATURE_SIZE.store(kernel, Ordering::Relaxed);
    let libc = probe::libc_symbols();
    LIBC_RSEQ_SIZE.store(libc.map_or(0, |(size, _)| size), Ordering::Relaxed);
    let tp = arch::thread_pointer();
    let libc = libc.filter(|&(size, offset)| {
        size > 0 && tp.wrapping_add_signed(offset) & (abi::AREA_ALIGN - 1) == 0
    });
    let disabled = env_disabled();
    // Ask the kernel only where the answer matters, so that `Libc` mode
    // makes no system call.
    let library_candidate = !disabled && arch::AVAILABLE && libc.is_none();
    let kernel_rseq = library_candidate && probe::kernel_has_rseq();
    let block = if kernel_rseq {
        probe::shared_block()
    } else {
        probe::Block::own()
    };
    let kernel_align = kernel_area_align();
    let decision = choose(&Probe {
        disabled,
        arch_available: arch::AVAILABLE,
        libc,
        kernel_feature_size: kernel,
        kernel_align,
        kernel_rseq,
        shared_offset: block.area,
        shared_extensible: block.extensible
            && tp.wrapping_add_signed(block.area) & (kernel_align.max(abi::AREA_ALIGN) - 1) == 0
            && !classic_length_forced(),
        inert_offset: arch::inert_area_offset(),
    });
    SHARED_AREA.store(block.area, Ordering::Relaxed);
    SHARED_REFCOUNT.store(block.refcount, Ordering::Relaxed);
    SHARED_BUSY.store(block.busy, Ordering::Relaxed);
    if decision.owner == Owner::Unavailable {
        let cause = if disabled {
            CAUSE_DISABLED
        } else if !arch::AVAILABLE {
            CAUSE_NO_ARCH
        } else {
            CAUSE_KERNEL
        };
        CAUSE.store(cause, Ordering::Relaxed);
    }
    SHARED_LEN.store(block.len, Ordering::Relaxed);
    SHARED_EXTENSIBLE.store(block.extensible.into(), Ordering::Relaxed);
    REGISTRATION_LEN.store(decision.registration_len, Ordering::Relaxed);
    // Publishing with `Release` makes every store above visible to whoever
    // reads the owner with `Acquire`.
    publish(&Statics, decision);
}

/// What the decision learns about the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// `RESTARTABLE_DISABLE` is set (and not `0`).
    pub disabled: bool,
    /// The architecture layer has rseq code.
    pub arch_available: bool,
    /// glibc's `(__rseq_size, __rseq_offset)` if it registered.
    pub libc: Option<(u32, isize)>,
    /// The kernel's feature size (20 when it predates the auxv entry).
    pub kernel_feature_size: u32,
    /// The kernel's `AT_RSEQ_ALIGN` (32 when it predates the auxv entry).
    pub kernel_align: usize,
    /// The kernel answers `rseq(2)` (asked without registering; false when
    /// not asked because glibc registered).
    pub kernel_rseq: bool,
    /// The TP offset of the `__rseq_abi` every copy of the library shares.
    pub shared_offset: isize,
    /// The shared area is a copy's own ([`abi::AREA_CAPACITY`] bytes) and
    /// sits at an address aligned to `AT_RSEQ_ALIGN`; false for a classic
    /// component's 32-byte `__rseq_abi`.
    pub shared_extensible: bool,
    /// The TP offset of an area no one registers (`cpu_id` always -1).
    pub inert_offset: isize,
}

/// The process-wide values fixed once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Who owns the areas.
    pub owner: Owner,
    /// The TP offset of the active area.
    pub offset: isize,
    /// The usable feature size (0 when unavailable).
    pub feature_size: u32,
    /// The registration length (0 when unavailable).
    pub registration_len: u32,
}

/// The length the library registers an area with: the extensible
/// `max(32, feature size)` where the kernel's feature size exceeds 32 and
/// both it and the kernel's alignment fit the area, the classic 32 bytes
/// otherwise.
pub fn library_registration_len(probe: &Probe) -> u32 {
    let capacity = abi::AREA_CAPACITY as u32;
    let fits = probe.shared_extensible
        && probe.kernel_feature_size <= capacity
        && probe.kernel_align <= abi::AREA_CAPACITY;
    if fits && probe.kernel_feature_size > abi::MIN_REGISTRATION_LEN {
        probe.kernel_feature_size
    } else {
        abi::MIN_REGISTRATION_LEN
    }
}

/// Picks the owner from what the probe found; pure.
pub fn choose(probe: &Probe) -> Decision {
    let unavailable = Decision {
        owner: Owner::Unavailable,
        offset: probe.inert_offset,
        feature_size: 0,
        registration_len: 0,
    };
    if probe.disabled || !probe.arch_available {
        return unavailable;
    }
    match probe.libc {
        Some((size, offset)) if size > 0 => {
            // glibc < 2.40 reports the registered length (32) in
            // `__rseq_size`, later releases the feature size they
            // registered for (20, 28, 33 ...), registering at least 32.
            let len = size.max(abi::MIN_REGISTRATION_LEN);
            Decision {
                owner: Owner::Libc,
                offset,
                feature_size: abi::usable_feature_size(probe.kernel_feature_size, len),
                registration_len: len,
            }
        }
        _ if !probe.kernel_rseq => unavailable,
        _ => {
            let len = library_registration_len(probe);
            Decision {
                owner: Owner::Library,
                offset: probe.shared_offset,
                feature_size: abi::usable_feature_size(probe.kernel_feature_size, len),
                registration_len: len,
            }
        }
    }
}

/// Where a [`Decision`] is published: the process statics, or a model's
/// cells. Orderings are chosen by [`publish`] and [`read_owner`].
pub trait Published {
    /// Loads the owner (0 = not decided yet).
    fn owner(&self, order: Ordering) -> u8;
    /// Stores the owner.
    fn set_owner(&self, owner: u8, order: Ordering);
    /// Loads the area offset.
    #[cfg_attr(not(restartable_loom), allow(dead_code))] // read by the loom model
    fn offset(&self, order: Ordering) -> isize;
    /// Stores the area offset.
    fn set_offset(&self, offset: isize, order: Ordering);
    /// Loads the usable feature size.
    fn feature_size(&self, order: Ordering) -> u32;
    /// Stores the usable feature size.
    fn set_feature_size(&self, size: u32, order: Ordering);
}

/// Publishes a decision: the values first, then the owner with `Release`,
/// which pairs with the `Acquire` load in [`read_owner`], so whoever sees
/// the owner also sees the offset and feature size that go with it.
pub fn publish<P: Published + ?Sized>(cells: &P, decision: Decision) {
    cells.set_offset(decision.offset, Ordering::Relaxed);
    cells.set_feature_size(decision.feature_size, Ordering::Relaxed);
    cells.set_owner(decision.owner as u8, Ordering::Release);
}

/// The published owner, running `init` first if nothing is published yet.
/// `init` must publish (through a once-cell, so only one caller decides)
/// before it returns.
pub fn read_owner<P: Published + ?Sized>(cells: &P, init: impl FnOnce()) -> Owner {
    let v = cells.owner(Ordering::Acquire);
    if v != 0 {
        return Owner::from_u8(v);
    }
    init();
    Owner::from_u8(cells.owner(Ordering::Acquire))
}

/// The process's own cells: the statics above.
struct Statics;

impl Published for Statics {
    #[inline(always)]
    fn offset(&self, _order: Ordering) -> isize {
        arch::area_offset()
    }
    fn owner(&self, order: Ordering) -> u8 {
        OWNER.load(order)
    }
    fn set_owner(&self, owner: u8, order: Ordering) {
        OWNER.store(owner, order);
    }
    fn set_offset(&self, offset: isize, _order: Ordering) {
        // The owner, stored after it with `Release`, publishes it.
        arch::set_area_offset(offset);
    }
    fn feature_size(&self, order: Ordering) -> u32 {
        FEATURE_SIZE.load(order)
    }
    fn set_feature_size(&self, size: u32, order: Ordering) {
        FEATURE_SIZE.store(size, order);
    }
}

/// Decides the owner before `main` (and at `dlopen`, before the loader
/// returns); the `arch` layer lists it in `.init_array`.
pub(crate) extern "C" fn constructor() {
    decided(true);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(kernel: u32, align: usize, libc: Option<u32>, extensible: bool) -> Probe {
        Probe {
            disabled: false,
            arch_available: true,
            libc: libc.map(|size| (size, 2336)),
            kernel_feature_size: kernel,
            kernel_align: align,
            kernel_rseq: true,
            shared_offset: -128,
            shared_extensible: extensible,
            inert_offset: -96,
        }
    }

    fn lens(p: &Probe) -> (Owner, u32, u32) {
        let d = choose(p);
        (d.owner, d.registration_len, d.feature_size)
    }

    #[test]
    fn the_library_registers_the_kernels_length_where_it_exceeds_32() {
        // Linux 7.x: feature size 33, alignment 64.
        assert_eq!(lens(&probe(33, 64, None, true)), (Owner::Library, 33, 33));
        // A classic component's 32-byte area, or a misaligned one: 32 bytes,
        // and no field past mm_cid.
        assert_eq!(lens(&probe(33, 64, None, false)), (Owner::Library, 32, 28));
        // A kernel asking for more than the area holds.
        assert_eq!(lens(&probe(33, 128, None, true)), (Owner::Library, 32, 28));
        assert_eq!(lens(&probe(65, 64, None, true)), (Owner::Library, 32, 28));
        // Linux 6.3 to 6.19, and before 6.3.
        assert_eq!(lens(&probe(28, 32, None, true)), (Owner::Library, 32, 28));
        assert_eq!(lens(&probe(20, 32, None, true)), (Owner::Library, 32, 20));
    }

    #[test]
    fn glibcs_rseq_size_is_read_in_both_meanings() {
        // glibc 2.35-2.39: the registered 32 bytes.
        assert_eq!(lens(&probe(28, 32, Some(32), true)), (Owner::Libc, 32, 28));
        assert_eq!(lens(&probe(33, 64, Some(32), true)), (Owner::Libc, 32, 28));
        // glibc 2.40+ (and Debian 12's 2.36, which says 20): the feature
        // size glibc knows of; the kernel fills what a 32-byte
        // registration covers whatever glibc knows.
        assert_eq!(lens(&probe(28, 32, Some(20), true)), (Owner::Libc, 32, 28));
        assert_eq!(lens(&probe(28, 32, Some(28), true)), (Owner::Libc, 32, 28));
        assert_eq!(lens(&probe(33, 64, Some(33), true)), (Owner::Libc, 33, 33));
    }
}
