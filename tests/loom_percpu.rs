//! Loom models of the per-CPU counter, lock and stack over the simulated
//! machine of `cfg(restartable_loom)`: loom picks the CPU each thread runs
//! on and whether its section is preempted (aborted) before it commits, and
//! a thread marked with `run_as_fallback` mixes the fallbacks in.
//!
//! ```text
//! RUSTFLAGS="--cfg restartable_loom" LOOM_MAX_PREEMPTIONS=2 \
//!     cargo test --release --features loom --test loom_percpu
//! ```

#[cfg(restartable_loom)]
mod tests {
    use loom::cell::UnsafeCell;
    use loom::sync::Arc;
    use loom::thread;
    use restartable::{run_as_fallback, PerCpuCounter, PerCpuLock, PerCpuStack};

    #[test]
    fn counter_sums_every_add() {
        loom::model(|| {
            let counter = Arc::new(PerCpuCounter::new());
            // The first use allocates the slots, published through a std
            // atomic loom cannot follow: allocate them here, before the
            // threads start, so that the model checks the sections.
            assert_eq!(counter.sum(), 0);
            let handles: Vec<_> = (0..2)
                .map(|i| {
                    let c = Arc::clone(&counter);
                    thread::spawn(move || {
                        c.add(1);
                        c.add(i + 2);
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap();
            }
            assert_eq!(counter.sum(), 1 + 2 + 1 + 3);
        });
    }

    #[test]
    fn counter_mixes_rseq_and_fallback_adds() {
        loom::model(|| {
            let counter = Arc::new(PerCpuCounter::new());
            // The first use allocates the slots, published through a std
            // atomic loom cannot follow: allocate them here, before the
            // threads start, so that the model checks the sections.
            assert_eq!(counter.sum(), 0);
            let c = Arc::clone(&counter);
            let fallback = thread::spawn(move || {
                run_as_fallback();
                c.add(5);
            });
            counter.add(1);
            counter.add(1);
            fallback.join().unwrap();
            assert_eq!(counter.sum(), 7);
        });
    }

    #[test]
    fn counter_reset_loses_no_concurrent_add() {
        loom::model(|| {
            let counter = Arc::new(PerCpuCounter::new());
            // The first use allocates the slots, published through a std
            // atomic loom cannot follow: allocate them here, before the
            // threads start, so that the model checks the sections.
            assert_eq!(counter.sum(), 0);
            let c = Arc::clone(&counter);
            let adder = thread::spawn(move || {
                c.add(1);
                c.add(2);
            });
            let c = Arc::clone(&counter);
            let resetter = thread::spawn(move || c.reset());
            adder.join().unwrap();
            let cleared = resetter.join().unwrap();
            assert!((0..=3).contains(&cleared));
            assert_eq!(cleared + counter.sum(), 3);
        });
    }

    #[test]
    fn lock_excludes_rseq_and_fallback_holders() {
        loom::model(|| {
            let lock = Arc::new(PerCpuLock::new(|_| UnsafeCell::new(0u32)));
            let handles: Vec<_> = (0..2)
                .map(|i| {
                    let l = Arc::clone(&lock);
                    thread::spawn(move || {
                        if i == 1 {
                            run_as_fallback();
                        }
                        let g = l.lock();
                        // SAFETY: the guard holds the slot; loom reports
                        // any access not ordered after the previous holder's.
                        g.with_mut(|v| unsafe { *v += 1 });
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap();
            }
            let total: u32 = (0..lock.len())
                // SAFETY: each guard holds its slot while it is read.
                .map(|i| lock.lock_slot(i).with(|v| unsafe { *v }))
                .sum();
            assert_eq!(total, 2);
        });
    }

    #[test]
    fn stack_loses_and_duplicates_nothing() {
        loom::model(|| {
            let stack = Arc::new(PerCpuStack::new());
            let s = Arc::clone(&stack);
            let pusher = thread::spawn(move || {
                s.push(1u32);
                s.push(2u32);
            });
            let s = Arc::clone(&stack);
            let popper = thread::spawn(move || {
                run_as_fallback();
                s.pop_any()
            });
            pusher.join().unwrap();
            let mut seen: Vec<u32> = popper.join().unwrap().into_iter().collect();
            while let Some(v) = stack.pop_any() {
                seen.push(v);
            }
            seen.sort();
            assert_eq!(seen, [1, 2]);
        });
    }

    /// `membarrier` starts failing while a section thread pushes: the
    /// fallback thread that meets the refusal switches the stack off
    /// sections for every thread, and a push that read the switch too late
    /// must neither commit under a holder nor be lost.
    #[test]
    fn stack_stays_exact_when_membarrier_is_refused_mid_run() {
        loom::model(|| {
            let stack = Arc::new(PerCpuStack::new());
            let s = Arc::clone(&stack);
            let pusher = thread::spawn(move || {
                s.push(1u32);
                s.push(2u32);
            });
            let s = Arc::clone(&stack);
            let popper = thread::spawn(move || {
                run_as_fallback();
                PerCpuLock::<()>::refuse_membarrier();
                s.pop_any()
            });
            pusher.join().unwrap();
            let mut seen: Vec<u32> = popper.join().unwrap().into_iter().collect();
            while let Some(v) = stack.pop_any() {
                seen.push(v);
            }
            seen.sort();
            assert_eq!(seen, [1, 2]);
            assert!(!restartable::lock_sections_enabled());
        });
    }

    /// The same switch under the lock: a section holder and a fallback
    /// holder that meets the refusal never hold one slot at once.
    #[test]
    fn lock_excludes_when_membarrier_is_refused_mid_run() {
        loom::model(|| {
            let lock = Arc::new(PerCpuLock::new(|_| UnsafeCell::new(0u32)));
            let handles: Vec<_> = (0..2)
                .map(|i| {
                    let l = Arc::clone(&lock);
                    thread::spawn(move || {
                        if i == 1 {
                            run_as_fallback();
                            PerCpuLock::<()>::refuse_membarrier();
                        }
                        let g = l.lock();
                        // SAFETY: the guard holds the slot; loom reports
                        // any access not ordered after the previous holder's.
                        g.with_mut(|v| unsafe { *v += 1 });
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap();
            }
            let total: u32 = (0..lock.len())
                // SAFETY: each guard holds its slot while it is read.
                .map(|i| lock.lock_slot(i).with(|v| unsafe { *v }))
                .sum();
            assert_eq!(total, 2);
        });
    }
}
