//! The `ctrflow` binary: parse arguments, run, map the outcome to an exit code.

use clap::Parser;

#[global_allocator]
static GLOBAL: ctrflow::Allocator = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = ctrflow::cli::Cli::parse();
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| cli.log.clone());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr);
    match cli.log_format {
        ctrflow::cli::LogFormat::Text => logs.with_target(false).init(),
        // The span carries the node's key (`"span":{"node":"sinks.db"}`); the target, the
        // module, is what `RUST_LOG` filters by.
        ctrflow::cli::LogFormat::Json => logs.json().with_current_span(true).with_span_list(false).init(),
    }
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
