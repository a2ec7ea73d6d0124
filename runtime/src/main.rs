//! The `ctrflow` binary: parse arguments, run, map the outcome to an exit code.

use clap::Parser;

#[global_allocator]
static GLOBAL: ctrflow::Allocator = ctrflow::Allocator;

fn main() -> std::process::ExitCode {
    no_transparent_huge_pages();
    ctrflow::connectors::sqlite::memory::configure();
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

/// Keeps the kernel from backing this process's memory with 2 MiB transparent huge pages.
/// The allocator asks for them (`madvise`), and a huge page is resident whole however
/// little of it is in use: measured on the throughput benchmark's graph (20,000 records),
/// peak RSS 313 MB with them and 247 MB without, at the same CPU time (docs/performance.md).
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes plain integer arguments and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}
