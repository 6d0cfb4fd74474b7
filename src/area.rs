//! Where the calling thread's area lives, decided once per process.
//!
//! An ELF constructor (`.init_array`, priority 101, so it runs before the
//! default-priority constructors of the same object) looks for glibc's
//! registration, then for kernel support, and fixes three process-wide
//! values: the [`Owner`], the usable feature size, and
//! `restartable_area_offset`, the distance from the thread pointer to the
//! active area. That offset is the same for every thread in both `Libc` and
//! `Library` mode, because both areas live in static TLS, so the hot path is
//! one load of the offset and one `%fs`-relative load of `cpu_id`.

use core::ffi::CStr;
use core::fmt;

use crate::abi::{self, Rseq};
use crate::arch;
use crate::registration;
use crate::sync::{Ordering, StaticAtomicU32 as AtomicU32, StaticAtomicU8 as AtomicU8};

/// Who registered the areas of this process's threads.
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

/// The offset of the calling thread's active area from the thread pointer.
///
/// Written once by [`init`] (`arch::set_area_offset`), before `main` and
/// before any other code of the process can call into this object; read
/// without ordering afterwards: the constructor happens-before every thread
/// the program starts.
#[inline(always)]
pub(crate) fn offset() -> isize {
    arch::area_offset()
}

/// Who owns the areas of this process's threads.
///
/// Decided once, before `main`; only one change can follow: `Library`
/// becomes `Unavailable` if a seccomp filter installed later refuses
/// `rseq(2)` to a new thread.
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
    read_owner(&Statics, init)
}

/// Turns `Library` into `Unavailable` (the kernel refused `rseq(2)`).
pub(crate) fn set_unavailable() {
    publish(
        &Statics,
        Decision {
            owner: Owner::Unavailable,
            offset: arch::inert_area_offset(),
            feature_size: 0,
        },
    );
}

/// Size in bytes of the rseq fields this process can read: 0 when rseq is
/// unavailable, 20 for kernels that predate `AT_RSEQ_FEATURE_SIZE`, 28 with
/// `node_id` and `mm_cid` (Linux 6.3+). Capped at the 32 bytes registered.
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

/// The kernel's feature size from `getauxval(AT_RSEQ_FEATURE_SIZE)`, or 20
/// when the kernel predates it, whatever the owner.
pub fn kernel_feature_size() -> u32 {
    owner();
    KERNEL_FEATURE_SIZE.load(Ordering::Relaxed)
}

/// glibc's `__rseq_size`: 0 when glibc did not register (or is not glibc).
pub fn libc_rseq_size() -> u32 {
    owner();
    LIBC_RSEQ_SIZE.load(Ordering::Relaxed)
}

/// The alignment the kernel requires of the area (`AT_RSEQ_ALIGN`), or 32.
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
pub fn area_offset() -> isize {
    owner();
    offset()
}

/// The calling thread's active area: glibc's in `Libc` mode, this
/// library's `__rseq_abi` in `Library` mode (it reads `cpu_id < 0` until
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

fn env_disabled() -> bool {
    // SAFETY: the name is a valid C string; getenv returns null or a valid
    // C string that we only read here, before any thread can `setenv`.
    let value = unsafe { libc::getenv(c"RESTARTABLE_DISABLE".as_ptr()) };
    if value.is_null() {
        return false;
    }
    // SAFETY: non-null results of getenv are NUL-terminated strings.
    let value = unsafe { CStr::from_ptr(value) }.to_bytes();
    !value.is_empty() && value != b"0"
}

/// glibc's registration: `(__rseq_size, __rseq_offset)` if it registered.
fn libc_registration() -> Option<(u32, isize)> {
    // SAFETY: dlsym with RTLD_DEFAULT and valid C strings; a strong extern
    // would fail to link against musl and glibc < 2.35.
    let size = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"__rseq_size".as_ptr()) };
    // SAFETY: as above.
    let offset = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"__rseq_offset".as_ptr()) };
    if size.is_null() || offset.is_null() {
        return None;
    }
    // SAFETY: glibc defines `__rseq_size` as `const unsigned int` and
    // `__rseq_offset` as `const ptrdiff_t`, both set before user code runs.
    let (size, offset) = unsafe { (*(size as *const u32), *(offset as *const isize)) };
    LIBC_RSEQ_SIZE.store(size, Ordering::Relaxed);
    (size > 0).then_some((size, offset))
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

/// Decides the owner; runs once, from the constructor (or from the first
/// call if the constructor did not run, as in a loom model).
pub(crate) fn init() {
    static ONCE: once_cell::sync::OnceCell<()> = once_cell::sync::OnceCell::new();
    ONCE.get_or_init(decide);
}

fn decide() {
    let kernel = kernel_feature_size_from_auxv();
    KERNEL_FEATURE_SIZE.store(kernel, Ordering::Relaxed);
    let probe = Probe {
        disabled: env_disabled(),
        arch_available: arch::AVAILABLE,
        libc: libc_registration(),
        kernel_feature_size: kernel,
        own_offset: arch::own_area_offset(),
        inert_offset: arch::inert_area_offset(),
    };
    let decision = choose(&probe);
    publish(&Statics, decision);
    if decision.owner == Owner::Library {
        // The constructor thread's lazy registration doubles as the probe
        // of kernel support: it turns the owner to `Unavailable` itself if
        // the kernel refuses rseq.
        registration::register_lazily();
    }
}

/// What the constructor learns about the process before deciding.
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
    /// The TP offset of this library's own `__rseq_abi`.
    pub own_offset: isize,
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
}

/// Picks the owner from what the probe found; pure.
///
/// `Library` is provisional: the first registration may still find the
/// kernel refusing rseq and turn it into `Unavailable`.
pub fn choose(probe: &Probe) -> Decision {
    let usable = probe.kernel_feature_size.min(abi::MIN_REGISTRATION_LEN);
    if probe.disabled || !probe.arch_available {
        return Decision {
            owner: Owner::Unavailable,
            offset: probe.inert_offset,
            feature_size: 0,
        };
    }
    match probe.libc {
        Some((size, offset)) if size > 0 => Decision {
            owner: Owner::Libc,
            offset,
            feature_size: usable,
        },
        _ => Decision {
            owner: Owner::Library,
            offset: probe.own_offset,
            feature_size: usable,
        },
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

extern "C" fn constructor() {
    init();
}

/// Runs [`init`] before `main` (and at `dlopen`, before the loader returns).
#[used]
#[link_section = ".init_array.00101"]
static CONSTRUCTOR: extern "C" fn() = constructor;
