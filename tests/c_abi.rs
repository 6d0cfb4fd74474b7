//! The C face: the header compiled as C11 and as C++ against the built
//! `librestartable.so`, the C test and example run, `dlopen` into a running
//! multi-threaded process (one copy or two, local or global), the C example
//! under valgrind (no rseq there: the fallback path), and the shared
//! object's static-TLS budget and exported symbols.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

/// `target/<profile>`, where cargo put `librestartable.so` for this run.
fn lib_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    assert!(
        dir.join("librestartable.so").exists(),
        "no librestartable.so in {dir:?}"
    );
    dir
}

fn out_dir() -> PathBuf {
    let dir = lib_dir().join("c-tests");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn compile(compiler: &str, extra: &[&str], source: &str, output: &str) -> PathBuf {
    let out = out_dir().join(output);
    let status = Command::new(compiler)
        .args(extra)
        .args(["-Wall", "-Wextra", "-Werror", "-O2", "-I"])
        .arg(root().join("include"))
        .arg(root().join(source))
        .arg("-L")
        .arg(lib_dir())
        .args(["-lrestartable", "-lpthread", "-ldl", "-o"])
        .arg(&out)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {compiler}: {e}"));
    assert!(status.success(), "{compiler} failed on {source}");
    out
}

fn run(program: &Path, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .env("LD_LIBRARY_PATH", lib_dir())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{program:?} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn owner_number() -> i32 {
    common::check_owner() as i32
}

#[test]
fn header_compiles_and_runs_as_c11_and_cpp() {
    for (compiler, flags, name) in [
        ("cc", &["-std=c11", "-pedantic"][..], "abi_test_c"),
        ("c++", &["-x", "c++", "-std=c++17"][..], "abi_test_cpp"),
    ] {
        let program = compile(compiler, flags, "tests/c/abi_test.c", name);
        let out = run(&program, &[]);
        assert!(out.contains(&format!("owner {}", owner_number())), "{out}");
    }
}

#[test]
fn classic_registrant_of_rseq_abi_coexists() {
    let program = compile(
        "cc",
        &["-std=c11"],
        "tests/c/classic_test.c",
        "classic_test",
    );
    let out = run(&program, &[]);
    let owner = owner_number();
    let state = if owner == 3 { 0 } else { 2 };
    assert!(
        out.contains(&format!("classic ok: owner {owner}, state {state}")),
        "{out}"
    );
}

#[test]
fn c_example_counts_exactly() {
    let program = compile(
        "cc",
        &["-std=c11"],
        "examples/c/percpu_counter.c",
        "percpu_counter",
    );
    let out = run(&program, &["4", "200000"]);
    assert!(out.contains("sums exact"), "{out}");
}

#[test]
fn c_example_runs_clean_under_valgrind() {
    if Command::new("valgrind").arg("--version").output().is_err() {
        eprintln!("valgrind is not installed: skipped (CI installs it)");
        return;
    }
    let program = compile(
        "cc",
        &["-std=c11"],
        "examples/c/percpu_counter.c",
        "percpu_counter_vg",
    );
    let output = Command::new("valgrind")
        .args(["--error-exitcode=1", "--quiet"])
        .arg(&program)
        .args(["2", "20000"])
        .env("LD_LIBRARY_PATH", lib_dir())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "valgrind: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // valgrind has no rseq: the library must have taken its fallbacks.
    assert!(
        stdout.contains("owner 3") && stdout.contains("sums exact"),
        "{stdout}"
    );
}

#[test]
fn dlopen_into_running_threads_one_copy_and_two() {
    let program = compile("cc", &["-std=c11"], "tests/c/dlopen_test.c", "dlopen_test");
    let lib = lib_dir().join("librestartable.so");
    let copy = out_dir().join("librestartable_copy.so");
    std::fs::copy(&lib, &copy).unwrap();
    let (lib, copy) = (lib.to_str().unwrap(), copy.to_str().unwrap());
    let owner = owner_number();
    for flags in ["local", "global"] {
        let out = run(&program, &[lib, flags]);
        assert!(out.contains(&format!("lib0 owner={owner}")), "{out}");
        let out = run(&program, &[lib, copy, flags]);
        let expected_copy_state = match (owner, flags) {
            (1, _) => "2222", // both copies borrow glibc's area
            // Two local copies: two different `__rseq_abi`; the second
            // finds the first registered (EINVAL) and falls back.
            (2, "local") => "3333",
            // Global: one `__rseq_abi`, one refcount, shared.
            (2, _) => "1111",
            _ => "0000",
        };
        assert!(
            out.contains(&format!("lib1 owner={owner} states={expected_copy_state}")),
            "{flags}: {out}"
        );
        assert!(out.contains("dlopen ok"), "{out}");
    }
}

/// The shared object's PT_TLS segment and dynamic symbols, read by hand.
#[test]
fn shared_object_fits_the_static_tls_budget_and_exports_weak_tls() {
    let bytes = std::fs::read(lib_dir().join("librestartable.so")).unwrap();
    let u16_at = |at: usize| u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap());
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    assert_eq!(&bytes[..4], b"\x7fELF");
    let (phoff, phentsize, phnum) = (
        u64_at(0x20) as usize,
        u16_at(0x36) as usize,
        u16_at(0x38) as usize,
    );
    let tls = (0..phnum)
        .map(|i| phoff + i * phentsize)
        .find(|&ph| u32_at(ph) == libc::PT_TLS)
        .expect("no PT_TLS segment");
    let (memsz, align) = (u64_at(tls + 40), u64_at(tls + 48));
    eprintln!("PT_TLS: {memsz} bytes, alignment {align}");
    assert!(memsz <= 256, "TLS segment of {memsz} bytes exceeds 256");
    assert!(align <= 32, "TLS alignment {align} exceeds 32");

    // .dynsym and its string table, from the section headers.
    let (shoff, shentsize, shnum) = (
        u64_at(0x28) as usize,
        u16_at(0x3a) as usize,
        u16_at(0x3c) as usize,
    );
    let dynsym = (0..shnum)
        .map(|i| shoff + i * shentsize)
        .find(|&sh| u32_at(sh + 4) == 11) // SHT_DYNSYM
        .expect("no .dynsym");
    let strtab = shoff + u32_at(dynsym + 40) as usize * shentsize;
    let (sym_off, sym_size) = (u64_at(dynsym + 24) as usize, u64_at(dynsym + 32) as usize);
    let str_off = u64_at(strtab + 24) as usize;
    let mut found = Vec::new();
    for sym in (sym_off..sym_off + sym_size).step_by(24) {
        let name_at = str_off + u32_at(sym) as usize;
        let end = bytes[name_at..].iter().position(|&b| b == 0).unwrap();
        let name = std::str::from_utf8(&bytes[name_at..name_at + end]).unwrap();
        let info = bytes[sym + 4];
        let (bind, kind) = (info >> 4, info & 0xf);
        if name == "__rseq_abi" || name == "__rseq_refcount" {
            assert_eq!(kind, 6, "{name} is not STT_TLS");
            assert_eq!(bind, 2, "{name} is not STB_WEAK");
            assert_ne!(u16_at(sym + 6), 0, "{name} is undefined");
            found.push(name.to_string());
        }
        assert!(
            !name.starts_with("rseq_") || name == "rseq_location",
            "{name} could collide with librseq"
        );
    }
    found.sort();
    assert_eq!(found, ["__rseq_abi", "__rseq_refcount"]);
}
