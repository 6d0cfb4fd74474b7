//! Reads this test binary's own ELF file and checks every critical-section
//! descriptor the assembler emitted: alignment, version, flags, the abort
//! handler outside the section and preceded by the signature, the pointer
//! array, and the exit points.
//!
//! Descriptors hold absolute addresses, which a position-independent
//! executable gets relocated at load time: the sections are read from the
//! running process's memory, at their link-time address plus the load bias.
#![cfg(all(target_arch = "x86_64", target_os = "linux", not(restartable_loom)))]

use std::collections::BTreeSet;

use restartable::cs::{self, Index, Outcome};

struct Section {
    addr: u64,
    size: u64,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

struct Elf {
    bytes: Vec<u8>,
}

impl Elf {
    fn own() -> Elf {
        let bytes = std::fs::read("/proc/self/exe").unwrap();
        assert_eq!(&bytes[..4], b"\x7fELF");
        assert_eq!(bytes[4], 2, "ELFCLASS64");
        assert_eq!(bytes[5], 1, "little endian");
        Elf { bytes }
    }

    fn section(&self, name: &str) -> Option<Section> {
        let b = &self.bytes;
        let shoff = u64_at(b, 0x28) as usize;
        let shentsize = u16_at(b, 0x3a) as usize;
        let shnum = u16_at(b, 0x3c) as usize;
        let shstrndx = u16_at(b, 0x3e) as usize;
        let strtab = u64_at(b, shoff + shstrndx * shentsize + 24) as usize;
        (0..shnum).find_map(|i| {
            let sh = shoff + i * shentsize;
            let name_at = strtab + u32_at(b, sh) as usize;
            let end = b[name_at..].iter().position(|&c| c == 0).unwrap();
            (&b[name_at..name_at + end] == name.as_bytes()).then(|| Section {
                addr: u64_at(b, sh + 16),
                size: u64_at(b, sh + 32),
            })
        })
    }

    /// Load bias: where the program headers are in memory (AT_PHDR) minus
    /// their link-time address (PT_PHDR's p_vaddr).
    fn load_bias(&self) -> u64 {
        let b = &self.bytes;
        let phoff = u64_at(b, 0x20) as usize;
        let phentsize = u16_at(b, 0x36) as usize;
        let phnum = u16_at(b, 0x38) as usize;
        // SAFETY: getauxval has no preconditions.
        let at_phdr = unsafe { libc::getauxval(libc::AT_PHDR) };
        for i in 0..phnum {
            let ph = phoff + i * phentsize;
            if u32_at(b, ph) == libc::PT_PHDR {
                return at_phdr.wrapping_sub(u64_at(b, ph + 16));
            }
        }
        // No PT_PHDR: the first PT_LOAD maps file offset 0.
        for i in 0..phnum {
            let ph = phoff + i * phentsize;
            if u32_at(b, ph) == libc::PT_LOAD && u64_at(b, ph + 8) == 0 {
                return at_phdr.wrapping_sub(u64_at(b, ph + 16) + phoff as u64);
            }
        }
        panic!("no PT_PHDR and no PT_LOAD at offset 0");
    }
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
            let _ = restartable::rseq_asm!(
                area = restartable::area_offset(),
                field = restartable::abi::CPU_ID_OFFSET,
                cpu = cpu,
                body = ["mov qword ptr [{v}], 1"],
                v = in(reg) pv,
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
    let elf = Elf::own();
    let bias = elf.load_bias();
    let cs_sec = elf.section("__rseq_cs").expect("no __rseq_cs section");
    let ptrs = elf
        .section("__rseq_cs_ptr_array")
        .expect("no __rseq_cs_ptr_array section");
    let exits = elf
        .section("__rseq_exit_point_array")
        .expect("no __rseq_exit_point_array section");
    let failure = elf
        .section("__rseq_failure")
        .expect("no __rseq_failure section");
    let text = elf.section(".text").expect("no .text");

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
        assert_eq!(u32_at(&d, 0), 0, "descriptor {i}: version");
        assert_eq!(u32_at(&d, 4), 0, "descriptor {i}: flags");
        let start = u64_at(&d, 8);
        let len = u64_at(&d, 16);
        let abort = u64_at(&d, 24);
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
        let before = mem(abort - 7, 7);
        assert_eq!(
            &before[..3],
            &[0x0f, 0xb9, 0x3d],
            "descriptor {i}: not `ud1`"
        );
        assert_eq!(
            u32_at(&before, 3),
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
        .map(|i| u64_at(&mem(ptrs.addr + bias + 8 * i, 8), 0))
        .collect();
    let listed_set: BTreeSet<u64> = listed.iter().copied().collect();
    assert_eq!(listed.len(), listed_set.len(), "a descriptor listed twice");
    assert_eq!(listed_set, descriptors);

    // Every exit point belongs to a section and leaves it.
    assert_eq!(exits.size % 16, 0);
    assert!(exits.size / 16 >= count as u64);
    for i in 0..exits.size / 16 {
        let e = mem(exits.addr + bias + 16 * i, 16);
        let (start, exit) = (u64_at(&e, 0), u64_at(&e, 8));
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
