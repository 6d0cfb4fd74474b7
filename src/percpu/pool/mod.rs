//! A per-CPU memory pool: objects with one instance per CPU (or per
//! concurrency id), at a fixed stride, committed only where touched.
//!
//! # Layout
//!
//! A pool reserves `slots * stride` bytes of address space in one
//! anonymous mapping (`MAP_NORESERVE`): slot `i` is the range
//! `[base + i * stride, base + (i + 1) * stride)`. An object allocated
//! from the pool takes the same offset `off` in every slot, so its instance
//! for CPU `i` is `base + off + i * stride`: one multiply-add, no table.
//! Objects of one pool share the slots' pages, which is what keeps many
//! small per-CPU objects compact.
//!
//! # What is committed
//!
//! The kernel gives a page of the mapping memory only when it is first
//! written (a read of a page never written maps the shared zero page, which
//! costs no memory). Slots of CPUs that never run the process's threads
//! stay unbacked, however many CPUs are possible:
//! - a *zeroed* object needs no initialisation at all, so allocating it
//!   touches nothing;
//! - an object *initialised from a prototype* (the C form) or by a closure
//!   (the Rust form) is initialised one slot at a time, on the first access
//!   to that slot's instance, behind a per-slot state word kept outside the
//!   slots. A slot never accessed costs nothing and reads (through
//!   [`PerCpuBox::iter`]) as not yet initialised.
//!
//! The mapping is advised `MADV_NOHUGEPAGE`: with transparent huge pages
//! a single write could otherwise commit 2 MiB, the slots of many CPUs.
//!
//! The pool keeps every free byte of every slot zero: freeing an object
//! clears what it left in the slots that hold a value, and only bytes that
//! are not already zero are written (a read of an untouched page commits
//! nothing), so freeing does not commit the pages of unused slots either.
//!
//! # Lazy initialisation
//!
//! A slot's state word is 0 (not initialised), [`READY`], or "busy" with
//! the fork epoch above it while one thread copies the prototype in. The
//! first accessor takes it with a compare-exchange, initialises the
//! instance with every signal blocked (so a signal handler of the same
//! thread that accesses the slot cannot wait for itself), and publishes it
//! with a `Release` store of [`READY`]; every other accessor waits for that
//! store (`Acquire`). A thread of a `fork` child that finds a slot busy
//! from before the fork (the epoch differs) initialises it afresh: no
//! thread of the child holds it.
//!
//! # Concurrency ids
//!
//! A pool indexed by [`Index::MmCid`] has one slot per possible CPU too:
//! the kernel's ids are below the number of CPU ids it has
//! (`nr_cpu_ids`, which [`possible_cpus`](crate::possible_cpus) reads),
//! and below the process's number of threads at any moment, but a process
//! may start threads at any time, so no smaller bound is sound. The memory
//! stays compact anyway: ids are dense from 0, so a process with `n`
//! threads touches only the first `n` slots.

mod raw;

use core::cell::UnsafeCell;
use core::fmt;
use core::marker::PhantomData;
use core::ptr::NonNull;
use std::sync::Arc;

use crate::cs::{Index, Outcome};

#[cfg(not(restartable_loom))] // only the active table, not in the loom build, uses it
pub(crate) use raw::fork_epoch;
pub(crate) use raw::{after_fork_in_child, Init, Layout, RawObject, READY};
use raw::{page_size, register_fork_handlers, Inner};

/// The default stride: 64 KiB per slot.
pub const DEFAULT_STRIDE: usize = 64 * 1024;

/// Why a pool or an object could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
///
/// # Examples
/// ```
/// use restartable::{cs::Index, PerCpuPool, PoolError};
/// let err = PerCpuPool::with_layout(Index::Cpu, 0, 4096).unwrap_err();
/// assert_eq!(err, PoolError::NoSlots);
/// println!("{err}");
/// ```
pub enum PoolError {
    /// The stride is not a multiple of the page size (or is 0 after
    /// rounding), or `slots * stride` overflows the address space.
    BadStride,
    /// Zero slots were asked for.
    NoSlots,
    /// The object is larger than the stride, or its alignment is not a
    /// power of two or is larger than a page.
    BadLayout,
    /// No free range of the slots is large enough for the object.
    Exhausted,
    /// The kernel refused the mapping (`mmap` failed with this errno).
    Map {
        /// The positive errno.
        errno: i32,
    },
}

impl PoolError {
    /// The positive errno the C functions leave in `errno` for this error.
    ///
    /// # Examples
    /// ```
    /// use restartable::PoolError;
    /// assert_eq!(PoolError::Exhausted.errno(), libc::ENOMEM);
    /// assert_eq!(PoolError::BadStride.errno(), libc::EINVAL);
    /// ```
    pub fn errno(self) -> i32 {
        match self {
            PoolError::BadStride | PoolError::NoSlots | PoolError::BadLayout => libc::EINVAL,
            PoolError::Exhausted => libc::ENOMEM,
            PoolError::Map { errno } => errno,
        }
    }
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolError::BadStride => f.write_str(
                "the pool's stride must be a non-zero multiple of the page size, \
                 and slots * stride must fit the address space",
            ),
            PoolError::NoSlots => f.write_str("a pool needs at least one slot"),
            PoolError::BadLayout => f.write_str(
                "the object is larger than the pool's stride, or its alignment is not \
                 a power of two no larger than a page",
            ),
            PoolError::Exhausted => f.write_str(
                "the pool's slots have no free range large enough for the object; \
                 free objects or make a pool with a larger stride",
            ),
            PoolError::Map { errno } => {
                write!(f, "the kernel refused to map the pool (errno {errno})")
            }
        }
    }
}

impl std::error::Error for PoolError {}

/// A per-CPU memory pool: address space for one slot per possible CPU (or
/// concurrency id), from which objects get one instance per slot at a
/// fixed stride. See [`PerCpuBox`] for the objects. The C form is
/// `restartable_pool_new` / `restartable_percpu_alloc` /
/// `restartable_percpu_instance` in `include/restartable.h`.
///
/// Making and freeing pools and objects takes a lock and may allocate:
/// not from a signal handler. Reaching an instance may run anywhere.
///
/// Memory is committed only where instances are written: with 1024
/// possible CPUs and a process running on 2, an object's other 1022
/// instances cost nothing.
///
/// # Examples
/// ```
/// use restartable::{PerCpuPool, PerCpuBox};
/// use std::sync::atomic::{AtomicU64, Ordering};
///
/// let pool = PerCpuPool::new().unwrap();
/// let hits: PerCpuBox<AtomicU64> = pool.alloc_zeroed().unwrap();
/// hits.current().fetch_add(1, Ordering::Relaxed);
/// let total: u64 = hits.iter().map(|(_, h)| h.load(Ordering::Relaxed)).sum();
/// assert_eq!(total, 1);
/// ```
#[derive(Clone)]
#[doc(alias = "restartable_pool_new")]
#[doc(alias = "rseq_mempool_create")]
pub struct PerCpuPool {
    inner: Arc<Inner>,
}

impl fmt::Debug for PerCpuPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PerCpuPool")
            .field("slots", &self.inner.slots)
            .field("stride", &self.inner.stride)
            .field("index", &self.inner.index)
            .finish()
    }
}

impl PerCpuPool {
    /// A pool with one slot per possible CPU and the default stride
    /// (64 KiB).
    ///
    /// # Errors
    /// [`PoolError::Map`] if the kernel refuses the address space.
    ///
    /// # Examples
    /// ```
    /// let pool = restartable::PerCpuPool::new().unwrap();
    /// assert_eq!(pool.slots(), restartable::possible_cpus());
    /// ```
    pub fn new() -> Result<Self, PoolError> {
        Self::with_layout(Index::Cpu, crate::possible_cpus(), DEFAULT_STRIDE)
    }

    /// A pool of `slots` slots of `stride` bytes, indexed as `index` says.
    ///
    /// `slots` below [`possible_cpus`](crate::possible_cpus) makes a pool
    /// whose [`current`](PerCpuBox::current) instance is clamped to the
    /// last slot (and whose callers naming slots by CPU must check the
    /// result); a larger count models a machine with more possible CPUs
    /// than this one (tests measure memory that way). [`Index::MmCid`]
    /// falls back to CPU numbers where the kernel has no `mm_cid`, as
    /// [`PerCpu::with_index`](crate::PerCpu::with_index) does.
    ///
    /// # Errors
    /// [`PoolError::NoSlots`], [`PoolError::BadStride`] (not a non-zero
    /// multiple of the page size, or too large), [`PoolError::Map`].
    ///
    /// # Examples
    /// ```
    /// use restartable::{cs::Index, PerCpuPool, PoolError};
    /// let pool = PerCpuPool::with_layout(Index::MmCid, 64, 4096).unwrap();
    /// assert_eq!(pool.slots(), 64);
    /// assert_eq!(PerCpuPool::with_layout(Index::Cpu, 4, 100).unwrap_err(), PoolError::BadStride);
    /// ```
    pub fn with_layout(index: Index, slots: usize, stride: usize) -> Result<Self, PoolError> {
        if slots == 0 {
            return Err(PoolError::NoSlots);
        }
        register_fork_handlers();
        if stride == 0 || stride % page_size() != 0 {
            return Err(PoolError::BadStride);
        }
        let len = slots
            .checked_mul(stride)
            .filter(|&len| len <= isize::MAX as usize)
            .ok_or(PoolError::BadStride)?;
        let index = index.or_cpu();
        // SAFETY: a fresh private anonymous mapping; no existing memory is
        // named. MAP_NORESERVE: address space only, committed on touch.
        let map = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
            return Err(PoolError::Map { errno });
        }
        // No transparent huge pages: one write would commit 2 MiB, the
        // slots of many CPUs. (Advice only: a kernel without THP refuses
        // it, and nothing changes.)
        // SAFETY: advice on the mapping just made.
        unsafe { libc::madvise(map, len, libc::MADV_NOHUGEPAGE) };
        let base = NonNull::new(map.cast::<u8>()).ok_or(PoolError::Map { errno: 0 })?;
        Ok(PerCpuPool {
            inner: Arc::new(Inner {
                base,
                stride,
                slots,
                index,
                free: UnsafeCell::new(vec![(0, stride)]),
            }),
        })
    }

    /// The number of slots (instances per object).
    ///
    /// # Examples
    /// ```
    /// let pool = restartable::PerCpuPool::with_layout(restartable::Index::Cpu, 16, 4096).unwrap();
    /// assert_eq!(pool.slots(), 16);
    /// ```
    pub fn slots(&self) -> usize {
        self.inner.slots
    }

    /// Bytes from one instance of an object to the next.
    ///
    /// # Examples
    /// ```
    /// let pool = restartable::PerCpuPool::new().unwrap();
    /// assert_eq!(pool.stride(), 64 * 1024);
    /// ```
    pub fn stride(&self) -> usize {
        self.inner.stride
    }

    /// How slots are indexed.
    ///
    /// # Examples
    /// ```
    /// use restartable::{Index, PerCpuPool};
    /// assert_eq!(PerCpuPool::new().unwrap().index(), Index::Cpu);
    /// ```
    pub fn index(&self) -> Index {
        self.inner.index
    }

    /// A zeroed object: every instance reads as all-zero bytes, and none
    /// is touched (so none is committed) until it is written.
    ///
    /// # Errors
    /// [`PoolError::BadLayout`] when `T` is larger than the stride or
    /// aligned to more than a page; [`PoolError::Exhausted`] when the
    /// slots have no free range for it.
    ///
    /// # Examples
    /// ```
    /// use restartable::PerCpuPool;
    /// let pool = PerCpuPool::new().unwrap();
    /// let words = pool.alloc_zeroed::<[u64; 4]>().unwrap();
    /// assert!(words.iter().all(|(_, w)| *w == [0; 4]));
    /// ```
    pub fn alloc_zeroed<T: Zeroable + Send + Sync>(&self) -> Result<PerCpuBox<T>, PoolError> {
        let raw = RawObject::new(self, Layout::of::<T>(), None)?;
        Ok(PerCpuBox {
            raw,
            init: None,
            _marker: PhantomData,
        })
    }

    /// An object whose instance `i` is `init(i)`, built on the first access
    /// to slot `i` (and never for a slot no thread accesses).
    ///
    /// `init` runs with every signal blocked, on the thread that first
    /// accesses the slot; a panic in it leaves the slot uninitialised.
    /// It must not access the object it initialises (that slot would wait
    /// for itself).
    ///
    /// # Errors
    /// As [`alloc_zeroed`](Self::alloc_zeroed).
    ///
    /// # Examples
    /// ```
    /// use restartable::PerCpuPool;
    /// use std::sync::atomic::{AtomicIsize, Ordering};
    ///
    /// let pool = PerCpuPool::new().unwrap();
    /// let budget = pool.alloc_with(|_slot| AtomicIsize::new(100)).unwrap();
    /// assert_eq!(budget.current().fetch_sub(1, Ordering::Relaxed), 100);
    /// assert_eq!(budget.iter().count(), 1); // only the slot used so far
    /// ```
    pub fn alloc_with<T: Send + Sync>(
        &self,
        init: impl Fn(usize) -> T + Send + Sync + 'static,
    ) -> Result<PerCpuBox<T>, PoolError> {
        let raw = RawObject::new(self, Layout::of::<T>(), Some(Init::Closure))?;
        let init: Box<dyn Fn(usize) -> T + Send + Sync> = Box::new(init);
        Ok(PerCpuBox {
            raw,
            init: Some(init),
            _marker: PhantomData,
        })
    }
}

impl PerCpuPool {
    /// An object whose every instance starts as a copy of `proto`, made on
    /// the first access to its slot: the Rust form of the C prototype
    /// ([`alloc_with`](Self::alloc_with) for types that are not `Copy`).
    ///
    /// # Errors
    /// As [`alloc_zeroed`](Self::alloc_zeroed).
    ///
    /// # Examples
    /// ```
    /// use restartable::PerCpuPool;
    /// let pool = PerCpuPool::new().unwrap();
    /// let limits = pool.alloc_copied([10u32, 20, 30]).unwrap();
    /// assert_eq!(limits.current()[2], 30);
    /// ```
    pub fn alloc_copied<T: Copy + Send + Sync + 'static>(
        &self,
        proto: T,
    ) -> Result<PerCpuBox<T>, PoolError> {
        self.alloc_with(move |_| proto)
    }
}

/// Types for which all-zero bytes are a valid value, so that a zeroed
/// object's untouched instances are real values.
///
/// # Safety
/// All-zero bytes must be a valid `T`.
///
/// # Examples
/// ```
/// use restartable::{PerCpuPool, Zeroable};
/// use std::sync::atomic::AtomicU64;
///
/// #[repr(C)]
/// struct Stats {
///     hits: AtomicU64,
///     misses: AtomicU64,
/// }
/// // SAFETY: two atomics; all-zero bytes are a valid `Stats`.
/// unsafe impl Zeroable for Stats {}
///
/// let stats = PerCpuPool::new().unwrap().alloc_zeroed::<Stats>().unwrap();
/// assert_eq!(stats.current().hits.load(std::sync::atomic::Ordering::Relaxed), 0);
/// ```
pub unsafe trait Zeroable {}

macro_rules! zeroable {
    ($($t:ty),*) => { $(
        // SAFETY: zero is a valid value of every integer, float and atomic.
        unsafe impl Zeroable for $t {}
    )* };
}

zeroable!(
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    bool,
    core::sync::atomic::AtomicBool,
    core::sync::atomic::AtomicU8,
    core::sync::atomic::AtomicU16,
    core::sync::atomic::AtomicU32,
    core::sync::atomic::AtomicU64,
    core::sync::atomic::AtomicUsize,
    core::sync::atomic::AtomicI8,
    core::sync::atomic::AtomicI16,
    core::sync::atomic::AtomicI32,
    core::sync::atomic::AtomicI64,
    core::sync::atomic::AtomicIsize
);

// SAFETY: an array of zeroable values is zeroable.
unsafe impl<T: Zeroable, const N: usize> Zeroable for [T; N] {}
// SAFETY: the padding of `CachePadded` is never read as a value.
unsafe impl<T: Zeroable> Zeroable for super::CachePadded<T> {}
// SAFETY: a null `AtomicPtr` is all-zero bytes.
unsafe impl<T> Zeroable for core::sync::atomic::AtomicPtr<T> {}

/// An object with one `T` per slot of a [`PerCpuPool`]: instance `i` sits
/// at `instance(0) + i * stride`.
///
/// Instances are shared between threads (`&T`), so the fields that
/// critical sections update must allow it: atomics, whose
/// [`as_ptr`](core::sync::atomic::AtomicIsize::as_ptr) gives the word the
/// [`cs`](crate::cs) operations take. The same exactness rules apply as to
/// any word those operations update (see "Exactness" in [`cs`](crate::cs)).
///
/// # Examples
/// An exact per-CPU sum with `cs::load_add_store`, the C-style way:
/// ```
/// use restartable::cs::{self, Outcome};
/// use restartable::PerCpuPool;
/// use std::sync::atomic::{AtomicIsize, Ordering};
///
/// let pool = PerCpuPool::new().unwrap();
/// let counts = pool.alloc_zeroed::<AtomicIsize>().unwrap();
/// for _ in 0..1000 {
///     counts.retry_current(|count, slot| {
///         // SAFETY: a live word of this object, updated only by these
///         // operations.
///         unsafe { cs::load_add_store(counts.index(), count.as_ptr(), 1, slot) }
///     });
/// }
/// let sum: isize = counts.iter().map(|(_, c)| c.load(Ordering::Relaxed)).sum();
/// assert_eq!(sum, 1000);
/// ```
#[doc(alias = "restartable_percpu_alloc")]
#[doc(alias = "rseq_mempool_percpu_malloc")]
pub struct PerCpuBox<T> {
    raw: RawObject,
    init: Option<Box<dyn Fn(usize) -> T + Send + Sync>>,
    _marker: PhantomData<T>,
}

// SAFETY: instances are `T`s shared between threads as `&T` and dropped by
// whoever drops the box: `T: Send + Sync` covers both. The initialiser is
// `Send + Sync`.
unsafe impl<T: Send + Sync> Send for PerCpuBox<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for PerCpuBox<T> {}

impl<T> PerCpuBox<T> {
    /// The number of instances (the pool's slots).
    ///
    /// # Examples
    /// ```
    /// let pool = restartable::PerCpuPool::with_layout(restartable::Index::Cpu, 8, 4096).unwrap();
    /// let b = pool.alloc_copied(7u32).unwrap();
    /// assert_eq!(b.slots(), 8);
    /// ```
    #[inline]
    pub fn slots(&self) -> usize {
        self.raw.slots()
    }

    /// Bytes from one instance to the next.
    ///
    /// # Examples
    /// ```
    /// let pool = restartable::PerCpuPool::with_layout(restartable::Index::Cpu, 8, 4096).unwrap();
    /// let b = pool.alloc_copied(7u32).unwrap();
    /// assert_eq!(b.stride(), 4096);
    /// ```
    #[inline]
    pub fn stride(&self) -> usize {
        self.raw.stride()
    }

    /// How instances are indexed (as the pool).
    ///
    /// # Examples
    /// ```
    /// let pool = restartable::PerCpuPool::with_layout(restartable::Index::Cpu, 8, 4096).unwrap();
    /// let b = pool.alloc_copied(7u32).unwrap();
    /// assert_eq!(b.index(), restartable::Index::Cpu);
    /// ```
    #[inline]
    pub fn index(&self) -> Index {
        self.raw.index()
    }

    /// Instance `i`, initialising it on first access; `None` if there is
    /// no slot `i`.
    ///
    /// # Examples
    /// ```
    /// let pool = restartable::PerCpuPool::with_layout(restartable::Index::Cpu, 8, 4096).unwrap();
    /// let b = pool.alloc_copied(7u32).unwrap();
    /// assert_eq!(b.get(3), Some(&7));
    /// assert_eq!(b.get(8), None);
    /// ```
    #[inline]
    pub fn get(&self, i: usize) -> Option<&T> {
        let write = |ptr: *mut u8, slot: usize| {
            if let Some(init) = &self.init {
                // SAFETY: `ptr` is slot `slot`'s instance, aligned for `T`
                // (the offset is, and the stride is a page multiple), and
                // written by this thread alone while the slot is busy.
                unsafe { ptr.cast::<T>().write(init(slot)) }
            }
        };
        let ptr = self.raw.instance(i, Some(&write))?;
        // SAFETY: an initialised `T` (zeroed and `Zeroable`, or written by
        // `init`), alive as long as `self`.
        Some(unsafe { &*ptr.cast::<T>() })
    }

    /// The slot the calling thread runs on now (its CPU, or its
    /// concurrency id for pools by [`Index::MmCid`]), clamped to the last
    /// slot. Never fails: see [`current_mm_cid`](crate::current_mm_cid).
    ///
    /// # Examples
    /// ```
    /// let pool = restartable::PerCpuPool::with_layout(restartable::Index::Cpu, 8, 4096).unwrap();
    /// let b = pool.alloc_copied(7u32).unwrap();
    /// assert!(b.current_slot() < 8);
    /// ```
    #[inline]
    pub fn current_slot(&self) -> u32 {
        let i = match self.raw.index() {
            Index::Cpu => crate::current_cpu(),
            Index::MmCid => crate::current_mm_cid(),
        };
        i.min(self.raw.slots() as u32 - 1)
    }

    /// The instance of the slot the calling thread runs on now. A hint, as
    /// [`PerCpu::current`](crate::PerCpu::current): the thread may migrate
    /// at once.
    ///
    /// # Examples
    /// ```
    /// let pool = restartable::PerCpuPool::with_layout(restartable::Index::Cpu, 8, 4096).unwrap();
    /// let b = pool.alloc_copied(7u32).unwrap();
    /// assert_eq!(*b.current(), 7);
    /// ```
    #[inline]
    pub fn current(&self) -> &T {
        self.get(self.current_slot() as usize)
            .expect("the current slot is clamped to the slots")
    }

    /// Runs `op(instance, slot)` on the current slot's instance until it
    /// does not answer [`Outcome::Aborted`], reading the slot again before
    /// each try; returns its last answer. `op` is meant to run one
    /// [`cs`](crate::cs) operation on a field of the instance with `slot`
    /// as its CPU (or concurrency id) and the box's [`index`](Self::index).
    ///
    /// # Examples
    /// ```
    /// use restartable::cs::{self, Outcome};
    /// use std::sync::atomic::{AtomicIsize, Ordering};
    /// let pool = restartable::PerCpuPool::new().unwrap();
    /// let b = pool.alloc_zeroed::<AtomicIsize>().unwrap();
    /// let outcome = b.retry_current(|w, slot| {
    ///     // SAFETY: a live word of the box, updated only by these operations.
    ///     unsafe { cs::load_add_store(b.index(), w.as_ptr(), 5, slot) }
    /// });
    /// assert_eq!(outcome, Outcome::Committed);
    /// assert_eq!(b.iter().map(|(_, w)| w.load(Ordering::Relaxed)).sum::<isize>(), 5);
    /// ```
    #[inline]
    pub fn retry_current(&self, mut op: impl FnMut(&T, u32) -> Outcome) -> Outcome {
        loop {
            let slot = self.current_slot();
            let instance = self.get(slot as usize).expect("clamped");
            match op(instance, slot) {
                Outcome::Aborted => continue,
                other => return other,
            }
        }
    }

    /// Every instance that holds a value, with its slot, in slot order:
    /// every slot of a zeroed object, the slots accessed so far of one
    /// built by [`alloc_with`](PerCpuPool::alloc_with) (the others would
    /// read as their initialiser gives). Touches no page not written yet.
    ///
    /// # Examples
    /// ```
    /// let pool = restartable::PerCpuPool::with_layout(restartable::Index::Cpu, 8, 4096).unwrap();
    /// let b = pool.alloc_copied(7u32).unwrap();
    /// assert_eq!(b.iter().count(), 0);
    /// b.get(5);
    /// assert_eq!(b.iter().collect::<Vec<_>>(), vec![(5, &7)]);
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = (usize, &T)> {
        (0..self.raw.slots())
            .filter(move |&i| self.raw.is_ready(i))
            .map(move |i| {
                // SAFETY: a ready slot holds an initialised `T`.
                (i, unsafe {
                    &*self.raw.base().add(i * self.raw.stride()).cast::<T>()
                })
            })
    }

    /// Instance 0 and the stride, for critical sections that compute the
    /// instance themselves (`base + slot * stride`, as
    /// [`cs::add_at_current_unchecked`](crate::cs::add_at_current_unchecked)
    /// does). Only a zeroed object's instances are all valid without an
    /// access first.
    ///
    /// # Examples
    /// ```
    /// let pool = restartable::PerCpuPool::with_layout(restartable::Index::Cpu, 4, 4096).unwrap();
    /// let b = pool.alloc_zeroed::<u64>().unwrap();
    /// let (base, stride) = b.raw_parts();
    /// assert_eq!(b.get(3).unwrap() as *const u64, base.wrapping_byte_add(3 * stride));
    /// ```
    #[inline]
    pub fn raw_parts(&self) -> (*mut T, usize) {
        (self.raw.base().cast(), self.raw.stride())
    }
}

impl<T> Drop for PerCpuBox<T> {
    fn drop(&mut self) {
        if core::mem::needs_drop::<T>() {
            for i in 0..self.raw.slots() {
                if self.raw.is_ready(i) {
                    // SAFETY: a ready slot holds a `T` that nothing uses
                    // any more; it is dropped once, and the pool clears the
                    // bytes after.
                    unsafe {
                        core::ptr::drop_in_place(
                            self.raw.base().add(i * self.raw.stride()).cast::<T>(),
                        )
                    };
                }
            }
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for PerCpuBox<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}
