//! Prints what a user debugging rseq needs to see. Run with
//! `cargo run --example rseq_info` (try `GLIBC_TUNABLES=glibc.pthread.rseq=0`
//! or `RESTARTABLE_DISABLE=1` in front).

fn main() {
    let owner = restartable::owner();
    let kernel = restartable::kernel_feature_size();
    println!("kernel rseq support : {}", kernel_support());
    println!("kernel feature size : {kernel} bytes (AT_RSEQ_FEATURE_SIZE)");
    println!(
        "kernel area align   : {} bytes (AT_RSEQ_ALIGN)",
        restartable::kernel_area_align()
    );
    println!("glibc __rseq_size   : {}", restartable::libc_rseq_size());
    println!("owner               : {owner}");
    println!(
        "usable feature size : {} bytes",
        restartable::feature_size()
    );
    println!(
        "registration length : {} bytes ({})",
        restartable::registration_len(),
        match restartable::registration_len() {
            0 => "none",
            32 => "classic",
            _ => "extensible",
        }
    );
    println!("area offset from TP : {} bytes", restartable::area_offset());
    let area = restartable::rseq_location();
    println!(
        "area address        : {area:p} (aligned to {} bytes)",
        1usize << (area as usize).trailing_zeros().min(12)
    );
    println!("area exported       : {}", exported(owner));
    let cpu = restartable::current_cpu();
    println!("thread state        : {}", restartable::thread_state());
    println!(
        "thread registration : {} bytes",
        restartable::thread_registration_len()
    );
    println!("rseq in use here    : {}", restartable::is_available());
    println!(
        "current cpu         : {cpu} (sched_getcpu: {})",
        restartable::fallback_cpu()
    );
    println!("cpu_id (raw)        : {}", restartable::current_cpu_raw());
    println!("cpu_id_start        : {}", restartable::cpu_id_start());
    println!("node_id             : {}", show(restartable::node_id()));
    println!("mm_cid              : {}", show(restartable::mm_cid()));
    println!("possible cpus       : {}", restartable::possible_cpus());
    println!(
        "lock/stack sections : {} (needs membarrier's rseq fence, Linux 5.10)",
        if restartable::lock_sections_enabled() {
            "yes"
        } else {
            "no: atomics in every thread"
        }
    );
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
    println!("stats               : {:?}", restartable::stats());
}

fn kernel_support() -> &'static str {
    // rseq(NULL, 0, 0, 0) fails with EINVAL where the kernel implements the
    // call and ENOSYS where it (or a filter) does not.
    // SAFETY: a null area with length 0 is rejected before anything is read.
    let ret = unsafe { libc::syscall(libc::SYS_rseq, 0usize, 0u32, 0u32, 0u32) };
    let errno = std::io::Error::last_os_error().raw_os_error();
    match (ret, errno) {
        (0, _) => "yes",
        (_, Some(libc::ENOSYS)) => "no (ENOSYS: old kernel, emulator or seccomp filter)",
        (_, Some(libc::EPERM)) => "refused (EPERM: seccomp filter)",
        _ => "yes",
    }
}

fn exported(owner: restartable::Owner) -> &'static str {
    match (owner, restartable::area_is_exported()) {
        (restartable::Owner::Library, true) => "yes: classic __rseq_abi users loaded later share it",
        (restartable::Owner::Library, false) => {
            "no: the executable keeps __rseq_abi private, so a classic __rseq_abi \
             user loaded later gets EINVAL (copies of restartable still share it); \
             link with -Wl,--export-dynamic-symbol=__rseq_abi,--export-dynamic-symbol=__rseq_refcount"
        }
        _ => "not applicable (the library registers nothing)",
    }
}

fn show(v: Option<u32>) -> String {
    v.map_or_else(|| "not provided".to_string(), |v| v.to_string())
}
