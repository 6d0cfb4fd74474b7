//! The building block of every critical section: [`rseq_asm!`](crate::rseq_asm).
//!
//! Written in the target's assembly: the x86_64 form here, the aarch64 one
//! in `macros_aarch64.rs`, with the same operands, labels and outcomes.

#[cfg(target_arch = "aarch64")]
#[path = "macros_aarch64.rs"]
mod aarch64;

/// Writes one restartable critical section in x86_64 assembly.
///
/// The macro wraps [`core::arch::asm!`] and emits everything the kernel and
/// tools require around the caller's instructions:
///
/// 1. a 32-byte aligned `struct rseq_cs` descriptor in section `__rseq_cs`
///    (version 0, flags 0, start, post-commit offset, abort address), and a
///    pointer to it in `__rseq_cs_ptr_array`;
/// 2. an exit point (`start, exit`) in `__rseq_exit_point_array` for the
///    compare-failed exit;
/// 3. the store of the descriptor's address to the area's `rseq_cs`;
/// 4. with `cpu = ...`: the check of the area's `cpu_id` (or `mm_cid`, as
///    `field` says) against the CPU the caller read before the section
///    (a mismatch goes to the abort handler);
/// 5. for `field = abi::MM_CID_OFFSET`, with or without `cpu = ...`: the
///    check that `cpu_id >= 0`, since an area that is not registered reads
///    `mm_cid` 0 and would pass any check of it (failing, it goes where a
///    failed index check goes: the abort handler with `cpu = ...`, `93f`
///    without). For `cpu_id` the assembler emits nothing here;
/// 6. the caller's `body`, whose **last instruction must be the single
///    commit store**; it leaves the section early with `jmp 93f` (or any
///    conditional jump to `93f`) when a comparison fails, an exit placed
///    out of line in `.text.unlikely`, so that a commit falls through to
///    the code after the section with no jump;
/// 7. the abort handler, out of line in `__rseq_failure`, preceded by the
///    signature `ud1 0x53053053(%rip), %edi`.
///
/// The expression evaluates to an `i32`: 0 committed, 1 left through `93f`
/// (compare failed), -1 aborted (by the kernel, or by a failed check of the
/// index). Labels 90 to 96 and operand names starting with `rseq_` belong
/// to the macro; the body may use numeric labels 20 to 89. In the body,
/// `{rseq_area}` names the register holding the area's offset from `%fs`
/// and `{rseq_field}` the offset of the indexed field (without `cpu = ...`
/// the body must read it itself, as the per-CPU counter's add does).
/// Operands follow the body, exactly as in `asm!`.
///
/// A body that reads the index itself and gives `93f` another meaning (the
/// list pop's "empty") writes `unregistered = abort` before `body`: the
/// `mm_cid` check of step 5 then goes to the abort handler, and the body's
/// own index check leaves through `94f`, so that an area that is not
/// registered reads as an abort (-1), as it does with `cpu = ...`.
///
/// # Safety
/// Must be used inside `unsafe`; the caller guarantees that
/// - `area` is [`crate::area_offset()`]; the kernel aborts sections only
///   when that area is registered. On one that is not (`cpu_id` -1 or -2,
///   `mm_cid` 0) the checks above fail, so the section never commits,
///   provided that
/// - `cpu` is below 2^31, as every CPU number and concurrency id is: -1
///   and -2 as `u32` equal the `cpu_id` of an area that is not registered
///   (the bare operations of [`crate::cs`] turn such values into one that
///   no area reads; this macro takes `cpu` as given);
/// - the body's memory operands are valid, and the body ends with one store
///   that commits.
///
/// # Examples
/// A per-CPU "store if greater" with its own comparison:
/// ```
/// use restartable::{abi, rseq_asm};
///
/// let mut max: i64 = 5;
/// let value: i64 = 9;
/// let outcome = loop {
///     let cpu = restartable::current_cpu();
///     if !restartable::is_available() {
///         max = max.max(value); // a real program would take its fallback here
///         break 0;
///     }
///     // SAFETY: the thread is registered (checked above); `max` is a live
///     // local; the last instruction is the single commit store.
///     let outcome = unsafe {
///         rseq_asm!(
///             area = restartable::area_offset(),
///             field = abi::CPU_ID_OFFSET,
///             cpu = cpu,
///             body = [
///                 "cmp qword ptr [{p}], {v}",
///                 "jge 93f",
///                 "mov qword ptr [{p}], {v}",
///             ],
///             p = in(reg) &mut max as *mut i64,
///             v = in(reg) value,
///         )
///     };
///     if outcome != -1 {
///         break outcome;
///     }
/// };
/// assert_eq!(outcome, 0);
/// assert_eq!(max, 9);
/// ```
#[cfg(not(target_arch = "aarch64"))]
#[macro_export]
macro_rules! rseq_asm {
    (
        area = $area:expr,
        field = $field:expr,
        cpu = $cpu:expr,
        body = [$($body:expr),* $(,)?],
        $($operands:tt)*
    ) => {
        $crate::rseq_asm!(@emit $area, $field, "94f",
            [
                "cmp dword ptr fs:[{rseq_area} + {rseq_field}], {rseq_cpu:e}",
                "jne 94f",
                $($body),*
            ],
            rseq_cpu = in(reg) ($cpu as u32),
            $($operands)*
        )
    };
    (
        area = $area:expr,
        field = $field:expr,
        body = [$($body:expr),* $(,)?],
        $($operands:tt)*
    ) => {
        $crate::rseq_asm!(@emit $area, $field, "93f", [$($body),*], $($operands)*)
    };
    (
        area = $area:expr,
        field = $field:expr,
        unregistered = abort,
        body = [$($body:expr),* $(,)?],
        $($operands:tt)*
    ) => {
        $crate::rseq_asm!(@emit $area, $field, "94f", [$($body),*], $($operands)*)
    };
    // `$unregistered`: where a section indexed by `mm_cid` goes when the
    // area is not registered (the abort handler when the macro checks the
    // index, the body's own exit when the body reads it).
    (@emit $area:expr, $field:expr, $unregistered:literal, [$($body:expr),*], $($operands:tt)*) => {{
        let rseq_outcome: i32;
        ::core::arch::asm!(
            // The descriptor and the tables that list it. `?`: each pushed
            // section joins the section group of the code, if it has one,
            // so that a copy the linker discards takes its tables along.
            ".pushsection __rseq_cs, \"aw?\", @progbits",
            ".balign 32",
            "90:",
            ".long 0, 0",
            ".quad 91f, (92f - 91f), 94f",
            ".popsection",
            ".pushsection __rseq_cs_ptr_array, \"awR?\", @progbits",
            ".quad 90b",
            ".popsection",
            ".pushsection __rseq_exit_point_array, \"awR?\", @progbits",
            ".quad 91f, 93f",
            ".popsection",
            // Arm: publish the descriptor in the area's `rseq_cs`.
            "lea {rseq_tmp}, [rip + 90b]",
            "mov qword ptr fs:[{rseq_area} + {rseq_cs_offset}], {rseq_tmp}",
            // The section: from here to the commit store.
            "91:",
            $crate::__rseq_stress_delay!(),
            // An area that is not registered (or the inert one) reads
            // `mm_cid` 0, which the index check would accept: a section
            // indexed by `mm_cid` also needs `cpu_id >= 0`. The assembler
            // keeps these two instructions only for that field.
            ".if {rseq_field} == {rseq_mm_cid_offset}",
            "cmp dword ptr fs:[{rseq_area} + {rseq_cpu_id_offset}], 0",
            concat!("jl ", $unregistered),
            ".endif",
            $($body,)*
            "92:",
            // Committed: falls through to the end, with no jump.
            "xor {rseq_ret:e}, {rseq_ret:e}",
            // Compare failed: out of line, in the cold text.
            ".pushsection .text.unlikely, \"ax?\", @progbits",
            "93:",
            "mov {rseq_ret:e}, 1",
            "jmp 95f",
            ".popsection",
            // The abort handler, behind the signature.
            ".pushsection __rseq_failure, \"ax?\", @progbits",
            ".byte 0x0f, 0xb9, 0x3d",
            ".long {rseq_sig}",
            "94:",
            "mov {rseq_ret:e}, -1",
            "jmp 95f",
            ".popsection",
            "95:",
            rseq_area = in(reg) ($area as isize),      // area offset from %fs
            rseq_field = const $field,                  // cpu_id or mm_cid
            rseq_cs_offset = const $crate::abi::RSEQ_CS_OFFSET, // `rseq_cs`
            rseq_cpu_id_offset = const $crate::abi::CPU_ID_OFFSET, // `cpu_id`
            rseq_mm_cid_offset = const $crate::abi::MM_CID_OFFSET, // `mm_cid`
            rseq_sig = const $crate::abi::RSEQ_SIG,     // abort signature
            rseq_tmp = out(reg) _,                      // descriptor address
            rseq_ret = out(reg) rseq_outcome,           // the outcome
            $($operands)*
            options(nostack)
        );
        rseq_outcome
    }};
}

/// A delay inside every section in `abort-stress` builds (test-only), so
/// that preemption lands inside sections and aborts them.
#[cfg(all(feature = "abort-stress", not(target_arch = "aarch64")))]
#[doc(hidden)]
#[macro_export]
macro_rules! __rseq_stress_delay {
    () => {
        "mov {rseq_tmp:e}, 3000\n96:\ndec {rseq_tmp:e}\njnz 96b"
    };
}

/// Nothing, outside `abort-stress` builds.
#[cfg(all(not(feature = "abort-stress"), not(target_arch = "aarch64")))]
#[doc(hidden)]
#[macro_export]
macro_rules! __rseq_stress_delay {
    () => {
        ""
    };
}
