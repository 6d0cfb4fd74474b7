//! Reading a small system file without allocating: usable before the C
//! library's own initialisation (a `.preinit_array` function), inside a
//! `malloc` interposer and in a `fork` child, where `std::fs` is not.

use core::ffi::CStr;

/// Reads the file at `path` a chunk at a time into a stack buffer and hands
/// each chunk to `chunk`, until `chunk` returns `Some`, the file ends, or a
/// read fails. Returns `None` when the file cannot be opened or a read
/// fails, `Some(None)` at its end, `Some(Some(r))` when `chunk` stopped.
pub(crate) fn read_chunks<R>(
    path: &CStr,
    mut chunk: impl FnMut(&[u8]) -> Option<R>,
) -> Option<Option<R>> {
    // SAFETY: a NUL-terminated path; read-only, close-on-exec; the
    // descriptor is closed below.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    let mut buf = [0u8; 512];
    let result = loop {
        // SAFETY: `buf` is valid for writing its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        match n {
            0 => break Some(None),
            n if n > 0 => {
                if let Some(r) = chunk(&buf[..n as usize]) {
                    break Some(Some(r));
                }
            }
            _ if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) => {}
            _ => break None,
        }
    };
    // SAFETY: the descriptor opened above.
    unsafe { libc::close(fd) };
    result
}

#[cfg(test)]
mod tests {
    use super::read_chunks;

    #[test]
    fn reads_a_file_whole_and_stops_when_asked() {
        let mut seen = Vec::new();
        let end = read_chunks(c"/proc/self/cmdline", |c| {
            seen.extend_from_slice(c);
            None::<()>
        });
        assert_eq!(end, Some(None));
        assert!(!seen.is_empty());
        assert_eq!(
            read_chunks(c"/proc/self/cmdline", |_| Some(7)),
            Some(Some(7))
        );
        assert_eq!(read_chunks(c"/nonexistent/file", |_| Some(())), None);
    }
}
