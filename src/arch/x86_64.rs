//! x86_64 Linux: the area through `%fs`, the raw system call, and the
//! critical-section operations.
//!
//! The library's own area `__rseq_abi` and the shared refcount
//! `__rseq_refcount` are weak, exported, initial-exec TLS symbols defined
//! here in assembly (stable Rust cannot declare TLS symbols with a chosen
//! name, linkage and model). Code reaches them through hidden aliases with
//! `@GOTTPOFF`, which the linker relaxes to an immediate in an executable.
//!
//! Three more pieces of this file exist so that every moment of the
//! process's life reads a real area:
//! - a header in front of the area, with a magic string, by which later
//!   copies of the library find this copy's area, refcount and busy word
//!   in its TLS block even when no symbol is exported (see `area::probe`);
//! - an IFUNC resolver, run by the dynamic linker (or by the static
//!   start-up code) while it relocates this object, before any
//!   constructor, `.preinit_array` function or other code of the process,
//!   that points `restartable_area_offset` at the inert area;
//! - weak references to glibc's `__rseq_size` and `__rseq_offset`, which
//!   the static linker binds in a static executable, where `dlsym` finds
//!   nothing.

use core::arch::{asm, global_asm};

use crate::abi::Rseq;
use crate::registration::ThreadRecord;

/// rseq code exists for this architecture.
pub(crate) const AVAILABLE: bool = true;

/// `RSEQ_SIG` on x86: the 4-byte immediate of `ud1 0x53053053(%rip), %edi`,
/// the instruction emitted before every abort handler.
pub(crate) const SIG: u32 = crate::abi::RSEQ_SIG;

/// `rseq_slice_yield(2)` (Linux 7.0): gives the CPU back after a granted
/// time-slice extension.
pub(crate) const SYS_RSEQ_SLICE_YIELD: libc::c_long = 471;

global_asm!(
    // This copy's TLS block, laid out as `arch::tls` says: the header that
    // later copies of the library find in this object's TLS image (see
    // `area::probe`), holding the refcount, the busy word and the
    // registered length; the inert area; then `__rseq_abi`, 64 bytes
    // aligned to 64, room for an extensible registration.
    ".pushsection .tdata, \"awT\", @progbits",
    ".balign {block_align}",
    ".globl restartable_tls_header",
    ".hidden restartable_tls_header",
    ".type restartable_tls_header, @object",
    ".size restartable_tls_header, {header_size}",
    "restartable_tls_header:",
    ".ascii \"restartable-tls\"",
    ".byte {header_version}",
    // `__rseq_refcount`: how many holds the components sharing `__rseq_abi`
    // have on this thread's registration. Weak, like `__rseq_abi`, so that
    // every component defining it resolves to one per thread when it is
    // exported; `restartable_own_refcount` names this copy's.
    ".weak __rseq_refcount",
    ".type __rseq_refcount, @object",
    ".size __rseq_refcount, 4",
    ".globl restartable_own_refcount",
    ".hidden restartable_own_refcount",
    ".type restartable_own_refcount, @object",
    ".size restartable_own_refcount, 4",
    "__rseq_refcount:",
    "restartable_own_refcount:",
    ".long 0",
    // The busy word: non-zero while a registration change is in progress
    // on the thread, so that a signal handler keeps off.
    ".globl restartable_own_busy",
    ".hidden restartable_own_busy",
    ".type restartable_own_busy, @object",
    ".size restartable_own_busy, 4",
    "restartable_own_busy:",
    ".long 0",
    // The length the shared area is registered with on this thread, so
    // that whichever copy releases the last hold unregisters with it.
    ".globl restartable_own_len",
    ".hidden restartable_own_len",
    ".type restartable_own_len, @object",
    ".size restartable_own_len, 4",
    "restartable_own_len:",
    ".long 0",
    ".zero {inert_at} - ({len_at} + 4)",
    // `restartable_inert_area`: an area no one ever registers, so its
    // `cpu_id` stays -1. The active-area offset names it from relocation
    // time until the owner is decided, and whenever rseq is unavailable:
    // every fast path then takes its cold path, and no section can run on
    // an area registered by a component we cannot vouch for.
    ".globl restartable_inert_area",
    ".hidden restartable_inert_area",
    ".type restartable_inert_area, @object",
    ".size restartable_inert_area, 32",
    "restartable_inert_area:",
    ".long 0",          // cpu_id_start
    ".long -1",         // cpu_id
    ".quad 0",          // rseq_cs
    ".long 0, 0, 0, 0", // flags, node_id, mm_cid, slice_ctrl
    ".zero {area_at} - ({inert_at} + 32)",
    // `__rseq_abi`: the classic shared area. Weak so that every copy of this
    // library and every component defining it the classic way resolve to one
    // area per thread when the symbol is exported; `cpu_id` starts at -1
    // (RSEQ_CPU_ID_UNINITIALIZED). `restartable_own_area` names this copy's
    // definition whatever the weak name resolves to.
    ".weak __rseq_abi",
    ".type __rseq_abi, @object",
    ".size __rseq_abi, {area_capacity}",
    ".globl restartable_own_area",
    ".hidden restartable_own_area",
    ".type restartable_own_area, @object",
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
    ".pushsection .tbss, \"awT\", @nobits",
    ".balign 8",
    ".globl restartable_thread_record",
    ".hidden restartable_thread_record",
    ".type restartable_thread_record, @object",
    ".size restartable_thread_record, 8",
    "restartable_thread_record:",
    ".zero 8",
    ".popsection",
    // `restartable_area_offset`: the TP offset of the active area, read by
    // every CPU read (and by the C header's inline functions, under the
    // exported name). The hidden second label lets this library read it
    // RIP-relative, without a GOT load, even in the shared object, where
    // the exported name is preemptible. Its static value 0 is never read:
    // the resolver below replaces it with the inert area's offset while
    // the object is relocated (a TP-relative data relocation, which would
    // say so statically, is refused in a shared object by both linkers).
    ".pushsection .data.restartable_area_offset, \"aw\", @progbits",
    ".balign 8",
    ".globl restartable_area_offset",
    ".type restartable_area_offset, @object",
    ".size restartable_area_offset, 8",
    ".globl restartable_area_offset_hidden",
    ".hidden restartable_area_offset_hidden",
    ".type restartable_area_offset_hidden, @object",
    ".size restartable_area_offset_hidden, 8",
    "restartable_area_offset:",
    "restartable_area_offset_hidden:",
    ".quad 0",
    ".popsection",
    // Weak references to glibc's registration. A static executable binds
    // them at link time to libc.a's definitions (which win over any weak
    // definitions of the program); a dynamic one at load time; they stay
    // null where the C library has none (musl, glibc < 2.35).
    ".weak __rseq_size",
    ".weak __rseq_offset",
    ".pushsection .data.rel.ro.restartable_libc_rseq, \"aw\", @progbits",
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

// The constructor, reached through an IFUNC: the dynamic linker runs the
// resolver while it applies this object's relocations (IRELATIVE ones
// last, so the GOT slot it reads is filled), and the static start-up code
// runs it before TLS is even set up, which is why it touches no `%fs`. It
// points the active-area offset at the inert area and returns the
// constructor, which `.init_array` then calls like any other. musl has no
// IFUNC support: there the constructor is a plain `.init_array` entry and
// the offset names the inert area only once the constructor has run.
#[cfg(target_env = "gnu")]
global_asm!(
    ".pushsection .text.restartable_early_init, \"ax\", @progbits",
    ".balign 16",
    ".type restartable_early_init_resolver, @function",
    "restartable_early_init_resolver:",
    "mov rax, qword ptr [rip + restartable_inert_area@GOTTPOFF]",
    "mov qword ptr [rip + restartable_area_offset_hidden], rax",
    "lea rax, [rip + {ctor}]",
    "ret",
    ".size restartable_early_init_resolver, . - restartable_early_init_resolver",
    ".type restartable_early_init, @gnu_indirect_function",
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

/// The process-wide TP offset of the active area: one RIP-relative load.
///
/// `pure`: the value names the inert area from relocation time on, is set
/// by the owner's decision, and changes at most once more, to the inert
/// area when the process turns `Unavailable`; so the compiler may hoist
/// the load out of loops. A loop that hoisted it keeps a live area of its
/// own thread.
#[inline(always)]
pub(crate) fn area_offset() -> isize {
    let offset: isize;
    // SAFETY: reads the 8-byte variable defined above; writes nothing.
    unsafe {
        asm!(
            "mov {o}, qword ptr [rip + restartable_area_offset_hidden]",
            o = out(reg) offset, // the area's offset from the thread pointer
            options(nostack, readonly, preserves_flags, pure)
        );
    }
    offset
}

/// Sets the process-wide area offset (the owner's decision only; see
/// `area.rs`).
///
/// Writes this object's storage (through the hidden name) and whatever the
/// exported name resolves to (through the GOT). The two differ when an
/// executable that reads the variable, as the C header's inline functions
/// do, was linked against `librestartable.so`: the linker then gives the
/// executable its own copy of the variable (a copy relocation), filled
/// from this object's storage after the resolver above ran, and only the
/// write through the GOT reaches it later.
pub(crate) fn set_area_offset(offset: isize) {
    // SAFETY: the variable is a properly aligned `AtomicIsize`.
    unsafe { &AREA_OFFSET }.store(offset, core::sync::atomic::Ordering::Relaxed);
    let exported: *const core::sync::atomic::AtomicIsize;
    // SAFETY: loads the GOT slot of `restartable_area_offset`, which the
    // dynamic linker filled with the address of the definition every user
    // of the name sees; nothing is written.
    unsafe {
        asm!(
            "mov {p}, qword ptr [rip + restartable_area_offset@GOTPCREL]",
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

/// Returns the thread pointer (`%fs` base), which glibc stores at `%fs:0`.
#[inline(always)]
pub(crate) fn thread_pointer() -> usize {
    let tp: usize;
    // SAFETY: on x86_64 Linux `%fs:0` always holds the TCB's self pointer
    // (the TLS ABI requires it); the load has no other effect.
    unsafe {
        asm!(
            "mov {tp}, qword ptr fs:0",
            tp = out(reg) tp, // the thread pointer
            options(nostack, readonly, preserves_flags, pure)
        );
    }
    tp
}

/// Reads the GOT slot that holds the TP offset of one of this object's
/// initial-exec TLS symbols (relaxed to an immediate in an executable).
macro_rules! tp_offset_of {
    ($symbol:literal) => {{
        let offset: isize;
        // SAFETY: reads the GOT slot the linker filled with the TP offset
        // of the symbol (or an immediate); no memory is written.
        unsafe {
            asm!(
                concat!("mov {o}, qword ptr [rip + ", $symbol, "@GOTTPOFF]"),
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

/// Reads the 32-bit field at byte `FIELD` of the area at `%fs + offset`.
///
/// One instruction; volatile, since the kernel rewrites the field whenever
/// the thread is preempted.
///
/// # Safety
/// - `offset` is the TP-relative offset of a live, 32-byte area of the
///   calling thread (the process-wide area offset is one).
#[inline(always)]
pub(crate) unsafe fn load_u32<const FIELD: usize>(offset: isize) -> u32 {
    let value: u32;
    // SAFETY: the caller guarantees `%fs + offset` is this thread's area;
    // `FIELD` is one of the `abi` offsets, inside those 32 bytes.
    unsafe {
        asm!(
            "mov {v:e}, dword ptr fs:[{o} + {f}]",
            o = in(reg) offset,   // area offset from the thread pointer
            f = const FIELD,      // field offset inside `struct rseq`
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
    // SAFETY: a plain system call; the caller vouches for `area`. `syscall`
    // clobbers rcx and r11, declared below.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") linux_raw_sys::general::__NR_rseq as isize => ret, // number / result
            in("rdi") area,             // struct rseq *
            in("rsi") len,              // u32 rseq_len
            in("rdx") flags,            // int flags
            in("r10") sig,              // u32 sig
            lateout("rcx") _,           // clobbered by `syscall`
            lateout("r11") _,           // clobbered by `syscall`
            options(nostack, preserves_flags)
        );
    }
    ret as i32
}

// ---------------------------------------------------------------------------
// ---------------------------------------------------------------------------
// Critical-section operations. Each is one `rseq_asm!` block; `FIELD` picks
// the area field the CPU check compares (`cpu_id` or `mm_cid`). Each returns
// 0 committed, 1 compare failed, -1 aborted. Safety, for every one: every
// pointer is valid for the accesses its operation names, and `cpu` is below
// 2^31. Only a registered area (at `area_offset()`) lets a section commit:
// on one that is not, the macro's checks send every section to its abort
// path (or, without a `cpu`, to its "not registered" exit).
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
                "cmp qword ptr [{v}], {expect}",
                "jne 93f",
                "mov qword ptr [{v}], {newv}", // commit
            ],
            v = in(reg) v,           // the word
            expect = in(reg) expect, // expected value
            newv = in(reg) newv,     // new value
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
            body = ["add qword ptr [{v}], {count}"], // commit
            v = in(reg) v,         // the word
            count = in(reg) count, // the addend
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
                "mov {t}, qword ptr [{v}]",
                "cmp {t}, {expectnot}",
                "je 93f",
                "mov qword ptr [{load}], {t}",
                "mov {t}, qword ptr [{t} + {voffp}]",
                "mov qword ptr [{v}], {t}", // commit
            ],
            v = in(reg) v,                 // the list head
            expectnot = in(reg) expectnot, // the empty value
            voffp = in(reg) voffp,         // offset of `next` in a node
            load = in(reg) load,           // receives the popped head
            t = out(reg) _,                // scratch
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
                "cmp qword ptr [{v}], {expect}",
                "jne 93f",
                "cmp qword ptr [{v2}], {expect2}",
                "jne 93f",
                "mov qword ptr [{v}], {newv}", // commit
            ],
            v = in(reg) v,             // the word
            expect = in(reg) expect,   // its expected value
            v2 = in(reg) v2,           // the second word
            expect2 = in(reg) expect2, // its expected value
            newv = in(reg) newv,       // new value of `*v`
        )
    }
}

/// `if *v == expect { *v2 = newv2; *v = newv }`. On x86 (TSO) the second
/// store is never seen before the first, so this is also the release form.
///
/// # Safety
/// See the section comment above.
#[inline(always)]
pub(crate) unsafe fn load_cbne_store_store<const FIELD: usize>(
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
                "cmp qword ptr [{v}], {expect}",
                "jne 93f",
                "mov qword ptr [{v2}], {newv2}", // speculative store
                "mov qword ptr [{v}], {newv}",   // commit
            ],
            v = in(reg) v,           // the word
            expect = in(reg) expect, // its expected value
            v2 = in(reg) v2,         // the word stored first
            newv2 = in(reg) newv2,   // its new value
            newv = in(reg) newv,     // new value of `*v`
        )
    }
}

/// The release form of [`load_cbne_store_store`]: the same code, since
/// x86 (TSO) never lets another CPU see the commit before the first store.
///
/// # Safety
/// See the section comment above.
#[inline(always)]
pub(crate) unsafe fn load_cbne_store_store_release<const FIELD: usize>(
    v: *mut isize,
    expect: isize,
    v2: *mut isize,
    newv2: isize,
    newv: isize,
    cpu: u32,
) -> i32 {
    // SAFETY: forwarded from the caller.
    unsafe { load_cbne_store_store::<FIELD>(v, expect, v2, newv2, newv, cpu) }
}

/// `if *v == expect { memcpy(dst, src, len); *v = newv }`.
///
/// # Safety
/// See the section comment above; `dst` and `src` are valid for `len`
/// bytes.
#[inline(always)]
pub(crate) unsafe fn load_cbne_memcpy_store<const FIELD: usize>(
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
                "cmp qword ptr [{v}], {expect}",
                "jne 93f",
                // Eight bytes at a time (unaligned moves are fine on
                // x86), then the last bytes one by one: an abort leaves a
                // prefix of `dst` copied. Where `dst` lies 1 to 7 bytes
                // above `src`, the whole copy goes byte by byte, so that
                // overlapping ranges come out as a forward byte copy's
                // (see "Copies" in `cs/fallback.rs`); every other layout
                // gives the same bytes either way.
                "cmp {len}, 8",
                "jb 22f",
                "mov {t}, {dst}",
                "sub {t}, {src}",
                "dec {t}",
                "cmp {t}, 7",
                "jb 22f",
                "20:",
                "mov {t}, qword ptr [{src}]",
                "mov qword ptr [{dst}], {t}",
                "add {src}, 8",
                "add {dst}, 8",
                "sub {len}, 8",
                "cmp {len}, 8",
                "jae 20b",
                "22:",
                "test {len}, {len}",
                "jz 21f",
                "23:",
                "mov {t:l}, byte ptr [{src}]",
                "mov byte ptr [{dst}], {t:l}",
                "inc {src}",
                "inc {dst}",
                "dec {len}",
                "jnz 23b",
                "21:",
                "mov qword ptr [{v}], {newv}", // commit
            ],
            v = in(reg) v,             // the word
            expect = in(reg) expect,   // its expected value
            dst = inout(reg) dst => _, // copy destination (advanced)
            src = inout(reg) src => _, // copy source (advanced)
            len = inout(reg) len => _, // bytes left
            t = out(reg) _,            // the bytes in flight
            newv = in(reg) newv,       // new value of `*v`
        )
    }
}

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
                "mov {t}, qword ptr [{ptr}]",
                "add {t}, {off}",
                "mov {t}, qword ptr [{t}]",
                "add qword ptr [{t}], {inc}", // commit
            ],
            ptr = in(reg) ptr, // the root pointer
            off = in(reg) off, // offset of the pointer to follow
            inc = in(reg) inc, // the addend
            t = out(reg) _,    // scratch
        )
    }
}

/// The first steps of a section that finds its slot itself (the counter's
/// add, the lock's and the stack's fast paths): the index from the area's
/// indexed field into the named register, checked against `{slots}`. The
/// unsigned compare also rejects -1 and -2, the `cpu_id` of an area that
/// is not registered (for `mm_cid`, which such an area reads as 0, the
/// macro `rseq_asm!` checks `cpu_id` first); out of range, the section
/// leaves through `93f`, or with `abort` through the abort handler's `94f`
/// (for sections whose `93f` means something else, written with
/// `unregistered = abort`).
macro_rules! index_at_current {
    ($i:literal) => {
        index_at_current!($i, "93f")
    };
    ($i:literal, abort) => {
        index_at_current!($i, "94f")
    };
    ($i:literal, $exit:literal) => {
        concat!(
            "mov {",
            $i,
            ":e}, dword ptr fs:[{rseq_area} + {rseq_field}]\n",
            "cmp {",
            $i,
            ":e}, {slots:e}\n",
            "jae ",
            $exit
        )
    };
}

/// The per-CPU counter's add: reads the index *inside* the section (after
/// the `rseq_cs` store, so any later migration aborts it), bounds-checks
/// it (an unregistered `cpu_id` of -1 or -2 fails the unsigned compare; for
/// `mm_cid`, which such an area reads as 0, the macro checks `cpu_id`
/// first) and commits `add [base + index * stride], delta`. Returns 0
/// committed, 1 index out of range (not registered), -1 aborted.
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
                "imul {i}, {stride}",
                "add qword ptr [{base} + {i}], {delta}", // commit
            ],
            i = out(reg) _,          // the index, then its byte offset
            slots = in(reg) slots,   // number of slots
            stride = in(reg) stride, // bytes per slot
            base = in(reg) base,     // the slot array
            delta = in(reg) delta,   // the addend
        )
    }
}

/// `if *fence == 0 && *v == expect { *v = newv }`, where `fence` is the
/// word after `v` ([`FENCE_OFFSET`](crate::cs::FENCE_OFFSET) bytes on),
/// reading the fence *first*: a section that starts after a fallback
/// thread's membarrier and finds the fence free runs after that thread
/// released it, so `*v` is current. (Reading `*v` first could see it before
/// the holder changed it.) The fence is addressed from `v`, so the section
/// needs no register for it.
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
                "cmp qword ptr [{v} + {fence}], 0",
                "jne 93f",
                "cmp qword ptr [{v}], {expect}",
                "jne 93f",
                "mov qword ptr [{v}], {newv}", // commit
            ],
            fence = const crate::cs::FENCE_OFFSET, // the slot's fence word, from `v`
            v = in(reg) v,                         // the word
            expect = in(reg) expect,               // its expected value
            newv = in(reg) newv,                   // its new value
        )
    }
}

/// The per-CPU stack's pop: fails (1) if the fence (the word after
/// `head`) is not 0 or the list is empty; otherwise unlinks the head,
/// whose `next` is at offset 0, and returns it. Returns `(outcome, head)`.
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
                "cmp qword ptr [{head} + {fence}], 0",
                "jne 93f",
                "mov {n}, qword ptr [{head}]",
                "test {n}, {n}",
                "jz 93f",
                "mov {t}, qword ptr [{n}]",
                "mov qword ptr [{head}], {t}", // commit
            ],
            fence = const crate::cs::FENCE_OFFSET, // the slot's fence word, from `head`
            head = in(reg) head,                   // the list head
            n = out(reg) node,                     // the popped node
            t = out(reg) _,                        // its successor
        )
    };
    (outcome, node)
}

/// The per-CPU lock's fast section: reads the index *inside* the section
/// and bounds-checks it, as [`add_at_current`] does; then, on slot `i` at
/// `base + i * stride`, `if *fence == 0 && *word == 0 { *word = holder }`,
/// the word first in the slot and its fence
/// [`FENCE_OFFSET`](crate::cs::FENCE_OFFSET) bytes on (read first, as in
/// [`fenced_store`]). Returns `(outcome, i)`: 0 committed, 1 index out of
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
                "mov {o}, {i}",
                "imul {o}, {stride}",
                "cmp qword ptr [{base} + {o} + {fence}], 0",
                "jne 93f",
                "cmp qword ptr [{base} + {o}], 0",
                "jne 93f",
                "mov qword ptr [{base} + {o}], {holder}", // commit
            ],
            fence = const crate::cs::FENCE_OFFSET, // the fence, from the word
            i = out(reg) index,                    // the index
            o = out(reg) _,                        // its slot's byte offset
            slots = in(reg) slots,                 // number of slots
            stride = in(reg) stride,               // bytes per slot
            base = in(reg) base,                   // the slot array
            holder = in(reg) holder,               // the value to claim with
        )
    };
    (outcome, index as u32)
}

/// The per-CPU stack's fast push: on the slot of the index read inside the
/// section (as in [`fenced_claim_at_current`]), if the fence is free,
/// `node.next = *head; *head = node`, with `next` at offset 0 of the node.
/// The head is read inside the section, so no compare is needed: only
/// this CPU's sections change it while the fence is free. Returns 0
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
                index_at_current!("o"),
                "imul {o}, {stride}",
                "cmp qword ptr [{base} + {o} + {fence}], 0",
                "jne 93f",
                "mov {t}, qword ptr [{base} + {o}]",
                "mov qword ptr [{node}], {t}", // the node's `next`
                "mov qword ptr [{base} + {o}], {node}", // commit
            ],
            fence = const crate::cs::FENCE_OFFSET, // the fence, from the head
            o = out(reg) _,                        // the index, then its byte offset
            t = out(reg) _,                        // the old head
            slots = in(reg) slots,                 // number of slots
            stride = in(reg) stride,               // bytes per slot
            base = in(reg) base,                   // the slot array
            node = in(reg) node,                   // the node to link
        )
    }
}

/// The per-CPU stack's fast pop: on the slot of the index read inside the
/// section, as [`fenced_pop`]. Returns `(outcome, node)`: 0 committed, 1
/// index out of range, fenced or empty, -1 aborted.
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
                index_at_current!("o"),
                "imul {o}, {stride}",
                "cmp qword ptr [{base} + {o} + {fence}], 0",
                "jne 93f",
                "mov {n}, qword ptr [{base} + {o}]",
                "test {n}, {n}",
                "jz 93f",
                "mov {t}, qword ptr [{n}]",
                "mov qword ptr [{base} + {o}], {t}", // commit
            ],
            fence = const crate::cs::FENCE_OFFSET, // the fence, from the head
            o = out(reg) _,                        // the index, then its byte offset
            n = out(reg) node,                     // the popped node
            t = out(reg) _,                        // its successor
            slots = in(reg) slots,                 // number of slots
            stride = in(reg) stride,               // bytes per slot
            base = in(reg) base,                   // the slot array
        )
    };
    (outcome, node)
}

/// The list push of [`crate::cs::push_at_current`]: on the slot of the
/// index read inside the section, `node.next = *head; *head = node`, with
/// `next` at offset 0 of the node and the head first in the slot. The head
/// is read inside the section, so no compare is needed. Returns 0
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
                index_at_current!("o", abort),
                "imul {o}, {stride}",
                "mov {t}, qword ptr [{base} + {o}]",
                "mov qword ptr [{node}], {t}", // the node's `next`
                "mov qword ptr [{base} + {o}], {node}", // commit
            ],
            o = out(reg) _,          // the index, then its byte offset
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
                index_at_current!("o", abort),
                "imul {o}, {stride}",
                "mov {n}, qword ptr [{base} + {o}]",
                "test {n}, {n}",
                "jz 93f",
                "mov {t}, qword ptr [{n}]",
                "mov qword ptr [{base} + {o}], {t}", // commit
            ],
            o = out(reg) _,          // the index, then its byte offset
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
/// stored after it, `if count < capacity { items[count] = item; count += 1 }`.
/// Returns 0 committed, 1 full, -1 aborted or index out of range (the area
/// is not registered). The item's word lies past the count, so an aborted
/// push may have written it and no reader sees it.
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
                "imul {p}, {stride}",
                "add {p}, {base}",
                "mov {n}, qword ptr [{p}]",
                "cmp {n}, {capacity}",
                "jae 93f",
                "mov qword ptr [{p} + {n} * 8 + 8], {item}",
                "add {n}, 1",
                "mov qword ptr [{p}], {n}", // commit
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
                "imul {p}, {stride}",
                "add {p}, {base}",
                "mov {n}, qword ptr [{p}]",
                "test {n}, {n}",
                "jz 93f",
                "mov {item}, qword ptr [{p} + {n} * 8]", // items[count - 1]
                "sub {n}, 1",
                "mov qword ptr [{p}], {n}", // commit
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

/// The release form of [`load_cbne_memcpy_store`]: the same code, since
/// x86 (TSO) never lets a later store pass an earlier one.
///
/// # Safety
/// As [`load_cbne_memcpy_store`].
#[inline(always)]
pub(crate) unsafe fn load_cbne_memcpy_store_release<const FIELD: usize>(
    v: *mut isize,
    expect: isize,
    dst: *mut u8,
    src: *const u8,
    len: usize,
    newv: isize,
    cpu: u32,
) -> i32 {
    // SAFETY: forwarded from the caller.
    unsafe { load_cbne_memcpy_store::<FIELD>(v, expect, dst, src, len, newv, cpu) }
}
