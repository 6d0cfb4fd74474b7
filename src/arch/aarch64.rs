//! aarch64 Linux: the area through `tpidr_el0`, the raw system call, and
//! the critical-section operations.
//!
//! The same pieces as `x86_64.rs`, in A64 assembly:
//! - the library's own area `__rseq_abi` and the shared refcount
//!   `__rseq_refcount`, weak, exported, initial-exec TLS symbols defined in
//!   assembly behind a header that later copies of the library find (see
//!   `area::probe`), reached through hidden aliases with `:gottprel:`
//!   relocations, which the linker relaxes to two immediates in an
//!   executable;
//! - an IFUNC resolver that points `restartable_area_offset` at the inert
//!   area while the object is relocated, before any other code runs;
//! - weak references to glibc's `__rseq_size` and `__rseq_offset`.
//!
//! aarch64 is weakly ordered. Where the x86_64 code gets an ordering from
//! TSO for free, the sections below say which acquire load (`ldar`) or
//! release store (`stlr`) provides it: the release form of
//! `load_cbne_store_store`, and the fence protocol of the per-CPU lock and
//! stack (`fenced_store`, `fenced_pop`), which also publishes the stack's
//! nodes. The algorithm is the one the loom models check; the barriers are
//! what makes the hardware run that algorithm.
//!
//! The TLS block follows the layout `arch::tls` describes, whose constants
//! the assembly takes as operands, as on x86_64.

use core::arch::{asm, global_asm};

use crate::abi::Rseq;
use crate::registration::ThreadRecord;

/// rseq code exists for this architecture.
pub(crate) const AVAILABLE: bool = true;

/// `RSEQ_SIG` on aarch64: `0xd428bc00`, emitted as the instruction word
/// before every abort handler (an undefined `brk`-space encoding the kernel
/// compares with the registered signature; it never executes).
pub(crate) const SIG: u32 = crate::abi::RSEQ_SIG;

/// `rseq_slice_yield(2)` (Linux 7.0): gives the CPU back after a granted
/// time-slice extension. The number is the same on every architecture
/// (the system calls added since 5.1 share one numbering).
pub(crate) const SYS_RSEQ_SLICE_YIELD: libc::c_long = 471;

global_asm!(
    // This copy's TLS block, laid out as `arch::tls` says: the header that
    // later copies of the library find in this object's TLS image (see
    // `area::probe`), holding the refcount, the busy word and the
    // registered length; the inert area; then `__rseq_abi`, 64 bytes
    // aligned to 64, room for an extensible registration.
    ".pushsection .tdata, \"awT\", %progbits",
    ".balign {block_align}",
    ".globl restartable_tls_header",
    ".hidden restartable_tls_header",
    ".type restartable_tls_header, %object",
    ".size restartable_tls_header, {header_size}",
    "restartable_tls_header:",
    ".ascii \"restartable-tls\"",
    ".byte {header_version}",
    // `__rseq_refcount`: how many holds the components sharing `__rseq_abi`
    // have on this thread's registration (weak and exported, like
    // `__rseq_abi`); `restartable_own_refcount` names this copy's.
    ".weak __rseq_refcount",
    ".type __rseq_refcount, %object",
    ".size __rseq_refcount, 4",
    ".globl restartable_own_refcount",
    ".hidden restartable_own_refcount",
    ".type restartable_own_refcount, %object",
    ".size restartable_own_refcount, 4",
    "__rseq_refcount:",
    "restartable_own_refcount:",
    ".long 0",
    // The busy word: non-zero while a registration change is in progress
    // on the thread, so that a signal handler keeps off.
    ".globl restartable_own_busy",
    ".hidden restartable_own_busy",
    ".type restartable_own_busy, %object",
    ".size restartable_own_busy, 4",
    "restartable_own_busy:",
    ".long 0",
    // The length the shared area is registered with on this thread, so
    // that whichever copy releases the last hold unregisters with it.
    ".globl restartable_own_len",
    ".hidden restartable_own_len",
    ".type restartable_own_len, %object",
    ".size restartable_own_len, 4",
    "restartable_own_len:",
    ".long 0",
    ".zero {inert_at} - ({len_at} + 4)",
    // `restartable_inert_area`: never registered, so its `cpu_id` stays -1;
    // the active-area offset names it until the owner is decided and
    // whenever rseq is unavailable.
    ".globl restartable_inert_area",
    ".hidden restartable_inert_area",
    ".type restartable_inert_area, %object",
    ".size restartable_inert_area, 32",
    "restartable_inert_area:",
    ".long 0",          // cpu_id_start
    ".long -1",         // cpu_id
    ".quad 0",          // rseq_cs
    ".long 0, 0, 0, 0", // flags, node_id, mm_cid, slice_ctrl
    ".zero {area_at} - ({inert_at} + 32)",
    // `__rseq_abi`: the shared area, weak so that every component defining
    // it resolves to one area per thread; `cpu_id` starts at -1.
    // `restartable_own_area` names this copy's definition.
    ".weak __rseq_abi",
    ".type __rseq_abi, %object",
    ".size __rseq_abi, {area_capacity}",
    ".globl restartable_own_area",
    ".hidden restartable_own_area",
    ".type restartable_own_area, %object",
    ".size restartable_own_area, {area_capacity}",
    "__rseq_abi:",
    "restartable_own_area:",
    ".long 0",          // cpu_id_start
    ".long -1",         // cpu_id
    ".quad 0",          // rseq_cs
    ".long 0, 0, 0, 0", // flags, node_id, mm_cid, slice_ctrl
    ".zero {area_capacity} - 32", // the reserved byte and later features
    ".popsection",
    // This copy's own thread record, hidden.
    ".pushsection .tbss, \"awT\", %nobits",
    ".balign 8",
    ".globl restartable_thread_record",
    ".hidden restartable_thread_record",
    ".type restartable_thread_record, %object",
    ".size restartable_thread_record, 8",
    "restartable_thread_record:",
    ".zero 8",
    ".popsection",
    // `restartable_area_offset`: the TP offset of the active area, read by
    // every CPU read (and by the C header's inline functions, under the
    // exported name); the hidden second label lets this library reach it
    // PC-relative even in the shared object. The resolver below replaces
    // its static 0 while the object is relocated.
    ".pushsection .data.restartable_area_offset, \"aw\", %progbits",
    ".balign 8",
    ".globl restartable_area_offset",
    ".type restartable_area_offset, %object",
    ".size restartable_area_offset, 8",
    ".globl restartable_area_offset_hidden",
    ".hidden restartable_area_offset_hidden",
    ".type restartable_area_offset_hidden, %object",
    ".size restartable_area_offset_hidden, 8",
    "restartable_area_offset:",
    "restartable_area_offset_hidden:",
    ".quad 0",
    ".popsection",
    // Weak references to glibc's registration, bound by the linkers (null
    // where the C library has none).
    ".weak __rseq_size",
    ".weak __rseq_offset",
    ".pushsection .data.rel.ro.restartable_libc_rseq, \"aw\", %progbits",
    ".balign 8",
    ".globl restartable_libc_rseq_size_ref",
    ".hidden restartable_libc_rseq_size_ref",
    "restartable_libc_rseq_size_ref:",
    ".quad __rseq_size",
    ".globl restartable_libc_rseq_offset_ref",
    ".hidden restartable_libc_rseq_offset_ref",
    "restartable_libc_rseq_offset_ref:",
    ".quad __rseq_offset",
    ".popsection",
    header_version = const crate::arch::tls::VERSION,
    header_size = const crate::arch::tls::HEADER_SIZE,
    block_align = const crate::arch::tls::BLOCK_ALIGN,
    len_at = const crate::arch::tls::LEN_AT,
    inert_at = const crate::arch::tls::INERT_AT,
    area_at = const crate::arch::tls::AREA_AT,
    area_capacity = const crate::abi::AREA_CAPACITY,
);

// The constructor, reached through an IFUNC, as on x86_64: the resolver
// runs while the object is relocated (in a static executable, before TLS
// is set up: it reads the inert area's TP offset, a link-time constant
// there, and touches no `tpidr_el0`), points the active-area offset at the
// inert area and returns the constructor for `.init_array` to call.
#[cfg(target_env = "gnu")]
global_asm!(
    ".pushsection .text.restartable_early_init, \"ax\", %progbits",
    ".balign 16",
    ".type restartable_early_init_resolver, %function",
    "restartable_early_init_resolver:",
    "adrp x0, :gottprel:restartable_inert_area",
    "ldr x0, [x0, #:gottprel_lo12:restartable_inert_area]",
    "adrp x1, restartable_area_offset_hidden",
    "str x0, [x1, #:lo12:restartable_area_offset_hidden]",
    "adrp x0, {ctor}",
    "add x0, x0, #:lo12:{ctor}",
    "ret",
    ".size restartable_early_init_resolver, . - restartable_early_init_resolver",
    ".type restartable_early_init, %gnu_indirect_function",
    ".set restartable_early_init, restartable_early_init_resolver",
    ".popsection",
    ".pushsection .init_array.00101, \"aw\"",
    ".balign 8",
    ".quad restartable_early_init",
    ".popsection",
    ctor = sym crate::area::constructor,
);

#[cfg(not(target_env = "gnu"))]
#[used]
#[link_section = ".init_array.00101"]
static CONSTRUCTOR: extern "C" fn() = crate::area::constructor;

extern "C" {
    /// The storage of `restartable_area_offset` (defined above).
    #[link_name = "restartable_area_offset_hidden"]
    static AREA_OFFSET: core::sync::atomic::AtomicIsize;
    /// `&__rseq_size`, or null (defined above).
    #[link_name = "restartable_libc_rseq_size_ref"]
    static LIBC_RSEQ_SIZE: *const u32;
    /// `&__rseq_offset`, or null (defined above).
    #[link_name = "restartable_libc_rseq_offset_ref"]
    static LIBC_RSEQ_OFFSET: *const isize;
}

/// The process-wide TP offset of the active area: one PC-relative load.
///
/// `pure`, as on x86_64: the value changes at most twice, and a loop that
/// hoisted the load keeps a live area of its own thread.
#[inline(always)]
pub(crate) fn area_offset() -> isize {
    let offset: isize;
    // SAFETY: reads the 8-byte variable defined above; writes nothing.
    unsafe {
        asm!(
            "adrp {o}, restartable_area_offset_hidden",
            "ldr {o}, [{o}, #:lo12:restartable_area_offset_hidden]",
            o = out(reg) offset, // the area's offset from the thread pointer
            options(nostack, readonly, preserves_flags, pure)
        );
    }
    offset
}

/// Sets the process-wide area offset (the owner's decision only; see
/// `area.rs`): this object's storage and, through the GOT, whatever the
/// exported name resolves to (an executable's copy of the variable).
pub(crate) fn set_area_offset(offset: isize) {
    // SAFETY: the variable is a properly aligned `AtomicIsize`.
    unsafe { &AREA_OFFSET }.store(offset, core::sync::atomic::Ordering::Relaxed);
    let exported: *const core::sync::atomic::AtomicIsize;
    // SAFETY: loads the GOT slot of `restartable_area_offset`, which the
    // dynamic linker filled with the address of the definition every user
    // of the name sees; nothing is written.
    unsafe {
        asm!(
            "adrp {p}, :got:restartable_area_offset",
            "ldr {p}, [{p}, #:got_lo12:restartable_area_offset]",
            p = out(reg) exported, // address of the interposed definition
            options(nostack, readonly, preserves_flags, pure)
        );
    }
    // SAFETY: the exported name resolves to an 8-byte, aligned, writable
    // `intptr_t`: this library's own storage or an executable's copy of it.
    unsafe { &*exported }.store(offset, core::sync::atomic::Ordering::Relaxed);
}

/// glibc's `&__rseq_size` and `&__rseq_offset` as the linkers bound them
/// (null where the C library defines neither).
pub(crate) fn libc_rseq_symbols() -> (*const u32, *const isize) {
    // SAFETY: two pointer-sized words defined above, written only by the
    // linkers before any code runs.
    unsafe { (LIBC_RSEQ_SIZE, LIBC_RSEQ_OFFSET) }
}

/// Returns the thread pointer, `tpidr_el0` (it points at the TCB; static
/// TLS blocks follow it at positive offsets).
#[inline(always)]
pub(crate) fn thread_pointer() -> usize {
    let tp: usize;
    // SAFETY: reading `tpidr_el0` is always allowed at EL0 and has no
    // other effect.
    unsafe {
        asm!(
            "mrs {tp}, tpidr_el0",
            tp = out(reg) tp, // the thread pointer
            options(nomem, nostack, preserves_flags, pure)
        );
    }
    tp
}

/// Reads the GOT slot that holds the TP offset of one of this object's
/// initial-exec TLS symbols (relaxed to `movz`/`movk` in an executable).
macro_rules! tp_offset_of {
    ($symbol:literal) => {{
        let offset: isize;
        // SAFETY: reads the GOT slot the linker filled with the TP offset
        // of the symbol (or materialises an immediate); nothing is written.
        unsafe {
            asm!(
                concat!("adrp {o}, :gottprel:", $symbol),
                concat!("ldr {o}, [{o}, #:gottprel_lo12:", $symbol, "]"),
                o = out(reg) offset, // TP-relative offset of the symbol
                options(nostack, readonly, preserves_flags, pure)
            );
        }
        offset
    }};
}

/// Offset of this copy's `__rseq_abi` from the thread pointer: the same
/// for every thread, since the symbol is initial-exec (static TLS).
#[inline(always)]
pub(crate) fn own_area_offset() -> isize {
    tp_offset_of!("restartable_own_area")
}

/// Offset of this copy's `__rseq_refcount` from the thread pointer.
#[inline]
pub(crate) fn own_refcount_offset() -> isize {
    tp_offset_of!("restartable_own_refcount")
}

/// Offset of this copy's busy word from the thread pointer.
#[inline]
pub(crate) fn own_busy_offset() -> isize {
    tp_offset_of!("restartable_own_busy")
}

/// Offset of this copy's registered-length word from the thread pointer.
#[inline]
pub(crate) fn own_len_offset() -> isize {
    tp_offset_of!("restartable_own_len")
}

/// Offset of this thread's inert area (never registered) from the thread
/// pointer.
#[inline]
pub(crate) fn inert_area_offset() -> isize {
    tp_offset_of!("restartable_inert_area")
}

/// The calling thread's state as this copy of the library keeps it.
#[inline]
pub(crate) fn own_thread_state() -> *mut ThreadRecord {
    thread_pointer().wrapping_add_signed(tp_offset_of!("restartable_thread_record"))
        as *mut ThreadRecord
}

/// Reads the 32-bit field at byte `FIELD` of the area at `tpidr_el0 +
/// offset`.
///
/// Volatile, since the kernel rewrites the field whenever the thread is
/// preempted; a plain load (no acquire: the kernel writes the field on
/// this thread's own return to user space).
///
/// # Safety
/// - `offset` is the TP-relative offset of a live, 32-byte area of the
///   calling thread (the process-wide area offset is one).
#[inline(always)]
pub(crate) unsafe fn load_u32<const FIELD: usize>(offset: isize) -> u32 {
    let value: u32;
    // SAFETY: the caller guarantees `tpidr_el0 + offset` is this thread's
    // area; `FIELD` is one of the `abi` offsets, inside those 32 bytes.
    unsafe {
        asm!(
            "mrs {a}, tpidr_el0",
            "add {a}, {a}, {o}",
            "ldr {v:w}, [{a}, #{f}]",
            o = in(reg) offset,     // area offset from the thread pointer
            f = const FIELD,        // field offset inside `struct rseq`
            a = out(reg) _,         // the area's address
            v = lateout(reg) value, // the field
            options(nostack, readonly, preserves_flags)
        );
    }
    value
}

/// `rseq(area, len, flags, sig)`: registers or unregisters an area.
///
/// Returns 0 or the negated errno; the kernel writes nothing but the area.
///
/// # Safety
/// - `area` points to `len` bytes, aligned to 32, that stay valid for as
///   long as the registration lasts (static TLS of the calling thread).
///
/// # References
/// - rseq(2), `include/uapi/linux/rseq.h`, `kernel/rseq.c`
#[inline]
pub(crate) unsafe fn sys_rseq(area: *mut Rseq, len: u32, flags: u32, sig: u32) -> i32 {
    let ret: isize;
    // SAFETY: a plain system call; the caller vouches for `area`. `svc`
    // preserves every register but x0 on arm64 Linux.
    unsafe {
        asm!(
            "svc #0",
            in("x8") linux_raw_sys::general::__NR_rseq as usize, // the number
            inlateout("x0") area as isize => ret, // struct rseq * / result
            in("x1") len,                         // u32 rseq_len
            in("x2") flags,                       // int flags
            in("x3") sig,                         // u32 sig
            options(nostack, preserves_flags)
        );
    }
    ret as i32
}

// ---------------------------------------------------------------------------
// Critical-section operations. Each is one `rseq_asm!` block; `FIELD` picks
// the area field the CPU check compares (`cpu_id` or `mm_cid`). Each returns
// 0 committed, 1 compare failed, -1 aborted. Safety, for every one: every
// pointer is valid for the accesses its operation names, and `cpu` is below
// 2^31. Only a registered area (at `area_offset()`) lets a section commit.
// Loads and stores of the words are plain (`ldr`/`str`) unless a comment
// says why one must be ordered.
// ---------------------------------------------------------------------------

/// `if *v == expect { *v = newv }`.
///
/// # Safety
/// See the section comment above.
#[inline(always)]
pub(crate) unsafe fn load_cbne_store<const FIELD: usize>(
    v: *mut isize,
    expect: isize,
    newv: isize,
    cpu: u32,
) -> i32 {
    // SAFETY: forwarded from the caller.
    unsafe {
        crate::rseq_asm!(
            area = area_offset(),
            field = FIELD,
            cpu = cpu,
            body = [
                "ldr {t}, [{v}]",
                "cmp {t}, {expect}",
                "b.ne 93f",
                "str {newv}, [{v}]", // commit
            ],
            v = in(reg) v,           // the word
            expect = in(reg) expect, // expected value
            newv = in(reg) newv,     // new value
            t = out(reg) _,          // the word's value
        )
    }
}

/// `*v += count`.
///
/// # Safety
/// See the section comment above.
#[inline(always)]
pub(crate) unsafe fn load_add_store<const FIELD: usize>(
    v: *mut isize,
    count: isize,
    cpu: u32,
) -> i32 {
    // SAFETY: forwarded from the caller.
    unsafe {
        crate::rseq_asm!(
            area = area_offset(),
            field = FIELD,
            cpu = cpu,
            body = [
                "ldr {t}, [{v}]",
                "add {t}, {t}, {count}",
                "str {t}, [{v}]", // commit
            ],
            v = in(reg) v,         // the word
            count = in(reg) count, // the addend
            t = out(reg) _,        // the sum
        )
    }
}

/// List pop: `head = *v; if head == expectnot fail; *load = head;
/// *v = *(head + voffp)`.
///
/// # Safety
/// See the section comment above; `head + voffp` is readable for every
/// head that can be found in `*v` other than `expectnot`.
#[inline(always)]
pub(crate) unsafe fn load_cbeq_store_add_load_store<const FIELD: usize>(
    v: *mut isize,
    expectnot: isize,
    voffp: isize,
    load: *mut isize,
    cpu: u32,
) -> i32 {
    // SAFETY: forwarded from the caller.
    unsafe {
        crate::rseq_asm!(
            area = area_offset(),
            field = FIELD,
            cpu = cpu,
            body = [
                "ldr {t}, [{v}]",
                "cmp {t}, {expectnot}",
                "b.eq 93f",
                "str {t}, [{load}]",
                "ldr {t}, [{t}, {voffp}]",
                "str {t}, [{v}]", // commit
            ],
            v = in(reg) v,                 // the list head
            expectnot = in(reg) expectnot, // the empty value
            voffp = in(reg) voffp,         // offset of `next` in a node
            load = in(reg) load,           // receives the popped head
            t = out(reg) _,                // the head, then its successor
        )
    }
}

/// `if *v == expect && *v2 == expect2 { *v = newv }`.
///
/// # Safety
/// See the section comment above.
#[inline(always)]
pub(crate) unsafe fn load_cbne_load_cbne_store<const FIELD: usize>(
    v: *mut isize,
    expect: isize,
    v2: *mut isize,
    expect2: isize,
    newv: isize,
    cpu: u32,
) -> i32 {
    // SAFETY: forwarded from the caller.
    unsafe {
        crate::rseq_asm!(
            area = area_offset(),
            field = FIELD,
            cpu = cpu,
            body = [
                "ldr {t}, [{v}]",
                "cmp {t}, {expect}",
                "b.ne 93f",
                "ldr {t}, [{v2}]",
                "cmp {t}, {expect2}",
                "b.ne 93f",
                "str {newv}, [{v}]", // commit
            ],
            v = in(reg) v,             // the word
            expect = in(reg) expect,   // its expected value
            v2 = in(reg) v2,           // the second word
            expect2 = in(reg) expect2, // its expected value
            newv = in(reg) newv,       // new value of `*v`
            t = out(reg) _,            // the value compared
        )
    }
}

/// The two-store section, once for each commit instruction.
macro_rules! store_store_section {
    ($(#[$doc:meta])* $name:ident, $commit:literal) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// See the section comment above.
        #[inline(always)]
        pub(crate) unsafe fn $name<const FIELD: usize>(
            v: *mut isize,
            expect: isize,
            v2: *mut isize,
            newv2: isize,
            newv: isize,
            cpu: u32,
        ) -> i32 {
            // SAFETY: forwarded from the caller.
            unsafe {
                crate::rseq_asm!(
                    area = area_offset(),
                    field = FIELD,
                    cpu = cpu,
                    body = [
                        "ldr {t}, [{v}]",
                        "cmp {t}, {expect}",
                        "b.ne 93f",
                        "str {newv2}, [{v2}]", // speculative store
                        $commit,               // the commit
                    ],
                    v = in(reg) v,           // the word
                    expect = in(reg) expect, // its expected value
                    v2 = in(reg) v2,         // the word stored first
                    newv2 = in(reg) newv2,   // its new value
                    newv = in(reg) newv,     // new value of `*v`
                    t = out(reg) _,          // the value compared
                )
            }
        }
    };
}

store_store_section!(
    /// `if *v == expect { *v2 = newv2; *v = newv }`, with plain stores:
    /// another CPU may see them in either order (the release form below
    /// orders them).
    load_cbne_store_store,
    "str {newv}, [{v}]"
);

store_store_section!(
    /// [`load_cbne_store_store`] with release ordering: the commit is
    /// `stlr`, so a thread that reads the new `*v` with acquire (on any
    /// CPU) also sees the store to `*v2` and everything this thread wrote
    /// before the section.
    load_cbne_store_store_release,
    "stlr {newv}, [{v}]"
);

/// The memcpy-store section, once for each commit instruction.
macro_rules! memcpy_store_section {
    ($(#[$doc:meta])* $name:ident, $commit:literal) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// See the section comment above; `dst` and `src` are valid for
        /// `len` bytes.
        #[inline(always)]
        pub(crate) unsafe fn $name<const FIELD: usize>(
            v: *mut isize,
            expect: isize,
            dst: *mut u8,
            src: *const u8,
            len: usize,
            newv: isize,
            cpu: u32,
        ) -> i32 {
            // SAFETY: forwarded from the caller.
            unsafe {
                crate::rseq_asm!(
                    area = area_offset(),
                    field = FIELD,
                    cpu = cpu,
                    body = [
                        "ldr {t}, [{v}]",
                        "cmp {t}, {expect}",
                        "b.ne 93f",
                        "cbz {len}, 21f",
                        "20:",
                        "ldrb {t:w}, [{src}], #1",
                        "strb {t:w}, [{dst}], #1",
                        "subs {len}, {len}, #1",
                        "b.ne 20b",
                        "21:",
                        $commit, // the commit
                    ],
                    v = in(reg) v,             // the word
                    expect = in(reg) expect,   // its expected value
                    dst = inout(reg) dst => _, // copy destination (advanced)
                    src = inout(reg) src => _, // copy source (advanced)
                    len = inout(reg) len => _, // bytes left
                    newv = in(reg) newv,       // new value of `*v`
                    t = out(reg) _,            // the value compared, then each byte
                )
            }
        }
    };
}

memcpy_store_section!(
    /// `if *v == expect { memcpy(dst, src, len); *v = newv }`.
    load_cbne_memcpy_store,
    "str {newv}, [{v}]"
);

memcpy_store_section!(
    /// [`load_cbne_memcpy_store`] with release ordering: the commit is
    /// `stlr`, so a thread that reads `*v` with acquire and sees `newv`
    /// sees every byte of the copy (a buffer push whose consumer reads the
    /// bytes after the index).
    load_cbne_memcpy_store_release,
    "stlr {newv}, [{v}]"
);

/// `p = *ptr; q = *(p + off); *q += inc`: pointer chasing, then an add.
///
/// # Safety
/// See the section comment above; `*ptr + off` holds a valid pointer to an
/// `isize`.
#[inline(always)]
pub(crate) unsafe fn load_add_load_load_add_store<const FIELD: usize>(
    ptr: *mut isize,
    off: isize,
    inc: isize,
    cpu: u32,
) -> i32 {
    // SAFETY: forwarded from the caller.
    unsafe {
        crate::rseq_asm!(
            area = area_offset(),
            field = FIELD,
            cpu = cpu,
            body = [
                "ldr {t}, [{ptr}]",
                "ldr {t}, [{t}, {off}]",
                "ldr {s}, [{t}]",
                "add {s}, {s}, {inc}",
                "str {s}, [{t}]", // commit
            ],
            ptr = in(reg) ptr, // the root pointer
            off = in(reg) off, // offset of the pointer to follow
            inc = in(reg) inc, // the addend
            t = out(reg) _,    // the pointers followed
            s = out(reg) _,    // the sum
        )
    }
}

/// The first steps of a section that finds its slot itself (the counter's
/// add, the lock's and the stack's fast paths): the index from the area's
/// indexed field into the named register, checked against `{slots}`. The
/// unsigned compare also rejects -1 and -2, the `cpu_id` of an area that
/// is not registered (for `mm_cid` the macro `rseq_asm!` checks `cpu_id`
/// first); out of range, the section leaves through `93f`, or with `abort`
/// through the local abort exit `97f` (for sections whose `93f` means
/// something else, written with `unregistered = abort`).
macro_rules! index_at_current {
    ($i:literal) => {
        index_at_current!($i, "93f")
    };
    ($i:literal, abort) => {
        index_at_current!($i, "97f")
    };
    ($i:literal, $exit:literal) => {
        concat!(
            "ldr {",
            $i,
            ":w}, [{rseq_area}, #{rseq_field}]\n",
            "cmp {",
            $i,
            ":w}, {slots:w}\n",
            "b.hs ",
            $exit
        )
    };
}

/// The per-CPU counter's add: reads the index *inside* the section (after
/// the `rseq_cs` store, so any later migration aborts it), bounds-checks
/// it (an unregistered `cpu_id` of -1 or -2 fails the unsigned compare; for
/// `mm_cid` the macro checks `cpu_id` first) and commits
/// `[base + index * stride] += delta`. Returns 0 committed, 1 index out of
/// range (not registered), -1 aborted.
///
/// # Safety
/// See the section comment above; `base` holds `slots` slots of `stride`
/// bytes whose first word is an `isize`.
#[inline(always)]
pub(crate) unsafe fn add_at_current<const FIELD: usize>(
    base: *mut u8,
    stride: usize,
    slots: u32,
    delta: isize,
) -> i32 {
    // SAFETY: forwarded from the caller.
    unsafe {
        crate::rseq_asm!(
            area = area_offset(),
            field = FIELD,
            body = [
                index_at_current!("i"),
                "mul {i}, {i}, {stride}",
                "ldr {s}, [{base}, {i}]",
                "add {s}, {s}, {delta}",
                "str {s}, [{base}, {i}]", // commit
            ],
            i = out(reg) _,          // the index, then its byte offset
            s = out(reg) _,          // the slot's sum
            slots = in(reg) slots,   // number of slots
            stride = in(reg) stride, // bytes per slot
            base = in(reg) base,     // the slot array
            delta = in(reg) delta,   // the addend
        )
    }
}

/// `if *fence == 0 && *v == expect { *v = newv }`, where `fence` is the
/// word after `v` ([`FENCE_OFFSET`](crate::cs::FENCE_OFFSET) bytes on),
/// reading the fence *first*. (`ldar` takes no offset: the section forms
/// the fence's address in its scratch register.)
///
/// Three orderings that x86's TSO gives the plain instructions:
/// - the fence is read with `ldar`, so the read of `*v` cannot happen
///   before it: a section that finds the fence free (the holder's release
///   store of it) reads `*v` as the holder left it;
/// - `*v` is read with `ldar`: the per-CPU lock takes itself here, and
///   its guarded accesses must not move before the read that found it
///   free (released by a thread that may have run on another CPU);
/// - the commit is `stlr`: the per-CPU stack publishes a node here, and a
///   thread that reads the new head from another CPU (a fence holder, with
///   acquire) must see the node's contents written before the section.
///
/// # Safety
/// See the section comment above; the fence word follows `*v`.
#[inline(always)]
pub(crate) unsafe fn fenced_store<const FIELD: usize>(
    v: *mut usize,
    expect: usize,
    newv: usize,
    cpu: u32,
) -> i32 {
    // SAFETY: forwarded from the caller.
    unsafe {
        crate::rseq_asm!(
            area = area_offset(),
            field = FIELD,
            cpu = cpu,
            body = [
                "add {t}, {v}, #{fence}",
                "ldar {t}, [{t}]", // acquire: pairs with the fence's release
                "cbnz {t}, 93f",
                "ldar {t}, [{v}]", // acquire: pairs with the lock's release
                "cmp {t}, {expect}",
                "b.ne 93f",
                "stlr {newv}, [{v}]", // commit; release: publishes a pushed node
            ],
            fence = const crate::cs::FENCE_OFFSET, // the slot's fence word, from `v`
            v = in(reg) v,                         // the word
            expect = in(reg) expect,               // its expected value
            newv = in(reg) newv,                   // its new value
            t = out(reg) _, // the fence's address, the fence, then the word
        )
    }
}

/// The per-CPU stack's pop: fails (1) if the fence (the word after
/// `head`) is not 0 or the list is empty; otherwise unlinks the head,
/// whose `next` is at offset 0, and returns it. Returns `(outcome, head)`.
///
/// As in [`fenced_store`], the fence is read with `ldar` (the head is then
/// read as its last holder left it); the head with `ldar` too, so the node's
/// `next` (and, after the section, its value) is read as the pusher wrote
/// it before its release commit; and the unlink is `stlr`, so the read of
/// `next` is done before another thread can see the node gone and reuse it.
///
/// # Safety
/// See the section comment above; the fence word follows `*head`; nodes
/// reachable from `*head` are readable while a section on this CPU can
/// still commit.
#[inline(always)]
pub(crate) unsafe fn fenced_pop<const FIELD: usize>(head: *mut usize, cpu: u32) -> (i32, usize) {
    let node: usize;
    // SAFETY: forwarded from the caller.
    let outcome = unsafe {
        crate::rseq_asm!(
            area = area_offset(),
            field = FIELD,
            cpu = cpu,
            body = [
                "add {t}, {head}, #{fence}",
                "ldar {t}, [{t}]", // acquire: pairs with the fence's release
                "cbnz {t}, 93f",
                "ldar {n}, [{head}]", // acquire: pairs with the push's release
                "cbz {n}, 93f",
                "ldr {t}, [{n}]",
                "stlr {t}, [{head}]", // commit; release: `next` read first
            ],
            fence = const crate::cs::FENCE_OFFSET, // the slot's fence word, from `head`
            head = in(reg) head,                   // the list head
            n = out(reg) node,                     // the popped node
            t = out(reg) _, // the fence's address, the fence, then the successor
        )
    };
    (outcome, node)
}

/// The per-CPU lock's fast section: reads the index *inside* the section
/// and bounds-checks it, as [`add_at_current`] does; then, on slot `i` at
/// `base + i * stride`, `if *fence == 0 && *word == 0 { *word = holder }`,
/// the word first in the slot and its fence
/// [`FENCE_OFFSET`](crate::cs::FENCE_OFFSET) bytes on, with the orderings
/// of [`fenced_store`]. Returns `(outcome, i)`: 0 committed, 1 index out of
/// range (not registered) or slot taken or fenced, -1 aborted; `i` means
/// something only when committed.
///
/// # Safety
/// See the section comment above; `base` holds `slots` slots of `stride`
/// bytes, each a lock word and its fence.
#[inline(always)]
pub(crate) unsafe fn fenced_claim_at_current<const FIELD: usize>(
    base: *mut u8,
    stride: usize,
    slots: u32,
    holder: usize,
) -> (i32, u32) {
    let index: usize;
    // SAFETY: forwarded from the caller.
    let outcome = unsafe {
        crate::rseq_asm!(
            area = area_offset(),
            field = FIELD,
            body = [
                index_at_current!("i"),
                "madd {p}, {i}, {stride}, {base}",
                "add {t}, {p}, #{fence}",
                "ldar {t}, [{t}]", // acquire: pairs with the fence's release
                "cbnz {t}, 93f",
                "ldar {t}, [{p}]", // acquire: pairs with the lock's release
                "cbnz {t}, 93f",
                "stlr {holder}, [{p}]", // commit
            ],
            fence = const crate::cs::FENCE_OFFSET, // the fence, from the word
            i = out(reg) index,                    // the index
            p = out(reg) _,                        // its slot's address
            t = out(reg) _, // the fence's address, the fence, then the word
            slots = in(reg) slots,   // number of slots
            stride = in(reg) stride, // bytes per slot
            base = in(reg) base,     // the slot array
            holder = in(reg) holder, // the value to claim with
        )
    };
    (outcome, index as u32)
}

/// The per-CPU stack's fast push: on the slot of the index read inside the
/// section (as in [`fenced_claim_at_current`]), if the fence is free,
/// `node.next = *head; *head = node`, with `next` at offset 0 of the node.
/// The head is read inside the section, so no compare is needed: only
/// this CPU's sections change it while the fence is free. The head needs
/// no `ldar`: the fence's `ldar` orders it after the last holder's
/// changes. The commit is `stlr`, and publishes the node. Returns 0
/// committed, 1 index out of range or fenced, -1 aborted; `node.next` may
/// be written whatever the outcome.
///
/// # Safety
/// See the section comment above; `base` holds `slots` slots of `stride`
/// bytes, each a list head and its fence; `node` is the caller's, and
/// writable.
#[inline(always)]
pub(crate) unsafe fn fenced_push_at_current<const FIELD: usize>(
    base: *mut u8,
    stride: usize,
    slots: u32,
    node: *mut usize,
) -> i32 {
    // SAFETY: forwarded from the caller.
    unsafe {
        crate::rseq_asm!(
            area = area_offset(),
            field = FIELD,
            body = [
                index_at_current!("p"),
                "madd {p}, {p}, {stride}, {base}",
                "add {t}, {p}, #{fence}",
                "ldar {t}, [{t}]", // acquire: pairs with the fence's release
                "cbnz {t}, 93f",
                "ldr {t}, [{p}]",
                "str {t}, [{node}]",  // the node's `next`
                "stlr {node}, [{p}]", // commit; release: publishes the node
            ],
            fence = const crate::cs::FENCE_OFFSET, // the fence, from the head
            p = out(reg) _,                        // the index, then its slot's address
            t = out(reg) _, // the fence's address, the fence, then the old head
            slots = in(reg) slots,   // number of slots
            stride = in(reg) stride, // bytes per slot
            base = in(reg) base,     // the slot array
            node = in(reg) node,     // the node to link
        )
    }
}

/// The per-CPU stack's fast pop: on the slot of the index read inside the
/// section, as [`fenced_pop`], with its orderings. Returns
/// `(outcome, node)`: 0 committed, 1 index out of range, fenced or empty,
/// -1 aborted.
///
/// # Safety
/// See the section comment above; `base` holds `slots` slots of `stride`
/// bytes, each a list head and its fence; nodes reachable from a head are
/// readable while a section on its CPU can still commit.
#[inline(always)]
pub(crate) unsafe fn fenced_pop_at_current<const FIELD: usize>(
    base: *mut u8,
    stride: usize,
    slots: u32,
) -> (i32, usize) {
    let node: usize;
    // SAFETY: forwarded from the caller.
    let outcome = unsafe {
        crate::rseq_asm!(
            area = area_offset(),
            field = FIELD,
            body = [
                index_at_current!("p"),
                "madd {p}, {p}, {stride}, {base}",
                "add {t}, {p}, #{fence}",
                "ldar {t}, [{t}]", // acquire: pairs with the fence's release
                "cbnz {t}, 93f",
                "ldar {n}, [{p}]", // acquire: pairs with the push's release
                "cbz {n}, 93f",
                "ldr {t}, [{n}]",
                "stlr {t}, [{p}]", // commit; release: `next` read first
            ],
            fence = const crate::cs::FENCE_OFFSET, // the fence, from the head
            p = out(reg) _,                        // the index, then its slot's address
            n = out(reg) node,                     // the popped node
            t = out(reg) _, // the fence's address, the fence, then the successor
            slots = in(reg) slots,   // number of slots
            stride = in(reg) stride, // bytes per slot
            base = in(reg) base,     // the slot array
        )
    };
    (outcome, node)
}

/// The list push of [`crate::cs::push_at_current`]: on the slot of the
/// index read inside the section, `node.next = *head; *head = node`, with
/// `next` at offset 0 of the node and the head first in the slot. Plain
/// loads and stores, as in the other list sections: the list belongs to
/// the CPU, and the sections that touch it run on that CPU. Returns 0
/// committed, -1 aborted or index out of range (the area is not
/// registered); `node.next` may be written whatever the outcome.
///
/// # Safety
/// See the section comment above; `base` holds `slots` slots of `stride`
/// bytes, each starting with a list head; `node` is the caller's, and
/// writable.
#[inline(always)]
pub(crate) unsafe fn push_at_current<const FIELD: usize>(
    base: *mut u8,
    stride: usize,
    slots: u32,
    node: *mut usize,
) -> i32 {
    // SAFETY: forwarded from the caller.
    unsafe {
        crate::rseq_asm!(
            area = area_offset(),
            field = FIELD,
            unregistered = abort,
            body = [
                index_at_current!("p", abort),
                "madd {p}, {p}, {stride}, {base}",
                "ldr {t}, [{p}]",
                "str {t}, [{node}]", // the node's `next`
                "str {node}, [{p}]", // commit
            ],
            p = out(reg) _,          // the index, then its slot's address
            t = out(reg) _,          // the old head
            slots = in(reg) slots,   // number of slots
            stride = in(reg) stride, // bytes per slot
            base = in(reg) base,     // the slot array
            node = in(reg) node,     // the node to link
        )
    }
}

/// The list pop of [`crate::cs::pop_at_current`]: on the slot of the index
/// read inside the section, unlinks the head node (`next` at offset 0).
/// Returns `(outcome, node)`: 0 committed, 1 empty, -1 aborted or index
/// out of range (not registered).
///
/// # Safety
/// See the section comment above; `base` holds `slots` slots of `stride`
/// bytes, each starting with a list head; nodes reachable from a head are
/// readable while a section on its CPU can still commit.
#[inline(always)]
pub(crate) unsafe fn pop_at_current<const FIELD: usize>(
    base: *mut u8,
    stride: usize,
    slots: u32,
) -> (i32, usize) {
    let node: usize;
    // SAFETY: forwarded from the caller.
    let outcome = unsafe {
        crate::rseq_asm!(
            area = area_offset(),
            field = FIELD,
            unregistered = abort,
            body = [
                index_at_current!("p", abort),
                "madd {p}, {p}, {stride}, {base}",
                "ldr {n}, [{p}]",
                "cbz {n}, 93f",
                "ldr {t}, [{n}]",
                "str {t}, [{p}]", // commit
            ],
            p = out(reg) _,          // the index, then its slot's address
            n = out(reg) node,       // the popped node
            t = out(reg) _,          // its successor
            slots = in(reg) slots,   // number of slots
            stride = in(reg) stride, // bytes per slot
            base = in(reg) base,     // the slot array
        )
    };
    (outcome, node)
}

/// The buffer push of [`crate::cs::buffer_push_at_current`]: on the slot of
/// the index read inside the section, whose first word counts the items
/// stored after it, `if count < capacity { items[count] = item; count += 1 }`,
/// the count stored with release (`stlr`), so that a thread that reads it
/// with acquire sees the item. Returns 0 committed, 1 full, -1 aborted or
/// index out of range (the area is not registered). The item's word lies
/// past the count, so an aborted push may have written it and no reader
/// sees it.
///
/// # Safety
/// See the section comment above; `base` holds `slots` slots of `stride`
/// bytes, each a count followed by at least `capacity` words.
#[inline(always)]
pub(crate) unsafe fn buffer_push_at_current<const FIELD: usize>(
    base: *mut u8,
    stride: usize,
    slots: u32,
    capacity: usize,
    item: isize,
) -> i32 {
    // SAFETY: forwarded from the caller.
    unsafe {
        crate::rseq_asm!(
            area = area_offset(),
            field = FIELD,
            unregistered = abort,
            body = [
                index_at_current!("p", abort),
                "madd {p}, {p}, {stride}, {base}",
                "ldr {n}, [{p}]",
                "cmp {n}, {capacity}",
                "b.hs 93f",
                "add {n}, {n}, #1",
                "str {item}, [{p}, {n}, lsl #3]", // items[count], past the count
                "stlr {n}, [{p}]",                // commit
            ],
            p = out(reg) _,              // the index, then its slot's address
            n = out(reg) _,              // the count
            slots = in(reg) slots,       // number of slots
            stride = in(reg) stride,     // bytes per slot
            base = in(reg) base,         // the slot array
            capacity = in(reg) capacity, // items a slot holds
            item = in(reg) item,         // the item to store
        )
    }
}

/// The buffer pop of [`crate::cs::buffer_pop_at_current`]: on the slot of
/// the index read inside the section, `if count > 0 { count -= 1; item =
/// items[count] }`. Returns `(outcome, item)`: 0 committed, 1 empty, -1
/// aborted or index out of range (not registered).
///
/// # Safety
/// See the section comment above; `base` holds `slots` slots of `stride`
/// bytes, each a count followed by at least that many words.
#[inline(always)]
pub(crate) unsafe fn buffer_pop_at_current<const FIELD: usize>(
    base: *mut u8,
    stride: usize,
    slots: u32,
) -> (i32, isize) {
    let item: isize;
    // SAFETY: forwarded from the caller.
    let outcome = unsafe {
        crate::rseq_asm!(
            area = area_offset(),
            field = FIELD,
            unregistered = abort,
            body = [
                index_at_current!("p", abort),
                "madd {p}, {p}, {stride}, {base}",
                "ldr {n}, [{p}]",
                "cbz {n}, 93f",
                "ldr {item}, [{p}, {n}, lsl #3]", // items[count - 1]
                "sub {n}, {n}, #1",
                "str {n}, [{p}]", // commit
            ],
            p = out(reg) _,          // the index, then its slot's address
            n = out(reg) _,          // the count
            item = out(reg) item,    // the item taken
            slots = in(reg) slots,   // number of slots
            stride = in(reg) stride, // bytes per slot
            base = in(reg) base,     // the slot array
        )
    };
    (outcome, item)
}
