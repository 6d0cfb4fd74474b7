//! Loom models of the two state machines behind registration, driven with
//! simulated kernel answers: the per-thread refcount (with signal handlers
//! interleaved between the thread's own steps) and the once-per-process
//! choice of the owner (several threads racing to initialise).
//!
//! Run with
//! `RUSTFLAGS="--cfg restartable_loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release --features loom --test loom`.

#[cfg(restartable_loom)]
mod tests {
    use loom::sync::atomic::{AtomicIsize, AtomicU32, AtomicU8, AtomicUsize};
    use loom::sync::{Arc, Mutex};
    use restartable::model::{
        acquire, choose, publish, read_owner, Decision, Event, Holder, Kernel, Probe, Published,
        ThreadRecord,
    };
    use restartable::{Error, Owner, ThreadState, UNCOUNTED_OWNER};
    use std::sync::atomic::Ordering;

    /// What the simulated kernel has registered for the modelled thread.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Area {
        /// `__rseq_abi`, the area this library registers.
        Ours,
        /// A private area of another library.
        Other,
    }

    /// How the modelled thread starts.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Scenario {
        /// Nothing registered: the first hold registers (answer 0).
        Fresh,
        /// A classic registrant registered `__rseq_abi` uncounted (EBUSY).
        Borrowed,
        /// Another library registered a private area (EINVAL).
        Foreign,
        /// A filter refuses rseq to this thread (ENOSYS).
        NoSys,
        /// glibc owns the area: no system call at all.
        Libc,
    }

    /// `rseq(2)` for one thread, as the kernel answers it.
    #[derive(Debug)]
    struct SimKernel {
        owner: Owner,
        registered: Option<Area>,
        nosys: bool,
        registrations: u32,
        unregistrations: u32,
        calls: u32,
    }

    impl Kernel for SimKernel {
        fn owner(&self) -> Owner {
            self.owner
        }
        fn area_registered(&self) -> bool {
            self.owner == Owner::Libc || self.registered == Some(Area::Ours)
        }
        fn rseq(&mut self, len: u32, flags: u32) -> i32 {
            assert_eq!(
                len, 32,
                "the classic length unless the model says otherwise"
            );
            assert_ne!(self.owner, Owner::Libc, "no system call in Libc mode");
            self.calls += 1;
            if self.nosys {
                return -libc::ENOSYS;
            }
            match (flags, self.registered) {
                (0, None) => {
                    self.registered = Some(Area::Ours);
                    self.registrations += 1;
                    0
                }
                (0, Some(Area::Ours)) => -libc::EBUSY,
                (0, Some(Area::Other)) => -libc::EINVAL,
                (1, Some(Area::Ours)) => {
                    self.registered = None;
                    self.unregistrations += 1;
                    0
                }
                _ => -libc::EINVAL,
            }
        }
        fn set_unavailable(&mut self) {
            self.owner = Owner::Unavailable;
        }
        fn note(&mut self, _event: Event) {}
        fn arm_exit_release(&mut self) -> bool {
            true
        }
    }

    /// One thread's registration: two copies of the library (each with its
    /// record) sharing `__rseq_refcount`, and the kernel. The loom `Mutex`
    /// around it stands for the busy word: a signal handler (a loom
    /// thread here) changes the state only between the thread's own steps;
    /// one that arrives in the middle of a step finds the busy word set and
    /// changes nothing, which is the same as arriving later.
    #[derive(Debug)]
    struct World {
        scenario: Scenario,
        kernel: SimKernel,
        records: [ThreadRecord; 2],
        refcount: u32,
        /// Caller holds the model expects each copy to have.
        holds: [u32; 2],
        /// Whether an acquire found the classic registrant (EBUSY) and
        /// marked the count.
        saw_bottom: bool,
    }

    impl World {
        fn new(scenario: Scenario) -> Self {
            let (owner, registered) = match scenario {
                Scenario::Fresh | Scenario::NoSys => (Owner::Library, None),
                Scenario::Borrowed => (Owner::Library, Some(Area::Ours)),
                Scenario::Foreign => (Owner::Library, Some(Area::Other)),
                Scenario::Libc => (Owner::Libc, None),
            };
            World {
                scenario,
                kernel: SimKernel {
                    owner,
                    registered,
                    nosys: scenario == Scenario::NoSys,
                    registrations: 0,
                    unregistrations: 0,
                    calls: 0,
                },
                records: [ThreadRecord::NEW, ThreadRecord::NEW],
                refcount: 0,
                holds: [0, 0],
                saw_bottom: false,
            }
        }

        fn snapshot(&self) -> (u32, u32, u32, ThreadState, bool, Option<Area>) {
            (
                self.refcount,
                self.records[0].caller_holds(),
                self.records[1].caller_holds(),
                self.records[0].state(),
                self.records[0].holds_lazily(),
                self.kernel.registered,
            )
        }

        fn acquire(&mut self, copy: usize, holder: Holder) -> ThreadState {
            let state = acquire(
                &mut self.kernel,
                &mut self.records[copy],
                &mut self.refcount,
                holder,
            )
            .expect("every simulated answer is handled");
            if holder == Holder::Caller {
                self.holds[copy] += 1;
            }
            if state == ThreadState::Borrowed && self.scenario == Scenario::Borrowed {
                self.saw_bottom = true;
            }
            self.check();
            state
        }

        fn release(&mut self, copy: usize, holder: Holder) -> Result<ThreadState, Error> {
            let before = self.snapshot();
            let was = self.records[copy].state();
            let result = restartable::model::release(
                &mut self.kernel,
                &mut self.records[copy],
                &mut self.refcount,
                holder,
            );
            match result {
                Err(Error::NotRegistered) => {
                    assert_eq!(holder, Holder::Caller);
                    assert_eq!(self.holds[copy], 0, "refused although a hold exists");
                    assert_eq!(
                        before,
                        self.snapshot(),
                        "an unbalanced release changed something"
                    );
                }
                Err(other) => panic!("unexpected {other:?}"),
                Ok(state) => {
                    if holder == Holder::Caller {
                        self.holds[copy] -= 1;
                    }
                    let unregistered = self.kernel.registered != before.5;
                    if unregistered {
                        // Only the last hold of a Registered thread unregisters.
                        assert_eq!(was, ThreadState::Registered);
                        assert_eq!((self.refcount, state), (0, ThreadState::Unregistered));
                    } else if was == ThreadState::Registered && self.kernel.owner == Owner::Library
                    {
                        assert!(self.refcount > 0, "last hold released but not unregistered");
                    }
                }
            }
            self.check();
            result
        }

        /// The invariants that hold between any two steps.
        fn check(&self) {
            for copy in 0..2 {
                assert_eq!(self.records[copy].caller_holds(), self.holds[copy]);
            }
            let lazy = self.records.iter().filter(|r| r.holds_lazily()).count() as u32;
            let holds = self.holds[0] + self.holds[1] + lazy;
            let k = &self.kernel;
            match self.scenario {
                Scenario::Fresh => {
                    assert_eq!(self.refcount, holds);
                    let live = k.registrations - k.unregistrations;
                    assert_eq!(live, (self.refcount > 0) as u32);
                    assert_eq!(k.registered.is_some(), self.refcount > 0);
                }
                Scenario::Borrowed => {
                    let mark = if self.saw_bottom { UNCOUNTED_OWNER } else { 0 };
                    assert_eq!(self.refcount, mark | holds);
                    assert_eq!(k.registered, Some(Area::Ours), "never unregistered");
                    assert_eq!(k.unregistrations, 0);
                }
                Scenario::Foreign | Scenario::NoSys => {
                    assert_eq!(self.refcount, holds, "every hold is counted");
                    assert_eq!(k.registrations + k.unregistrations, 0);
                }
                Scenario::Libc => {
                    assert_eq!(self.refcount, 0, "glibc's area has no count");
                    assert_eq!(k.registrations + k.unregistrations, 0);
                }
            }
            match self.scenario {
                Scenario::Foreign => {
                    assert_eq!(k.registered, Some(Area::Other));
                    // Each new hold tries again (the other area may go).
                    assert!(k.calls <= 4);
                }
                Scenario::NoSys => {
                    assert!(k.calls <= 2, "one refusal per copy, then it knows");
                    assert_eq!(k.owner, Owner::Library, "only this thread is refused");
                    for record in &self.records {
                        assert!(matches!(
                            record.state(),
                            ThreadState::Refused | ThreadState::Unregistered
                        ));
                    }
                }
                Scenario::Libc => assert_eq!(k.calls, 0),
                _ => {}
            }
        }
    }

    /// The thread's own steps, each under the busy word; between them, the
    /// handler threads may run.
    fn thread_body(world: &Mutex<World>) {
        let step = |f: &mut dyn FnMut(&mut World)| f(&mut world.lock().unwrap());
        step(&mut |w| {
            assert_eq!(w.release(0, Holder::Caller), Err(Error::NotRegistered));
        });
        step(&mut |w| {
            w.acquire(0, Holder::Caller);
        });
        step(&mut |w| {
            w.acquire(0, Holder::Caller);
        });
        step(&mut |w| {
            w.release(0, Holder::Caller).unwrap();
        });
        step(&mut |w| {
            w.release(0, Holder::Caller).unwrap();
        });
        step(&mut |w| {
            assert_eq!(w.release(0, Holder::Caller), Err(Error::NotRegistered));
        });
    }

    fn run(scenario: Scenario) {
        loom::model(move || {
            let world = Arc::new(Mutex::new(World::new(scenario)));
            // A handler that reads the CPU: the lazy hold of copy 0.
            let lazy = {
                let world = world.clone();
                loom::thread::spawn(move || {
                    world.lock().unwrap().acquire(0, Holder::Lazy);
                })
            };
            // A handler that uses a second copy of the library, balanced:
            // the whole handler runs between two of the thread's steps.
            let other_copy = {
                let world = world.clone();
                loom::thread::spawn(move || {
                    let mut w = world.lock().unwrap();
                    w.acquire(1, Holder::Caller);
                    w.release(1, Holder::Caller).unwrap();
                    assert_eq!(w.release(1, Holder::Caller), Err(Error::NotRegistered));
                })
            };
            thread_body(&world);
            lazy.join().unwrap();
            other_copy.join().unwrap();
            // Thread exit: the destructor releases the lazy hold.
            let mut w = world.lock().unwrap();
            w.release(0, Holder::Lazy).unwrap();
            w.release(0, Holder::Lazy).unwrap(); // idempotent
            assert_eq!(w.holds, [0, 0]);
            match scenario {
                Scenario::Fresh => assert_eq!((w.refcount, w.kernel.registered), (0, None)),
                Scenario::Borrowed => {
                    assert_eq!(
                        w.refcount, UNCOUNTED_OWNER,
                        "the classic owner's mark remains"
                    )
                }
                _ => assert_eq!(w.refcount, 0),
            }
        });
    }

    #[test]
    fn fresh_thread_registers_and_last_release_unregisters() {
        run(Scenario::Fresh);
    }

    #[test]
    fn classic_registrant_is_borrowed() {
        run(Scenario::Borrowed);
    }

    #[test]
    fn private_registrant_makes_the_thread_foreign() {
        run(Scenario::Foreign);
    }

    #[test]
    fn enosys_refuses_this_thread_only() {
        run(Scenario::NoSys);
    }

    #[test]
    fn libc_mode_makes_no_system_call() {
        run(Scenario::Libc);
    }

    /// The process-wide cells, in loom atomics, and a once-lock standing
    /// for the once-cell the library decides under.
    struct Cells {
        owner: AtomicU8,
        offset: AtomicIsize,
        feature_size: AtomicU32,
        once: Mutex<bool>,
        decisions: AtomicUsize,
    }

    impl Published for Cells {
        fn owner(&self, order: Ordering) -> u8 {
            self.owner.load(order)
        }
        fn set_owner(&self, owner: u8, order: Ordering) {
            self.owner.store(owner, order);
        }
        fn offset(&self, order: Ordering) -> isize {
            self.offset.load(order)
        }
        fn set_offset(&self, offset: isize, order: Ordering) {
            self.offset.store(offset, order);
        }
        fn feature_size(&self, order: Ordering) -> u32 {
            self.feature_size.load(order)
        }
        fn set_feature_size(&self, size: u32, order: Ordering) {
            self.feature_size.store(size, order);
        }
    }

    fn init(cells: &Cells, probe: &Probe) {
        let mut done = cells.once.lock().unwrap();
        if !*done {
            cells.decisions.fetch_add(1, Ordering::Relaxed);
            publish(cells, choose(probe));
            *done = true;
        }
    }

    /// What a reader sees: the owner, then the values published with it.
    fn observe(cells: &Cells, probe: &Probe) -> Decision {
        let owner = read_owner(cells, || init(cells, probe));
        Decision {
            owner,
            offset: cells.offset(Ordering::Relaxed),
            feature_size: cells.feature_size(Ordering::Relaxed),
            // Not among the model's cells: the pure decision's.
            registration_len: match owner {
                Owner::Unavailable => 0,
                _ => choose(probe).registration_len,
            },
        }
    }

    fn race_init(probe: Probe) {
        let expected = choose(&probe);
        loom::model(move || {
            let cells = Arc::new(Cells {
                owner: AtomicU8::new(0),
                offset: AtomicIsize::new(0),
                feature_size: AtomicU32::new(0),
                once: Mutex::new(false),
                decisions: AtomicUsize::new(0),
            });
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let cells = cells.clone();
                    loom::thread::spawn(move || observe(&cells, &probe))
                })
                .collect();
            let mine = observe(&cells, &probe);
            assert_eq!(mine, expected);
            for t in threads {
                assert_eq!(
                    t.join().unwrap(),
                    expected,
                    "every thread sees one decision"
                );
            }
            assert_eq!(cells.decisions.load(Ordering::Relaxed), 1);
        });
    }

    const LIBC_OFFSET: isize = 2336;
    const SHARED_OFFSET: isize = -128;
    const INERT_OFFSET: isize = -96;

    fn probe(disabled: bool, libc_size: u32) -> Probe {
        Probe {
            disabled,
            arch_available: true,
            libc: Some((libc_size, LIBC_OFFSET)),
            kernel_feature_size: 28,
            kernel_align: 32,
            kernel_rseq: true,
            shared_offset: SHARED_OFFSET,
            shared_extensible: true,
            inert_offset: INERT_OFFSET,
        }
    }

    #[test]
    fn racing_init_sees_one_owner() {
        race_init(probe(false, 20));
        race_init(probe(false, 0));
        race_init(probe(true, 32));
    }

    #[test]
    fn decisions() {
        let d = choose(&probe(false, 20));
        assert_eq!(
            (d.owner, d.offset, d.feature_size),
            (Owner::Libc, LIBC_OFFSET, 28)
        );
        let d = choose(&probe(false, 0));
        assert_eq!(
            (d.owner, d.offset, d.feature_size),
            (Owner::Library, SHARED_OFFSET, 28)
        );
        let d = choose(&probe(true, 20));
        assert_eq!(
            (d.owner, d.offset, d.feature_size),
            (Owner::Unavailable, INERT_OFFSET, 0)
        );
        let no_arch = Probe {
            arch_available: false,
            ..probe(false, 20)
        };
        assert_eq!(choose(&no_arch).owner, Owner::Unavailable);
        let old_kernel = Probe {
            kernel_feature_size: 20,
            libc: None,
            ..probe(false, 0)
        };
        assert_eq!(choose(&old_kernel).feature_size, 20);
        let no_kernel = Probe {
            kernel_rseq: false,
            libc: None,
            ..probe(false, 0)
        };
        assert_eq!(choose(&no_kernel).owner, Owner::Unavailable);
        let linux7 = Probe {
            kernel_feature_size: 33,
            kernel_align: 64,
            ..probe(false, 0)
        };
        let d = choose(&linux7);
        assert_eq!((d.registration_len, d.feature_size), (33, 33));
    }

    /// `Library` may turn into `Unavailable` once (the shared area turns out
    /// registered with another signature); a reader that sees `Unavailable`
    /// sees its values too.
    #[test]
    fn downgrade_to_unavailable_is_seen_whole() {
        let probe = probe(false, 0);
        loom::model(move || {
            let cells = Arc::new(Cells {
                owner: AtomicU8::new(0),
                offset: AtomicIsize::new(0),
                feature_size: AtomicU32::new(0),
                once: Mutex::new(false),
                decisions: AtomicUsize::new(0),
            });
            init(&cells, &probe);
            let reader = {
                let cells = cells.clone();
                loom::thread::spawn(move || observe(&cells, &probe))
            };
            publish(
                &*cells,
                Decision {
                    owner: Owner::Unavailable,
                    offset: INERT_OFFSET,
                    feature_size: 0,
                    registration_len: 0,
                },
            );
            let seen = reader.join().unwrap();
            match seen.owner {
                Owner::Unavailable => {
                    assert_eq!((seen.offset, seen.feature_size), (INERT_OFFSET, 0));
                }
                Owner::Library => {
                    assert!(seen.offset == SHARED_OFFSET || seen.offset == INERT_OFFSET);
                    assert!(seen.feature_size == 28 || seen.feature_size == 0);
                }
                Owner::Libc => panic!("never Libc here"),
            }
        });
    }
}
