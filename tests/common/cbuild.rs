//! Building and running C programs against the library: where the C
//! libraries are, how a program is compiled and linked, and how it runs in
//! each ownership mode.
//!
//! The crate builds as an rlib only; the C libraries come from the build
//! the README documents, `make` (see the Makefile). Each test binary that
//! needs them runs it once, with the profile [`PROFILE`], into its own
//! cargo target directory `<target-dir>/c-lib/` (the one `cargo test`
//! holds stays locked while the tests run), under a file lock so that test
//! processes running side by side build one at a time; cargo rebuilds
//! only what changed, so later runs take a fraction of a second.
//! `RESTARTABLE_C_LIB_DIR` names libraries built beforehand instead (a
//! directory where `make` put them, such as `target/release`), which are
//! then used as they are. C programs are built with `cc` / `c++` (or
//! `$CC` / `$CXX`) into `CARGO_TARGET_TMPDIR`.

use std::os::unix::io::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The repository root (the header, the Makefile and the C sources live
/// there).
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The profile the tests build the C libraries with: `debug`, which keeps
/// the library's debug assertions, like the Rust tests' own build.
pub const PROFILE: &str = "debug";

/// The directory of the C libraries: `RESTARTABLE_C_LIB_DIR` if set,
/// else where [`make`] built them.
pub fn lib_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = match std::env::var_os("RESTARTABLE_C_LIB_DIR") {
            Some(dir) => {
                let dir = std::fs::canonicalize(&dir).unwrap_or_else(|e| {
                    panic!("RESTARTABLE_C_LIB_DIR={}: {e}", Path::new(&dir).display())
                });
                println!(
                    "NOTICE: C libraries from RESTARTABLE_C_LIB_DIR={}",
                    dir.display()
                );
                dir
            }
            None => make(),
        };
        for name in ["librestartable.so", "librestartable.a"] {
            assert!(
                dir.join(name).is_file(),
                "{name} not found in {}: `make` builds it",
                dir.display()
            );
        }
        dir
    })
}

/// Where the tests' own `make` builds: a cargo target directory beside
/// the one this test binary was built in.
fn c_target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR lies in the target directory")
        .join("c-lib")
}

/// Runs `make` in the repository with the tests' profile and target
/// directory, holding a lock on that directory; panics with make's output
/// unless it succeeds. Returns the directory of the libraries,
/// `<target>/<profile>`.
fn make() -> PathBuf {
    make_in(&c_target_dir(), PROFILE, &[])
}

/// [`make`] with cargo's target directory `target` and `profile`.
fn make_in(target: &Path, profile: &str, args: &[&str]) -> PathBuf {
    let out = make_output(target, profile, args);
    assert!(
        out.status.success(),
        "make {args:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    target.join(profile)
}

/// Runs `make PROFILE=profile CARGO_TARGET_DIR=target args` in the
/// repository, holding a lock on `target`, and returns what it did.
pub fn make_output(target: &Path, profile: &str, args: &[&str]) -> Output {
    std::fs::create_dir_all(target).expect("create the C libraries' target directory");
    let lock = std::fs::File::create(target.join("make.lock")).expect("create make.lock");
    // SAFETY: flock on a descriptor this function owns; the lock is
    // released when `lock` is closed, at the end of this function.
    let locked = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
    assert_eq!(
        locked,
        0,
        "flock make.lock: {}",
        std::io::Error::last_os_error()
    );
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    Command::new("make")
        .arg("-C")
        .arg(root())
        .arg(format!("PROFILE={profile}"))
        .arg(format!("CARGO_TARGET_DIR={}", target.display()))
        .arg(format!("CARGO={cargo}"))
        .args(args)
        // Not a sub-make of anything: no jobserver or flags from outside.
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL")
        .output()
        .unwrap_or_else(|e| panic!("run make: {e} (GNU make builds the C libraries)"))
}

/// A fresh `make target PREFIX=prefix` of the libraries of [`lib_dir`]
/// (`target` is `install`, `install-shared` or `install-static`), into
/// `destdir` (as `DESTDIR`) if given; `destdir`, else `prefix`, is emptied
/// first.
pub fn install(target: &str, prefix: &Path, destdir: Option<&Path>) {
    let dir = lib_dir();
    let (Some(profile), Some(parent)) = (dir.file_name(), dir.parent()) else {
        panic!("{} is not a directory where make built", dir.display());
    };
    let root = destdir.unwrap_or(prefix);
    if root.exists() {
        std::fs::remove_dir_all(root).expect("empty the install directory");
    }
    let mut args = vec![target.to_string(), format!("PREFIX={}", prefix.display())];
    if let Some(destdir) = destdir {
        args.push(format!("DESTDIR={}", destdir.display()));
    }
    make_in(parent, &profile.to_string_lossy(), &strs(&args));
}

/// The directory of this test binary and its dependencies' rlibs.
pub fn deps_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    exe.parent().expect("the deps directory").to_path_buf()
}

/// `librestartable.so` as `make` built it (the link to
/// `librestartable.so.<version>`).
pub fn shared_lib() -> PathBuf {
    lib_dir().join("librestartable.so")
}

/// `librestartable.a` as `make` built it.
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

/// The native libraries a program linked with `librestartable.a` needs
/// (`rustc --print native-static-libs` less `-lgcc_s`, which the C
/// compiler's driver adds itself), as `STATIC_LIBS` in the Makefile and
/// `Libs.private` in `restartable.pc`; the same for dynamic and fully
/// static programs.
pub const STATIC_DEPS: &[&str] = &["-lutil", "-lrt", "-lpthread", "-lm", "-ldl", "-lc"];

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
    // cargo's LD_LIBRARY_PATH names target/<profile> first, where a copy
    // from another build (`make PROFILE=debug`) may sit; it outranks the
    // rpath.
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
