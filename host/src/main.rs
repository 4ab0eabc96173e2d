//! The `imsflow` command line. All of it lives in `cli/`: the only place that
//! knows clap, terminals and exit codes.
mod cli;

fn main() -> std::process::ExitCode {
    imsflow::tune_allocator();
    cli::main()
}
