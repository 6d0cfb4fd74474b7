//! The README's Rust examples work as pasted into a `src/main.rs`: each
//! one is a whole program with its own `fn main` (the crate's doctests
//! compile and run them as they stand, `ReadmeExamples` in `src/lib.rs`;
//! rustdoc adds no `main` to a block that has one).

/// The README's ```rust blocks.
fn rust_blocks(readme: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```rust") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), text) => {
                block.push_str(text);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(
        current.is_none(),
        "README.md: a ```rust block is not closed"
    );
    blocks
}

#[test]
fn every_rust_example_is_a_whole_program() {
    // Embedded at build time, so that the test also runs where the source
    // tree is absent (the aarch64 guest).
    let readme = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"));
    let blocks = rust_blocks(readme);
    assert!(!blocks.is_empty(), "README.md has no ```rust example");
    for block in &blocks {
        assert!(
            block.lines().any(|l| l.starts_with("fn main()")),
            "a README example has no `fn main()`, so it does not build as pasted:\n{block}"
        );
        assert!(
            !block.lines().any(|l| l.trim_start().starts_with("# ")),
            "a README example hides lines from the reader:\n{block}"
        );
    }
}
