//! `syncway`: the command line of [`syncway_cli`].

fn main() -> std::process::ExitCode {
    syncway_cli::main()
}
