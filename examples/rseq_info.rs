//! Prints what a user debugging rseq needs to see, each verdict with its
//! cause. Run with `cargo run --example rseq_info` (try
//! `GLIBC_TUNABLES=glibc.pthread.rseq=0` or `RESTARTABLE_DISABLE=1` in
//! front, or `cargo run --example without_rseq -- target/debug/examples/rseq_info`).
//!
//! The first part is `restartable::report()`, which a program can print
//! from inside itself (C: `restartable_report(buf, len)`); the rest are the
//! raw values behind it.

fn main() {
    // The thread's state before it uses the library, then the report, which
    // registers it (as any first use does).
    let before = restartable::thread_state();
    restartable::current_cpu();
    println!("{}\n", restartable::report());
    println!("thread state before first use: {before}");
    println!(
        "kernel area align   : {} bytes (AT_RSEQ_ALIGN)",
        restartable::kernel_area_align()
    );
    println!("glibc __rseq_size   : {}", restartable::libc_rseq_size());
    println!(
        "registration length : {} bytes ({})",
        restartable::registration_len(),
        match restartable::registration_len() {
            0 => "none",
            32 => "classic",
            _ => "extensible",
        }
    );
    println!(
        "thread registration : {} bytes",
        restartable::thread_registration_len()
    );
    println!("area offset from TP : {} bytes", restartable::area_offset());
    let area = restartable::rseq_location();
    println!(
        "area address        : {area:p} (aligned to {} bytes)",
        1usize << (area as usize).trailing_zeros().min(12)
    );
    println!(
        "current cpu         : {} (sched_getcpu: {})",
        restartable::current_cpu(),
        restartable::fallback_cpu()
    );
    println!("cpu_id (raw)        : {}", restartable::current_cpu_raw());
    println!("cpu_id_start        : {}", restartable::cpu_id_start());
    println!("node_id             : {}", show(restartable::node_id()));
    println!("mm_cid              : {}", show(restartable::mm_cid()));
    println!("possible cpus       : {}", restartable::possible_cpus());
    println!("slice extension     : {}", restartable::slice::status());
    let enabled = restartable::slice::enable();
    println!(
        "slice enable        : {}",
        match enabled {
            Ok(()) => format!("enabled ({})", restartable::slice::status()),
            Err(why) => format!("not enabled: {why}"),
        }
    );
    println!(
        "refcount            : {}",
        restartable::refcount_of_current_thread()
    );
}

fn show(v: Option<u32>) -> String {
    v.map_or_else(|| "not provided".to_string(), |v| v.to_string())
}
