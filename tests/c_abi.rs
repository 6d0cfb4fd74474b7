//! The C interface, end to end: `include/restartable.h` compiled as C and
//! C++, linked to the `librestartable.so` and `librestartable.a` that this
//! `cargo test` built, and run in every ownership mode; `dlopen` into a
//! threaded process, two copies of the library, a classic `__rseq_abi`
//! registrant, the C example (also under valgrind), `make install` and the
//! pkg-config file it installs, and the shared object's TLS budget and
//! exports, read from its ELF file.
//!
//! The libraries are the ones `make` builds, run by `common::cbuild` once
//! per test binary (or those `RESTARTABLE_C_LIB_DIR` names). C programs are
//! built with `cc` / `c++` (or `$CC` / `$CXX`) into `CARGO_TARGET_TMPDIR`.

mod common;

use common::elf::{
    Elf, DF_1_NODELETE, PT_TLS, SHT_DYNSYM, SHT_SYMTAB, STB_GLOBAL, STB_WEAK, STT_FUNC, STT_TLS,
};

use common::cbuild::{
    self, expected, includes, installed, link_shared, link_static, root, run, run_compiler,
    run_under_valgrind, shared_lib, stdout, strs, Lang, Mode, ALL_MODES, MODES, WARNINGS,
};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// This test binary's scratch directory for its C builds.
fn out_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| cbuild::out_dir("c_abi"))
}

/// Compiles `source` into `out_dir()/name` (see [`cbuild::compile_to`]).
fn compile(lang: Lang, source: &str, name: &str, extra: &[&str]) -> PathBuf {
    compile_with(None, lang, source, name, extra)
}

/// [`compile`] with `compiler` instead of `$CC` / `$CXX`.
fn compile_with(
    compiler: Option<&str>,
    lang: Lang,
    source: &str,
    name: &str,
    extra: &[&str],
) -> PathBuf {
    cbuild::compile_to(compiler, lang, source, &out_dir().join(name), extra)
}

#[test]
fn header_as_c_and_cpp_against_the_shared_library() {
    let link = link_shared();
    for (lang, name) in [
        (Lang::C11, "header_c11"),
        (Lang::C99, "header_c99"),
        (Lang::Cxx11, "header_cxx11"),
        (Lang::Cxx17, "header_cxx17"),
    ] {
        let exe = compile(lang, "tests/c/header_test.c", name, &strs(&link));
        for mode in MODES {
            let out = run(mode, &exe, &[]);
            assert!(
                stdout(&out).contains("all checks passed"),
                "{name} in {mode:?}: {}",
                stdout(&out)
            );
        }
    }
}

#[test]
fn header_out_of_line_calls() {
    // What other architectures and non-GNU compilers get: plain calls.
    let mut flags = vec!["-DRESTARTABLE_NO_INLINE".to_string()];
    flags.extend(link_shared());
    let exe = compile(
        Lang::C11,
        "tests/c/header_test.c",
        "header_ool",
        &strs(&flags),
    );
    for mode in MODES {
        assert!(stdout(&run(mode, &exe, &[])).contains("all checks passed"));
    }
}

#[test]
fn header_against_the_static_library() {
    // The constructor that sets the area offset must come along from the
    // archive: the inline CPU read depends on it.
    let exe = compile(
        Lang::C11,
        "tests/c/header_test.c",
        "header_static",
        &strs(&link_static()),
    );
    for mode in MODES {
        assert!(stdout(&run(mode, &exe, &[])).contains("all checks passed"));
    }
}

fn dlopen_test() -> PathBuf {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| compile(Lang::C11, "tests/c/dlopen_test.c", "dlopen_test", &["-ldl"]))
        .clone()
}

#[test]
fn dlopen_into_a_threaded_process() {
    let exe = dlopen_test();
    let lib = shared_lib().display().to_string();
    for mode in MODES {
        for scope in ["global", "local"] {
            let out = run(mode, &exe, &["threads", &lib, scope]);
            assert!(stdout(&out).contains("threads: ok"));
        }
    }
}

#[test]
fn two_copies_in_one_process() {
    let exe = dlopen_test();
    let lib = shared_lib().display().to_string();
    // A copy under another name is a second object to the dynamic linker.
    let copy = out_dir().join("librestartable_copy.so");
    std::fs::copy(shared_lib(), &copy).expect("copy the shared library");
    let copy = copy.display().to_string();
    for mode in MODES {
        for scope in ["global", "local"] {
            let out = run(mode, &exe, &["copies", &lib, &copy, scope]);
            assert!(stdout(&out).contains(&format!("copies ({scope}): ok")));
        }
    }
}

#[test]
fn classic_registrant_coexists() {
    let exe = compile(
        Lang::C11,
        "tests/c/dlopen_test.c",
        "dlopen_classic",
        &["-DCLASSIC", "-rdynamic", "-ldl"],
    );
    let lib = shared_lib().display().to_string();
    for mode in MODES {
        let out = run(mode, &exe, &["classic", &lib]);
        assert!(stdout(&out).contains("classic: ok"));
    }
}

fn example() -> PathBuf {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| {
        compile(
            Lang::C11,
            "examples/c/percpu_counter.c",
            "percpu_counter",
            &strs(&link_shared()),
        )
    })
    .clone()
}

/// Asserts the example's output shows exact sums for `total` adds.
fn assert_exact(out: &str, total: u64) {
    let want = format!("sum {total} (expected {total})");
    assert_eq!(out.matches(&want).count(), 2, "inexact sums:\n{out}");
}

#[test]
fn c_example_counts_exactly() {
    let exe = example();
    for mode in MODES {
        let out = stdout(&run(mode, &exe, &["3", "100000"]));
        assert_exact(&out, 300_000);
        let owner = match expected(mode) {
            "libc" => "owner: libc",
            "library" => "owner: library",
            _ => "owner: none",
        };
        assert!(out.contains(owner), "{owner}?\n{out}");
    }
}

#[test]
fn c_example_under_valgrind() {
    // valgrind has no rseq: the library must find that out and fall back,
    // with no invalid access anywhere (fallback-path test).
    let Some(out) = run_under_valgrind(&example(), &["2", "2000"]) else {
        return;
    };
    let out = stdout(&out);
    assert_exact(&out, 4000);
    assert!(out.contains("owner: none"), "{out}");
}

/// `pkg-config args restartable` for an install in `prefix`, split into
/// words.
fn pkg_config(prefix: &Path, args: &[&str]) -> Vec<String> {
    let out = Command::new("pkg-config")
        .args(args)
        .arg("restartable")
        .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig"))
        .output()
        .expect("run pkg-config (CI installs it)");
    assert!(
        out.status.success(),
        "pkg-config {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .map(String::from)
        .collect()
}

#[test]
fn pkg_config_links_the_installed_shared_library() {
    // `make install` into a prefix, then the example built the way the
    // README builds it: pkg-config's flags and an rpath to the prefix.
    let prefix = out_dir().join("prefix");
    cbuild::install("install", &prefix, None);
    let version = pkg_config(&prefix, &["--modversion"]);
    assert_eq!(version, [env!("CARGO_PKG_VERSION")]);
    let lib = prefix.join("lib").display().to_string();
    let mut args = pkg_config(&prefix, &["--cflags", "--libs"]);
    assert_eq!(
        args,
        [
            format!("-I{}/include", prefix.display()),
            format!("-L{lib}"),
            "-lrestartable".into()
        ]
    );
    args.push(format!("-Wl,-rpath,{lib}"));
    let exe = compile(
        Lang::C11,
        "examples/c/percpu_counter.c",
        "percpu_counter_pc",
        &strs(&args),
    );
    // The installed copy is the one loaded, through the SONAME link and
    // the rpath alone.
    let mut cmd = cbuild::command_in(Mode::Libc, &exe, &["2", "1000"]);
    cmd.env_remove("LD_LIBRARY_PATH");
    let trace = cmd
        .env("LD_TRACE_LOADED_OBJECTS", "1")
        .output()
        .expect("run the loader's trace");
    let trace = stdout(&trace);
    let want = format!("librestartable.so.0 => {lib}/librestartable.so.0 ");
    assert!(trace.contains(&want), "{want}?\n{trace}");
    let mut cmd = cbuild::command_in(Mode::Libc, &exe, &["2", "1000"]);
    cmd.env_remove("LD_LIBRARY_PATH");
    let out = stdout(&cbuild::run_ok(cmd, "the example from the prefix"));
    assert_exact(&out, 2000);
}

#[test]
fn make_install_layout_with_prefix_and_destdir() {
    // A package build: PREFIX is what the files say, DESTDIR only where
    // they are written.
    let stage = out_dir().join("stage");
    cbuild::install("install", Path::new("/opt/restartable"), Some(&stage));
    let lib = stage.join("opt/restartable/lib");
    let version = env!("CARGO_PKG_VERSION");
    let real = format!("librestartable.so.{version}");
    let mut files: Vec<_> = walk(&stage)
        .into_iter()
        .filter(|p| !p.is_dir() || p.is_symlink())
        .map(|p| p.strip_prefix(&stage).unwrap().display().to_string())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "opt/restartable/include/restartable.h".to_string(),
            "opt/restartable/lib/librestartable.a".into(),
            "opt/restartable/lib/librestartable.so".into(),
            "opt/restartable/lib/librestartable.so.0".into(),
            format!("opt/restartable/lib/{real}"),
            "opt/restartable/lib/pkgconfig/restartable.pc".into(),
        ]
    );
    assert!(lib.join(&real).is_file());
    for link in ["librestartable.so.0", "librestartable.so"] {
        let target = std::fs::read_link(lib.join(link))
            .unwrap_or_else(|e| panic!("{link} is not a symbolic link: {e}"));
        assert_eq!(target, Path::new(&real), "{link}");
    }
    let bytes = std::fs::read(lib.join(&real)).unwrap();
    assert_eq!(Elf(&bytes).soname().as_deref(), Some("librestartable.so.0"));
    assert!(lib.join("librestartable.a").is_file());
    let header = std::fs::read(stage.join("opt/restartable/include/restartable.h")).unwrap();
    assert_eq!(
        header,
        std::fs::read(root().join("include/restartable.h")).unwrap()
    );
    let pc = std::fs::read_to_string(lib.join("pkgconfig/restartable.pc")).unwrap();
    for line in [
        "prefix=/opt/restartable",
        "libdir=${prefix}/lib",
        "includedir=${prefix}/include",
        &format!("Version: {version}"),
    ] {
        assert!(pc.lines().any(|l| l == line), "{line} missing:\n{pc}");
    }
    assert!(!pc.contains('@'), "an unsubstituted variable:\n{pc}");
    let private = pc.lines().find(|l| l.starts_with("Libs.private:")).unwrap();
    assert!(
        !private.contains("-lgcc_s"),
        "a fully static link cannot use libgcc_s: {private}"
    );

    // `make uninstall` takes every file away again.
    let dir = cbuild::lib_dir();
    let out = cbuild::make_output(
        dir.parent().unwrap(),
        &dir.file_name().unwrap().to_string_lossy(),
        &[
            "uninstall",
            "PREFIX=/opt/restartable",
            &format!("DESTDIR={}", stage.display()),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let left: Vec<_> = walk(&stage)
        .into_iter()
        .filter(|p| !p.is_dir() || p.is_symlink())
        .collect();
    assert!(left.is_empty(), "left after make uninstall: {left:?}");
}

/// Every path below `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() && !path.is_symlink() {
            all.extend(walk(&path));
        }
        all.push(path);
    }
    all
}

#[test]
fn make_refuses_an_unknown_profile_and_an_install_before_the_build() {
    let empty = out_dir().join("never-built");
    let out = cbuild::make_output(&empty, "fast", &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("PROFILE=fast: use PROFILE=release or PROFILE=debug"),
        "{err}"
    );
    let prefix = format!("PREFIX={}", out_dir().join("never-installed").display());
    for target in ["install", "install-shared", "install-static"] {
        let out = cbuild::make_output(&empty, "release", &[target, &prefix]);
        assert!(!out.status.success(), "{target} without a build succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("is missing: run 'make'"), "{target}: {err}");
    }
    assert!(!out_dir().join("never-installed").exists());
}

#[test]
fn tls_budget_exports_and_nodelete() {
    let bytes = std::fs::read(shared_lib()).expect("read librestartable.so");
    let elf = Elf(&bytes);
    elf.check_header();

    // Static TLS budget: what `dlopen` must find in glibc's surplus.
    let tls: Vec<_> = elf
        .segments()
        .into_iter()
        .filter(|p| p.0 == PT_TLS)
        .collect();
    assert_eq!(tls.len(), 1, "one PT_TLS segment");
    let (_, _, filesz, memsz, align) = tls[0];
    println!("PT_TLS: {filesz} bytes initialised, {memsz} bytes in all, align {align}");
    assert!(memsz <= 256, "TLS segment of {memsz} bytes exceeds 256");
    // 64: the area's alignment for an extensible registration (Linux 7.x
    // asks for 64); glibc refuses static TLS aligned to more than 64 in a
    // `dlopen`ed object.
    assert!(align <= 64, "TLS alignment {align} exceeds 64");
    let mut tls_syms: Vec<_> = elf
        .symbols(SHT_SYMTAB)
        .into_iter()
        .filter(|s| s.kind == STT_TLS)
        .collect();
    tls_syms.sort_by_key(|s| s.value);
    for s in &tls_syms {
        println!("  TLS +{:<3} {:>3} bytes  {}", s.value, s.size, s.name);
    }

    // The shared area and refcount: exported, weak, TLS, defined.
    let dynsym = elf.symbols(SHT_DYNSYM);
    for name in ["__rseq_abi", "__rseq_refcount"] {
        let s = dynsym
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("{name} is not exported"));
        assert_eq!(s.kind, STT_TLS, "{name} is not TLS");
        assert_eq!(s.bind, STB_WEAK, "{name} is not weak");
        assert_ne!(s.shndx, 0, "{name} is not defined here");
    }
    // 64 bytes: room for an extensible registration (the kernel's feature
    // size, 33 on Linux 7.x) at the 64-byte alignment it asks for.
    assert_eq!(
        dynsym.iter().find(|s| s.name == "__rseq_abi").unwrap().size,
        restartable::abi::AREA_CAPACITY as u64
    );

    // Every other export carries the prefix; nothing collides with glibc's
    // `__rseq_*` or librseq's `rseq_*` names.
    let exported: Vec<_> = dynsym
        .iter()
        .filter(|s| s.shndx != 0 && (s.bind == STB_GLOBAL || s.bind == STB_WEAK))
        .map(|s| s.name.as_str())
        .collect();
    for name in &exported {
        assert!(
            name.starts_with("restartable_")
                || matches!(*name, "rseq_location" | "__rseq_abi" | "__rseq_refcount"),
            "unexpected export {name}"
        );
    }
    for name in [
        "rseq_location",
        "restartable_area_offset",
        "restartable_cpu",
        "restartable_cpu_slow",
        "restartable_register",
        "restartable_unregister",
        "restartable_owner",
        "restartable_thread_state",
        "restartable_prepare_unload",
        "restartable_load_add_store",
        "restartable_load_cbne_store",
        "restartable_percpu_counter_new",
        "restartable_percpu_counter_add",
        "restartable_percpu_counter_sum",
        "restartable_percpu_counter_reset",
        "restartable_percpu_counter_free",
    ] {
        assert!(exported.contains(&name), "{name} is not exported");
    }

    // `-z nodelete`: dlclose never unmaps the area, the sections or the
    // thread-exit destructor.
    assert_ne!(elf.flags_1() & DF_1_NODELETE, 0, "DF_1_NODELETE not set");
}

#[test]
fn header_declares_every_export() {
    // Each exported function appears in the header, and each function the
    // header declares is exported (or is one of its inline functions).
    let header = std::fs::read_to_string(root().join("include/restartable.h")).unwrap();
    let bytes = std::fs::read(shared_lib()).unwrap();
    let elf = Elf(&bytes);
    let exported: Vec<_> = elf
        .symbols(SHT_DYNSYM)
        .into_iter()
        .filter(|s| s.shndx != 0 && s.name.starts_with("restartable_"))
        .map(|s| s.name)
        .collect();
    for name in &exported {
        assert!(
            header.contains(&format!("{name}(")) || header.contains(&format!("{name};")),
            "{name} is exported but not in the header"
        );
    }
}

/// `tests/c/contract_test.c` built as C11 and as C++17 against the shared
/// library.
fn contract_tests() -> &'static [PathBuf] {
    static EXES: OnceLock<Vec<PathBuf>> = OnceLock::new();
    EXES.get_or_init(|| {
        let link = link_shared();
        [(Lang::C11, "contract_c11"), (Lang::Cxx17, "contract_cxx17")]
            .into_iter()
            .map(|(lang, name)| compile(lang, "tests/c/contract_test.c", name, &strs(&link)))
            .collect()
    })
}

#[test]
fn inline_operations_refuse_a_negative_cpu_and_stay_exact() {
    // A negative CPU is what an area reads before registration, without
    // rseq, or after a failed registration: the inline operations refuse
    // it (-EINVAL, memory untouched) instead of committing a plain store,
    // and two threads on one CPU updating one word end exact.
    for exe in contract_tests() {
        for mode in ALL_MODES {
            let out = stdout(&run(mode, exe, &["negative", "4000000"]));
            assert!(out.contains("negative: ok"), "{mode:?}:\n{out}");
        }
    }
    // valgrind: glibc's registration failed there, and the area is inert.
    if let Some(out) = run_under_valgrind(&contract_tests()[0], &["negative", "20000"]) {
        assert!(stdout(&out).contains("negative: ok"), "{}", stdout(&out));
    }
}

#[test]
fn mm_cid_sections_never_commit_unregistered() {
    for exe in contract_tests() {
        for mode in ALL_MODES {
            let out = stdout(&run(mode, exe, &["mm_cid"]));
            assert!(out.contains("mm_cid: ok"), "{mode:?}:\n{out}");
        }
    }
}

#[test]
fn every_inline_form_stays_exact() {
    // Every inline operation of the header, by CPU and by mm_cid, the
    // release forms too, from three threads on two CPUs: each count
    // exact, each list node kept, each copy whole; in every mode (the
    // fallbacks where rseq is not used).
    for exe in contract_tests() {
        for mode in ALL_MODES {
            let out = stdout(&run(mode, exe, &["forms", "20000"]));
            assert!(
                out.contains("forms by cpu: 60000 each, exact"),
                "{mode:?}:\n{out}"
            );
            assert!(
                out.contains("forms by mm_cid: 60000 each, exact"),
                "{mode:?}:\n{out}"
            );
            assert!(out.contains("forms: ok"), "{mode:?}:\n{out}");
        }
    }
}

#[test]
fn area_offset_is_read_again_after_it_changes() {
    // Built with -O2: a `const` declaration lets the compiler fold the
    // second read into the first.
    for exe in contract_tests() {
        for mode in ALL_MODES {
            let out = stdout(&run(mode, exe, &["offset"]));
            let want = if expected(mode) == "library" {
                "offset: ok"
            } else {
                "never changes the offset"
            };
            assert!(out.contains(want), "{mode:?}:\n{out}");
        }
    }
}

/// The critical-section tables of the ELF file at `path`: the sizes of
/// `__rseq_cs` (32 bytes a descriptor), `__rseq_cs_ptr_array` (8 bytes a
/// pointer) and `__rseq_exit_point_array` (16 bytes an exit point), 0 for
/// a section that is absent.
fn section_tables(path: &Path) -> (u64, u64, u64) {
    let bytes = std::fs::read(path).expect("read the executable");
    let elf = Elf(&bytes);
    elf.check_header();
    let size = |name| elf.section_named(name).map_or(0, |(_, size)| size);
    (
        size("__rseq_cs"),
        size("__rseq_cs_ptr_array"),
        size("__rseq_exit_point_array"),
    )
}

#[test]
fn section_tables_survive_gc_sections() {
    // Each descriptor stays listed in the pointer array, and the exit
    // points stay, when the linker drops unreferenced sections.
    let mut flags: Vec<String> = [
        "-ffunction-sections",
        "-fdata-sections",
        "-Wl,--gc-sections",
    ]
    .map(String::from)
    .to_vec();
    flags.extend(link_shared());
    let mut builds = vec![
        (None, Lang::C11, "header_gc_c11"),
        (None, Lang::Cxx17, "header_gc_cxx17"),
    ];
    if installed("clang") && installed("clang++") {
        builds.push((Some("clang"), Lang::C11, "header_gc_clang_c11"));
        builds.push((Some("clang++"), Lang::Cxx17, "header_gc_clang_cxx17"));
    }
    for (compiler, lang, name) in builds {
        let exe = compile_with(compiler, lang, "tests/c/header_test.c", name, &strs(&flags));
        let (descriptors, pointers, exits) = section_tables(&exe);
        println!("{name}: __rseq_cs {descriptors}, pointers {pointers}, exit points {exits} bytes");
        assert!(
            descriptors >= 32 * 3,
            "{name}: {descriptors} bytes of descriptors"
        );
        assert_eq!(
            pointers,
            descriptors / 32 * 8,
            "{name}: __rseq_cs_ptr_array"
        );
        assert!(
            exits >= descriptors / 32 * 16,
            "{name}: __rseq_exit_point_array"
        );
        for mode in MODES {
            assert!(stdout(&run(mode, &exe, &[])).contains("all checks passed"));
        }
    }
}

#[test]
fn inline_operations_stay_inline_with_many_callers() {
    // Every inline operation called from 16 functions each: GCC, left to
    // its heuristics, made one out-of-line copy of most of them there (and
    // of the CPU reads at -Os), and each use a call. A function of the
    // header defined in the object is such a copy.
    if !cfg!(target_arch = "x86_64") && !cfg!(target_arch = "aarch64") {
        return; // no inline forms: every operation is a call
    }
    let cc = std::env::var("CC").unwrap_or("cc".into());
    let cxx = std::env::var("CXX").unwrap_or("c++".into());
    let mut builds = vec![(cc.clone(), "-std=c11"), (cxx.clone(), "-std=c++17")];
    for (clang, std) in [("clang", "-std=c11"), ("clang++", "-std=c++17")] {
        if installed(clang) && ![&cc, &cxx].contains(&&clang.to_string()) {
            builds.push((clang.to_string(), std));
        }
    }
    // One thread per compiler and language: 16 builds of a large unit.
    std::thread::scope(|scope| {
        for (compiler, std) in &builds {
            scope.spawn(move || {
                for opt in ["-O1", "-O2", "-O3", "-Os"] {
                    check_inline_object(compiler, std, opt);
                }
            });
        }
    });
}

/// Builds `tests/c/inline_test.c` with `compiler` in language `std` at
/// `opt` and fails on any function of the header defined in the object.
fn check_inline_object(compiler: &str, std: &str, opt: &str) {
    let name = format!("inline_{}{std}{opt}.o", compiler.replace('+', "x"));
    let out = out_dir().join(&name);
    let mut cmd = Command::new(compiler);
    if std.contains("c++") {
        cmd.args(["-x", "c++"]);
    }
    cmd.args([std, opt])
        .args(WARNINGS)
        .args(includes())
        .arg("-c")
        .arg(root().join("tests/c/inline_test.c"))
        .arg("-o")
        .arg(&out);
    run_compiler(&mut cmd, compiler, &name);
    let bytes = std::fs::read(&out).expect("read the object");
    let elf = Elf(&bytes);
    elf.check_header();
    let symbols = elf.symbols(SHT_SYMTAB);
    assert!(
        symbols.iter().any(|s| s.name.contains("cbne_0")),
        "{name}: the callers are missing from the symbol table"
    );
    let copies: Vec<&str> = symbols
        .iter()
        .filter(|s| s.kind == STT_FUNC && s.shndx != 0 && s.name.contains("restartable_"))
        .map(|s| s.name.as_str())
        .collect();
    assert!(copies.is_empty(), "{name}: out-of-line copies {copies:?}");
}

/// Compiles C++ `source` into the object `out_dir()/name.o` with
/// `compiler` at optimisation level `opt`.
fn cxx_object(compiler: &str, source: &str, opt: &str, name: &str) -> PathBuf {
    let out = out_dir().join(format!("{name}.o"));
    let mut cmd = Command::new(compiler);
    cmd.args(["-std=c++17", opt])
        .args(WARNINGS)
        .args(includes())
        .arg("-c")
        .arg(root().join(source))
        .arg("-o")
        .arg(&out);
    run_compiler(&mut cmd, compiler, source);
    out
}

#[test]
fn cxx_inline_functions_with_sections_link_from_two_units() {
    // A header-only C++ wrapper whose inline functions and templates hold
    // sections, used from two translation units: each unit emits its copy
    // in a COMDAT group, and the linker keeps one group and drops the
    // other. The sections a copy pushes (descriptor, pointer, exit points,
    // abort handler) must belong to its group and go with it.
    let mut compilers = vec![std::env::var("CXX").unwrap_or("c++".into())];
    if compilers[0] != "clang++" && installed("clang++") {
        compilers.push("clang++".into());
    }
    for (n, cxx) in compilers.iter().enumerate() {
        for (opt_a, opt_b) in [
            ("-O0", "-O0"),
            ("-O2", "-O2"),
            ("-O0", "-O2"),
            ("-O2", "-O0"),
        ] {
            let tag = format!("cxx_wrapper_{n}{opt_a}{opt_b}");
            let a = cxx_object(cxx, "tests/c/cxx_wrapper_a.cpp", opt_a, &format!("{tag}_a"));
            let b = cxx_object(cxx, "tests/c/cxx_wrapper_b.cpp", opt_b, &format!("{tag}_b"));
            let exe = out_dir().join(&tag);
            let mut cmd = Command::new(cxx);
            cmd.arg(&a)
                .arg(&b)
                .args(link_shared())
                .arg("-pthread")
                .arg("-o")
                .arg(&exe);
            run_compiler(&mut cmd, cxx, &format!("linking {tag}"));
            let (descriptors, pointers, exits) = section_tables(&exe);
            assert!(
                descriptors >= 32 * 3,
                "{tag}: {descriptors} bytes of descriptors"
            );
            assert_eq!(
                pointers,
                descriptors / 32 * 8,
                "{tag}: one pointer per descriptor"
            );
            assert!(exits >= descriptors / 32 * 16, "{tag}: exit points");
            for mode in MODES {
                let out = stdout(&run(mode, &exe, &[]));
                assert!(out.contains("cxx_wrapper: ok"), "{tag} in {mode:?}:\n{out}");
            }
        }
    }
}

/// The reason each mode's report gives, as `contract_test report` prints it.
fn report_reason(mode: Mode) -> &'static str {
    match (expected(mode), mode) {
        ("libc", _) => "registered every thread's area",
        ("library", Mode::Library) => "GLIBC_TUNABLES contains glibc.pthread.rseq=0",
        ("library", _) => "restartable registers its own __rseq_abi",
        (_, Mode::Disabled) => "RESTARTABLE_DISABLE is set",
        (_, Mode::Blocked) => "ENOSYS from a seccomp filter (Seccomp: 2",
        _ => "ENOSYS",
    }
}

#[test]
fn report_into_a_c_buffer_gives_the_reason_in_every_mode() {
    for exe in contract_tests() {
        for mode in ALL_MODES {
            let out = stdout(&run(mode, exe, &["report"]));
            assert!(out.contains("report: ok"), "{mode:?}:\n{out}");
            let reason = report_reason(mode);
            assert!(out.contains(reason), "{mode:?}: no {reason:?} in\n{out}");
            println!("{mode:?}: {reason}");
        }
    }
}

#[test]
fn report_under_valgrind_names_valgrind() {
    let Some(out) = run_under_valgrind(&contract_tests()[0], &["report"]) else {
        return;
    };
    let out = stdout(&out);
    assert!(out.contains("report: ok"), "{out}");
    assert!(out.contains("ENOSYS under valgrind"), "{out}");
}
