//! A page whose first read blocks until the test lets it go, with
//! `userfaultfd(2)` and only `libc`: a thread that reads [`MissingPage::addr`]
//! stops in the kernel on the page fault; [`MissingPage::wait_for_fault`]
//! returns once it has; [`MissingPage::fill`] maps the page and wakes it.
//! Tests use it to hold a thread still in the middle of a copy.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const PAGE: usize = 4096;
/// `UFFD_API`.
const API: u64 = 0xaa;
/// `UFFD_USER_MODE_ONLY` (Linux 5.11): faults from user space only, which
/// needs no privilege.
const USER_MODE_ONLY: libc::c_int = 1;
/// `_IOWR(0xaa, 0x3f, struct uffdio_api)`.
const UFFDIO_API: libc::c_ulong = 0xc018_aa3f;
/// `_IOWR(0xaa, 0x00, struct uffdio_register)`.
const UFFDIO_REGISTER: libc::c_ulong = 0xc020_aa00;
/// `_IOWR(0xaa, 0x03, struct uffdio_copy)`.
const UFFDIO_COPY: libc::c_ulong = 0xc028_aa03;
const REGISTER_MODE_MISSING: u64 = 1;
/// `UFFD_EVENT_PAGEFAULT`.
const EVENT_PAGEFAULT: u8 = 0x12;

#[repr(C)]
struct UffdioApi {
    api: u64,
    features: u64,
    ioctls: u64,
}

#[repr(C)]
struct UffdioRegister {
    start: u64,
    len: u64,
    mode: u64,
    ioctls: u64,
}

#[repr(C)]
struct UffdioCopy {
    dst: u64,
    src: u64,
    len: u64,
    mode: u64,
    copy: i64,
}

/// One anonymous page registered for missing-page faults.
#[derive(Debug)]
pub struct MissingPage {
    fd: OwnedFd,
    addr: *mut u8,
}

// SAFETY: the page and the descriptor may be used from any thread.
unsafe impl Send for MissingPage {}
// SAFETY: as above; the kernel serialises the ioctls.
unsafe impl Sync for MissingPage {}

fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

impl MissingPage {
    /// Maps the page and registers it; fails where `userfaultfd` is not
    /// allowed.
    pub fn new() -> io::Result<Self> {
        // SAFETY: userfaultfd takes flags only.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_userfaultfd,
                libc::O_CLOEXEC | libc::O_NONBLOCK | USER_MODE_ONLY,
            )
        };
        let fd = match check(fd) {
            Ok(fd) => fd,
            // Before Linux 5.11 the flag is unknown; privileged callers
            // may go without it.
            // SAFETY: as above.
            Err(_) => check(unsafe {
                libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC | libc::O_NONBLOCK)
            })?,
        };
        // SAFETY: the kernel returned a new descriptor that nothing owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let mut api = UffdioApi {
            api: API,
            features: 0,
            ioctls: 0,
        };
        // SAFETY: `api` is valid for the kernel to read and fill.
        let ret = unsafe { libc::ioctl(fd.as_raw_fd(), UFFDIO_API, &mut api as *mut UffdioApi) };
        check(ret as libc::c_long)?;
        // SAFETY: a fresh private anonymous mapping.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let page = MissingPage {
            fd,
            addr: addr.cast(),
        };
        let mut reg = UffdioRegister {
            start: addr as u64,
            len: PAGE as u64,
            mode: REGISTER_MODE_MISSING,
            ioctls: 0,
        };
        // SAFETY: `reg` names the page just mapped.
        check(unsafe {
            libc::ioctl(
                page.fd.as_raw_fd(),
                UFFDIO_REGISTER,
                &mut reg as *mut UffdioRegister,
            )
        } as libc::c_long)?;
        Ok(page)
    }

    /// The start of the page: reading it blocks until [`fill`](Self::fill).
    pub fn addr(&self) -> *const u8 {
        self.addr
    }

    /// Waits until some thread has faulted on the page (it stays blocked).
    pub fn wait_for_fault(&self) -> io::Result<()> {
        let mut msg = [0u8; 32];
        loop {
            let mut poll = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            check(unsafe { libc::poll(&mut poll, 1, 1000) } as libc::c_long)?;
            // SAFETY: `msg` holds one `struct uffd_msg` (32 bytes).
            let n = unsafe { libc::read(self.fd.as_raw_fd(), msg.as_mut_ptr().cast(), 32) };
            if n == 32 && msg[0] == EVENT_PAGEFAULT {
                return Ok(());
            }
            if n < 0 {
                let err = io::Error::last_os_error();
                if err.raw_os_error() != Some(libc::EAGAIN) {
                    return Err(err);
                }
            }
        }
    }

    /// Maps the page with every byte `byte` and wakes the faulting thread.
    pub fn fill(&self, byte: u8) -> io::Result<()> {
        let src = vec![byte; PAGE];
        let mut copy = UffdioCopy {
            dst: self.addr as u64,
            src: src.as_ptr() as u64,
            len: PAGE as u64,
            mode: 0,
            copy: 0,
        };
        // SAFETY: `copy` names our page and a buffer of its size.
        check(unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                UFFDIO_COPY,
                &mut copy as *mut UffdioCopy,
            )
        } as libc::c_long)?;
        Ok(())
    }
}
