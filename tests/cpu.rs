//! CPU-number reads in every environment: glibc's area, the library's own,
//! and the fallbacks (`RESTARTABLE_DISABLE=1`, rseq blocked by seccomp).

mod common;

use common::{allowed_cpus, check_owner, on_fresh_thread, pin_to, sched_getcpu, sysfs_node_of};
use restartable::{
    cpu_id_start, current_cpu, current_cpu_raw, fallback_cpu, feature_size, is_available, mm_cid,
    node_id, possible_cpus, Owner,
};

#[test]
fn owner_is_the_expected_one() {
    let owner = check_owner();
    match owner {
        Owner::Libc => assert!(restartable::libc_rseq_size() > 0),
        Owner::Library => assert_eq!(restartable::libc_rseq_size(), 0),
        Owner::Unavailable => assert_eq!(feature_size(), 0),
    }
    if owner != Owner::Unavailable {
        let kernel = restartable::kernel_feature_size();
        assert_eq!(feature_size(), kernel.min(32));
        assert!(feature_size() >= 20);
    }
}

#[test]
fn pinned_to_each_cpu_reads_agree_with_sched_getcpu() {
    let owner = check_owner();
    let cpus = allowed_cpus();
    assert!(!cpus.is_empty());
    on_fresh_thread(move || {
        for &cpu in &cpus {
            pin_to(cpu);
            for _ in 0..100 {
                assert_eq!(current_cpu() as usize, cpu);
                assert_eq!(sched_getcpu() as usize, cpu);
                assert_eq!(fallback_cpu() as usize, cpu);
            }
            match owner {
                Owner::Libc | Owner::Library => {
                    assert!(is_available());
                    assert_eq!(current_cpu_raw(), cpu as i32);
                    assert_eq!(cpu_id_start() as usize, cpu);
                    if restartable::feature_size() < restartable::abi::MM_CID_END {
                        // Before Linux 6.3: neither field exists.
                        println!(
                            "feature size {}: no node_id or mm_cid on this kernel",
                            restartable::feature_size()
                        );
                        assert_eq!((node_id(), mm_cid()), (None, None));
                        continue;
                    }
                    let cid = mm_cid().expect("the kernel provides mm_cid (feature size 28)");
                    assert!((cid as usize) < possible_cpus());
                    let node = node_id().expect("the kernel provides node_id");
                    if let Some(expected) = sysfs_node_of(cpu) {
                        assert_eq!(node, expected, "node_id of cpu {cpu}");
                    }
                }
                Owner::Unavailable => {
                    assert!(!is_available());
                    assert!(current_cpu_raw() < 0);
                    assert_eq!(node_id(), None);
                    assert_eq!(mm_cid(), None);
                }
            }
        }
    });
}

#[test]
fn raw_read_before_and_after_first_use() {
    let owner = check_owner();
    on_fresh_thread(move || {
        let before = current_cpu_raw();
        match owner {
            // glibc registered the thread before it ran any user code.
            Owner::Libc => assert!(before >= 0),
            // Not registered until the first read.
            Owner::Library | Owner::Unavailable => assert_eq!(before, -1),
        }
        let cpu = current_cpu();
        assert!((cpu as usize) < possible_cpus());
        let after = current_cpu_raw();
        match owner {
            Owner::Libc | Owner::Library => assert!(after >= 0),
            Owner::Unavailable => assert_eq!(after, -1),
        }
    });
}

#[test]
fn many_threads_read_valid_cpus() {
    check_owner();
    let possible = possible_cpus();
    let allowed = allowed_cpus();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let allowed = allowed.clone();
            std::thread::spawn(move || {
                for _ in 0..1000 {
                    let cpu = current_cpu() as usize;
                    assert!(cpu < possible);
                    assert!(allowed.contains(&cpu), "cpu {cpu} not in {allowed:?}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn possible_cpus_covers_every_allowed_cpu() {
    let possible = possible_cpus();
    for cpu in allowed_cpus() {
        assert!(cpu < possible);
    }
    // SAFETY: sysconf has no preconditions.
    let conf = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) };
    assert!(possible >= conf as usize);
}

#[test]
fn rseq_location_is_aligned_and_reads_cpu_id() {
    let owner = check_owner();
    on_fresh_thread(move || {
        let area = restartable::rseq_location();
        assert_eq!(area as usize % 32, 0);
        assert_eq!(area, restartable::rseq_location(), "stable within a thread");
        current_cpu();
        // SAFETY: the area is this thread's, alive while it runs; cpu_id is
        // a u32 the kernel writes, read once here.
        let cpu_id = unsafe { (*area).cpu_id.get().read_volatile() } as i32;
        assert_eq!(cpu_id, current_cpu_raw());
        if owner != Owner::Unavailable {
            assert!(cpu_id >= 0);
        }
        let other = on_fresh_thread(|| restartable::rseq_location() as usize);
        assert_ne!(other, area as usize, "each thread has its own area");
        assert_eq!(owner, restartable::owner(), "reads never change the owner");
    });
}
