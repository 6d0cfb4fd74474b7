//! Restartable critical sections: the operations, their fallbacks, and the
//! [`rseq_asm!`](crate::rseq_asm) macro they are all written with.
//!
//! Each operation runs one critical section on the slot of a CPU (or of a
//! concurrency id, see [`Index`]): it checks that the thread still runs on
//! the CPU the caller read before the section, performs its loads and
//! comparisons, and ends with a single commit store. If the thread is
//! preempted, migrated or signalled before the commit, the kernel sends it
//! to the abort handler and the operation returns [`Outcome::Aborted`]
//! without its commit (five operations store before their commit, and
//! those stores may stay done: see [`Outcome::Aborted`]); the caller reads
//! the CPU again and retries.
//!
//! Names follow the operations' pseudo-code: `cbne` is "compare, branch if
//! not equal" (the operation fails when the word differs from the expected
//! value), `cbeq` "compare, branch if equal".
//!
//! Each operation comes twice: the checked form registers the thread lazily
//! and takes an exact fallback where rseq cannot be used (see
//! `fallback.rs`: atomics, or a striped lock for multi-word updates); the
//! `_unchecked` form is the bare section, for callers that checked
//! [`is_available`](crate::is_available) themselves.
//!
//! # Exactness
//!
//! Updates to one word are exact when every thread that writes it takes
//! the same path: all run sections (the usual case in `Libc` and `Library`
//! mode), or all take the fallback (`Unavailable` mode). A thread with
//! another area registered ([`ThreadState::Foreign`](crate::ThreadState))
//! takes the fallback while its neighbours run sections, and a section's
//! commit is a plain store that no atomic or lock orders, so the two can
//! lose an update on a shared word. Where such threads may exist, keep the
//! two paths on separate words, as [`PerCpuCounter`](crate::PerCpuCounter)
//! does, or fence one slot at a time, as
//! [`PerCpuLock`](crate::PerCpuLock) and [`PerCpuStack`](crate::PerCpuStack)
//! do; those types are exact with any mix of threads.
//!
//! # Examples
//! ```
//! use restartable::cs::{self, Index, Outcome};
//! use restartable::PerCpu;
//! use std::sync::atomic::AtomicIsize;
//!
//! let slots = PerCpu::new(|_| AtomicIsize::new(0));
//! loop {
//!     let cpu = restartable::current_cpu();
//!     let word = slots.get(cpu as usize).unwrap().as_ptr();
//!     // SAFETY: `word` is a live, aligned word of the slot array.
//!     match unsafe { cs::load_add_store(Index::Cpu, word, 1, cpu) } {
//!         Outcome::Committed => break,
//!         _ => continue, // aborted: read the CPU again
//!     }
//! }
//! let total: isize = slots.iter().map(|s| s.load(std::sync::atomic::Ordering::Relaxed)).sum();
//! assert_eq!(total, 1);
//! ```

mod fallback;
mod macros;

#[cfg(not(restartable_loom))]
pub(crate) use fallback::after_fork_in_child;

use crate::abi;
use crate::arch;
use crate::sync::{Ordering, StaticAtomicU64 as AtomicU64};

/// Which area field a section checks and per-CPU data is indexed by.
///
/// # Examples
/// ```
/// use restartable::{Index, PerCpu};
/// // Slots per concurrency id: a process with 3 threads touches about 3 slots.
/// let compact = PerCpu::with_index(Index::MmCid, |_| std::sync::Mutex::new(Vec::new()));
/// compact.current().lock().unwrap().push(1);
/// assert_eq!(compact.iter().map(|s| s.lock().unwrap().len()).sum::<usize>(), 1);
/// assert_eq!(Index::default(), Index::Cpu);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Index {
    /// The CPU number (`cpu_id`): slot `i` belongs to CPU `i`.
    #[default]
    Cpu,
    /// The concurrency id (`mm_cid`, Linux 6.3): small dense ids, fewer than
    /// the process's threads and CPUs, for compact per-CPU memory.
    MmCid,
}

impl Index {
    /// Whether the kernel provides this index: `cpu_id` always, `mm_cid`
    /// from feature size 28 (Linux 6.3). The compiler drops the test for
    /// a constant [`Index::Cpu`].
    #[inline(always)]
    pub(crate) fn provided(self) -> bool {
        self == Index::Cpu || crate::feature_size() >= abi::MM_CID_END
    }

    /// This index where the kernel provides it, else [`Index::Cpu`]: what
    /// per-CPU data asked to be indexed by `mm_cid` is indexed by.
    pub(crate) fn or_cpu(self) -> Index {
        if self.provided() {
            self
        } else {
            Index::Cpu
        }
    }
}

/// What a critical section did.
///
/// # Examples
/// ```
/// use restartable::cs::{load_cbne_store, Index, Outcome};
/// let mut words = vec![0isize; restartable::possible_cpus()];
/// let cpu = restartable::current_cpu();
/// // SAFETY: a live, aligned word, updated only through the cs operations.
/// let outcome = unsafe { load_cbne_store(Index::Cpu, &mut words[cpu as usize], 1, 2, cpu) };
/// // 0 != 1: the compare fails and nothing is written (or the thread was
/// // preempted or migrated first, and nothing is written either).
/// assert!(matches!(outcome, Outcome::CompareFailed | Outcome::Aborted));
/// assert!(words.iter().all(|&w| w == 0));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum Outcome {
    /// The commit store happened.
    Committed = 0,
    /// A comparison failed. In a critical section every comparison comes
    /// before the first store, so memory is unchanged; on the fallback path
    /// of `load_cbne_store_store` and `load_cbne_memcpy_store`, a change of
    /// `*v` between the comparison and the commit (by a lock-free fallback
    /// operation) also ends here, with the early store made, as an aborted
    /// section leaves it: `*v` itself never changes.
    CompareFailed = 1,
    /// The section did not commit: the kernel aborted it (preemption,
    /// migration, signal), or the thread was not on the CPU passed in.
    ///
    /// The word the commit stores keeps its value. Where the thread was not
    /// on the CPU (or its area is not registered) nothing at all is
    /// written: the check comes first. After a kernel abort, the stores an
    /// operation makes before its commit may be done:
    /// - [`load_cbne_store_store`] (and its `_release` form): `*v2` may
    ///   hold `newv2`;
    /// - [`load_cbne_memcpy_store`]: the first bytes of `dst`, any number
    ///   up to `len`, may hold those of `src`;
    /// - [`load_cbeq_store_add_load_store`] (the pop): `*load` may hold
    ///   the head it read;
    /// - [`push_at_current`]: `node.next` may hold the head it read;
    /// - [`buffer_push_at_current`]: the word past the last item may hold
    ///   `item` (no count covers it).
    ///
    /// Every other operation stores only at its commit.
    Aborted = -1,
}

impl Outcome {
    pub(crate) fn from_raw(raw: i32) -> Self {
        match raw {
            0 => Outcome::Committed,
            1 => Outcome::CompareFailed,
            _ => Outcome::Aborted,
        }
    }
}

/// What [`add_at_current_unchecked`] did.
///
/// # Examples
/// ```
/// use restartable::cs::{add_at_current_unchecked, AddResult, Index};
/// let mut slots = vec![0isize; restartable::possible_cpus()];
/// let (base, n) = (slots.as_mut_ptr() as *mut u8, slots.len() as u32);
/// loop {
///     // SAFETY: `slots` holds `n` words of 8 bytes, updated only by sections.
///     match unsafe { add_at_current_unchecked(Index::Cpu, base, 8, n, 1) } {
///         AddResult::Committed => break,
///         AddResult::Aborted => continue,
///         // Not registered (or no rseq): register, or take a fallback.
///         AddResult::NotRegistered if restartable::is_available() => continue,
///         AddResult::NotRegistered => break,
///     }
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddResult {
    /// Added to the slot of the current CPU.
    Committed,
    /// Aborted: try again.
    Aborted,
    /// The area reads no valid index (the thread is not registered).
    NotRegistered,
}

static ABORTS: AtomicU64 = AtomicU64::new(0);

/// Critical sections this process saw aborted (and retried) through the
/// checked operations and the per-CPU types. `Relaxed`: a tally.
///
/// # Examples
/// ```
/// let aborts = restartable::cs::abort_count();
/// println!("{aborts} aborted sections so far");
/// ```
pub fn abort_count() -> u64 {
    ABORTS.load(Ordering::Relaxed)
}

pub(crate) fn note_abort() {
    ABORTS.fetch_add(1, Ordering::Relaxed);
}

/// The calling thread's index (`cpu_id` or `mm_cid`) as the area holds
/// it: negative when the thread is not registered.
///
/// # Examples
/// ```
/// use restartable::cs::{current_index_raw, Index};
/// assert!(current_index_raw(Index::Cpu) >= -2);
/// ```
#[inline(always)]
pub fn current_index_raw(index: Index) -> i32 {
    let offset = crate::area::offset();
    // SAFETY: the process-wide offset names the calling thread's live area.
    let raw = unsafe {
        match index {
            Index::Cpu => arch::load_u32::<{ abi::CPU_ID_OFFSET }>(offset),
            Index::MmCid => {
                if crate::cpu::current_cpu_raw() < 0 {
                    return -1;
                }
                arch::load_u32::<{ abi::MM_CID_OFFSET }>(offset)
            }
        }
    };
    raw as i32
}

/// `cpu` as the bare sections take it. A value negative as an `i32` is
/// what the `cpu_id` of an area that is not registered reads (-1, -2): it
/// would pass the CPU check there and commit with no kernel to abort it, so
/// it becomes `i32::MAX`, which no area ever reads. Free where `cpu` was
/// read from an area as an `i32` (the compiler knows its sign).
#[inline(always)]
fn never_negative(cpu: u32) -> u32 {
    cpu.min(i32::MAX as u32)
}

/// Runs `arch::$op` on the field `$index` names, as an [`Outcome`].
macro_rules! section {
    ($op:ident, $index:expr, $($arg:expr),*) => {
        Outcome::from_raw(section_raw!($op, $index, $($arg),*))
    };
}

/// Runs `arch::$op` on the field `$index` names: 0, 1 or -1.
macro_rules! section_raw {
    ($op:ident, $index:expr, $($arg:expr),*) => {
        match $index {
            Index::Cpu => arch::$op::<{ abi::CPU_ID_OFFSET }>($($arg),*),
            Index::MmCid => arch::$op::<{ abi::MM_CID_OFFSET }>($($arg),*),
        }
    };
}

/// The example of an operation: `setup` makes per-CPU words at `base`
/// (and whatever else `args` names), `args` are the operands for CPU `cpu`,
/// and `check` asserts on `outcome` after the retry loop.
macro_rules! operation_example {
    ($call:expr, $name:ident, $setup:literal, $args:literal, $check:literal) => {
        concat!(
            "```\n",
            "use restartable::cs::{",
            stringify!($name),
            ", Index, Outcome};\n",
            "let n = restartable::possible_cpus();\n",
            $setup,
            "\n",
            $call,
            "\n",
            "    let outcome = loop {\n",
            "        let cpu = restartable::current_cpu();\n",
            "        // SAFETY: the words are live, aligned and updated only here.\n",
            "        match unsafe { ",
            stringify!($name),
            "(Index::Cpu, ",
            $args,
            ", cpu) } {\n",
            "            Outcome::Aborted => continue, // preempted or migrated: again\n",
            "            done => break done,\n",
            "        }\n",
            "    };\n",
            "    ",
            $check,
            "\n",
            "}\n",
            "```"
        )
    };
}

macro_rules! operation {
    (
        $(#[$doc:meta])*
        $name:ident / $unchecked:ident ( $($arg:ident : $ty:ty),* )
        example($setup:literal, $args:literal, $check:literal)
    ) => {
        $(#[$doc])*
        ///
        /// On threads that cannot run critical sections, performs the same
        /// update through the module's fallback (`cpu` is then ignored).
        ///
        /// # Examples
        #[doc = operation_example!("{", $name, $setup, $args, $check)]
        ///
        /// # Safety
        /// - every pointer is valid for the accesses the operation names,
        ///   and aligned;
        /// - other threads update these words only through the operations
        ///   of this module (see "Exactness" in the module docs on mixing
        ///   the two paths).
        #[inline]
        #[allow(clippy::too_many_arguments)] // the operation's own operands
        pub unsafe fn $name(index: Index, $($arg: $ty,)* cpu: u32) -> Outcome {
            // The section first, with no availability check before it: on
            // an area that is not registered it cannot commit (see
            // `never_negative`), and its failed CPU check lands in the
            // cold path below, which registers or falls back. `mm_cid` is
            // checked first where the kernel may not provide it (the
            // compiler drops the test for `Index::Cpu`).
            if !index.provided() {
                // SAFETY: forwarded from the caller.
                return unsafe { fallback::$name($($arg),*) };
            }
            // SAFETY: `never_negative` keeps an unregistered area from
            // matching; the rest is the caller's.
            let raw = unsafe { section_raw!($name, index, $($arg,)* never_negative(cpu)) };
            // A commit first: the caller's own test for `Committed` then
            // folds into this one, and a retry loop's hot path is one test.
            if raw == 0 {
                return Outcome::Committed;
            }
            if raw > 0 {
                return Outcome::CompareFailed;
            }
            #[cold]
            #[inline(never)]
            #[allow(clippy::too_many_arguments)] // the operation's own operands
            unsafe fn not_committed(index: Index, $($arg: $ty,)* cpu: u32) -> Outcome {
                if current_index_raw(Index::Cpu) >= 0 {
                    // Registered: the kernel aborted the section, or the
                    // thread was not on `cpu`.
                    note_abort();
                    return Outcome::Aborted;
                }
                if crate::is_available() {
                    // Registered lazily just now: run the section.
                    // SAFETY: as above.
                    return counted(unsafe { section!($name, index, $($arg,)* never_negative(cpu)) });
                }
                // SAFETY: forwarded from the caller.
                unsafe { fallback::$name($($arg),*) }
            }
            // SAFETY: forwarded from the caller.
            unsafe { not_committed(index, $($arg,)* cpu) }
        }

        #[doc = concat!("[`", stringify!($name), "`] as the bare critical section.")]
        ///
        /// On a thread whose area is not registered (before its first use,
        /// after its last release, or without rseq) the section never
        /// commits, whatever `cpu` is: it reports [`Outcome::Aborted`] and
        /// writes nothing. Take the fallback then.
        ///
        /// # Examples
        #[doc = operation_example!("if restartable::is_available() {", $unchecked, $setup, $args, $check)]
        ///
        /// # Safety
        /// - for a result other than `Aborted`, the calling thread's area is
        ///   registered ([`crate::is_available`] returned true on this
        ///   thread), and for [`Index::MmCid`] the kernel provides `mm_cid`
        ///   (feature size >= 28);
        /// - every pointer is valid for the accesses the operation names,
        ///   and aligned.
        #[inline(always)]
        #[allow(clippy::too_many_arguments)] // the operation's own operands
        pub unsafe fn $unchecked(index: Index, $($arg: $ty,)* cpu: u32) -> Outcome {
            // SAFETY: forwarded from the caller.
            unsafe { section!($name, index, $($arg,)* never_negative(cpu)) }
        }
    };
}

operation! {
    /// `if *v == expect { *v = newv }`, on CPU `cpu`.
    #[doc(alias = "rseq_load_cbne_store__ptr")]
    load_cbne_store / load_cbne_store_unchecked(v: *mut isize, expect: isize, newv: isize)
    example(
        "let mut words = vec![5isize; n];\nlet base = words.as_mut_ptr();",
        "base.add(cpu as usize), 5, 6",
        "assert_eq!(outcome, Outcome::Committed);\n    assert_eq!(words.iter().filter(|&&w| w == 6).count(), 1);"
    )
}

operation! {
    /// `*v += count`, on CPU `cpu`; the commit is the add itself.
    #[doc(alias = "rseq_load_add_store__ptr")]
    load_add_store / load_add_store_unchecked(v: *mut isize, count: isize)
    example(
        "let mut words = vec![0isize; n];\nlet base = words.as_mut_ptr();",
        "base.add(cpu as usize), 3",
        "assert_eq!(outcome, Outcome::Committed);\n    assert_eq!(words.iter().sum::<isize>(), 3);"
    )
}

operation! {
    /// Per-CPU list pop: `head = *v`; fails if `head == expectnot`;
    /// otherwise `*load = head` and `*v = *(head + voffp)`. The store to
    /// `*load` comes before the commit: after [`Outcome::Aborted`] it may
    /// be done.
    #[doc(alias = "rseq_load_cbeq_store_add_load_store__ptr")]
    load_cbeq_store_add_load_store / load_cbeq_store_add_load_store_unchecked(
        v: *mut isize, expectnot: isize, voffp: isize, load: *mut isize
    )
    example(
        "// Each CPU's list holds one node, whose first word (`next`) is 0.\nlet mut node = [0isize; 1];\nlet top = node.as_mut_ptr() as isize;\nlet mut heads = vec![top; n];\nlet base = heads.as_mut_ptr();\nlet mut popped = 0isize;",
        "base.add(cpu as usize), 0, 0, &mut popped",
        "assert_eq!(outcome, Outcome::Committed);\n    assert_eq!(popped, top);\n    assert_eq!(heads.iter().filter(|&&h| h == 0).count(), 1);"
    )
}

operation! {
    /// `if *v == expect && *v2 == expect2 { *v = newv }`, on CPU `cpu`.
    #[doc(alias = "rseq_load_cbne_load_cbne_store__ptr")]
    load_cbne_load_cbne_store / load_cbne_load_cbne_store_unchecked(
        v: *mut isize, expect: isize, v2: *mut isize, expect2: isize, newv: isize
    )
    example(
        "let mut words = vec![0isize; n];\nlet base = words.as_mut_ptr();\nlet mut open = 1isize;",
        "base.add(cpu as usize), 0, &mut open, 1, 9",
        "assert_eq!(outcome, Outcome::Committed);\n    assert_eq!(words.iter().filter(|&&w| w == 9).count(), 1);"
    )
}

operation! {
    /// `if *v == expect { *v2 = newv2; *v = newv }`, on CPU `cpu`. The
    /// store to `*v2` may be seen before the commit by other threads, and
    /// after [`Outcome::Aborted`] it may be done.
    #[doc(alias = "rseq_load_cbne_store_store__ptr")]
    load_cbne_store_store / load_cbne_store_store_unchecked(
        v: *mut isize, expect: isize, v2: *mut isize, newv2: isize, newv: isize
    )
    example(
        "let mut words = vec![0isize; n];\nlet base = words.as_mut_ptr();\nlet mut data = 0isize;",
        "base.add(cpu as usize), 0, &mut data, 42, 1",
        "assert_eq!(outcome, Outcome::Committed);\n    assert_eq!((data, words.iter().sum::<isize>()), (42, 1));"
    )
}

operation! {
    /// [`load_cbne_store_store`] with release ordering: a thread that sees
    /// the commit (with acquire) sees the store to `*v2`. On x86 (TSO)
    /// plain stores are already ordered, so the code is the same; on
    /// aarch64 the commit is a release store (`stlr`). As there, after
    /// [`Outcome::Aborted`] the store to `*v2` may be done.
    #[doc(alias = "rseq_load_cbne_store_store__ptr_release")]
    load_cbne_store_store_release / load_cbne_store_store_release_unchecked(
        v: *mut isize, expect: isize, v2: *mut isize, newv2: isize, newv: isize
    )
    example(
        "// Publish `data`, then the word that says it is ready.\nlet mut ready = vec![0isize; n];\nlet base = ready.as_mut_ptr();\nlet mut data = 0isize;",
        "base.add(cpu as usize), 0, &mut data, 7, 1",
        "assert_eq!(outcome, Outcome::Committed);\n    assert_eq!(data, 7);"
    )
}

operation! {
    /// `if *v == expect { memcpy(dst, src, len); *v = newv }`, on CPU `cpu`.
    /// The copy comes before the commit: after [`Outcome::Aborted`] the
    /// first bytes of `dst`, any number up to `len`, may hold those of
    /// `src`.
    #[doc(alias = "rseq_load_cbne_memcpy_store__ptr")]
    load_cbne_memcpy_store / load_cbne_memcpy_store_unchecked(
        v: *mut isize, expect: isize, dst: *mut u8, src: *const u8, len: usize, newv: isize
    )
    example(
        "let mut words = vec![0isize; n];\nlet base = words.as_mut_ptr();\nlet src = *b\"hello\";\nlet mut dst = [0u8; 5];",
        "base.add(cpu as usize), 0, dst.as_mut_ptr(), src.as_ptr(), 5, 1",
        "assert_eq!(outcome, Outcome::Committed);\n    assert_eq!(&dst, b\"hello\");"
    )
}

operation! {
    /// [`load_cbne_memcpy_store`] with release ordering: a thread that
    /// sees the commit (with acquire) sees every byte of the copy (the
    /// buffer push of a producer whose consumer reads the bytes after the
    /// index). On x86 (TSO) plain stores are already ordered, so the code
    /// is the same; on aarch64 the commit is a release store (`stlr`); the
    /// fallback's lock orders them everywhere. As there, after
    /// [`Outcome::Aborted`] the first bytes of `dst`, any number up to
    /// `len`, may hold those of `src`.
    #[doc(alias = "rseq_load_cbne_memcpy_store__ptr_release")]
    load_cbne_memcpy_store_release / load_cbne_memcpy_store_release_unchecked(
        v: *mut isize, expect: isize, dst: *mut u8, src: *const u8, len: usize, newv: isize
    )
    example(
        "// Copy a record, then publish the index that says it is there.\nlet mut index = vec![0isize; n];\nlet base = index.as_mut_ptr();\nlet src = *b\"abcd\";\nlet mut dst = [0u8; 4];",
        "base.add(cpu as usize), 0, dst.as_mut_ptr(), src.as_ptr(), 4, 1",
        "assert_eq!(outcome, Outcome::Committed);\n    assert_eq!(&dst, b\"abcd\");"
    )
}

operation! {
    /// `p = *ptr; q = *(p + off); *q += inc`, on CPU `cpu`: follow a
    /// pointer held at offset `off` of the object `*ptr` points to, then add.
    #[doc(alias = "rseq_load_add_load_load_add_store__ptr")]
    load_add_load_load_add_store / load_add_load_load_add_store_unchecked(
        ptr: *mut isize, off: isize, inc: isize
    )
    example(
        "// Each CPU's word points to an object whose second word points to `total`.\nlet mut total = 0isize;\nlet mut object = [0isize, std::ptr::addr_of_mut!(total) as isize];\nlet mut objects = vec![object.as_mut_ptr() as isize; n];\nlet base = objects.as_mut_ptr();",
        "base.add(cpu as usize), 8, 2",
        "assert_eq!(outcome, Outcome::Committed);\n    assert_eq!(total, 2);"
    )
}

/// Adds `delta` to the first word of the current CPU's slot, reading the
/// CPU (or `mm_cid`) *inside* the section: no separate CPU compare, since a
/// migration after the section starts aborts it. The per-CPU counter's add.
///
/// # Safety
/// - `base` points to `slots` slots of `stride` bytes, each starting with
///   an aligned `isize` written only by critical sections;
/// - for [`Index::MmCid`], the kernel provides `mm_cid`.
///
/// # Examples
/// ```
/// use restartable::cs::{add_at_current_unchecked, AddResult, Index};
/// let mut slots = vec![0isize; restartable::possible_cpus()];
/// if restartable::is_available() {
///     let (base, n) = (slots.as_mut_ptr() as *mut u8, slots.len() as u32);
///     // SAFETY: `slots` holds `n` words of 8 bytes.
///     while unsafe { add_at_current_unchecked(Index::Cpu, base, 8, n, 5) } != AddResult::Committed {}
///     assert_eq!(slots.iter().sum::<isize>(), 5);
/// }
/// ```
#[inline(always)]
pub unsafe fn add_at_current_unchecked(
    index: Index,
    base: *mut u8,
    stride: usize,
    slots: u32,
    delta: isize,
) -> AddResult {
    // SAFETY: forwarded from the caller.
    let raw = unsafe {
        match index {
            Index::Cpu => {
                arch::add_at_current::<{ abi::CPU_ID_OFFSET }>(base, stride, slots, delta)
            }
            Index::MmCid => {
                arch::add_at_current::<{ abi::MM_CID_OFFSET }>(base, stride, slots, delta)
            }
        }
    };
    match raw {
        0 => AddResult::Committed,
        1 => AddResult::NotRegistered,
        _ => AddResult::Aborted,
    }
}

/// Pushes `node` on the list of the current CPU's slot (or `mm_cid`'s),
/// reading the index *inside* the section: `node.next = head; head =
/// node`. Slot `i` starts at `base + i * stride` with its list head; a
/// node's first word is its `next`; an empty list's head is 0. The head is
/// read inside the section, so there is no compare and no CPU to pass: a
/// migration after the section starts aborts it. Returns
/// [`Outcome::Committed`], or [`Outcome::Aborted`] (try again).
///
/// On threads that cannot run critical sections, pushes on the slot of
/// [`fallback_cpu`](crate::fallback_cpu) (modulo `slots`) with a
/// compare-exchange. The module's "Exactness" applies: where threads of
/// both kinds share a list, keep them apart as it says.
///
/// # Safety
/// - `base` holds `slots` slots of `stride` bytes, each starting with an
///   aligned list head that only these operations and
///   [`pop_at_current`] write, and `slots` exceeds every index the kernel
///   may report ([`possible_cpus`](crate::possible_cpus) is enough);
/// - `node` is aligned, valid for writes, and the caller's until the push
///   links it; `node.next` may be written whatever the outcome.
///
/// # Panics
/// If `slots` is 0, or the kernel reports an index of `slots` or more.
///
/// # Examples
/// ```
/// use restartable::cs::{pop_at_current, push_at_current, Index, Outcome};
/// use std::ptr::null_mut;
/// let n = restartable::possible_cpus();
/// let mut heads = vec![0isize; n]; // every list empty
/// let mut node = [0isize; 2]; // `next`, then a payload
/// node[1] = 42;
/// let (base, p) = (heads.as_mut_ptr().cast::<u8>(), node.as_mut_ptr());
/// // SAFETY: `n` heads of 8 bytes, written only by these operations.
/// while unsafe { push_at_current(Index::Cpu, base, 8, n as u32, p) } != Outcome::Committed {}
/// let popped = loop {
///     // SAFETY: as above; every listed node is alive.
///     match unsafe { pop_at_current(Index::Cpu, base, 8, n as u32) } {
///         (Outcome::Committed, node) => break node,
///         // The thread moved: the node is on another CPU's list.
///         (Outcome::CompareFailed, _) => break null_mut(),
///         (Outcome::Aborted, _) => continue,
///     }
/// };
/// assert!(popped.is_null() || popped == p);
/// ```
#[doc(alias = "rseq_load_cbne_store__ptr")]
#[inline]
pub unsafe fn push_at_current(
    index: Index,
    base: *mut u8,
    stride: usize,
    slots: u32,
    node: *mut isize,
) -> Outcome {
    if index.provided() {
        // SAFETY: the kernel provides `index`; the rest is the caller's.
        let outcome = unsafe { push_at_current_unchecked(index, base, stride, slots, node) };
        if outcome == Outcome::Committed {
            return outcome;
        }
    }
    #[cold]
    #[inline(never)]
    unsafe fn not_committed(
        index: Index,
        base: *mut u8,
        stride: usize,
        slots: u32,
        node: *mut isize,
    ) -> Outcome {
        match path_at_current(index, slots) {
            Path::Aborted => Outcome::Aborted,
            // SAFETY: forwarded from the caller.
            Path::Again => unsafe {
                counted(push_at_current_unchecked(index, base, stride, slots, node))
            },
            Path::Fallback(slot) => {
                // SAFETY: `slot` is below `slots`; forwarded from the caller.
                unsafe { fallback::push(base.add(slot * stride).cast(), node) };
                Outcome::Committed
            }
        }
    }
    // SAFETY: forwarded from the caller.
    unsafe { not_committed(index, base, stride, slots, node) }
}

/// [`push_at_current`] as the bare critical section.
///
/// On a thread whose area is not registered the section never commits:
/// it reports [`Outcome::Aborted`] and writes no head. Take the fallback
/// then.
///
/// # Safety
/// As for [`push_at_current`], and for [`Index::MmCid`] the kernel
/// provides `mm_cid` (feature size >= 28): an older kernel leaves it 0 on
/// every CPU.
///
/// # Examples
/// ```
/// use restartable::cs::{push_at_current_unchecked, Index, Outcome};
/// let n = restartable::possible_cpus();
/// let mut heads = vec![0isize; n];
/// let mut node = [0isize; 1];
/// if restartable::is_available() {
///     let base = heads.as_mut_ptr().cast::<u8>();
///     // SAFETY: `n` heads of 8 bytes; the thread is registered.
///     while unsafe { push_at_current_unchecked(Index::Cpu, base, 8, n as u32, node.as_mut_ptr()) }
///         != Outcome::Committed
///     {}
///     assert_eq!(heads.iter().filter(|&&h| h == node.as_ptr() as isize).count(), 1);
/// }
/// ```
#[inline(always)]
pub unsafe fn push_at_current_unchecked(
    index: Index,
    base: *mut u8,
    stride: usize,
    slots: u32,
    node: *mut isize,
) -> Outcome {
    // SAFETY: forwarded from the caller.
    Outcome::from_raw(unsafe {
        section_raw!(push_at_current, index, base, stride, slots, node.cast())
    })
}

/// Pops the head node of the list of the current CPU's slot (or
/// `mm_cid`'s), reading the index *inside* the section. Slots and nodes
/// as for [`push_at_current`]. Returns [`Outcome::Committed`] with the
/// node, [`Outcome::CompareFailed`] where the list is empty, or
/// [`Outcome::Aborted`] (try again); the pointer is null unless committed.
///
/// On threads that cannot run critical sections, pops from the slot of
/// [`fallback_cpu`](crate::fallback_cpu) (modulo `slots`) under the
/// module's striped lock, as [`load_cbeq_store_add_load_store`] does.
///
/// # Safety
/// As for [`push_at_current`]; nodes reachable from a head stay readable
/// while a pop of their CPU can still commit.
///
/// # Panics
/// If `slots` is 0, or the kernel reports an index of `slots` or more.
///
/// # Examples
/// ```
/// use restartable::cs::{pop_at_current, Index, Outcome};
/// let n = restartable::possible_cpus();
/// let mut heads = vec![0isize; n];
/// // SAFETY: `n` empty lists of 8 bytes each.
/// let (outcome, node) = loop {
///     match unsafe { pop_at_current(Index::Cpu, heads.as_mut_ptr().cast(), 8, n as u32) } {
///         (Outcome::Aborted, _) => continue,
///         done => break done,
///     }
/// };
/// assert_eq!((outcome, node), (Outcome::CompareFailed, std::ptr::null_mut()));
/// ```
#[doc(alias = "rseq_load_cbeq_store_add_load_store__ptr")]
#[inline]
pub unsafe fn pop_at_current(
    index: Index,
    base: *mut u8,
    stride: usize,
    slots: u32,
) -> (Outcome, *mut isize) {
    if index.provided() {
        // SAFETY: the kernel provides `index`; the rest is the caller's.
        let popped = unsafe { pop_at_current_unchecked(index, base, stride, slots) };
        if popped.0 != Outcome::Aborted {
            return popped;
        }
    }
    #[cold]
    #[inline(never)]
    unsafe fn not_committed(
        index: Index,
        base: *mut u8,
        stride: usize,
        slots: u32,
    ) -> (Outcome, *mut isize) {
        match path_at_current(index, slots) {
            Path::Aborted => (Outcome::Aborted, core::ptr::null_mut()),
            Path::Again => {
                // SAFETY: forwarded from the caller.
                let (outcome, node) =
                    unsafe { pop_at_current_unchecked(index, base, stride, slots) };
                (counted(outcome), node)
            }
            Path::Fallback(slot) => {
                let mut node = 0isize;
                // SAFETY: `slot` is below `slots`; forwarded from the caller.
                let outcome = unsafe {
                    fallback::load_cbeq_store_add_load_store(
                        base.add(slot * stride).cast(),
                        0,
                        0,
                        &mut node,
                    )
                };
                match outcome {
                    Outcome::Committed => (outcome, node as *mut isize),
                    _ => (outcome, core::ptr::null_mut()),
                }
            }
        }
    }
    // SAFETY: forwarded from the caller.
    unsafe { not_committed(index, base, stride, slots) }
}

/// [`pop_at_current`] as the bare critical section.
///
/// On a thread whose area is not registered the section never commits:
/// it reports [`Outcome::Aborted`] and writes no head. Take the fallback
/// then.
///
/// # Safety
/// As for [`pop_at_current`], and for [`Index::MmCid`] the kernel provides
/// `mm_cid` (feature size >= 28).
///
/// # Examples
/// ```
/// use restartable::cs::{pop_at_current_unchecked, Index, Outcome};
/// let n = restartable::possible_cpus();
/// let mut node = [0isize; 1]; // `next` 0: the last node
/// let mut heads = vec![node.as_mut_ptr() as isize; n]; // on every list
/// if restartable::is_available() {
///     let base = heads.as_mut_ptr().cast::<u8>();
///     // SAFETY: `n` heads of 8 bytes; the thread is registered.
///     let popped = loop {
///         match unsafe { pop_at_current_unchecked(Index::Cpu, base, 8, n as u32) } {
///             (Outcome::Committed, node) => break node,
///             _ => continue,
///         }
///     };
///     assert_eq!(popped, node.as_mut_ptr());
///     assert_eq!(heads.iter().filter(|&&h| h == 0).count(), 1);
/// }
/// ```
#[inline(always)]
pub unsafe fn pop_at_current_unchecked(
    index: Index,
    base: *mut u8,
    stride: usize,
    slots: u32,
) -> (Outcome, *mut isize) {
    // SAFETY: forwarded from the caller.
    let (raw, node) = unsafe { section_raw!(pop_at_current, index, base, stride, slots) };
    match Outcome::from_raw(raw) {
        Outcome::Committed => (Outcome::Committed, node as *mut isize),
        outcome => (outcome, core::ptr::null_mut()),
    }
}

/// Stores `item` in the buffer of the current CPU's slot (or `mm_cid`'s),
/// reading the index *inside* the section: `if count < capacity {
/// items[count] = item; count += 1 }`. Slot `i` starts at `base + i *
/// stride` with its count, an aligned `isize`, and its items follow it,
/// one word each; an empty buffer's count is 0. The count is read inside
/// the section, so there is no compare to pass and no CPU: a migration
/// after the section starts aborts it. Returns [`Outcome::Committed`],
/// [`Outcome::CompareFailed`] where the buffer is full (nothing written),
/// or [`Outcome::Aborted`] (try again; the word past the last item may
/// hold `item`, which no count covers).
///
/// This is librseq's per-CPU buffer push, which takes a CPU read, then
/// `load_cbne_store_store` with a CPU compare; here it is one section. A
/// thread that reads a count with acquire ordering sees the items below
/// it (on aarch64 the commit is a release store).
///
/// On threads that cannot run critical sections, stores in the slot of
/// [`fallback_cpu`](crate::fallback_cpu) (modulo `slots`) under the
/// module's striped lock. The module's "Exactness" applies: where threads
/// of both kinds share a buffer, keep them apart as it says.
///
/// # Safety
/// - `base` holds `slots` slots of `stride` bytes, each an aligned count
///   followed by at least `capacity` words (`(capacity + 1) * 8 <=
///   stride` on 64-bit targets), and only these operations and
///   [`buffer_pop_at_current`] write them;
/// - `slots` exceeds every index the kernel may report
///   ([`possible_cpus`](crate::possible_cpus) is enough).
///
/// # Panics
/// If `slots` is 0, if the kernel reports an index of `slots` or more, or
/// if `capacity` words do not fit in a slot after its count. The cold path
/// checks these (after an abort, on a thread's first operation where the
/// library registers it, on every operation without rseq); debug builds
/// check the capacity before every push too.
///
/// # Examples
/// ```
/// use restartable::cs::{buffer_pop_at_current, buffer_push_at_current, Index, Outcome};
/// const CAPACITY: usize = 3;
/// let n = restartable::possible_cpus();
/// let mut slots = vec![[0isize; CAPACITY + 1]; n]; // a count, then the items
/// let (base, stride) = (slots.as_mut_ptr().cast::<u8>(), std::mem::size_of::<[isize; 4]>());
/// // SAFETY: `n` slots of a count and `CAPACITY` items, written only here.
/// let pushed = loop {
///     match unsafe { buffer_push_at_current(Index::Cpu, base, stride, n as u32, CAPACITY, 42) } {
///         Outcome::Aborted => continue,
///         outcome => break outcome,
///     }
/// };
/// assert_eq!(pushed, Outcome::Committed);
/// let popped = loop {
///     // SAFETY: as above.
///     match unsafe { buffer_pop_at_current(Index::Cpu, base, stride, n as u32) } {
///         (Outcome::Aborted, _) => continue,
///         popped => break popped,
///     }
/// };
/// // The thread may have moved: the item is then in another CPU's buffer.
/// assert!(matches!(popped, (Outcome::Committed, 42) | (Outcome::CompareFailed, 0)));
/// ```
#[doc(alias = "rseq_load_cbne_store_store__ptr")]
#[inline]
pub unsafe fn buffer_push_at_current(
    index: Index,
    base: *mut u8,
    stride: usize,
    slots: u32,
    capacity: usize,
    item: isize,
) -> Outcome {
    debug_assert!(
        buffer_fits(stride, capacity),
        "{BUFFER_TOO_SMALL}: {capacity} items in slots of {stride} bytes"
    );
    if index.provided() {
        // SAFETY: the kernel provides `index`; the rest is the caller's.
        let outcome =
            unsafe { buffer_push_at_current_unchecked(index, base, stride, slots, capacity, item) };
        if outcome != Outcome::Aborted {
            return outcome;
        }
    }
    #[cold]
    #[inline(never)]
    unsafe fn not_committed(
        index: Index,
        base: *mut u8,
        stride: usize,
        slots: u32,
        capacity: usize,
        item: isize,
    ) -> Outcome {
        assert!(
            buffer_fits(stride, capacity),
            "{BUFFER_TOO_SMALL}: {capacity} items in slots of {stride} bytes"
        );
        match path_at_current(index, slots) {
            Path::Aborted => Outcome::Aborted,
            // SAFETY: forwarded from the caller.
            Path::Again => unsafe {
                counted(buffer_push_at_current_unchecked(
                    index, base, stride, slots, capacity, item,
                ))
            },
            // SAFETY: `slot` is below `slots`; forwarded from the caller.
            Path::Fallback(slot) => unsafe {
                fallback::buffer_push(base.add(slot * stride).cast(), capacity, item)
            },
        }
    }
    // SAFETY: forwarded from the caller.
    unsafe { not_committed(index, base, stride, slots, capacity, item) }
}

/// [`buffer_push_at_current`] as the bare critical section.
///
/// On a thread whose area is not registered the section never commits:
/// it reports [`Outcome::Aborted`] and writes no count. Take the fallback
/// then.
///
/// # Safety
/// As for [`buffer_push_at_current`], and for [`Index::MmCid`] the kernel
/// provides `mm_cid` (feature size >= 28): an older kernel leaves it 0 on
/// every CPU.
///
/// # Examples
/// ```
/// use restartable::cs::{buffer_push_at_current_unchecked, Index, Outcome};
/// let n = restartable::possible_cpus();
/// let mut slots = vec![[0isize; 2]; n]; // a count and one item each
/// if restartable::is_available() {
///     let base = slots.as_mut_ptr().cast::<u8>();
///     // SAFETY: `n` slots of 16 bytes; the thread is registered.
///     while unsafe { buffer_push_at_current_unchecked(Index::Cpu, base, 16, n as u32, 1, 7) }
///         != Outcome::Committed
///     {}
///     assert_eq!(slots.iter().filter(|s| **s == [1, 7]).count(), 1);
/// }
/// ```
#[inline(always)]
pub unsafe fn buffer_push_at_current_unchecked(
    index: Index,
    base: *mut u8,
    stride: usize,
    slots: u32,
    capacity: usize,
    item: isize,
) -> Outcome {
    // SAFETY: forwarded from the caller.
    Outcome::from_raw(unsafe {
        section_raw!(
            buffer_push_at_current,
            index,
            base,
            stride,
            slots,
            capacity,
            item
        )
    })
}

/// Takes the last item of the buffer of the current CPU's slot (or
/// `mm_cid`'s), reading the index *inside* the section: `if count > 0 {
/// count -= 1; item = items[count] }`. Slots as for
/// [`buffer_push_at_current`]. Returns [`Outcome::Committed`] with the
/// item, [`Outcome::CompareFailed`] where the buffer is empty, or
/// [`Outcome::Aborted`] (try again); the item is 0 unless committed.
///
/// This is librseq's per-CPU buffer pop, which takes a CPU read, then
/// `load_cbne_load_cbne_store` with a CPU compare, and stores the item it
/// takes in memory; here it is one section, and the item comes back in a
/// register.
///
/// On threads that cannot run critical sections, takes from the slot of
/// [`fallback_cpu`](crate::fallback_cpu) (modulo `slots`) under the
/// module's striped lock.
///
/// # Safety
/// As for [`buffer_push_at_current`], with at least `count` items after
/// each count.
///
/// # Panics
/// If `slots` is 0, or the kernel reports an index of `slots` or more.
///
/// # Examples
/// ```
/// use restartable::cs::{buffer_pop_at_current, Index, Outcome};
/// let n = restartable::possible_cpus();
/// let mut slots = vec![[1isize, 5]; n]; // every buffer holds the item 5
/// let (base, stride) = (slots.as_mut_ptr().cast::<u8>(), 16);
/// // SAFETY: `n` slots of a count and its items.
/// let popped = loop {
///     match unsafe { buffer_pop_at_current(Index::Cpu, base, stride, n as u32) } {
///         (Outcome::Aborted, _) => continue,
///         popped => break popped,
///     }
/// };
/// assert_eq!(popped, (Outcome::Committed, 5));
/// assert_eq!(slots.iter().filter(|s| s[0] == 0).count(), 1);
/// ```
#[doc(alias = "rseq_load_cbne_load_cbne_store__ptr")]
#[inline]
pub unsafe fn buffer_pop_at_current(
    index: Index,
    base: *mut u8,
    stride: usize,
    slots: u32,
) -> (Outcome, isize) {
    if index.provided() {
        // SAFETY: the kernel provides `index`; the rest is the caller's.
        let popped = unsafe { buffer_pop_at_current_unchecked(index, base, stride, slots) };
        if popped.0 != Outcome::Aborted {
            return popped;
        }
    }
    #[cold]
    #[inline(never)]
    unsafe fn not_committed(
        index: Index,
        base: *mut u8,
        stride: usize,
        slots: u32,
    ) -> (Outcome, isize) {
        match path_at_current(index, slots) {
            Path::Aborted => (Outcome::Aborted, 0),
            Path::Again => {
                // SAFETY: forwarded from the caller.
                let (outcome, item) =
                    unsafe { buffer_pop_at_current_unchecked(index, base, stride, slots) };
                (counted(outcome), item)
            }
            // SAFETY: `slot` is below `slots`; forwarded from the caller.
            Path::Fallback(slot) => unsafe { fallback::buffer_pop(base.add(slot * stride).cast()) },
        }
    }
    // SAFETY: forwarded from the caller.
    unsafe { not_committed(index, base, stride, slots) }
}

/// [`buffer_pop_at_current`] as the bare critical section.
///
/// On a thread whose area is not registered the section never commits:
/// it reports [`Outcome::Aborted`] and writes no count. Take the fallback
/// then.
///
/// # Safety
/// As for [`buffer_pop_at_current`], and for [`Index::MmCid`] the kernel
/// provides `mm_cid` (feature size >= 28).
///
/// # Examples
/// ```
/// use restartable::cs::{buffer_pop_at_current_unchecked, Index, Outcome};
/// let n = restartable::possible_cpus();
/// let mut slots = vec![[2isize, 8, 9]; n]; // two items each
/// if restartable::is_available() {
///     let base = slots.as_mut_ptr().cast::<u8>();
///     // SAFETY: `n` slots of 24 bytes; the thread is registered.
///     let item = loop {
///         match unsafe { buffer_pop_at_current_unchecked(Index::Cpu, base, 24, n as u32) } {
///             (Outcome::Committed, item) => break item,
///             _ => continue,
///         }
///     };
///     assert_eq!(item, 9); // the last one stored
///     assert_eq!(slots.iter().filter(|s| s[0] == 1).count(), 1);
/// }
/// ```
#[inline(always)]
pub unsafe fn buffer_pop_at_current_unchecked(
    index: Index,
    base: *mut u8,
    stride: usize,
    slots: u32,
) -> (Outcome, isize) {
    // SAFETY: forwarded from the caller.
    let (raw, item) = unsafe { section_raw!(buffer_pop_at_current, index, base, stride, slots) };
    match Outcome::from_raw(raw) {
        Outcome::Committed => (Outcome::Committed, item),
        outcome => (outcome, 0),
    }
}

/// Whether a slot of `stride` bytes holds a buffer's count and `capacity`
/// items after it (the C functions refuse the rest with `-EINVAL`).
pub(crate) fn buffer_fits(stride: usize, capacity: usize) -> bool {
    capacity < stride / core::mem::size_of::<isize>()
}

const BUFFER_TOO_SMALL: &str = "restartable: a per-CPU buffer larger than its slots";

/// Where an operation that reads its index goes after its section did
/// not commit.
enum Path {
    /// Registered: the kernel aborted the section; the caller retries.
    Aborted,
    /// Registered lazily just now: run the section again.
    Again,
    /// No section runs on this thread (or the kernel lacks the index): the
    /// fallback, on this slot.
    Fallback(usize),
}

/// The cold path of the list and buffer operations at the current CPU.
fn path_at_current(index: Index, slots: u32) -> Path {
    assert!(
        slots > 0,
        "restartable: a per-CPU operation at the current CPU on 0 slots"
    );
    if index.provided() {
        // Registered before the section, or lazily just now.
        let registered = current_index_raw(Index::Cpu) >= 0;
        if registered || crate::is_available() {
            let i = current_index_raw(index) as u32;
            assert!(
                i < slots,
                "restartable: the kernel reports {index:?} {i}, beyond the {slots} slots given"
            );
            if registered {
                note_abort();
                return Path::Aborted;
            }
            return Path::Again;
        }
    }
    Path::Fallback((crate::fallback_cpu() % slots) as usize)
}

/// `outcome`, counting it where it is an abort (the cold paths of the
/// operations that retried a section).
fn counted(outcome: Outcome) -> Outcome {
    if outcome == Outcome::Aborted {
        note_abort();
    }
    outcome
}

/// Where the per-CPU lock's and stack's sections find a slot's fence: this
/// many bytes past the word they guard (the lock word, the list head). The
/// sections address it from that word, so they need no register for it;
/// both slot types assert the layout.
#[cfg_attr(restartable_loom, allow(dead_code))] // the loom model has its own sections
pub(crate) const FENCE_OFFSET: usize = core::mem::size_of::<usize>();

/// The per-CPU lock's and stack's guarded store: fails if the fence, the
/// word [`FENCE_OFFSET`] bytes past `v`, is not 0 (read first) or
/// `*v != expect`; otherwise `*v = newv`. The raw result: 0 committed, 1 a
/// compare failed, -1 aborted.
///
/// # Safety
/// - as for the `_unchecked` operations, for `*v` and the fence word after
///   it;
/// - `cpu` is below 2^31 (a slot index, as every slot array holds fewer
///   than 2^31 slots): the section takes it as given.
#[inline(always)]
#[cfg_attr(restartable_loom, allow(dead_code))] // the loom model has its own
pub(crate) unsafe fn fenced_store_raw(
    index: Index,
    v: *mut usize,
    expect: usize,
    newv: usize,
    cpu: u32,
) -> i32 {
    // SAFETY: forwarded from the caller.
    unsafe { section_raw!(fenced_store, index, v, expect, newv, cpu) }
}

/// The per-CPU stack's pop: fails if the fence (as for
/// [`fenced_store_raw`], after `head`) is not 0 or the list is empty;
/// otherwise unlinks the head node (its `next` at offset 0). The raw
/// result as [`fenced_store_raw`]'s, and the node unlinked.
///
/// # Safety
/// - as for [`fenced_store_raw`]; nodes reachable from `*head` stay
///   readable while a section on this CPU can still commit.
#[inline(always)]
#[cfg_attr(restartable_loom, allow(dead_code))] // the loom model pops in its simulation
pub(crate) unsafe fn fenced_pop_raw(index: Index, head: *mut usize, cpu: u32) -> (i32, usize) {
    // SAFETY: forwarded from the caller.
    unsafe { section_raw!(fenced_pop, index, head, cpu) }
}

/// The per-CPU lock's fast section: on the slot of the index the area
/// holds (read inside the section), the guarded store of
/// [`fenced_store_raw`] from 0 to `holder`. Slot `i` starts at
/// `base + i * stride` with the lock word, and its fence follows. The raw
/// result, with 1 also for an index out of range (the thread is not
/// registered), and the index, meaningful only when the section committed.
///
/// # Safety
/// - `base` holds `slots` live slots of `stride` bytes, each laid out as
///   above, whose words only these sections and the fence's holder write;
/// - the kernel provides `index` ([`Index::provided`]), or `slots` is 0:
///   where it does not, the area's `mm_cid` reads 0 on every CPU, and
///   threads on two CPUs would both commit on slot 0.
#[inline(always)]
#[cfg_attr(restartable_loom, allow(dead_code))] // the loom model has its own
pub(crate) unsafe fn fenced_claim_at_current_raw(
    index: Index,
    base: *mut u8,
    stride: usize,
    slots: u32,
    holder: usize,
) -> (i32, u32) {
    // SAFETY: forwarded from the caller.
    unsafe { section_raw!(fenced_claim_at_current, index, base, stride, slots, holder) }
}

/// The per-CPU stack's fast push: on the slot of the index the area holds,
/// read inside the section, `node.next = head; head = node` if the fence
/// is free (`next` at offset 0 of the node). Slots as for
/// [`fenced_claim_at_current_raw`], with the list head first. The raw
/// result as there; `node.next` may be written whatever it is.
///
/// # Safety
/// - as for [`fenced_claim_at_current_raw`]; `node` is the caller's until
///   the commit publishes it.
#[inline(always)]
#[cfg_attr(restartable_loom, allow(dead_code))] // the loom model has its own
pub(crate) unsafe fn fenced_push_at_current_raw(
    index: Index,
    base: *mut u8,
    stride: usize,
    slots: u32,
    node: *mut usize,
) -> i32 {
    // SAFETY: forwarded from the caller.
    unsafe { section_raw!(fenced_push_at_current, index, base, stride, slots, node) }
}

/// The per-CPU stack's fast pop: [`fenced_pop_raw`] on the slot of the
/// index the area holds, read inside the section. Slots as for
/// [`fenced_push_at_current_raw`]. The raw result as there, and the node
/// unlinked.
///
/// # Safety
/// - as for [`fenced_claim_at_current_raw`]; nodes reachable from a head
///   stay readable while a section on its CPU can still commit.
#[inline(always)]
#[cfg_attr(restartable_loom, allow(dead_code))] // the loom model pops in its simulation
pub(crate) unsafe fn fenced_pop_at_current_raw(
    index: Index,
    base: *mut u8,
    stride: usize,
    slots: u32,
) -> (i32, usize) {
    // SAFETY: forwarded from the caller.
    unsafe { section_raw!(fenced_pop_at_current, index, base, stride, slots) }
}

#[cfg(all(test, not(restartable_loom)))]
mod tests;
