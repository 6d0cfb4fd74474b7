//! Extensible rseq: the area's length and alignment follow the kernel
//! (`AT_RSEQ_FEATURE_SIZE`, `AT_RSEQ_ALIGN`), and a classic registrant of
//! the shared `__rseq_abi` (32 bytes, no count) shares it in either order.
//!
//! Each test prints which case it checked: the kernel's feature size above
//! 32 (Linux 7.x) or not, and who owns the area.

use restartable::abi::{self, RSEQ_SIG};
use restartable::{Owner, ThreadState};

fn kernel_size() -> u32 {
    restartable::kernel_feature_size()
}

fn extensible_kernel() -> bool {
    kernel_size() > abi::MIN_REGISTRATION_LEN
}

/// `rseq(area, len, flags, RSEQ_SIG)` on the calling thread: 0 or errno.
fn raw_rseq(area: *mut abi::Rseq, len: u32, flags: u32) -> i32 {
    // SAFETY: `area` is the calling thread's shared area (live for the
    // thread's life, 64 bytes aligned to 64 in `Library` mode); the kernel
    // checks the rest.
    let ret = unsafe { libc::syscall(libc::SYS_rseq, area, len, flags, RSEQ_SIG) };
    if ret == 0 {
        0
    } else {
        std::io::Error::last_os_error().raw_os_error().unwrap()
    }
}

#[test]
fn registration_length_and_alignment_follow_the_kernel() {
    let owner = restartable::owner();
    let kernel = kernel_size();
    let align = restartable::kernel_area_align();
    let len = restartable::registration_len();
    println!(
        "owner {owner:?}, kernel feature size {kernel}, AT_RSEQ_ALIGN {align}, \
         registration length {len}, usable feature size {}",
        restartable::feature_size()
    );
    let forced = std::env::var_os("RESTARTABLE_CLASSIC_LENGTH").is_some_and(|v| v == "1");
    match owner {
        Owner::Library if forced => {
            println!("case: library-owned, classic length forced (kernel feature size {kernel})");
            assert_eq!(len, 32);
            assert_eq!(restartable::feature_size(), kernel.min(abi::MM_CID_END));
        }
        Owner::Library if extensible_kernel() => {
            println!("case: library-owned area on a kernel with feature size > 32");
            assert_eq!(len, kernel.max(32), "registered with max(32, feature size)");
            assert_eq!(restartable::feature_size(), kernel);
            std::thread::spawn(move || {
                restartable::current_cpu();
                if restartable::thread_state() == ThreadState::Registered {
                    assert_eq!(restartable::thread_registration_len(), len);
                    let area = restartable::rseq_location() as usize;
                    assert_eq!(area % align.max(32), 0, "area aligned to AT_RSEQ_ALIGN");
                    assert_eq!(area % abi::AREA_CAPACITY, 0, "area aligned to 64");
                    // The kernel holds the long registration: the same length
                    // answers EBUSY, the classic one EINVAL.
                    let area = restartable::rseq_location();
                    assert_eq!(raw_rseq(area, len, 0), libc::EBUSY);
                    assert_eq!(raw_rseq(area, 32, 0), libc::EINVAL);
                }
            })
            .join()
            .unwrap();
        }
        Owner::Library => {
            println!("case: library-owned area on a kernel with feature size <= 32 (classic)");
            assert_eq!(len, 32, "the classic length");
            assert_eq!(restartable::feature_size(), kernel.min(abi::MM_CID_END));
            std::thread::spawn(|| {
                restartable::current_cpu();
                if restartable::thread_state() == ThreadState::Registered {
                    assert_eq!(restartable::thread_registration_len(), 32);
                    let area = restartable::rseq_location();
                    assert_eq!(area as usize % 32, 0);
                    assert_eq!(raw_rseq(area, 32, 0), libc::EBUSY);
                }
            })
            .join()
            .unwrap();
        }
        Owner::Libc => {
            let libc_size = restartable::libc_rseq_size();
            println!(
                "case: glibc-owned area (__rseq_size {libc_size}); \
                 kernel feature size {kernel}"
            );
            // Both meanings of `__rseq_size`: the registered 32 bytes
            // (glibc 2.35-2.39) or the feature size glibc registered for
            // (glibc 2.40+, and backports: 20 on Debian 12's 2.36).
            assert_eq!(len, libc_size.max(32));
            assert_eq!(
                restartable::feature_size(),
                abi::usable_feature_size(kernel, len)
            );
            if len == 32 {
                assert!(restartable::feature_size() <= abi::MM_CID_END);
            }
            assert_eq!(restartable::thread_registration_len(), len);
        }
        Owner::Unavailable => {
            println!("case: rseq unavailable");
            assert_eq!((len, restartable::feature_size()), (0, 0));
            assert_eq!(restartable::thread_registration_len(), 0);
        }
    }
}

#[test]
fn the_classic_length_can_be_forced() {
    // This test binary again, with the variable set before the decision.
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "registration_length_and_alignment_follow_the_kernel",
            "--nocapture",
        ])
        .env("RESTARTABLE_CLASSIC_LENGTH", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    assert!(out.status.success(), "{text}");
    if restartable::owner() == Owner::Library {
        assert!(text.contains("case: library-owned, classic length forced"));
    } else {
        println!(
            "case: owner {:?}: the variable changes nothing",
            restartable::owner()
        );
        assert!(text.contains("case: glibc-owned") || text.contains("case: rseq unavailable"));
    }
}

#[test]
fn a_classic_registrant_first_is_shared_with_the_classic_length() {
    if restartable::owner() != Owner::Library {
        println!(
            "case: owner {:?}: the library registers nothing; checked only that it \
             reports the owner's length",
            restartable::owner()
        );
        assert_eq!(
            restartable::thread_registration_len(),
            restartable::registration_len()
        );
        return;
    }
    println!(
        "case: library-owned, kernel feature size {} ({})",
        kernel_size(),
        if extensible_kernel() {
            "the library's own length would be longer: it must fall back to 32"
        } else {
            "classic length throughout"
        }
    );
    std::thread::spawn(|| {
        let area = restartable::rseq_location();
        let before = restartable::stats().borrowed;
        // A classic component that does not count: 32 bytes, first.
        assert_eq!(raw_rseq(area, 32, 0), 0);
        assert_eq!(
            restartable::register_current_thread(),
            Ok(ThreadState::Borrowed),
            "EBUSY path: shared, not foreign"
        );
        assert_eq!(restartable::thread_registration_len(), 32);
        assert!(restartable::stats().borrowed > before);
        assert!(restartable::is_available());
        assert_eq!(restartable::current_cpu(), restartable::fallback_cpu());
        restartable::unregister_current_thread().unwrap();
        assert_eq!(
            restartable::thread_state(),
            ThreadState::Borrowed,
            "the library never unregisters what it did not register"
        );
        // The classic component unregisters; the library registers its
        // own length on the next hold.
        assert_eq!(raw_rseq(area, 32, abi::FLAG_UNREGISTER), 0);
        assert_eq!(
            restartable::register_current_thread(),
            Ok(ThreadState::Registered)
        );
        assert_eq!(
            restartable::thread_registration_len(),
            restartable::registration_len()
        );
        restartable::unregister_current_thread().unwrap();
    })
    .join()
    .unwrap();
}

#[test]
fn the_library_first_then_a_classic_registrant() {
    if restartable::owner() != Owner::Library {
        println!(
            "case: owner {:?}: nothing to register",
            restartable::owner()
        );
        return;
    }
    std::thread::spawn(|| {
        let area = restartable::rseq_location();
        assert_eq!(
            restartable::register_current_thread(),
            Ok(ThreadState::Registered)
        );
        let len = restartable::thread_registration_len();
        assert_eq!(len, restartable::registration_len());
        // A classic component that follows the count sees it non-zero and
        // makes no system call: it shares whatever the length.
        assert!(restartable::refcount_of_current_thread() >= 1);
        // One that ignores the count registers 32 bytes: EBUSY where the
        // library registered the classic length, EINVAL where it registered
        // a longer one (the kernel's EBUSY needs the same length).
        let answer = raw_rseq(area, 32, 0);
        if len > 32 {
            println!("case: extensible registration ({len} bytes): uncounted classic gets EINVAL");
            assert_eq!(answer, libc::EINVAL);
        } else {
            println!("case: classic registration: uncounted classic gets EBUSY (shared)");
            assert_eq!(answer, libc::EBUSY);
        }
        // Either way the library's registration is intact.
        assert_eq!(raw_rseq(area, len, 0), libc::EBUSY);
        assert_eq!(
            restartable::unregister_current_thread(),
            Ok(ThreadState::Unregistered)
        );
        assert_eq!(raw_rseq(area, len, abi::FLAG_UNREGISTER), libc::EINVAL);
    })
    .join()
    .unwrap();
}

#[test]
fn no_kernel_owned_field_is_written_by_sections_or_reads() {
    // The kernel rewrites cpu_id_start, cpu_id, node_id and mm_cid; after
    // registration the library only reads them (Linux 6.19+ kills a thread
    // that writes them). Check on a registered area that a burst of reads
    // and sections leaves every value one the kernel could have written.
    std::thread::spawn(|| {
        let counter = restartable::PerCpuCounter::new();
        for _ in 0..10_000 {
            counter.add(1);
            restartable::current_cpu();
            restartable::node_id();
            restartable::mm_cid();
        }
        assert_eq!(counter.sum(), 10_000);
        let area = restartable::rseq_location();
        if restartable::is_available() {
            // SAFETY: the thread's live area; plain reads.
            let (start, cpu) = unsafe {
                (
                    (*area).cpu_id_start.get().read_volatile(),
                    (*area).cpu_id.get().read_volatile(),
                )
            };
            let cpus = restartable::possible_cpus() as u32;
            assert!(start < cpus && cpu < cpus, "{start} {cpu}");
            // SAFETY: as above.
            let rseq_cs = unsafe { (*area).rseq_cs.get().read_volatile() };
            println!("case: registered; cpu {cpu}, rseq_cs {rseq_cs:#x}");
        } else {
            println!("case: fallbacks (no rseq area on this thread)");
        }
    })
    .join()
    .unwrap();
}
