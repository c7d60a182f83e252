//! The `ondol` binary, built inside the end-to-end test package so its tests
//! can spawn it (see Cargo.toml).

fn main() -> std::process::ExitCode {
    ondol::main()
}
