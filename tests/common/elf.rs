//! A by-hand ELF64 reader for the tests that inspect binaries.

/// A reader of the ELF64 little-endian fields the tests need.
pub struct Elf<'a>(pub &'a [u8]);

/// A symbol of `.dynsym` or `.symtab`.
#[derive(Debug)]
pub struct Sym {
    pub name: String,
    pub bind: u8,
    pub kind: u8,
    pub shndx: u16,
    pub value: u64,
    pub size: u64,
}

pub const PT_TLS: u32 = 7;
pub const PT_DYNAMIC: u32 = 2;
pub const SHT_SYMTAB: u32 = 2;
pub const SHT_DYNSYM: u32 = 11;
pub const SHT_DYNAMIC: u32 = 6;
pub const DT_NEEDED: u64 = 1;
pub const DT_SONAME: u64 = 14;
pub const STB_GLOBAL: u8 = 1;
pub const STB_WEAK: u8 = 2;
pub const STT_TLS: u8 = 6;
pub const STT_FUNC: u8 = 2;
pub const DT_FLAGS_1: u64 = 0x6fff_fffb;
pub const DF_1_NODELETE: u64 = 0x8;

impl Elf<'_> {
    pub fn u16(&self, at: usize) -> u16 {
        u16::from_le_bytes(self.0[at..at + 2].try_into().unwrap())
    }
    pub fn u32(&self, at: usize) -> u32 {
        u32::from_le_bytes(self.0[at..at + 4].try_into().unwrap())
    }
    pub fn u64(&self, at: usize) -> u64 {
        u64::from_le_bytes(self.0[at..at + 8].try_into().unwrap())
    }

    pub fn check_header(&self) {
        assert_eq!(&self.0[..4], b"\x7fELF", "not an ELF file");
        assert_eq!(self.0[4], 2, "not ELF64");
        assert_eq!(self.0[5], 1, "not little-endian");
    }

    /// `(p_type, p_offset, p_filesz, p_memsz, p_align)` of each segment.
    pub fn segments(&self) -> Vec<(u32, u64, u64, u64, u64)> {
        let (off, size, n) = (
            self.u64(0x20) as usize,
            self.u16(0x36) as usize,
            self.u16(0x38) as usize,
        );
        (0..n)
            .map(|i| {
                let p = off + i * size;
                (
                    self.u32(p),
                    self.u64(p + 8),
                    self.u64(p + 32),
                    self.u64(p + 40),
                    self.u64(p + 48),
                )
            })
            .collect()
    }

    /// `(sh_type, sh_offset, sh_size, sh_link, sh_entsize)` of each section.
    pub fn sections(&self) -> Vec<(u32, u64, u64, u32, u64)> {
        let (off, size, n) = (
            self.u64(0x28) as usize,
            self.u16(0x3a) as usize,
            self.u16(0x3c) as usize,
        );
        (0..n)
            .map(|i| {
                let s = off + i * size;
                (
                    self.u32(s + 4),
                    self.u64(s + 24),
                    self.u64(s + 32),
                    self.u32(s + 40),
                    self.u64(s + 56),
                )
            })
            .collect()
    }

    /// The symbols of the first section of type `kind`.
    pub fn symbols(&self, kind: u32) -> Vec<Sym> {
        let sections = self.sections();
        let Some(&(_, off, size, link, entsize)) = sections.iter().find(|s| s.0 == kind) else {
            return Vec::new();
        };
        let strtab = sections[link as usize].1 as usize;
        (0..(size / entsize) as usize)
            .map(|i| {
                let s = off as usize + i * entsize as usize;
                let name_at = strtab + self.u32(s) as usize;
                let end = self.0[name_at..].iter().position(|&b| b == 0).unwrap();
                Sym {
                    name: String::from_utf8_lossy(&self.0[name_at..name_at + end]).into_owned(),
                    bind: self.0[s + 4] >> 4,
                    kind: self.0[s + 4] & 0xf,
                    shndx: self.u16(s + 6),
                    value: self.u64(s + 8),
                    size: self.u64(s + 16),
                }
            })
            .collect()
    }

    /// The `DT_FLAGS_1` entry of the dynamic segment, or 0.
    pub fn flags_1(&self) -> u64 {
        let Some(&(_, off, filesz, _, _)) = self.segments().iter().find(|p| p.0 == PT_DYNAMIC)
        else {
            return 0;
        };
        (0..filesz as usize / 16)
            .map(|i| off as usize + i * 16)
            .find(|&d| self.u64(d) == DT_FLAGS_1)
            .map_or(0, |d| self.u64(d + 8))
    }
    /// The `DT_SONAME` of the dynamic section, if there is one.
    pub fn soname(&self) -> Option<String> {
        self.dynamic_strings(DT_SONAME).into_iter().next()
    }

    /// The `DT_NEEDED` entries of the dynamic section: the libraries the
    /// object is linked against.
    pub fn needed(&self) -> Vec<String> {
        self.dynamic_strings(DT_NEEDED)
    }

    /// The strings that the dynamic section's entries `tag` name.
    fn dynamic_strings(&self, tag: u64) -> Vec<String> {
        let sections = self.sections();
        let Some(&(_, off, size, link, _)) = sections.iter().find(|s| s.0 == SHT_DYNAMIC) else {
            return Vec::new();
        };
        // `sh_link` of the dynamic section: its string table.
        let strtab = sections[link as usize].1 as usize;
        (0..size as usize / 16)
            .map(|i| off as usize + i * 16)
            .filter(|&d| self.u64(d) == tag)
            .map(|d| {
                let at = strtab + self.u64(d + 8) as usize;
                let end = self.0[at..].iter().position(|&b| b == 0).unwrap();
                String::from_utf8_lossy(&self.0[at..at + end]).into_owned()
            })
            .collect()
    }

    /// `(sh_addr, sh_size)` of the section called `name`.
    pub fn section_named(&self, name: &str) -> Option<(u64, u64)> {
        let (off, size, n, strndx) = (
            self.u64(0x28) as usize,
            self.u16(0x3a) as usize,
            self.u16(0x3c) as usize,
            self.u16(0x3e) as usize,
        );
        let strtab = self.u64(off + strndx * size + 24) as usize;
        (0..n).map(|i| off + i * size).find_map(|s| {
            let at = strtab + self.u32(s) as usize;
            let end = self.0[at..].iter().position(|&b| b == 0)?;
            (&self.0[at..at + end] == name.as_bytes()).then(|| (self.u64(s + 16), self.u64(s + 32)))
        })
    }

    /// For the running executable: where its program headers are in memory
    /// (`AT_PHDR`) minus their link-time address, i.e. what the loader
    /// added to every address in the file.
    pub fn load_bias(&self) -> u64 {
        let (off, size, n) = (
            self.u64(0x20) as usize,
            self.u16(0x36) as usize,
            self.u16(0x38) as usize,
        );
        // SAFETY: getauxval has no preconditions.
        let at_phdr = unsafe { libc::getauxval(libc::AT_PHDR) };
        let headers = (0..n).map(|i| off + i * size);
        if let Some(p) = headers.clone().find(|&p| self.u32(p) == libc::PT_PHDR) {
            return at_phdr.wrapping_sub(self.u64(p + 16));
        }
        // No PT_PHDR: the first PT_LOAD maps file offset 0.
        let p = headers
            .into_iter()
            .find(|&p| self.u32(p) == libc::PT_LOAD && self.u64(p + 8) == 0)
            .expect("no PT_PHDR and no PT_LOAD at offset 0");
        at_phdr.wrapping_sub(self.u64(p + 16) + off as u64)
    }
}
