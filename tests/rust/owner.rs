//! Built by `tests/field.rs` with `rustc` as a static executable (static-pie,
//! or non-PIE with `-C relocation-model=static`): the owner must be the one
//! `RESTARTABLE_TEST_EXPECT` names (libc, library, none), and every thread
//! must run on rseq where it can.

use restartable::{Owner, PerCpuCounter, ThreadState};
use std::sync::Arc;

fn expected() -> Owner {
    match std::env::var("RESTARTABLE_TEST_EXPECT").as_deref() {
        Ok("libc") => Owner::Libc,
        Ok("library") => Owner::Library,
        Ok("none") => Owner::Unavailable,
        other => panic!("RESTARTABLE_TEST_EXPECT={other:?}"),
    }
}

fn check_thread(owner: Owner) {
    let want = match owner {
        Owner::Libc => ThreadState::Borrowed,
        Owner::Library => ThreadState::Registered,
        Owner::Unavailable => ThreadState::Unregistered,
    };
    assert_eq!(restartable::is_available(), owner != Owner::Unavailable);
    assert_eq!(restartable::thread_state(), want);
}

fn main() {
    let owner = expected();
    assert_eq!(restartable::owner(), owner);
    let counter = Arc::new(PerCpuCounter::new());
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let counter = Arc::clone(&counter);
            std::thread::spawn(move || {
                (0..100_000).for_each(|_| counter.add(1));
                check_thread(owner);
            })
        })
        .collect();
    workers.into_iter().for_each(|w| w.join().unwrap());
    check_thread(owner);
    assert_eq!(counter.sum(), 200_000);
    assert_eq!(restartable::stats().foreign, 0, "no thread was foreign");
    println!("owner: ok ({owner:?})");
}
