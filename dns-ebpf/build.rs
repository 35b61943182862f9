/// Building this crate has an undeclared dependency on the `bpf-linker` binary: rebuild when
/// it changes (e.g. `cargo xtask setup` rebuilt it for a new nightly).
///
/// The program reads names and answers 8 octets at a time from unaligned offsets: without
/// `allows-misaligned-mem-access` LLVM splits every such load into eight byte loads. The
/// kernel accepts unaligned packet and map accesses on architectures with efficient
/// unaligned access (x86-64, arm64, ...); the verifier only insists on alignment elsewhere.
fn main() {
    match which::which("bpf-linker") {
        Ok(path) => println!("cargo:rerun-if-changed={}", path.display()),
        Err(err) => println!("cargo:warning=bpf-linker not found ({err}); run `cargo xtask setup`"),
    }
    println!("cargo:rustc-link-arg=--cpu-features=+allows-misaligned-mem-access");
}
