//! Building and running C programs against the library that this
//! `cargo test` built: where the libraries are, how a program is compiled
//! and linked, and how it runs in each ownership mode.
//!
//! Cargo builds the library's cdylib and staticlib next to the test
//! executables (`target/<profile>/deps/`) whenever it builds the tests, so
//! the tests find them there and never run cargo themselves. C programs are
//! built with `cc` / `c++` (or `$CC` / `$CXX`) into `CARGO_TARGET_TMPDIR`.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The repository root (the header and the C sources live there).
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Where cargo put this profile's `librestartable.so` and `.a`: beside the
/// test executable.
pub fn lib_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test executable's path");
        let dir = exe.parent().expect("the deps directory").to_path_buf();
        for name in ["librestartable.so", "librestartable.a"] {
            assert!(
                dir.join(name).is_file(),
                "{name} not found in {}: cargo builds it with the tests",
                dir.display()
            );
        }
        dir
    })
}

/// `librestartable.so` as cargo built it.
pub fn shared_lib() -> PathBuf {
    lib_dir().join("librestartable.so")
}

/// `librestartable.a` as cargo built it.
pub fn static_lib() -> PathBuf {
    lib_dir().join("librestartable.a")
}

/// A scratch directory `name` for a test binary's C builds.
pub fn out_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&dir).expect("create the C build directory");
    dir
}

/// How each C program is compiled.
#[derive(Clone, Copy, Debug)]
pub enum Lang {
    C99,
    C11,
    Cxx11,
    Cxx17,
}

/// The native libraries a Rust staticlib needs (`rustc --print
/// native-static-libs`), also listed in `restartable.pc`'s `Libs.private`.
pub const STATIC_DEPS: &[&str] = &[
    "-lgcc_s",
    "-lutil",
    "-lrt",
    "-lpthread",
    "-lm",
    "-ldl",
    "-lc",
];

/// Compiles `source` (relative to the root) into `out`, warnings as
/// errors, with `compiler` (default `$CC` / `$CXX`, or `cc` / `c++`) and
/// `extra` after the source (link inputs and flags); panics with the
/// compiler's output on failure.
pub fn compile_to(
    compiler: Option<&str>,
    lang: Lang,
    source: &str,
    out: &Path,
    extra: &[&str],
) -> PathBuf {
    let (default, std_flag) = match lang {
        Lang::C99 => (std::env::var("CC").unwrap_or("cc".into()), "-std=c99"),
        Lang::C11 => (std::env::var("CC").unwrap_or("cc".into()), "-std=c11"),
        Lang::Cxx11 => (std::env::var("CXX").unwrap_or("c++".into()), "-std=c++11"),
        Lang::Cxx17 => (std::env::var("CXX").unwrap_or("c++".into()), "-std=c++17"),
    };
    let compiler = compiler.map_or(default, String::from);
    let mut cmd = Command::new(&compiler);
    if matches!(lang, Lang::Cxx11 | Lang::Cxx17) {
        cmd.args(["-x", "c++"]);
    }
    cmd.args([std_flag, "-O2"])
        .args(WARNINGS)
        .args(includes())
        .arg(root().join(source));
    if matches!(lang, Lang::Cxx11 | Lang::Cxx17) {
        // The libraries are not C++: stop treating the next inputs as such.
        cmd.args(["-x", "none"]);
    }
    cmd.args(extra).arg("-pthread").arg("-o").arg(out);
    run_compiler(&mut cmd, &compiler, source);
    out.to_path_buf()
}

/// The warning and debug flags every C and C++ build uses.
pub const WARNINGS: &[&str] = &["-Wall", "-Wextra", "-Werror", "-pedantic", "-g"];

/// `-I` flags for the header and the tests' helpers.
pub fn includes() -> Vec<PathBuf> {
    ["include", "tests/c"]
        .iter()
        .flat_map(|dir| [PathBuf::from("-I"), root().join(dir)])
        .collect()
}

/// Runs a compiler command; panics with its output unless it succeeds.
pub fn run_compiler(cmd: &mut Command, compiler: &str, what: &str) {
    let result = cmd
        .output()
        .unwrap_or_else(|e| panic!("run {compiler}: {e} (a C compiler is required)"));
    assert!(
        result.status.success(),
        "{compiler} {what} failed:\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
}

/// Whether `compiler` can be run (clang and clang++ are optional).
pub fn installed(compiler: &str) -> bool {
    let found = Command::new(compiler)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        println!("NOTICE: {compiler} is not installed; skipping its builds");
    }
    found
}

/// Link flags for the shared library, found at run time through the rpath.
pub fn link_shared() -> Vec<String> {
    let dir = lib_dir().display().to_string();
    vec![
        format!("-L{dir}"),
        "-lrestartable".into(),
        format!("-Wl,-rpath,{dir}"),
    ]
}

/// Link flags for the static library.
pub fn link_static() -> Vec<String> {
    let mut flags = vec![static_lib().display().to_string()];
    flags.extend(STATIC_DEPS.iter().map(|s| s.to_string()));
    flags
}

/// The strings of `v`, borrowed.
pub fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The ownership mode a C program runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// glibc registers every thread (its default).
    Libc,
    /// `GLIBC_TUNABLES=glibc.pthread.rseq=0`: the library registers.
    Library,
    /// `RESTARTABLE_DISABLE=1`: fallbacks.
    Disabled,
    /// `rseq(2)` blocked by a seccomp filter (it answers `ENOSYS`), as
    /// under valgrind or an old kernel: glibc cannot register, fallbacks.
    Blocked,
}

pub const MODES: [Mode; 3] = [Mode::Libc, Mode::Library, Mode::Disabled];

/// [`MODES`] and the seccomp-blocked one.
pub const ALL_MODES: [Mode; 4] = [Mode::Libc, Mode::Library, Mode::Disabled, Mode::Blocked];

/// The owner a child in `mode` must report: `libc`, `library` or `none`.
pub fn expected(mode: Mode) -> &'static str {
    if matches!(mode, Mode::Disabled | Mode::Blocked) || super::rseq_syscall_missing() {
        return "none";
    }
    // SAFETY: dlsym with a valid C string; only the symbol's presence is used.
    let glibc_registers =
        !unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"__rseq_size".as_ptr()) }.is_null();
    match mode {
        Mode::Libc if glibc_registers => "libc",
        _ => "library",
    }
}

/// Runs `program args` in `mode`; panics with its output unless it exits 0.
pub fn run(mode: Mode, program: &Path, args: &[&str]) -> Output {
    run_with(mode, &[], program, args)
}

/// Runs `program args` in `mode`, with `prefix` (a wrapper such as
/// valgrind) in front; panics with its output unless it exits 0.
pub fn run_with(mode: Mode, prefix: &[&str], program: &Path, args: &[&str]) -> Output {
    run_expecting(expected(mode), mode, prefix, program, args)
}

/// Runs `program args` under valgrind, which has no rseq: glibc's
/// registration fails, and so does the library's, which turns to fallbacks.
pub fn run_under_valgrind(program: &Path, args: &[&str]) -> Option<Output> {
    if Command::new("valgrind").arg("--version").output().is_err() {
        println!("NOTICE: valgrind is not installed; skipping the valgrind run");
        return None;
    }
    let prefix = ["valgrind", "-q", "--error-exitcode=1"];
    Some(run_expecting("none", Mode::Libc, &prefix, program, args))
}

/// As [`run_with`], telling the program to expect owner `expect`.
pub fn run_expecting(
    expect: &str,
    mode: Mode,
    prefix: &[&str],
    program: &Path,
    args: &[&str],
) -> Output {
    let mut cmd = match prefix.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(program);
            c
        }
        None => Command::new(program),
    };
    // cargo's LD_LIBRARY_PATH names target/<profile> first, where a stale
    // copy from an earlier `cargo build` may sit; it outranks the rpath.
    cmd.args(args)
        .env("LD_LIBRARY_PATH", lib_dir())
        .env("RESTARTABLE_TEST_EXPECT", expect)
        .env_remove("GLIBC_TUNABLES")
        .env_remove("RESTARTABLE_DISABLE")
        .env_remove("RESTARTABLE_EXPECT_OWNER");
    set_mode(&mut cmd, mode);
    let what = format!("{} {args:?} in {mode:?} mode", program.display());
    run_ok(cmd, &what)
}

/// `program args` set up to run in `mode`, expecting its owner.
pub fn command_in(mode: Mode, program: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env("LD_LIBRARY_PATH", lib_dir())
        .env("RESTARTABLE_TEST_EXPECT", expected(mode))
        .env_remove("GLIBC_TUNABLES")
        .env_remove("RESTARTABLE_DISABLE")
        .env_remove("RESTARTABLE_EXPECT_OWNER");
    set_mode(&mut cmd, mode);
    cmd
}

fn set_mode(cmd: &mut Command, mode: Mode) {
    match mode {
        Mode::Libc => {}
        Mode::Library => {
            cmd.env("GLIBC_TUNABLES", "glibc.pthread.rseq=0");
        }
        Mode::Disabled => {
            cmd.env("RESTARTABLE_DISABLE", "1");
        }
        Mode::Blocked => {
            // SAFETY: `block_rseq` makes only `prctl` calls, which are
            // async-signal-safe, as the code between fork and exec must be.
            unsafe { cmd.pre_exec(super::seccomp::block_rseq) };
        }
    }
}

/// Runs `cmd` within the children's time limit; panics with its output
/// unless it exits 0.
pub fn run_ok(mut cmd: Command, what: &str) -> Output {
    let out = super::output_within(&mut cmd, super::child_limit());
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// What a program printed on its standard output.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}
