//! What tapping costs the pipeline: the demo pipeline (`pipelines/local-demo.toml`) with its
//! admin endpoint on, run three ways, alternating, in the same process and run:
//!
//! - `untapped`: nobody taps (the pipeline pays one atomic load per batch and output);
//! - `tap read`: a client taps `redact` and reads every line as fast as it can (the
//!   endpoint's thread serializes each record it gets: CPU the pipeline shares);
//! - `tap stuck`: a client taps `redact` and never reads: its buffer fills and the tap
//!   drops from then on, without the pipeline waiting.
//!
//! `cargo bench -p ctrflow --bench tap_overhead`. Env: `TAP_BENCH_RECORDS` (default 20000
//! per run), `TAP_BENCH_ROUNDS` (default 5). Prints the median records/s of each, and each
//! tapped way's throughput against `untapped` measured in the same rounds.

#[global_allocator]
static GLOBAL: ctrflow::Allocator = ctrflow::Allocator;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ctrflow::flow::Shutdown;
use ctrflow::monitor::RunOptions;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let (p, d) = (e.path(), to.join(e.file_name()));
        if p.is_dir() { copy_dir(&p, &d) } else { std::fs::copy(&p, &d).map(|_| ()).unwrap() }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Tap {
    None,
    Read,
    Stuck,
}

/// Opens a tap on `redact` once the endpoint answers; a reading tap drains on its thread.
fn tap(port: u16, how: Tap, done: Arc<AtomicBool>) -> Option<std::thread::JoinHandle<u64>> {
    if how == Tap::None {
        return None;
    }
    Some(std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut s = loop {
            match std::net::TcpStream::connect(("127.0.0.1", port)) {
                Ok(s) => break s,
                Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => panic!("the admin endpoint did not answer: {e}"),
            }
        };
        write!(s, "GET /tap?node=redact HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut buf = vec![0u8; 1 << 16];
        let mut total = 0u64;
        if how == Tap::Stuck {
            // Read (part of) the response's first bytes, then nothing until the run is over.
            let _ = s.read(&mut buf);
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
            }
            return 0;
        }
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        total
    }))
}

fn run(dir: &Path, how: Tap) -> f64 {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let text = std::fs::read_to_string(dir.join("pipelines/local-demo.toml")).unwrap();
    let text = text.replacen("[runtime]\n", &format!("[runtime]\nadmin_addr = \"127.0.0.1:{port}\"\n"), 1);
    let pipeline = dir.join("pipelines/tap-bench.toml");
    std::fs::write(&pipeline, text).unwrap();
    let _ = std::fs::remove_dir_all(dir.join("out"));
    let p = ctrflow::cli::build(&pipeline).expect("the demo builds");
    let done = Arc::new(AtomicBool::new(false));
    let client = tap(port, how, done.clone());
    let outcome = ctrflow::topology::run(p, Shutdown::default(), RunOptions::default()).expect("the demo runs");
    done.store(true, Ordering::Relaxed);
    if let Some(c) = client {
        let _ = c.join();
    }
    // From the pipeline's start to the end of its drain: the report is taken before the
    // endpoint gives tap clients their moment to finish, which is not the pipeline's time.
    let read: u64 = outcome.report.nodes.iter().filter(|n| n.kind == "source").map(|n| n.records_in).sum();
    read as f64 / outcome.report.elapsed_s
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; a filter that is not ours means "not this bench".
    if std::env::args().skip(1).any(|a| !a.starts_with('-') && !"tap_overhead".contains(a.as_str())) {
        return;
    }
    let records: u64 = std::env::var("TAP_BENCH_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let rounds: usize = std::env::var("TAP_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = std::env::temp_dir().join(format!("ctrflow-tap-bench-{}", std::process::id()));
    copy_dir(&root.join("pipelines"), &dir.join("pipelines"));
    // SAFETY: single-threaded here, before any pipeline thread exists.
    unsafe { std::env::set_var("DEMO_COUNT", records.to_string()) };

    run(&dir, Tap::None); // warm the plugin cache and the page cache
    let ways = [(Tap::None, "untapped "), (Tap::Read, "tap read "), (Tap::Stuck, "tap stuck")];
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); ways.len()];
    for round in 0..rounds {
        // Rotate which goes first, so drift on a shared machine hits all alike.
        for i in 0..ways.len() {
            let w = (round + i) % ways.len();
            results[w].push(run(&dir, ways[w].0));
        }
    }
    println!("tap_overhead: demo pipeline, {records} records per run, {rounds} rounds");
    let base = median(results[0].clone());
    for ((_, name), r) in ways.iter().zip(&results) {
        let m = median(r.clone());
        let runs = r.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(", ");
        println!("  {name}: median {m:>9.0} records/s ({:+.1}% vs untapped; runs: {runs})", (m - base) / base * 100.0);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
