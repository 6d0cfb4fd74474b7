//! `tests/c/pool_test.c` (the per-CPU pool, `restartable_current_mm_cid`,
//! the registration report and the active-table swap through the C
//! interface) compiled as C and as C++, inline and out of line, against
//! the shared library this `cargo test` built, and run in every mode:
//! glibc-owned, library-owned, `RESTARTABLE_DISABLE=1`, rseq blocked.

mod common;

use common::cbuild::{self, link_shared, run, stdout, strs, Lang, Mode, ALL_MODES};

#[test]
fn pool_sections_and_swap_through_the_header() {
    let dir = cbuild::out_dir("c_pool");
    let link = link_shared();
    // Every mode for the C build; the C++ and out-of-line builds in one
    // mode with sections and one without.
    let some = [Mode::Libc, Mode::Disabled];
    for (lang, name, extra, modes) in [
        (Lang::C11, "pool_c11", None, &ALL_MODES[..]),
        (Lang::Cxx17, "pool_cxx17", None, &some[..]),
        (
            Lang::C11,
            "pool_c11_calls",
            Some("-DRESTARTABLE_NO_INLINE"),
            &some[..],
        ),
    ] {
        let mut flags: Vec<&str> = extra.into_iter().collect();
        flags.push("-pthread");
        flags.extend(strs(&link));
        let exe = cbuild::compile_to(None, lang, "tests/c/pool_test.c", &dir.join(name), &flags);
        for &mode in modes {
            let out = run(mode, &exe, &[]);
            let text = stdout(&out);
            assert!(
                text.contains("all checks passed"),
                "{name} in {mode:?}: {text}"
            );
            if name == "pool_c11" {
                println!("{mode:?}: {}", text.replace('\n', "; "));
            }
        }
    }
}
