//! `ondol`: see `ondol --help`, README.md and ARCHITECTURE.md.

fn main() -> std::process::ExitCode {
    ondol::main()
}
