//! What the owner's decision looks at: glibc's registration, the kernel's
//! support, and where the process's shared area lives.
//!
//! # Finding glibc's registration
//!
//! glibc (2.35+) exports `__rseq_size` and `__rseq_offset`. A dynamically
//! linked process asks for them with their version (`dlvsym`, `GLIBC_2.35`),
//! so a program that defines unversioned stand-ins of its own (the
//! kernel's selftests carry weak ones, all zero) cannot make the library
//! believe glibc did not register. Nothing here calls `dlopen`: the
//! decision may run in a `.preinit_array` function, before the C library's
//! own initialisation, and a `dlopen` there leaves `environ` null for the
//! rest of the process. A static executable has no dynamic symbols at all: there the
//! weak references that `arch` defines were bound by the static linker to
//! libc.a's definitions, which win over any weak definition of the program.
//!
//! # Finding the shared area
//!
//! Every copy of this library carries its own `__rseq_abi`, but a thread
//! can register only one area, so all copies must agree on which. When the
//! symbol is in the global scope (a shared library, or an executable linked
//! with `--export-dynamic-symbol=__rseq_abi`), `dlsym` names it, and a
//! classic `__rseq_abi` user shares it too. When it is not (a Rust binary
//! or a C program linked with `librestartable.a`, whose symbols stay
//! private), the copies meet through their TLS images instead: each copy
//! puts a 32-byte header with a magic string in front of its area (the
//! refcount and the busy word live in it), and `dl_iterate_phdr` lists the
//! loaded objects in load order, each with its TLS image and the calling
//! thread's TLS block. The first object whose image holds the header wins:
//! every copy finds the same one, and objects loaded later come later in
//! the list, so an earlier decision never changes. (The image, not a
//! relocation, gives the header's place in the block: linkers disagree on
//! what a TLS-relative data relocation means in an executable.)

use core::ffi::{c_char, c_int, c_void, CStr};

use crate::arch;

use crate::arch::tls;

/// The version of the TLS header's layout; a copy uses only headers of
/// its own version (the last byte of the magic).
#[cfg(test)]
const TLS_HEADER_VERSION: u8 = tls::VERSION;
/// The header's first 16 bytes.
const TLS_HEADER_MAGIC: &[u8; 16] = &{
    let mut magic = *b"restartable-tls\0";
    magic[15] = tls::VERSION;
    magic
};
/// The header's alignment, and so the step of the search.
const HEADER_ALIGN: usize = tls::BLOCK_ALIGN;

/// Where the shared area, its refcount and its busy word sit, as offsets
/// from the thread pointer (the same for every thread: static TLS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Block {
    /// The `struct rseq` every copy registers.
    pub(crate) area: isize,
    /// Its `__rseq_refcount`.
    pub(crate) refcount: isize,
    /// Non-zero while a registration change runs on the thread.
    pub(crate) busy: isize,
    /// The word that holds the length the area is registered with on the
    /// thread (0 while it is not registered by a holder that counts).
    pub(crate) len: isize,
    /// Whether the area is a copy's own (room for [`AREA_CAPACITY`] bytes,
    /// aligned to as much) rather than a classic component's (32 bytes).
    ///
    /// [`AREA_CAPACITY`]: crate::abi::AREA_CAPACITY
    pub(crate) extensible: bool,
}

impl Block {
    /// This copy's own block.
    pub(crate) fn own() -> Self {
        Block {
            area: arch::own_area_offset(),
            refcount: arch::own_refcount_offset(),
            busy: arch::own_busy_offset(),
            len: arch::own_len_offset(),
            extensible: arch::AVAILABLE,
        }
    }
}

extern "C" {
    /// The process's environment; null until the C library initialised
    /// itself (in a `.preinit_array` function, say).
    static environ: *const *const c_char;
}

/// Whether environment variable `name` is set to something other than
/// `""` or `"0"`.
///
/// Before the C library's own initialisation `getenv` sees nothing
/// (`environ` is still null): the kernel's copy of the initial environment,
/// `/proc/self/environ`, is read instead (where `/proc` is missing, the
/// variable counts as unset).
pub(crate) fn env_var_set(name: &CStr) -> bool {
    // SAFETY: reads the pointer only.
    if !unsafe { environ }.is_null() {
        // SAFETY: a valid C string; getenv returns null or a valid C string
        // that is only read here.
        let value = unsafe { libc::getenv(name.as_ptr()) };
        // SAFETY: non-null results of getenv are NUL-terminated strings.
        let value = (!value.is_null()).then(|| unsafe { CStr::from_ptr(value) }.to_bytes());
        return value.is_some_and(|v| !v.is_empty() && v != b"0");
    }
    let mut scan = EnvScan::new(name.to_bytes());
    let found = crate::file::read_chunks(c"/proc/self/environ", |chunk| {
        chunk.iter().find_map(|&b| scan.byte(b))
    });
    let found = match found {
        Some(Some(value)) => Some(value),
        Some(None) => scan.end(),
        None => None,
    };
    found.is_some_and(|v| v.is_set())
}

/// Finds `NAME=value` among NUL-separated entries, a byte at a time, and
/// keeps the first two bytes of the value (enough to tell `""` and `"0"`
/// from anything else).
struct EnvScan<'a> {
    name: &'a [u8],
    /// Bytes of `NAME=` matched in the current entry; `None` once it
    /// cannot match.
    matched: Option<usize>,
    value: [u8; 2],
    value_len: usize,
}

/// The first bytes of a found value, and its length.
struct Value([u8; 2], usize);

impl Value {
    /// Set to something other than `""` or `"0"`.
    fn is_set(&self) -> bool {
        self.1 > 1 || (self.1 == 1 && self.0[0] != b'0')
    }
}

impl<'a> EnvScan<'a> {
    fn new(name: &'a [u8]) -> Self {
        EnvScan {
            name,
            matched: Some(0),
            value: [0; 2],
            value_len: 0,
        }
    }

    /// Takes one byte; the value when an entry for the name ends.
    fn byte(&mut self, b: u8) -> Option<Value> {
        if b == 0 {
            let found = self.end();
            *self = EnvScan::new(self.name);
            return found;
        }
        let name_len = self.name.len();
        self.matched = match self.matched? {
            m if m < name_len => (b == self.name[m]).then_some(m + 1),
            m if m == name_len => (b == b'=').then_some(m + 1),
            m => {
                if self.value_len < 2 {
                    self.value[self.value_len] = b;
                }
                self.value_len = self.value_len.saturating_add(1);
                Some(m)
            }
        };
        None
    }

    /// The value if the current entry is the name's.
    fn end(&self) -> Option<Value> {
        (self.matched == Some(self.name.len() + 1)).then_some(Value(self.value, self.value_len))
    }
}

/// glibc's registration: `(__rseq_size, __rseq_offset)` if the symbols
/// exist; `__rseq_size` is 0 when glibc did not register.
pub(crate) fn libc_symbols() -> Option<(u32, isize)> {
    let (size, offset) = libc_symbol_addresses();
    if size.is_null() || offset.is_null() {
        return None;
    }
    // SAFETY: glibc defines `__rseq_size` as `const unsigned int` and
    // `__rseq_offset` as `const ptrdiff_t`, both set before user code runs
    // (before the relocation of other objects, in a static executable).
    Some(unsafe { (*size, *offset) })
}

fn libc_symbol_addresses() -> (*const u32, *const isize) {
    // A dynamically linked glibc: its versioned definitions, which a
    // program's own unversioned stand-ins cannot interpose. `dlvsym` is
    // itself looked up, as musl has none.
    // SAFETY: dlsym with RTLD_DEFAULT and a valid C string.
    let dlvsym = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"dlvsym".as_ptr()) };
    if !dlvsym.is_null() {
        type Dlvsym =
            unsafe extern "C" fn(*mut c_void, *const c_char, *const c_char) -> *mut c_void;
        // SAFETY: glibc's `dlvsym` has this signature.
        let dlvsym: Dlvsym = unsafe { core::mem::transmute(dlvsym) };
        // SAFETY: RTLD_DEFAULT and valid C strings; the symbols appeared in
        // glibc 2.35 on every architecture, with that version.
        let (size, offset) = unsafe {
            (
                dlvsym(
                    libc::RTLD_DEFAULT,
                    c"__rseq_size".as_ptr(),
                    c"GLIBC_2.35".as_ptr(),
                ),
                dlvsym(
                    libc::RTLD_DEFAULT,
                    c"__rseq_offset".as_ptr(),
                    c"GLIBC_2.35".as_ptr(),
                ),
            )
        };
        if !size.is_null() && !offset.is_null() {
            return (size.cast(), offset.cast());
        }
    }
    // A static executable (or a C library without them): the link-time
    // bindings.
    arch::libc_rseq_symbols()
}

/// Whether the kernel answers `rseq(2)` on this thread, asked without
/// registering anything: unregistering a null area is refused with
/// `EINVAL` by every kernel that has rseq, registered or not, and answered
/// `ENOSYS` (or a filter's errno) where there is none.
pub(crate) fn kernel_has_rseq() -> bool {
    // SAFETY: the kernel rejects a null area before touching memory.
    let ret = unsafe {
        arch::sys_rseq(
            core::ptr::null_mut(),
            crate::abi::MIN_REGISTRATION_LEN,
            crate::abi::FLAG_UNREGISTER,
            arch::SIG,
        )
    };
    ret == -libc::EINVAL
}

/// The TP offset of the calling thread's instance of the TLS symbol `name`
/// as this object's code would bind it (the global scope, then the
/// object's own), if it has one aligned to `align`.
fn tls_offset_of(name: &CStr, align: usize) -> Option<isize> {
    // SAFETY: dlsym with RTLD_DEFAULT and a valid C string; for a TLS
    // symbol it returns the calling thread's instance.
    let addr = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    tls_offset(addr, align)
}

fn tls_offset(addr: *mut c_void, align: usize) -> Option<isize> {
    let addr = addr as usize;
    (addr != 0 && addr & (align - 1) == 0)
        .then(|| addr.wrapping_sub(arch::thread_pointer()) as isize)
}

/// Whether `__rseq_abi` in the process's global scope (the executable, its
/// libraries and what was loaded `RTLD_GLOBAL`: what an object loaded
/// later binds to) is the area at `area`.
///
/// Asks through `dlopen(NULL)`, the global scope's handle, since
/// `dlsym(RTLD_DEFAULT, ...)` also searches the calling object's own scope
/// and so finds a copy loaded `RTLD_LOCAL` itself: for diagnostics, called
/// once `main` runs, never by the decision.
pub(crate) fn area_is_global(area: isize) -> bool {
    // SAFETY: a null name asks for the global scope's handle; the
    // reference it takes is dropped below.
    let global = unsafe { libc::dlopen(core::ptr::null(), libc::RTLD_LAZY) };
    if global.is_null() {
        return false;
    }
    // SAFETY: a live handle and a valid C string.
    let addr = unsafe { libc::dlsym(global, c"__rseq_abi".as_ptr()) };
    // SAFETY: drops the reference taken above.
    unsafe { libc::dlclose(global) };
    tls_offset(addr, crate::abi::AREA_ALIGN) == Some(area)
}

/// The block every copy of the library in the process uses (see the
/// module docs).
pub(crate) fn shared_block() -> Block {
    let global = tls_offset_of(c"__rseq_abi", crate::abi::AREA_ALIGN);
    let mut search = Search {
        first: None,
        global,
        global_is_a_copy: false,
    };
    // SAFETY: the callback has the signature dl_iterate_phdr expects and
    // `search` outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&mut search as *mut Search).cast()) };
    let first = search.first.unwrap_or_else(Block::own);
    match global {
        // A classic component's area comes first in the global scope (not
        // a copy of this library, which would carry the header): use it,
        // with its refcount if it has one, so that it keeps sharing.
        Some(area) if !search.global_is_a_copy => Block {
            area,
            refcount: tls_offset_of(c"__rseq_refcount", 4).unwrap_or(first.refcount),
            busy: first.busy,
            len: first.len,
            extensible: false,
        },
        _ => first,
    }
}

/// What [`visit`] looks for among the loaded objects.
struct Search {
    /// The block of the first object whose TLS image holds the header.
    first: Option<Block>,
    /// The global `__rseq_abi`, if any.
    global: Option<isize>,
    /// Whether the global `__rseq_abi` is the area of some copy's block.
    global_is_a_copy: bool,
}

/// `dl_iterate_phdr` callback: notes each object whose TLS image holds the
/// header; stops (returns 1) when nothing more can be learnt.
unsafe extern "C" fn visit(
    info: *mut libc::dl_phdr_info,
    _size: usize,
    data: *mut c_void,
) -> c_int {
    // SAFETY: dl_iterate_phdr passes a valid `info` for the call, and
    // `data` is the `Search` of `shared_block`.
    let (info, search) = unsafe { (&*info, &mut *data.cast::<Search>()) };
    // SAFETY: forwarded: `info` describes a loaded object.
    let Some(block) = (unsafe { block_of(info) }) else {
        return 0;
    };
    search.first.get_or_insert(block);
    search.global_is_a_copy |= search.global == Some(block.area);
    (search.global.is_none() || search.global_is_a_copy).into()
}

/// The block of a loaded object whose TLS image holds the header.
///
/// # Safety
/// - `info` is what `dl_iterate_phdr` passed for a loaded object.
unsafe fn block_of(info: &libc::dl_phdr_info) -> Option<Block> {
    if info.dlpi_tls_modid == 0 || info.dlpi_phdr.is_null() {
        return None;
    }
    // SAFETY: `dlpi_phdr` points to `dlpi_phnum` program headers.
    let phdrs = unsafe { core::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum.into()) };
    let tls = phdrs.iter().find(|p| p.p_type == libc::PT_TLS)?;
    let start = (info.dlpi_addr as usize).wrapping_add(tls.p_vaddr as usize);
    // SAFETY: the TLS image (`p_filesz` bytes at `p_vaddr`) lies in a
    // loaded, readable segment of the object; no one writes it.
    let image = unsafe { core::slice::from_raw_parts(start as *const u8, tls.p_filesz as usize) };
    let at = find_header(image)?;
    let block = match info.dlpi_tls_data.is_null() {
        false => info.dlpi_tls_data,
        // Null for an object whose slot this thread's DTV has not been
        // given yet (an object reached only by initial-exec code, as this
        // library is, never asks): ask for the block, which updates it.
        true => tls_block_of(info.dlpi_tls_modid as libc::c_ulong),
    };
    if block.is_null() {
        return None;
    }
    let header = (block as usize)
        .wrapping_add(at)
        .wrapping_sub(arch::thread_pointer()) as isize;
    Some(Block {
        area: header + tls::AREA_AT as isize,
        refcount: header + tls::REFCOUNT_AT as isize,
        busy: header + tls::BUSY_AT as isize,
        len: header + tls::LEN_AT as isize,
        extensible: true,
    })
}

/// `tls_index` of the ELF TLS ABI: a module id and an offset in its block.
#[repr(C)]
struct TlsIndex {
    module: libc::c_ulong,
    offset: libc::c_ulong,
}

/// The calling thread's TLS block of object `module`, from the dynamic
/// linker's `__tls_get_addr` (glibc, musl; x86_64 and aarch64 both use
/// this name and signature), looked up at run time: a static executable
/// has none, and needs none (its `dlpi_tls_data` is always set).
fn tls_block_of(module: libc::c_ulong) -> *mut c_void {
    // SAFETY: dlsym with RTLD_DEFAULT and a valid C string.
    let lookup = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"__tls_get_addr".as_ptr()) };
    if lookup.is_null() {
        return core::ptr::null_mut();
    }
    // SAFETY: `__tls_get_addr` has this signature in the ELF TLS ABI.
    let lookup: unsafe extern "C" fn(*const TlsIndex) -> *mut c_void =
        unsafe { core::mem::transmute(lookup) };
    // SAFETY: a valid index of a loaded object with TLS; for a static-TLS
    // object the call only looks the block up.
    unsafe { lookup(&TlsIndex { module, offset: 0 }) }
}

/// Where the header starts in a TLS image (its offset in the block).
fn find_header(image: &[u8]) -> Option<usize> {
    (0..image.len())
        .step_by(HEADER_ALIGN)
        .find(|&at| image[at..].starts_with(TLS_HEADER_MAGIC))
        .filter(|&at| at + tls::SIZE <= image.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image_with_header_at(at: usize, version: u8) -> Vec<u8> {
        let mut image = vec![0u8; at + tls::SIZE];
        image[at..at + 16].copy_from_slice(TLS_HEADER_MAGIC);
        image[at + 15] = version;
        image
    }

    #[test]
    fn finds_the_header_at_an_aligned_place() {
        assert_eq!(
            find_header(&image_with_header_at(64, TLS_HEADER_VERSION)),
            Some(64)
        );
        assert_eq!(
            find_header(&image_with_header_at(0, TLS_HEADER_VERSION)),
            Some(0)
        );
    }

    #[test]
    fn ignores_other_versions_misaligned_and_truncated_headers() {
        assert_eq!(
            find_header(&image_with_header_at(64, TLS_HEADER_VERSION + 1)),
            None
        );
        assert_eq!(
            find_header(&image_with_header_at(96, TLS_HEADER_VERSION)),
            None
        );
        let image = image_with_header_at(64, TLS_HEADER_VERSION);
        assert_eq!(find_header(&image[..64 + tls::SIZE - 1]), None);
        assert_eq!(find_header(&[]), None);
    }

    fn scan(env: &[u8], name: &[u8]) -> Option<bool> {
        let mut scan = EnvScan::new(name);
        env.iter()
            .find_map(|&b| scan.byte(b))
            .or_else(|| scan.end())
            .map(|v| v.is_set())
    }

    #[test]
    fn environment_entries_are_read_a_byte_at_a_time() {
        let env = b"A=1\0RESTARTABLE_DISABLEX=1\0RESTARTABLE_DISABLE=0\0";
        assert_eq!(scan(env, b"RESTARTABLE_DISABLE"), Some(false));
        assert_eq!(
            scan(b"X_RESTARTABLE_DISABLE=1\0", b"RESTARTABLE_DISABLE"),
            None
        );
        assert_eq!(
            scan(b"RESTARTABLE_DISABLE=\0", b"RESTARTABLE_DISABLE"),
            Some(false)
        );
        assert_eq!(
            scan(b"RESTARTABLE_DISABLE=01", b"RESTARTABLE_DISABLE"),
            Some(true)
        );
        assert_eq!(
            scan(b"B=2\0RESTARTABLE_DISABLE=yes\0", b"RESTARTABLE_DISABLE"),
            Some(true)
        );
        assert_eq!(scan(b"", b"RESTARTABLE_DISABLE"), None);
    }

    #[test]
    fn this_object_carries_its_header() {
        // The test executable links this crate: the first object with a
        // header is the executable, whose block is this copy's own.
        assert_eq!(shared_block(), Block::own());
    }
}
