//! Registration that says what happened: `register_for_sections()` and
//! `sections()` report whether the thread runs critical sections, and why
//! not, in every environment (glibc owns the area, the library owns it,
//! `RESTARTABLE_DISABLE=1`, rseq blocked by a seccomp filter), for a
//! thread with another area registered, and for a thread refused rseq by
//! a filter of its own.

mod common;

use restartable::{
    register_for_sections, sections, unregister_current_thread, Owner, Sections, ThreadState,
};

fn disabled_by_env() -> bool {
    std::env::var_os("RESTARTABLE_DISABLE").is_some_and(|v| !v.is_empty() && v != "0")
}

/// What a plain thread must be told in this process.
fn expected(owner: Owner) -> Sections {
    match owner {
        Owner::Libc | Owner::Library => Sections::Run,
        Owner::Unavailable if disabled_by_env() => Sections::Disabled,
        Owner::Unavailable => Sections::Unavailable,
    }
}

#[test]
fn registering_says_whether_sections_run() {
    let owner = common::check_owner();
    let want = expected(owner);
    let (got, again, holds, available) = common::on_fresh_thread(|| {
        let got = register_for_sections().unwrap();
        let holds = restartable::caller_holds();
        let again = sections();
        let available = restartable::is_available();
        unregister_current_thread().unwrap();
        (got, again, holds, available)
    });
    println!("{owner:?}: {got} ({got:?})");
    assert_eq!(got, want);
    assert_eq!(again, want);
    assert_eq!(holds, 1, "the hold is taken whatever the answer");
    assert_eq!(got.run(), available);
    assert_eq!(got as i32 == 0, got.run());
}

/// A 32-byte area registered privately by "another library".
#[repr(C, align(32))]
struct PrivateArea([u32; 8]);

#[test]
fn a_thread_with_another_area_is_told_foreign() {
    let owner = common::check_owner();
    let got = common::on_fresh_thread(move || {
        // Leaked: the kernel may write it until the thread exits.
        let private = Box::leak(Box::new(PrivateArea([0, u32::MAX, 0, 0, 0, 0, 0, 0])));
        let ptr = (private as *mut PrivateArea).cast::<u8>();
        let registered = common::raw_register(ptr);
        let got = register_for_sections().unwrap();
        unregister_current_thread().unwrap();
        if registered.is_ok() {
            assert_eq!(common::raw_unregister(ptr), Ok(()));
        }
        (registered, got)
    });
    match owner {
        // The library's area was not registered yet: the private one got in.
        Owner::Library => assert_eq!(got, (Ok(()), Sections::Foreign)),
        // glibc registered first: the private registration is refused.
        Owner::Libc => assert_eq!(got, (Err(libc::EINVAL), Sections::Run)),
        Owner::Unavailable => assert_eq!(got.1, expected(owner)),
    }
}

#[test]
fn a_thread_refused_by_its_own_filter_is_told_refused() {
    if !common::in_child_alone("a_thread_refused_by_its_own_filter_is_told_refused") {
        return;
    }
    let owner = common::check_owner();
    let (state, got) = common::on_fresh_thread(|| {
        // Only this thread (and threads it would create) is filtered; in
        // glibc-owned mode glibc registered it before the filter.
        common::seccomp::refuse_rseq(libc::EPERM).unwrap();
        let got = register_for_sections().unwrap();
        unregister_current_thread().unwrap();
        (restartable::thread_state(), got)
    });
    assert_eq!(restartable::owner(), owner, "the owner did not change");
    match owner {
        Owner::Library => assert_eq!((state, got), (ThreadState::Refused, Sections::Refused)),
        Owner::Libc => assert_eq!((state, got), (ThreadState::Borrowed, Sections::Run)),
        Owner::Unavailable => assert_eq!(got, expected(owner)),
    }
    // Other threads are not affected.
    assert_eq!(
        common::on_fresh_thread(|| register_for_sections().unwrap()),
        expected(owner)
    );
}

#[test]
fn every_answer_has_words_a_user_can_act_on() {
    for s in [
        Sections::Run,
        Sections::Foreign,
        Sections::Refused,
        Sections::Disabled,
        Sections::Unavailable,
        Sections::Unsupported,
        Sections::NotYet,
    ] {
        let text = s.to_string();
        assert!(text.len() > 20, "{s:?}: {text}");
        assert_eq!(s.run(), s == Sections::Run);
        if !s.run() {
            assert!(text.contains("fallbacks"), "{s:?}: {text}");
        }
    }
}
