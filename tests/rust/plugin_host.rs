//! Built by `tests/field.rs` with `rustc`, with or without the link flags
//! that export `__rseq_abi` and `__rseq_refcount`: loads the classic plugin
//! (`tests/c/field/classic_plugin.c`) and checks what the library says and
//! what the plugin gets.
//!
//!     plugin_host PLUGIN exported|private

use std::ffi::CString;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let exported = match args.get(2).map(String::as_str) {
        Some("exported") => true,
        Some("private") => false,
        _ => panic!("usage: plugin_host PLUGIN exported|private"),
    };
    let library = std::env::var("RESTARTABLE_TEST_EXPECT").as_deref() == Ok("library");
    assert!(restartable::current_cpu() < restartable::possible_cpus() as u32);
    assert_eq!(restartable::area_is_exported(), library && exported);
    let path = CString::new(args[1].as_str()).unwrap();
    // SAFETY: a valid path; the plugin's constructors do nothing.
    let plugin = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    assert!(!plugin.is_null(), "dlopen of the plugin failed");
    // SAFETY: a live handle and a valid C string.
    let register = unsafe { libc::dlsym(plugin, c"plugin_register_uncounted".as_ptr()) };
    assert!(!register.is_null());
    // SAFETY: the plugin defines `int plugin_register_uncounted(void)`.
    let register: extern "C" fn() -> i32 = unsafe { std::mem::transmute(register) };
    let errno = register();
    if !library {
        println!("plugin_host: not library-owned (errno {errno})");
        return;
    }
    let len = restartable::registration_len();
    if exported && len > 32 {
        // The library registered the extensible length (Linux 7.x): the
        // kernel answers a 32-byte registration of the same area EINVAL
        // (its EBUSY needs the same length); `RESTARTABLE_CLASSIC_LENGTH=1`
        // is for processes with such plugins.
        assert_eq!(errno, libc::EINVAL, "{len}-byte registration in place");
        println!("plugin_host: the library registered {len} bytes: the uncounted plugin got EINVAL");
    } else if exported {
        assert_eq!(errno, libc::EBUSY, "the plugin registers the very same area");
    } else {
        assert_eq!(errno, libc::EINVAL, "the plugin's own area is another one");
    }
    assert!(restartable::is_available());
    println!("plugin_host: ok (exported: {exported})");
}
