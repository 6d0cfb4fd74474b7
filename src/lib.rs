//! restartable
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

pub mod abi;
mod arch;
mod area;
mod cpu;
mod error;
mod registration;
mod sync;

pub use area::{
    area_offset, feature_size, kernel_area_align, kernel_feature_size, libc_rseq_size, owner,
    rseq_location, Owner,
};
pub use cpu::{
    cpu_id_start, current_cpu, current_cpu_raw, fallback_cpu, is_available, mm_cid, node_id,
    possible_cpus,
};
pub use error::Error;
pub use registration::{
    caller_holds, refcount_of_current_thread, register_current_thread, stats, thread_state,
    unregister_current_thread, RegistrationGuard, Stats, ThreadState,
};

/// The pure state machines behind registration and ownership, driven by
/// simulated kernels in the loom model (`tests/loom.rs`).
#[cfg(restartable_loom)]
#[doc(hidden)]
pub mod model {
    pub use crate::area::{choose, publish, read_owner, Decision, Probe, Published};
    pub use crate::registration::{acquire, release, Event, Holder, Kernel, ThreadRecord};
}
