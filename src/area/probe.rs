//! What the owner's decision looks at: glibc's registration, the kernel's
//! support, and where the process's shared area lives.
//!
//! # Finding glibc's registration
//!
//! glibc (2.35+) exports `__rseq_size` and `__rseq_offset`. A dynamically
//! linked process asks glibc's own object for them (`dlopen` of
//! `libc.so.6` with `RTLD_NOLOAD`, then `dlsym` on that handle), so a
//! program that defines stand-ins of its own (the kernel's selftests carry
//! weak ones, all zero) cannot make the library believe glibc did not
//! register. A static executable has no dynamic symbols at all: there the
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

use core::ffi::{c_int, c_void, CStr};

use crate::arch;

/// The version of the TLS header's layout; a copy uses only headers of
/// its own version (the last byte of the magic).
#[cfg_attr(restartable_loom, allow(dead_code))] // the simulated backend has no TLS header
pub(crate) const TLS_HEADER_VERSION: u8 = 1;
/// The header's first 16 bytes.
const TLS_HEADER_MAGIC: &[u8; 16] = b"restartable-tls\x01";
/// Where the refcount, the busy word and the area sit after the header's
/// start (the layout `arch` defines).
const REFCOUNT_AT: isize = 16;
const BUSY_AT: isize = 20;
const AREA_AT: isize = 32;
/// The header's alignment, and so the step of the search.
const HEADER_ALIGN: usize = 32;

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
}

impl Block {
    /// This copy's own block.
    pub(crate) fn own() -> Self {
        Block {
            area: arch::own_area_offset(),
            refcount: arch::own_refcount_offset(),
            busy: arch::own_busy_offset(),
        }
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
    // SAFETY: getauxval has no preconditions.
    let dynamic = unsafe { libc::getauxval(libc::AT_BASE) } != 0;
    if dynamic {
        // SAFETY: a valid C string; RTLD_NOLOAD only looks among the loaded
        // objects and takes a reference that the dlclose below drops.
        let handle =
            unsafe { libc::dlopen(c"libc.so.6".as_ptr(), libc::RTLD_NOLOAD | libc::RTLD_LAZY) };
        if !handle.is_null() {
            // SAFETY: a live handle and valid C strings; the lookup covers
            // glibc and its own dependencies (the symbols live in ld.so).
            let (size, offset) = unsafe {
                (
                    libc::dlsym(handle, c"__rseq_size".as_ptr()),
                    libc::dlsym(handle, c"__rseq_offset".as_ptr()),
                )
            };
            // SAFETY: drops the reference taken above; glibc stays loaded.
            unsafe { libc::dlclose(handle) };
            return (size.cast(), offset.cast());
        }
    }
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

/// The TP offset of the calling thread's instance of the TLS symbol
/// `name` in the process's global scope (the executable, its libraries and
/// what was loaded `RTLD_GLOBAL`: what an object loaded later binds to),
/// if it has one aligned to `align`.
///
/// `dlsym(RTLD_DEFAULT, ...)` would not do: it searches the calling
/// object's own scope too, and so finds a copy loaded `RTLD_LOCAL` itself.
fn global_tls_offset(name: &CStr, align: usize) -> Option<isize> {
    // SAFETY: a null name asks for the global scope's handle; the
    // reference it takes is dropped below.
    let global = unsafe { libc::dlopen(core::ptr::null(), libc::RTLD_LAZY) };
    if global.is_null() {
        return None;
    }
    // SAFETY: a live handle and a valid C string; for a TLS symbol dlsym
    // returns the calling thread's instance.
    let addr = unsafe { libc::dlsym(global, name.as_ptr()) } as usize;
    // SAFETY: drops the reference taken above.
    unsafe { libc::dlclose(global) };
    (addr != 0 && addr & (align - 1) == 0)
        .then(|| addr.wrapping_sub(arch::thread_pointer()) as isize)
}

/// Whether `__rseq_abi` in the global scope is the area at `area` (so a
/// classic `__rseq_abi` user loaded later shares it).
pub(crate) fn area_is_global(area: isize) -> bool {
    global_tls_offset(c"__rseq_abi", crate::abi::AREA_ALIGN) == Some(area)
}

/// The block every copy of the library in the process uses (see the
/// module docs).
pub(crate) fn shared_block() -> Block {
    let first = first_block_with_header().unwrap_or_else(Block::own);
    match global_tls_offset(c"__rseq_abi", crate::abi::AREA_ALIGN) {
        Some(area) if area != first.area => Block {
            // A classic component's area is first in the global scope: use
            // it, with its refcount if it has one.
            area,
            refcount: global_tls_offset(c"__rseq_refcount", 4).unwrap_or(first.refcount),
            busy: first.busy,
        },
        _ => first,
    }
}

/// The block of the first loaded object whose TLS image holds the header.
fn first_block_with_header() -> Option<Block> {
    let mut found: Option<Block> = None;
    // SAFETY: the callback has the signature dl_iterate_phdr expects and
    // `found` outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&mut found as *mut Option<Block>).cast()) };
    found
}

/// `dl_iterate_phdr` callback: stops (returns 1) at the first object whose
/// TLS image holds the header and whose TLS block the thread has.
unsafe extern "C" fn visit(
    info: *mut libc::dl_phdr_info,
    _size: usize,
    data: *mut c_void,
) -> c_int {
    // SAFETY: dl_iterate_phdr passes a valid `info` for the call, and
    // `data` is the `Option<Block>` of `first_block_with_header`.
    let (info, found) = unsafe { (&*info, &mut *data.cast::<Option<Block>>()) };
    if info.dlpi_tls_modid == 0 || info.dlpi_phdr.is_null() {
        return 0;
    }
    // SAFETY: `dlpi_phdr` points to `dlpi_phnum` program headers.
    let phdrs = unsafe { core::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum.into()) };
    let Some(tls) = phdrs.iter().find(|p| p.p_type == libc::PT_TLS) else {
        return 0;
    };
    let start = (info.dlpi_addr as usize).wrapping_add(tls.p_vaddr as usize);
    // SAFETY: the TLS image (`p_filesz` bytes at `p_vaddr`) lies in a
    // loaded, readable segment of the object; no one writes it.
    let image = unsafe { core::slice::from_raw_parts(start as *const u8, tls.p_filesz as usize) };
    let Some(at) = find_header(image) else {
        return 0;
    };
    // `dlpi_tls_data` is null for an object whose slot this thread's DTV
    // has not been given yet (an object reached only by initial-exec code,
    // as this library is, never asks): ask for the block, which updates it.
    let index = TlsIndex {
        module: info.dlpi_tls_modid as libc::c_ulong,
        offset: 0,
    };
    // SAFETY: a valid index of a loaded object with TLS; for a static-TLS
    // object the call only looks the block up.
    let block = unsafe { __tls_get_addr(&index) };
    if block.is_null() {
        return 0;
    }
    let header = (block as usize)
        .wrapping_add(at)
        .wrapping_sub(arch::thread_pointer()) as isize;
    *found = Some(Block {
        area: header + AREA_AT,
        refcount: header + REFCOUNT_AT,
        busy: header + BUSY_AT,
    });
    1
}

/// `tls_index` of the ELF TLS ABI: a module id and an offset in its block.
#[repr(C)]
struct TlsIndex {
    module: libc::c_ulong,
    offset: libc::c_ulong,
}

extern "C" {
    /// The dynamic linker's TLS lookup (glibc, musl; x86_64 and aarch64
    /// both use this name and signature): the calling thread's address of
    /// `offset` in the TLS block of `module`, allocating it if need be.
    fn __tls_get_addr(index: *const TlsIndex) -> *mut c_void;
}

/// Where the header starts in a TLS image (its offset in the block).
fn find_header(image: &[u8]) -> Option<usize> {
    (0..image.len())
        .step_by(HEADER_ALIGN)
        .find(|&at| image[at..].starts_with(TLS_HEADER_MAGIC))
        .filter(|&at| at + AREA_AT as usize + 32 <= image.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image_with_header_at(at: usize, version: u8) -> Vec<u8> {
        let mut image = vec![0u8; at + 96];
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
            find_header(&image_with_header_at(40, TLS_HEADER_VERSION)),
            None
        );
        let image = image_with_header_at(32, TLS_HEADER_VERSION);
        assert_eq!(find_header(&image[..60]), None);
        assert_eq!(find_header(&[]), None);
    }

    #[test]
    fn this_object_carries_its_header() {
        // The test executable links this crate: the first object with a
        // header is the executable, whose block is this copy's own.
        assert_eq!(first_block_with_header(), Some(Block::own()));
    }
}
