//! The `ctrflow` binary: parse arguments, run, map the outcome to an exit code.

use clap::Parser;

#[global_allocator]
static GLOBAL: ctrflow::Allocator = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = ctrflow::cli::Cli::parse();
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| cli.log.clone());
    ctrflow::logs::init(&filter, cli.log_format);
    match ctrflow::cli::main(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            if e.downcast_ref::<ctrflow::cli::Invalid>().is_some() {
                eprint!("error: {e}");
            } else {
                eprintln!("error: {e:#}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}
