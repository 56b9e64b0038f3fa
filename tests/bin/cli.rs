//! `syncway` (its command line, [`syncway_cli`]), as a binary of the test
//! package, so that the tests run it as a user would.

fn main() -> std::process::ExitCode {
    syncway_cli::main()
}
