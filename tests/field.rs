//! The library where real processes run it, beyond "a dynamic program that
//! calls it from `main`": callers that run before its constructor (a
//! `.preinit_array` function, an earlier constructor in C and in Rust, an
//! `LD_PRELOAD` malloc interposer), static executables (C and Rust), stand-in
//! `__rseq_*` definitions, a private registrant in `main`, components loaded
//! later (classic plugins, more copies of the library), and seccomp filters
//! on one thread. Each scenario runs in a child process, in every
//! ownership mode.

mod common;

use common::cbuild::{self, Lang, MODES};
use restartable::cs::{self, Index, Outcome};
use restartable::{Owner, ThreadState};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicI64, AtomicIsize, Ordering};
use std::sync::OnceLock;

fn dir() -> PathBuf {
    cbuild::out_dir("field")
}

/// A shared object built from `source` (relative to the root).
fn shared_object(source: &str, name: &str, extra: &[&str]) -> PathBuf {
    let mut flags = vec!["-shared", "-fPIC"];
    flags.extend(extra);
    cbuild::compile_to(None, Lang::C11, source, &dir().join(name), &flags)
}

/// A module with general-dynamic TLS, loaded after each early use.
fn tls_module() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| shared_object("tests/c/field/tls_module.c", "libtls_module.so", &[]))
}

/// The classic `__rseq_abi` plugin.
fn classic_plugin() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| shared_object("tests/c/field/classic_plugin.c", "libclassic.so", &[]))
}

/// `PT_INTERP`: the program header that names a dynamic linker.
const PT_INTERP: u32 = 3;

/// Link flags for each way a C program gets the library.
fn links() -> [(&'static str, Vec<String>); 2] {
    [("a", cbuild::link_static()), ("so", cbuild::link_shared())]
}

fn c_program(source: &str, name: &str, flags: &[&str]) -> PathBuf {
    let mut all = flags.to_vec();
    all.push("-ldl");
    cbuild::compile_to(None, Lang::C11, source, &dir().join(name), &all)
}

#[test]
fn preinit_and_early_constructors_read_real_areas() {
    for (define, kind) in [
        ("-DFIELD_PREINIT", "preinit"),
        ("-DFIELD_CTOR100", "ctor100"),
    ] {
        for (link, flags) in links() {
            let mut all = vec![define];
            all.extend(cbuild::strs(&flags));
            let exe = c_program(
                "tests/c/field/early.c",
                &format!("early_{kind}_{link}"),
                &all,
            );
            for mode in MODES {
                let out = cbuild::run(mode, &exe, &[tls_module().to_str().unwrap()]);
                assert!(cbuild::stdout(&out).contains("early: ok"));
            }
        }
    }
}

#[test]
fn a_malloc_interposer_counts_from_the_first_call() {
    let lib = cbuild::static_lib();
    let interposer = shared_object(
        "tests/c/field/interposer.c",
        "libinterposer.so",
        &[lib.to_str().unwrap(), "-Wl,-z,nodelete"],
    );
    let program = cbuild::compile_to(
        None,
        Lang::Cxx17,
        "tests/c/field/interposed.cpp",
        &dir().join("interposed"),
        &["-ldl"],
    );
    for mode in MODES {
        let mut cmd = cbuild::command_in(mode, &program, &[tls_module().to_str().unwrap()]);
        cmd.env("LD_PRELOAD", &interposer);
        let out = cbuild::run_ok(cmd, &format!("interposed program in {mode:?} mode"));
        assert!(cbuild::stdout(&out).contains("interposed: ok"));
        let report = String::from_utf8_lossy(&out.stderr);
        let numbers: Vec<u64> = report
            .lines()
            .find(|l| l.starts_with("interposer: "))
            .unwrap_or_else(|| panic!("no report in {report}"))
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse().ok())
            .collect();
        let [calls, counted, out_of_range] = numbers[..] else {
            panic!("unexpected report {report}");
        };
        assert!(calls > 20_000, "{report}");
        assert_eq!((counted, out_of_range), (calls, 0), "in {mode:?}: {report}");
    }
}

/// Counts made by [`early_rust_constructor`], before the library's own
/// constructor ran.
static EARLY_SLOTS: [AtomicIsize; 4096] = [const { AtomicIsize::new(0) }; 4096];
static EARLY_CPU: AtomicI64 = AtomicI64::new(-100);
static EARLY_OUT_OF_RANGE: AtomicI64 = AtomicI64::new(0);
const EARLY_COUNTS: isize = 1000;

/// A Rust constructor at priority 100 (the library's is 101) that reads
/// the CPU and counts with the checked `cs::load_add_store`.
extern "C" fn early_rust_constructor() {
    EARLY_CPU.store(restartable::current_cpu().into(), Ordering::Relaxed);
    for _ in 0..EARLY_COUNTS {
        loop {
            let cpu = restartable::current_cpu();
            let Some(slot) = EARLY_SLOTS.get(cpu as usize) else {
                EARLY_OUT_OF_RANGE.fetch_add(1, Ordering::Relaxed);
                break;
            };
            // SAFETY: a live, aligned word that only these operations update.
            if unsafe { cs::load_add_store(Index::Cpu, slot.as_ptr(), 1, cpu) }
                == Outcome::Committed
            {
                break;
            }
        }
    }
}

#[used]
#[link_section = ".init_array.00100"]
static EARLY_RUST_CONSTRUCTOR: extern "C" fn() = early_rust_constructor;

#[test]
fn a_rust_constructor_before_the_library_s() {
    // In a child: before the fix, the early section wrote over the thread
    // control block, and the dlopen below crashed the process.
    if !common::in_child_alone("a_rust_constructor_before_the_library_s") {
        return;
    }
    let cpu = EARLY_CPU.load(Ordering::Relaxed);
    assert!(
        (0..restartable::possible_cpus() as i64).contains(&cpu),
        "early CPU read {cpu}"
    );
    assert_eq!(EARLY_OUT_OF_RANGE.load(Ordering::Relaxed), 0);
    let sum: isize = EARLY_SLOTS.iter().map(|s| s.load(Ordering::Relaxed)).sum();
    assert_eq!(sum, EARLY_COUNTS);
    common::check_owner();
    let path = std::ffi::CString::new(tls_module().to_str().unwrap()).unwrap();
    // SAFETY: a valid path to a module without constructors.
    let module = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    assert!(!module.is_null(), "dlopen of the TLS module failed");
    // SAFETY: a live handle and a valid C string.
    let get = unsafe { libc::dlsym(module, c"tls_get".as_ptr()) };
    assert!(!get.is_null());
    // SAFETY: the module defines `int *tls_get(void)`.
    let get: extern "C" fn() -> *mut i32 = unsafe { std::mem::transmute(get) };
    // SAFETY: the calling thread's instance of the module's TLS variable.
    assert_eq!(unsafe { *get() }, 7);
}

#[test]
fn static_c_executables_find_glibc_s_registration() {
    let lib = cbuild::static_lib().display().to_string();
    for kind in ["-static", "-static-pie"] {
        let mut flags = vec![kind, lib.as_str()];
        flags.extend(cbuild::STATIC_DEPS);
        let exe = c_program("tests/c/field/owner.c", &format!("owner{kind}"), &flags);
        for mode in MODES {
            assert!(cbuild::stdout(&cbuild::run(mode, &exe, &[])).contains("owner: ok"));
        }
    }
}

#[test]
fn stand_in_rseq_symbols_do_not_fool_the_probe() {
    let lib = cbuild::static_lib().display().to_string();
    let mut fully_static = vec!["-DFIELD_STAND_INS", "-static", lib.as_str()];
    fully_static.extend(cbuild::STATIC_DEPS);
    let mut builds = vec![("static", fully_static)];
    for (link, flags) in links() {
        let mut all = vec!["-DFIELD_STAND_INS"];
        all.extend(cbuild::strs(&flags).iter().map(|s| s.to_string()).map(leak));
        builds.push((link, all));
    }
    for (link, flags) in builds {
        let exe = c_program(
            "tests/c/field/owner.c",
            &format!("owner_stand_ins_{link}"),
            &flags,
        );
        for mode in MODES {
            assert!(cbuild::stdout(&cbuild::run(mode, &exe, &[])).contains("owner: ok"));
        }
    }
}

/// Keeps a flag alive for the rest of the test process.
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// `rustc`, as cargo would run it.
fn rustc() -> Command {
    Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()))
}

/// The library's rlib that this test binary links, and the directory of
/// its dependencies.
fn rlib() -> PathBuf {
    std::fs::read_dir(cbuild::deps_dir())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with("librestartable") && name.ends_with(".rlib")
        })
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
        .expect("cargo builds the library's rlib with the tests")
}

/// Builds the Rust program `tests/rust/<name>.rs` against the library.
fn rust_program(name: &str, out: &str, flags: &[&str]) -> PathBuf {
    let exe = dir().join(out);
    let mut cmd = rustc();
    cmd.args(["--edition", "2021", "-C", "debuginfo=0"])
        .arg(cbuild::root().join(format!("tests/rust/{name}.rs")))
        .arg("--extern")
        .arg(format!("restartable={}", rlib().display()))
        .arg("--extern")
        .arg(format!("libc={}", dep_rlib("liblibc").display()))
        .arg("-L")
        .arg(format!("dependency={}", cbuild::deps_dir().display()))
        .args(flags)
        .arg("-o")
        .arg(&exe);
    let out = cmd.output().expect("run rustc");
    assert!(
        out.status.success(),
        "rustc {name}.rs {flags:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

/// The newest rlib of dependency `prefix` (`liblibc`) beside the tests.
fn dep_rlib(prefix: &str) -> PathBuf {
    std::fs::read_dir(cbuild::deps_dir())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with(&format!("{prefix}-")) && name.ends_with(".rlib")
        })
        .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
        .unwrap_or_else(|| panic!("no {prefix} rlib beside the tests"))
}

#[test]
fn static_rust_executables_find_glibc_s_registration() {
    let builds: [(&str, &[&str]); 2] = [
        ("static-pie", &["-C", "target-feature=+crt-static"]),
        (
            "static",
            &[
                "-C",
                "target-feature=+crt-static",
                "-C",
                "relocation-model=static",
            ],
        ),
    ];
    for (kind, flags) in builds {
        let exe = rust_program("owner", &format!("rust_owner_{kind}"), flags);
        let file = std::fs::read(&exe).unwrap();
        let elf = common::elf::Elf(&file);
        elf.check_header();
        assert!(
            !elf.segments().iter().any(|s| s.0 == PT_INTERP),
            "{kind}: the Rust program is not static"
        );
        for mode in MODES {
            assert!(cbuild::stdout(&cbuild::run(mode, &exe, &[])).contains("owner: ok"));
        }
    }
}

#[test]
fn a_private_registrant_in_main_succeeds() {
    for (link, flags) in links() {
        let exe = c_program(
            "tests/c/field/private.c",
            &format!("private_{link}"),
            &cbuild::strs(&flags),
        );
        for mode in MODES {
            assert!(cbuild::stdout(&cbuild::run(mode, &exe, &[])).contains("private: "));
        }
    }
}

/// `pkg-config --static --cflags --libs restartable` for a prefix where
/// `make target` (`install` or `install-static`) put the library.
fn pkg_config_static(target: &str) -> Vec<String> {
    let prefix = dir().join(format!("prefix-{target}"));
    cbuild::install(target, &prefix, None);
    let out = Command::new("pkg-config")
        .args(["--static", "--cflags", "--libs", "restartable"])
        .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig"))
        .output()
        .expect("run pkg-config (CI installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .map(String::from)
        .collect()
}

#[test]
fn pkg_config_static_links_the_archive_into_dynamic_and_static_programs() {
    // The README's two routes: where only the archive is installed, a
    // dynamic program links it; `cc -static` links it from a full install.
    let builds = [
        ("dynamic", "install-static", None),
        ("static", "install", Some("-static")),
    ];
    for (kind, target, static_flag) in builds {
        let mut flags: Vec<String> = static_flag.map(String::from).into_iter().collect();
        flags.extend(pkg_config_static(target));
        let exe = c_program(
            "tests/c/field/owner.c",
            &format!("owner_pkg_config_{kind}"),
            &cbuild::strs(&flags),
        );
        let file = std::fs::read(&exe).unwrap();
        let elf = common::elf::Elf(&file);
        elf.check_header();
        let needed = elf.needed();
        assert!(
            !needed.iter().any(|n| n.starts_with("librestartable")),
            "{kind}: linked against the shared library: {needed:?}"
        );
        let dynamic = elf.segments().iter().any(|s| s.0 == PT_INTERP);
        assert_eq!(dynamic, static_flag.is_none(), "{kind}: {needed:?}");
        for mode in MODES {
            assert!(cbuild::stdout(&cbuild::run(mode, &exe, &[])).contains("owner: ok"));
        }
    }
}

#[test]
fn classic_plugins_share_the_area_of_a_static_c_program() {
    let flags = pkg_config_static("install-static");
    let exe = c_program(
        "tests/c/field/later.c",
        "later_pkg_config_static",
        &cbuild::strs(&flags),
    );
    let plugin = classic_plugin().to_str().unwrap();
    for mode in MODES {
        let out = cbuild::run(mode, &exe, &["classic", plugin]);
        assert!(cbuild::stdout(&out).contains("later classic: ok"));
    }
}

#[test]
fn later_copies_of_the_library_share_the_area() {
    const COPIES: usize = 4;
    let exe = c_program(
        "tests/c/field/later.c",
        "later_static",
        &cbuild::strs(&cbuild::link_static()),
    );
    let base = dir().join("librestartable_later.so");
    std::fs::copy(cbuild::shared_lib(), &base).unwrap();
    for i in 0..COPIES {
        std::fs::copy(
            cbuild::shared_lib(),
            dir().join(format!("librestartable_later.so.{i}")),
        )
        .unwrap();
    }
    for mode in MODES {
        let out = cbuild::run(
            mode,
            &exe,
            &["copies", &COPIES.to_string(), base.to_str().unwrap()],
        );
        assert!(cbuild::stdout(&out).contains("later copies: ok"));
    }
}

#[test]
fn rust_programs_export_the_area_with_one_flag() {
    let export = [
        "-C",
        "link-arg=-Wl,--export-dynamic-symbol=__rseq_abi,--export-dynamic-symbol=__rseq_refcount",
    ];
    let builds: [(&str, &[&str]); 2] = [("exported", &export), ("private", &[])];
    for (kind, flags) in builds {
        let exe = rust_program("plugin_host", &format!("rust_plugin_host_{kind}"), flags);
        for mode in MODES {
            let out = cbuild::run(mode, &exe, &[classic_plugin().to_str().unwrap(), kind]);
            assert!(cbuild::stdout(&out).contains("plugin_host: "));
        }
        // With the classic length forced, an uncounted plugin shares the
        // exported area on every kernel (EBUSY), Linux 7.x included.
        let mut cmd = cbuild::command_in(
            cbuild::Mode::Library,
            &exe,
            &[classic_plugin().to_str().unwrap(), kind],
        );
        cmd.env("RESTARTABLE_CLASSIC_LENGTH", "1");
        let out = cbuild::run_ok(cmd, "plugin_host with RESTARTABLE_CLASSIC_LENGTH=1");
        let text = cbuild::stdout(&out);
        println!("{kind}, classic length forced: {text}");
        if cbuild::expected(cbuild::Mode::Library) == "library" {
            assert!(text.contains("plugin_host: ok"), "{text}");
        } else {
            assert!(text.contains("plugin_host: not library-owned"), "{text}");
        }
    }
}

/// A thread that installs a filter refusing `rseq(2)` (with `errno`) on
/// itself only: it is refused, the process and the other threads are not.
fn filter_on_one_thread(errno: i32) {
    let owner = common::check_owner();
    let counter = std::sync::Arc::new(restartable::PerCpuCounter::new());
    let registered = {
        let counter = counter.clone();
        std::thread::spawn(move || {
            (0..10_000).for_each(|_| counter.add(1));
            restartable::thread_state()
        })
    };
    let before = registered.join().unwrap();
    let refused = {
        let counter = counter.clone();
        std::thread::spawn(move || {
            common::seccomp::refuse_rseq(errno).unwrap();
            (0..10_000).for_each(|_| counter.add(1));
            let cpu = restartable::current_cpu();
            assert!((cpu as usize) < restartable::possible_cpus());
            (restartable::thread_state(), restartable::is_available())
        })
    };
    let (state, available) = refused.join().unwrap();
    assert_eq!(restartable::owner(), owner, "the owner did not change");
    let fresh = std::thread::spawn(|| {
        restartable::current_cpu();
        (restartable::thread_state(), restartable::is_available())
    })
    .join()
    .unwrap();
    assert_eq!(counter.sum(), 20_000);
    match owner {
        Owner::Library => {
            assert_eq!(before, ThreadState::Registered);
            assert_eq!((state, available), (ThreadState::Refused, false));
            assert_eq!(fresh, (ThreadState::Registered, true));
        }
        Owner::Libc => {
            // glibc registered the filtered thread before the filter.
            assert_eq!((state, available), (ThreadState::Borrowed, true));
            assert_eq!(fresh, (ThreadState::Borrowed, true));
        }
        Owner::Unavailable => {
            assert_eq!((state, available), (ThreadState::Unregistered, false));
            assert_eq!(fresh, (ThreadState::Unregistered, false));
        }
    }
}

#[test]
fn a_filter_refusing_rseq_with_enosys_on_one_thread() {
    if common::in_child_alone("a_filter_refusing_rseq_with_enosys_on_one_thread") {
        filter_on_one_thread(libc::ENOSYS);
    }
}

#[test]
fn a_filter_refusing_rseq_with_eperm_on_one_thread() {
    if common::in_child_alone("a_filter_refusing_rseq_with_eperm_on_one_thread") {
        filter_on_one_thread(libc::EPERM);
    }
}

#[test]
fn a_thread_whose_registration_went_away_says_so() {
    let owner = common::check_owner();
    let glibc_registers = common::glibc_rseq_size() > 0;
    let (state, cpu, sum) = std::thread::spawn(move || {
        let inner = || {
            let counter = restartable::PerCpuCounter::new();
            (0..1000).for_each(|_| counter.add(1));
            (
                restartable::thread_state(),
                restartable::current_cpu(),
                counter.sum(),
            )
        };
        if glibc_registers {
            // Someone unregisters glibc's area of this thread (glibc would
            // abort in pthread_create if its registration failed there).
            let area = common::glibc_area();
            assert_eq!(common::raw_unregister(area), Ok(()));
            let result = inner();
            assert_eq!(common::raw_register(area), Ok(()), "glibc's area, back");
            result
        } else {
            // A filter on this thread, inherited by the thread it creates.
            common::seccomp::refuse_rseq(libc::ENOSYS).unwrap();
            std::thread::spawn(inner).join().unwrap()
        }
    })
    .join()
    .unwrap();
    assert!((cpu as usize) < restartable::possible_cpus());
    assert_eq!(sum, 1000);
    let want = match owner {
        Owner::Library => ThreadState::Refused,
        Owner::Libc | Owner::Unavailable => ThreadState::Unregistered,
    };
    assert_eq!(state, want);
}
