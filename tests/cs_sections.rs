//! Reads this test binary's own ELF file and checks every critical-section
//! descriptor the assembler emitted: alignment, version, flags, the abort
//! handler outside the section and preceded by the signature, the pointer
//! array, and the exit points.
//!
//! Descriptors hold absolute addresses, which a position-independent
//! executable gets relocated at load time: the sections are read from the
//! running process's memory, at their link-time address plus the load bias.
#![cfg(all(
    any(target_arch = "x86_64", target_arch = "aarch64"),
    target_os = "linux",
    not(restartable_loom)
))]

use std::collections::BTreeSet;

mod common;

use common::elf::Elf;
use restartable::cs::{self, Index, Outcome};

/// The instruction bytes in front of the signature before every abort
/// handler: the opcode of `ud1 sig(%rip), %edi` on x86_64; nothing on
/// aarch64, where the signature is the instruction word itself.
#[cfg(target_arch = "x86_64")]
const SIG_PREFIX: &[u8] = &[0x0f, 0xb9, 0x3d];
#[cfg(target_arch = "aarch64")]
const SIG_PREFIX: &[u8] = &[];

/// A section's link-time address and size.
struct Section {
    addr: u64,
    size: u64,
}

fn section(elf: &Elf, name: &str) -> Option<Section> {
    elf.section_named(name)
        .map(|(addr, size)| Section { addr, size })
}

/// Reads `len` bytes of this process's memory at `addr`.
fn mem(addr: u64, len: usize) -> Vec<u8> {
    // SAFETY: every address passed lies inside a loaded, readable section
    // of this executable (checked by the callers against section bounds).
    unsafe { std::slice::from_raw_parts(addr as *const u8, len) }.to_vec()
}

/// Calls every operation once, in both indexings, and a macro-written
/// section, so that all of them are in this binary.
fn instantiate_everything() {
    let mut v: isize = 0;
    let mut v2: isize = 0;
    let mut load: isize = 0;
    let mut dst = [0u8; 1];
    let mut ptr = &mut v2 as *mut isize as isize;
    let mut slots = [0isize; 4096];
    let (pv, pv2, pl) = (
        &mut v as *mut isize,
        &mut v2 as *mut isize,
        &mut load as *mut isize,
    );
    for index in [Index::Cpu, Index::MmCid] {
        // Never a CPU, nor -1 (what an unregistered area reads): every
        // section aborts, or (unregistered) never passes its CPU check.
        let cpu = u32::MAX - 7;
        // SAFETY: live locals; the sections cannot pass their CPU check, so
        // they touch nothing; `add_at_current_unchecked` gets a slot array
        // of 4096 words and rejects an unregistered thread itself.
        unsafe {
            let _ = cs::load_cbne_store_unchecked(index, pv, 1, 2, cpu);
            let _ = cs::load_add_store_unchecked(index, pv, 1, cpu);
            let _ = cs::load_cbeq_store_add_load_store_unchecked(index, pv, 0, 0, pl, cpu);
            let _ = cs::load_cbne_load_cbne_store_unchecked(index, pv, 1, pv2, 1, 1, cpu);
            let _ = cs::load_cbne_store_store_unchecked(index, pv, 1, pv2, 1, 1, cpu);
            let _ = cs::load_cbne_memcpy_store_unchecked(
                index,
                pv,
                1,
                dst.as_mut_ptr(),
                [7u8].as_ptr(),
                1,
                1,
                cpu,
            );
            let _ = cs::load_add_load_load_add_store_unchecked(index, &mut ptr, 0, 1, cpu);
            if restartable::feature_size() >= restartable::abi::MM_CID_END || index == Index::Cpu {
                let _ = cs::add_at_current_unchecked(index, slots.as_mut_ptr().cast(), 8, 4096, 1);
            }
            // Checked, so it runs the section where rseq is in use (and the
            // fallback, on these live locals, where it is not).
            let _ = cs::load_cbne_store_store_release(index, pv, 1, pv2, 1, 1, cpu);
            #[cfg(target_arch = "x86_64")]
            let _ = restartable::rseq_asm!(
                area = restartable::area_offset(),
                field = restartable::abi::CPU_ID_OFFSET,
                cpu = cpu,
                body = ["mov qword ptr [{v}], 1"],
                v = in(reg) pv,
            );
            #[cfg(target_arch = "aarch64")]
            let _ = restartable::rseq_asm!(
                area = restartable::area_offset(),
                field = restartable::abi::CPU_ID_OFFSET,
                cpu = cpu,
                body = ["mov {t}, #1", "str {t}, [{v}]"],
                v = in(reg) pv,
                t = out(reg) _,
            );
        }
    }
    // The stack's pop section.
    let stack = restartable::PerCpuStack::new();
    stack.push(1);
    assert_eq!(stack.pop_any(), Some(1));
}

#[test]
fn every_descriptor_is_well_formed() {
    instantiate_everything();
    let bytes = std::fs::read("/proc/self/exe").unwrap();
    let elf = Elf(&bytes);
    elf.check_header();
    let bias = elf.load_bias();
    let cs_sec = section(&elf, "__rseq_cs").expect("no __rseq_cs section");
    let ptrs = section(&elf, "__rseq_cs_ptr_array").expect("no __rseq_cs_ptr_array section");
    let exits =
        section(&elf, "__rseq_exit_point_array").expect("no __rseq_exit_point_array section");
    let failure = section(&elf, "__rseq_failure").expect("no __rseq_failure section");
    let text = section(&elf, ".text").expect("no .text");

    let in_text = |ip: u64| ip >= text.addr + bias && ip < text.addr + bias + text.size;
    let in_failure = |ip: u64| ip >= failure.addr + bias && ip < failure.addr + bias + failure.size;

    assert_eq!(cs_sec.size % 32, 0);
    assert_eq!((cs_sec.addr + bias) % 32, 0);
    let count = cs_sec.size as usize / 32;
    // One section per operation and indexing, at least.
    assert!(count >= 16, "only {count} descriptors");

    let mut descriptors = BTreeSet::new();
    let mut starts = BTreeSet::new();
    let mut ranges = Vec::new();
    for i in 0..count {
        let at = cs_sec.addr + bias + 32 * i as u64;
        let d = mem(at, 32);
        assert_eq!(at % 32, 0, "descriptor {i} misaligned");
        assert_eq!(Elf(&d).u32(0), 0, "descriptor {i}: version");
        assert_eq!(Elf(&d).u32(4), 0, "descriptor {i}: flags");
        let start = Elf(&d).u64(8);
        let len = Elf(&d).u64(16);
        let abort = Elf(&d).u64(24);
        assert!(
            in_text(start),
            "descriptor {i}: start_ip {start:#x} not in .text"
        );
        assert!(
            len > 0 && len < 4096,
            "descriptor {i}: post_commit_offset {len}"
        );
        assert!(in_text(start + len - 1));
        assert!(
            abort < start || abort >= start + len,
            "descriptor {i}: abort_ip inside the section"
        );
        assert!(
            in_failure(abort),
            "descriptor {i}: abort_ip not in __rseq_failure"
        );
        let p = SIG_PREFIX.len();
        let before = mem(abort - 4 - p as u64, 4 + p);
        assert_eq!(&before[..p], SIG_PREFIX, "descriptor {i}: not `ud1`");
        assert_eq!(
            Elf(&before).u32(p),
            restartable::abi::RSEQ_SIG,
            "descriptor {i}: signature"
        );
        descriptors.insert(at);
        starts.insert(start);
        ranges.push((start, len));
    }

    // The pointer array lists every descriptor, once.
    assert_eq!(ptrs.size % 8, 0);
    let listed: Vec<u64> = (0..ptrs.size / 8)
        .map(|i| Elf(&mem(ptrs.addr + bias + 8 * i, 8)).u64(0))
        .collect();
    let listed_set: BTreeSet<u64> = listed.iter().copied().collect();
    assert_eq!(listed.len(), listed_set.len(), "a descriptor listed twice");
    assert_eq!(listed_set, descriptors);

    // Every exit point belongs to a section and leaves it.
    assert_eq!(exits.size % 16, 0);
    assert!(exits.size / 16 >= count as u64);
    for i in 0..exits.size / 16 {
        let e = mem(exits.addr + bias + 16 * i, 16);
        let (start, exit) = (Elf(&e).u64(0), Elf(&e).u64(8));
        assert!(starts.contains(&start), "exit point {i}: unknown start_ip");
        let &(_, len) = ranges.iter().find(|(s, _)| *s == start).unwrap();
        assert!(exit < start || exit >= start + len, "exit point {i} inside");
        assert!(in_text(exit), "exit point {i}: not in .text");
    }
}

#[test]
fn sections_still_work_after_the_checks() {
    // The instantiation above runs real sections too; make sure a commit
    // still happens where rseq is in use.
    let mut v: isize = 0;
    let outcome = loop {
        // SAFETY: a live local word.
        let cpu = restartable::current_cpu();
        // SAFETY: a live local word.
        match unsafe { cs::load_add_store(Index::Cpu, &mut v, 1, cpu) } {
            Outcome::Aborted => continue,
            o => break o,
        }
    };
    assert_eq!((outcome, v), (Outcome::Committed, 1));
}
