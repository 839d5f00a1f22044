//! The `registry-prober` binary: everything it does is in the library's `cli`.

fn main() -> std::process::ExitCode {
    registry_prober::main()
}
