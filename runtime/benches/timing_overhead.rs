//! The cost of timing every hop: the demo pipeline (`pipelines/local-demo.toml`) run with
//! `[timing] enabled = true` and `false`, alternating, in the same process and run.
//!
//! `cargo bench -p ctrflow --bench timing_overhead` (or `cargo xtask bench`). Env:
//! `TIMING_BENCH_RECORDS` (default 20000 per run), `TIMING_BENCH_ROUNDS` (default 5).
//! Prints the median records/s of each and the median on/off throughput ratio of the rounds
//! (1.0 = timing is free; 0.97 = it costs 3%).
//!
//! With `[timing] enabled = false` the runtime reads no clock per record (only a few per
//! batch that do other work, such as `linger`), so "off" is the runtime without hop timing
//! and the ratio is the whole cost of timing (see docs/performance.md).

use std::path::{Path, PathBuf};

#[global_allocator]
static GLOBAL: ctrflow::Allocator = ctrflow::Allocator;
use std::time::Instant;

use ctrflow::flow::Shutdown;
use ctrflow::monitor::RunOptions;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let (p, d) = (e.path(), to.join(e.file_name()));
        if p.is_dir() { copy_dir(&p, &d) } else { std::fs::copy(&p, &d).map(|_| ()).unwrap() }
    }
}

fn run(pipeline: &Path, out: &Path) -> f64 {
    let _ = std::fs::remove_dir_all(out);
    let p = ctrflow::cli::build(pipeline).expect("the demo builds");
    let started = Instant::now();
    let outcome = ctrflow::topology::run(p, Shutdown::default(), RunOptions::default()).expect("the demo runs");
    let secs = started.elapsed().as_secs_f64();
    let read: u64 = outcome.report.nodes.iter().filter(|n| n.kind == "source").map(|n| n.records_in).sum();
    read as f64 / secs
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; a filter that is not ours means "not this bench".
    if std::env::args().skip(1).any(|a| !a.starts_with('-') && !"timing_overhead".contains(a.as_str())) {
        return;
    }
    let records: u64 = std::env::var("TIMING_BENCH_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let rounds: usize = std::env::var("TIMING_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = std::env::temp_dir().join(format!("ctrflow-timing-bench-{}", std::process::id()));
    copy_dir(&root.join("pipelines"), &dir.join("pipelines"));
    let on = dir.join("pipelines/local-demo.toml");
    let off = dir.join("pipelines/local-demo-untimed.toml");
    let text = std::fs::read_to_string(&on).unwrap();
    std::fs::write(&off, format!("{text}\n[timing]\nenabled = false\n")).unwrap();
    // SAFETY: single-threaded here, before any pipeline thread exists.
    unsafe { std::env::set_var("DEMO_COUNT", records.to_string()) };
    let out = dir.join("out");

    run(&on, &out); // warm the plugin cache and the page cache
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        // Alternate which goes first, so drift on a shared machine hits both alike.
        if round % 2 == 0 {
            with.push(run(&on, &out));
            without.push(run(&off, &out));
        } else {
            without.push(run(&off, &out));
            with.push(run(&on, &out));
        }
    }
    let (a, b) = (median(with.clone()), median(without.clone()));
    // Each round's on/off ratio compares two runs made back to back, so drift between
    // rounds cancels; its median is the figure the target (within 3%) is stated for.
    let ratios: Vec<f64> = with.iter().zip(&without).map(|(on, off)| on / off).collect();
    let ratio = median(ratios.clone());
    println!("timing_overhead: demo pipeline, {records} records per run, {rounds} rounds");
    println!("  timing on : median {a:>9.0} records/s  (runs: {})", fmt(&with));
    println!("  timing off: median {b:>9.0} records/s  (runs: {})", fmt(&without));
    println!(
        "  on/off throughput ratio: median {ratio:.4} (rounds: {}); cost of timing {:+.2}%",
        ratios.iter().map(|r| format!("{r:.3}")).collect::<Vec<_>>().join(", "),
        (1.0 - ratio) * 100.0
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn fmt(v: &[f64]) -> String {
    v.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(", ")
}
