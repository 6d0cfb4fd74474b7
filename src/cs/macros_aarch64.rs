//! [`rseq_asm!`](crate::rseq_asm) in A64 assembly.

/// Writes one restartable critical section in aarch64 assembly.
///
/// The same contract as on x86_64: the macro wraps [`core::arch::asm!`]
/// and emits around the caller's instructions
///
/// 1. a 32-byte aligned `struct rseq_cs` descriptor in section `__rseq_cs`
///    (version 0, flags 0, start, post-commit offset, abort address), and a
///    pointer to it in `__rseq_cs_ptr_array`;
/// 2. an exit point (`start, exit`) in `__rseq_exit_point_array` for the
///    compare-failed exit;
/// 3. the store of the descriptor's address to the area's `rseq_cs`;
/// 4. with `cpu = ...`: the check of the area's `cpu_id` (or `mm_cid`, as
///    `field` says) against the CPU the caller read before the section
///    (a mismatch goes to the aborted exit, as the abort handler does);
/// 5. for `field = abi::MM_CID_OFFSET`: the check that `cpu_id >= 0`
///    (failing, it goes to the aborted exit with `cpu = ...`, to `93f`
///    without);
/// 6. the caller's `body`, whose **last instruction must be the single
///    commit store** (`str`, or `stlr` for release ordering); it leaves
///    the section early with a branch to `93f` (`b.ne 93f`, `cbz x, 93f`)
///    when a comparison fails;
/// 7. the abort handler, out of line in `__rseq_failure`, preceded by the
///    signature word `0xd428bc00`.
///
/// The expression evaluates to an `i32`: 0 committed, 1 left through `93f`
/// (compare failed), -1 aborted. Labels 90 to 97 and operand names starting
/// with `rseq_` belong to the macro; the body may use numeric labels 20 to
/// 89. In the body, `{rseq_area}` names the register holding the area's
/// *address* (the thread pointer plus `area`: A64 has no segment-relative
/// addressing) and `{rseq_field}` the offset of the indexed field. Operands
/// follow the body, exactly as in `asm!`. With `unregistered = abort` (see
/// the x86_64 form), the `mm_cid` check goes where an abort goes, and the
/// body's own index check leaves through `97f`, this form's local abort
/// exit (`94`, the handler, may lie out of a conditional branch's reach).
/// The body's loads and stores are
/// as weakly ordered as the instructions it uses: use `ldar`/`stlr` where
/// another CPU must see them in order.
///
/// # Safety
/// As on x86_64: `area` is [`crate::area_offset()`], `cpu` is below 2^31,
/// the body's memory operands are valid, and the body ends with one store
/// that commits.
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
///                 "ldr {t}, [{p}]",
///                 "cmp {t}, {v}",
///                 "b.ge 93f",
///                 "str {v}, [{p}]",
///             ],
///             p = in(reg) &mut max as *mut i64,
///             v = in(reg) value,
///             t = out(reg) _,
///         )
///     };
///     if outcome != -1 {
///         break outcome;
///     }
/// };
/// assert_eq!(outcome, 0);
/// assert_eq!(max, 9);
/// ```
#[macro_export]
macro_rules! rseq_asm {
    (
        area = $area:expr,
        field = $field:expr,
        cpu = $cpu:expr,
        body = [$($body:expr),* $(,)?],
        $($operands:tt)*
    ) => {
        $crate::rseq_asm!(@emit $area, $field, "97f",
            [
                "ldr {rseq_tmp:w}, [{rseq_area}, #{rseq_field}]",
                "cmp {rseq_tmp:w}, {rseq_cpu:w}",
                "b.ne 97f",
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
        $crate::rseq_asm!(@emit $area, $field, "97f", [$($body),*], $($operands)*)
    };
    (@emit $area:expr, $field:expr, $unregistered:literal, [$($body:expr),*], $($operands:tt)*) => {{
        let rseq_outcome: i32;
        ::core::arch::asm!(
            // The descriptor and the tables that list it (`?`: each joins
            // the code's section group, if it has one).
            ".pushsection __rseq_cs, \"aw?\", %progbits",
            ".balign 32",
            "90:",
            ".long 0, 0",
            ".quad 91f, (92f - 91f), 94f",
            ".popsection",
            ".pushsection __rseq_cs_ptr_array, \"awR?\", %progbits",
            ".quad 90b",
            ".popsection",
            ".pushsection __rseq_exit_point_array, \"awR?\", %progbits",
            ".quad 91f, 93f",
            ".popsection",
            // The area's address, then arm: publish the descriptor in the
            // area's `rseq_cs`. (A plain store: the kernel reads it on this
            // thread's own preemption.)
            "mrs {rseq_tmp}, tpidr_el0",
            "add {rseq_area}, {rseq_area}, {rseq_tmp}",
            "adrp {rseq_tmp}, 90b",
            "add {rseq_tmp}, {rseq_tmp}, #:lo12:90b",
            "str {rseq_tmp}, [{rseq_area}, #{rseq_cs_offset}]",
            // The section: from here to the commit store.
            "91:",
            $crate::__rseq_stress_delay!(),
            // An area that is not registered reads `mm_cid` 0: a section
            // indexed by `mm_cid` also needs `cpu_id >= 0` (bit 31 clear).
            ".if {rseq_field} == {rseq_mm_cid_offset}",
            "ldr {rseq_tmp:w}, [{rseq_area}, #{rseq_cpu_id_offset}]",
            concat!("tbnz {rseq_tmp:w}, #31, ", $unregistered),
            ".endif",
            $($body,)*
            "92:",
            "mov {rseq_ret:w}, #0",
            "b 95f",
            "93:",
            "mov {rseq_ret:w}, #1",
            "b 95f",
            // Aborted: where the abort handler and the failed checks go
            // (conditional branches reach only 1 MiB, and the linker may
            // place `__rseq_failure` farther than that from the code).
            "97:",
            "mov {rseq_ret:w}, #-1",
            "b 95f",
            // The abort handler, behind the signature word.
            ".pushsection __rseq_failure, \"ax?\", %progbits",
            ".inst {rseq_sig}",
            "94:",
            "b 97b",
            ".popsection",
            "95:",
            rseq_area = inout(reg) ($area as isize) => _, // area offset, then address
            rseq_field = const $field,                  // cpu_id or mm_cid
            rseq_cs_offset = const $crate::abi::RSEQ_CS_OFFSET, // `rseq_cs`
            rseq_cpu_id_offset = const $crate::abi::CPU_ID_OFFSET, // `cpu_id`
            rseq_mm_cid_offset = const $crate::abi::MM_CID_OFFSET, // `mm_cid`
            rseq_sig = const $crate::abi::RSEQ_SIG,     // abort signature
            rseq_tmp = out(reg) _,                      // scratch
            rseq_ret = out(reg) rseq_outcome,           // the outcome
            $($operands)*
            options(nostack)
        );
        rseq_outcome
    }};
}

/// A delay inside every section in `abort-stress` builds (test-only), so
/// that preemption lands inside sections and aborts them.
#[cfg(feature = "abort-stress")]
#[doc(hidden)]
#[macro_export]
macro_rules! __rseq_stress_delay {
    () => {
        "mov {rseq_tmp:w}, #3000\n96:\nsubs {rseq_tmp:w}, {rseq_tmp:w}, #1\nb.ne 96b"
    };
}

/// Nothing, outside `abort-stress` builds.
#[cfg(not(feature = "abort-stress"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __rseq_stress_delay {
    () => {
        ""
    };
}
