//! Runs a command with `rseq(2)` blocked by a seccomp filter (it answers
//! `ENOSYS`), so glibc cannot register and `restartable` is `Unavailable`:
//! `cargo run --example without_rseq -- cargo test`.

use std::os::unix::process::CommandExt;
use std::process::{exit, Command};

#[path = "../tests/common/seccomp.rs"]
#[allow(dead_code)] // the tests' syscall traps are not needed here
mod seccomp;

fn main() {
    let mut args = std::env::args_os().skip(1);
    let Some(program) = args.next() else {
        eprintln!("usage: without_rseq COMMAND [ARGS...]");
        exit(2);
    };
    if let Err(err) = seccomp::block_rseq() {
        eprintln!("without_rseq: cannot install the seccomp filter: {err}");
        exit(1);
    }
    let err = Command::new(&program).args(args).exec();
    eprintln!(
        "without_rseq: cannot run {}: {err}",
        program.to_string_lossy()
    );
    exit(127);
}
