/// Building this crate has an undeclared dependency on the `bpf-linker` binary: rebuild when
/// it changes (e.g. `cargo xtask setup` rebuilt it for a new nightly).
fn main() {
    match which::which("bpf-linker") {
        Ok(path) => println!("cargo:rerun-if-changed={}", path.display()),
        Err(err) => println!("cargo:warning=bpf-linker not found ({err}); run `cargo xtask setup`"),
    }
}
