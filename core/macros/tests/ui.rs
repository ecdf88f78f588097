//! Compile-time behavior of `#[hardlight::rpc]`: misuse fails with a clear
//! message on the offending tokens (the `.stderr` files are the expected
//! compiler output; regenerate with `TRYBUILD=overwrite` and read them), and
//! correct use compiles without warnings or missing docs.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
