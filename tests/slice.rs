//! The time-slice extension: where the kernel offers it, the guard sets
//! and clears `slice_ctrl.request`; everywhere else it is a no-op that
//! touches nothing, and the status says why. Each test prints which case
//! it checked.

use restartable::abi;
use restartable::slice::{self, SliceGuard, SliceStatus, SliceUnavailable};
use restartable::Owner;

/// The calling thread's `flags` and `slice_ctrl` words.
fn words() -> (u32, u32) {
    let area = restartable::rseq_location();
    // SAFETY: the calling thread's live area; plain reads.
    unsafe {
        (
            (*area).flags.get().read_volatile(),
            (*area).slice_ctrl.get().read_volatile(),
        )
    }
}

/// The reason this kernel and mode must give, where the extension cannot
/// be used.
fn expected_reason() -> Option<SliceUnavailable> {
    let kernel = restartable::kernel_feature_size();
    if restartable::owner() == Owner::Unavailable || restartable::thread_registration_len() == 0 {
        return Some(SliceUnavailable::NoRseq);
    }
    if kernel < abi::SLICE_CTRL_FEATURE_SIZE {
        return Some(SliceUnavailable::KernelTooOld);
    }
    None
}

#[test]
fn status_enable_and_guard_agree_with_the_kernel() {
    std::thread::spawn(|| {
        let status = slice::status();
        let enabled = slice::enable();
        println!(
            "owner {:?}, kernel feature size {}, thread registration {} bytes: \
             status {status}; enable {enabled:?}",
            restartable::owner(),
            restartable::kernel_feature_size(),
            restartable::thread_registration_len()
        );
        match expected_reason() {
            Some(why) => {
                println!("case: unavailable here ({why})");
                assert_eq!(status, SliceStatus::Unavailable(why));
                assert_eq!(enabled, Err(why));
            }
            None => match enabled {
                Ok(()) => {
                    println!("case: the kernel offers the extension; enabled");
                    assert_eq!(slice::status(), SliceStatus::Enabled);
                    assert_ne!(words().0 & abi::AREA_FLAG_SLICE_EXT_ENABLED, 0);
                }
                Err(why) => {
                    println!("case: a 7.x kernel that refuses it: {why}");
                    assert_eq!(status, SliceStatus::Unavailable(why));
                    let classic = restartable::thread_registration_len() <= 32;
                    assert_eq!(why == SliceUnavailable::ClassicRegistration, classic);
                    assert!(matches!(
                        why,
                        SliceUnavailable::NotConfigured | SliceUnavailable::ClassicRegistration
                    ));
                }
            },
        }
        let before = words();
        {
            let guard = SliceGuard::new();
            let inner = SliceGuard::new();
            assert!(!inner.requested(), "the outer guard owns the request");
            if slice::status() == SliceStatus::Enabled {
                assert!(guard.requested());
                assert_eq!(words().1 & 0xff, 1, "request set while held");
            } else {
                assert!(!guard.requested(), "a no-op where not enabled");
                assert_eq!(words(), before, "nothing written");
            }
        }
        assert_eq!(words().1 & 0xff, 0, "request clear after the guard");
        if slice::status() != SliceStatus::Enabled {
            assert_eq!(words(), before, "the no-op guard wrote nothing");
        }
    })
    .join()
    .unwrap();
}

#[test]
fn reasons_have_codes_and_text() {
    let all = [
        SliceUnavailable::NoRseq,
        SliceUnavailable::KernelTooOld,
        SliceUnavailable::ClassicRegistration,
        SliceUnavailable::NotConfigured,
        SliceUnavailable::Kernel { errno: 1 },
    ];
    let mut codes: Vec<i32> = all.iter().map(|r| r.code()).collect();
    codes.dedup();
    assert_eq!(codes.len(), all.len());
    assert!(codes.iter().all(|&c| c < 0));
    for r in all {
        assert!(!r.to_string().is_empty());
    }
    assert!(SliceUnavailable::NotConfigured
        .to_string()
        .contains("CONFIG_RSEQ_SLICE_EXTENSION"));
}

#[test]
fn guards_on_many_threads_leave_no_request_behind() {
    let threads: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(|| {
                let _ = slice::enable();
                for _ in 0..1000 {
                    let _g = SliceGuard::new();
                    std::hint::black_box(restartable::current_cpu());
                }
                words().1 & 0xff
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), 0);
    }
}
