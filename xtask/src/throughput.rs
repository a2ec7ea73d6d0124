//! `cargo xtask bench throughput [--records N] [--rounds R] [--pgo]`: ctrflow against its
//! two yardsticks, in one run, on one generated input file. `--pgo` measures ctrflow built
//! with profile-guided optimisation ([`crate::pgo`]) instead of the plain release build.
//!
//! 1. Generates (once, cached under the target directory) N realistic contact records as
//!    one JSON-lines file, with ctrflow's own generator (`bench/generate.toml`: fixed seed
//!    and start time, so the same N gives the same file).
//! 2. Runs three programs on that file, one after another, each measured by the kernel's
//!    accounting for that child alone (`wait4`): wall time, user + system CPU, peak RSS.
//!    Records per CPU-second is printed too: on a shared machine it moves less with the
//!    load than records per second does.
//!    - **ctrflow**: the local demo's graph reading the file (`bench/throughput.toml`);
//!    - **python**: `bench/baseline.py`, the same work as a single-threaded Lambda-style
//!      handler would do it;
//!    - **native**: `native-limit` (the `bench/` crate), which only parses and serializes
//!      each record — the floor any implementation pays.
//!
//!    It does so `R` times (3 unless told), each round in a different order, and reports each
//!    row's median (peak RSS: its largest), the ratios of the medians, and the range of the
//!    ratios within a round. A shared machine's speed drifts by a quarter from one minute to
//!    the next; three programs measured once each, a minute apart, made ratios that moved
//!    by as much between two runs of the bench.
//! 3. Checks that ctrflow and the Python script end with the same rows per SQLite table and
//!    the same number of lake lines, prints the table and the ratios.
//!
//! It measures; it does not judge: no target is asserted here, and it is not run in CI.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::{build_ctrflow, cargo, run, target_dir, wasm_target};

/// Records in the standard run (the figure the docs quote).
const DEFAULT_RECORDS: u64 = 100_000;
/// Records of the unmeasured warm-up run (compiles and caches the plugins).
const WARMUP_RECORDS: usize = 1_000;
/// Rounds of the three rows, unless told.
const DEFAULT_ROUNDS: usize = 3;

/// What the bench was asked for.
struct Args {
    records: u64,
    rounds: usize,
    /// Measure the profile-guided build.
    pgo: bool,
}

/// The three rows, in the order the table prints them.
#[derive(Clone, Copy, PartialEq)]
enum Row {
    Ctrflow,
    Python,
    Native,
}

impl Row {
    const ALL: [Row; 3] = [Row::Ctrflow, Row::Python, Row::Native];

    fn name(self) -> &'static str {
        match self {
            Row::Ctrflow => "ctrflow (demo graph)",
            Row::Python => "python baseline",
            Row::Native => "native limit",
        }
    }
}

/// What the kernel accounted for one finished child.
struct Measured {
    wall: Duration,
    cpu: Duration,
    peak_rss_kib: u64,
}

impl Measured {
    fn records_per_s(&self, records: u64) -> f64 {
        records as f64 / self.wall.as_secs_f64()
    }
    fn cpu_percent(&self) -> f64 {
        self.cpu.as_secs_f64() / self.wall.as_secs_f64() * 100.0
    }
}

pub fn throughput(root: &Path, args: &[String]) -> anyhow::Result<()> {
    let Args { records, rounds, pgo } = parse_args(args)?;
    wasm_target(root)?;
    let ctrflow = if pgo { crate::pgo::build(root, None)? } else { build_ctrflow(root, None, None, None)? };
    // The native limit is its own workspace (its benchmark parsers stay out of the main one).
    let target = target_dir(root);
    run(cargo(root).args(["build", "--release", "--manifest-path", "bench/Cargo.toml", "--target-dir"]).arg(&target))?;
    let native = target.join("release").join("native-limit");
    let work = target_dir(root).join("bench-throughput");
    std::fs::create_dir_all(&work)?;

    let input = generate(root, &ctrflow, &work, records)?;
    let size = std::fs::metadata(&input)?.len();
    let agents = root.join("pipelines/data/agents.csv");

    // Unmeasured: the first run compiles the plugins into the cache; later runs load them.
    let warmup = work.join("warmup.jsonl");
    write_head(&input, &warmup, WARMUP_RECORDS)?;
    run_ctrflow(root, &ctrflow, &warmup, &fresh(&work.join("out-warmup"))?)?;

    // On a shared machine the rows compete with whatever else runs: say how busy it was.
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into());
    let programs = Programs { root, ctrflow: &ctrflow, native: &native, input: &input, agents: &agents, work: &work };
    let mut measured: Vec<[Measured; 3]> = Vec::new();
    for round in 0..rounds {
        // Each round starts with another row, so that no row always runs first (or last).
        let mut this: [Option<Measured>; 3] = [None, None, None];
        for k in 0..3 {
            let i = (round + k) % 3;
            eprintln!("\n[round {}/{rounds}, {}/3] {}", round + 1, k + 1, Row::ALL[i].name());
            this[i] = Some(programs.run(Row::ALL[i])?);
        }
        measured.push(this.map(|m| m.expect("every row ran in this round")));
    }
    let (out_ctrflow, out_python) = (programs.out(Row::Ctrflow), programs.out(Row::Python));

    let same = check_outputs(root, &out_ctrflow, &out_python, records)?;

    println!();
    println!(
        "throughput: {records} records, {:.1} MB ({:.2} KB/record), {} cores ({})",
        size as f64 / 1e6,
        size as f64 / records as f64 / 1e3,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model()
    );
    println!(
        "load average before the rows: {load}; {rounds} round{}, medians (peak RSS: the largest); ctrflow: {}",
        if rounds == 1 { "" } else { "s" },
        if pgo { "the profile-guided build (--pgo)" } else { "the release build" }
    );
    println!(
        "{:<22} {:>11} {:>9} {:>7} {:>14} {:>16}",
        "row", "records/s", "wall s", "CPU %", "peak RSS MB", "records/CPU-s"
    );
    let column = |i: usize, f: &dyn Fn(&Measured) -> f64| median(measured.iter().map(|r| f(&r[i])).collect());
    let per_s = |m: &Measured| m.records_per_s(records);
    for (i, row) in Row::ALL.iter().enumerate() {
        let peak = measured.iter().map(|r| r[i].peak_rss_kib).max().unwrap_or(0);
        println!(
            "{:<22} {:>11.0} {:>9.2} {:>7.0} {:>14.1} {:>16.0}",
            row.name(),
            column(i, &per_s),
            column(i, &|m| m.wall.as_secs_f64()),
            column(i, &|m| m.cpu_percent()),
            peak as f64 / 1024.0,
            column(i, &|m| records as f64 / m.cpu.as_secs_f64())
        );
    }
    let (ctr, py, nat) = (column(0, &per_s), column(1, &per_s), column(2, &per_s));
    let peak = |i: usize| measured.iter().map(|r| r[i].peak_rss_kib).max().unwrap_or(0).max(1) as f64;
    println!(
        "ratios (records/s, of the medians): ctrflow/python {:.2}x, ctrflow/native {:.2}x; peak RSS ctrflow/python {:.1}x",
        ctr / py,
        ctr / nat,
        peak(0) / peak(1)
    );
    if rounds > 1 {
        let range = |other: usize| {
            let ratios: Vec<f64> = measured.iter().map(|r| per_s(&r[0]) / per_s(&r[other])).collect();
            let (lo, hi) = ratios.iter().fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
            format!("{lo:.2}-{hi:.2}x")
        };
        println!("ratios within each round: ctrflow/python {}, ctrflow/native {}", range(1), range(2));
    }
    println!("outputs (the last round's) in {}", work.display());
    if !same {
        bail!("ctrflow and the Python baseline disagree on the outputs (see the check above)");
    }
    Ok(())
}

/// What the rows run on, and where their outputs go.
struct Programs<'a> {
    root: &'a Path,
    ctrflow: &'a Path,
    native: &'a Path,
    input: &'a Path,
    agents: &'a Path,
    work: &'a Path,
}

impl Programs<'_> {
    /// The row's output directory (emptied before each of its runs).
    fn out(&self, row: Row) -> PathBuf {
        self.work.join(match row {
            Row::Ctrflow => "out-ctrflow",
            Row::Python => "out-python",
            Row::Native => "out-native",
        })
    }

    /// One measured run of `row`.
    fn run(&self, row: Row) -> anyhow::Result<Measured> {
        let out = fresh(&self.out(row))?;
        match row {
            Row::Ctrflow => run_ctrflow(self.root, self.ctrflow, self.input, &out),
            Row::Python => measure(
                Command::new("python3")
                    .arg(self.root.join("bench/baseline.py"))
                    .arg("run")
                    .arg("--input")
                    .arg(self.input)
                    .arg("--agents")
                    .arg(self.agents)
                    .arg("--out")
                    .arg(&out),
                &out,
                "python",
            ),
            Row::Native => {
                let m = measure(
                    Command::new(self.native).arg(self.input).arg(out.join("records.jsonl")),
                    &out,
                    "native-limit",
                )?;
                // Only its speed matters; do not keep a third copy of the input around.
                let _ = std::fs::remove_file(out.join("records.jsonl"));
                Ok(m)
            }
        }
    }
}

/// The middle value (the mean of the two middle ones for an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn parse_args(args: &[String]) -> anyhow::Result<Args> {
    const USAGE: &str = "usage: cargo xtask bench throughput [--records N] [--rounds R] [--pgo]";
    let mut parsed = Args { records: DEFAULT_RECORDS, rounds: DEFAULT_ROUNDS, pgo: false };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if arg == "--pgo" {
            parsed.pgo = true;
            continue;
        }
        let (name, inline) = arg.split_once('=').map_or((arg.as_str(), None), |(name, value)| (name, Some(value)));
        if !matches!(name, "--records" | "--rounds") {
            bail!("unknown argument {arg:?} ({USAGE})");
        }
        let value = match inline {
            Some(value) => value.to_string(),
            None => it.next().with_context(|| format!("{arg} needs a number ({USAGE})"))?.clone(),
        };
        let count = |what: &str| -> anyhow::Result<u64> {
            let n: u64 = value.replace('_', "").parse().with_context(|| format!("{what} {value:?} is not a count"))?;
            if n == 0 {
                bail!("{what} must be at least 1");
            }
            Ok(n)
        };
        match name {
            "--records" => parsed.records = count("--records")?,
            _ => parsed.rounds = count("--rounds")? as usize,
        }
    }
    Ok(parsed)
}

/// The input file for `records`, generated on first use and kept for later runs.
fn generate(root: &Path, ctrflow: &Path, work: &Path, records: u64) -> anyhow::Result<PathBuf> {
    let input = work.join(format!("ctrs-{records}.jsonl"));
    if input.exists() {
        eprintln!("input: {} (cached)", input.display());
        return Ok(input);
    }
    // Written beside, renamed when complete: an interrupted run leaves no half file behind.
    let partial = work.join(format!("ctrs-{records}.jsonl.partial"));
    let _ = std::fs::remove_file(&partial);
    let out = fresh(&work.join("out-generate"))?;
    run(Command::new(ctrflow)
        .current_dir(root)
        .args(["run", "bench/generate.toml", "--quiet"])
        .env("CTRFLOW_BENCH_RECORDS", records.to_string())
        .env("CTRFLOW_BENCH_INPUT", &partial)
        .env("CTRFLOW_BENCH_OUT", &out))?;
    let lines = count_lines(&partial)?;
    if lines != records {
        bail!("the generator wrote {lines} records, not {records} (see {})", out.display());
    }
    std::fs::rename(&partial, &input)?;
    eprintln!("input: {} (generated)", input.display());
    Ok(input)
}

fn run_ctrflow(root: &Path, ctrflow: &Path, input: &Path, out: &Path) -> anyhow::Result<Measured> {
    measure(
        Command::new(ctrflow)
            .current_dir(root)
            .args(["run", "bench/throughput.toml", "--quiet", "--report"])
            .arg(out.join("report.json"))
            .env("CTRFLOW_BENCH_INPUT", input)
            .env("CTRFLOW_BENCH_OUT", out),
        out,
        "ctrflow",
    )
}

/// Compares the outputs' row counts per table and lake lines; prints the check.
fn check_outputs(root: &Path, ctrflow: &Path, python: &Path, records: u64) -> anyhow::Result<bool> {
    let count = |dir: &Path| -> anyhow::Result<String> {
        let out = Command::new("python3").arg(root.join("bench/baseline.py")).arg("count").arg(dir).output()?;
        if !out.status.success() {
            bail!("counting {} failed: {}", dir.display(), String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8(out.stdout)?.trim().to_string())
    };
    let (a, b) = (count(ctrflow)?, count(python)?);
    let lake_lines = |counts: &str| {
        counts.rsplit_once("\"lake_lines\": ").and_then(|(_, n)| n.trim_end_matches('}').trim().parse::<u64>().ok())
    };
    let same = a == b && lake_lines(&a) == Some(records);
    println!("\ncheck: ctrflow {a}");
    println!("check: python  {b}");
    println!(
        "check: {}",
        if same { "same rows per table and lake lines (one lake line per record)" } else { "MISMATCH" }
    );
    Ok(same)
}

/// Runs `cmd` to completion with its output in `out`/<name>.{stdout,stderr}, measured.
fn measure(cmd: &mut Command, out: &Path, name: &str) -> anyhow::Result<Measured> {
    let (stdout, stderr) = (out.join(format!("{name}.stdout")), out.join(format!("{name}.stderr")));
    cmd.stdin(Stdio::null()).stdout(File::create(&stdout)?).stderr(File::create(&stderr)?);
    eprintln!("$ {}", crate::render(cmd));
    let started = Instant::now();
    let child = cmd.spawn().with_context(|| format!("could not start {}", crate::render(cmd)))?;
    let (status, usage) = wait4(child.id() as libc::pid_t)?;
    let wall = started.elapsed();
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        let log = std::fs::read_to_string(&stderr).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect();
        bail!("{name} failed (wait status {status}); the end of {}:\n{}", stderr.display(), tail.join("\n"));
    }
    let tv = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    Ok(Measured {
        wall,
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
        // Linux reports kibibytes (macOS would report bytes; this bench is for Linux).
        peak_rss_kib: usage.ru_maxrss as u64,
    })
}

/// Reaps child `pid`, returning its wait status and its own resource usage (not that of
/// every child this process ever had, which `getrusage(RUSAGE_CHILDREN)` would add up).
fn wait4(pid: libc::pid_t) -> anyhow::Result<(libc::c_int, libc::rusage)> {
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value of that plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `pid` is our own unreaped child; both pointers are valid for the call.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            return Ok((status, usage));
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err).context("wait4");
        }
    }
}

/// An empty directory at `dir` (whatever was there is removed).
fn fresh(dir: &Path) -> anyhow::Result<PathBuf> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir)?;
    Ok(dir.to_path_buf())
}

fn write_head(input: &Path, to: &Path, lines: usize) -> anyhow::Result<()> {
    use std::io::{BufRead, Write};
    let mut reader = std::io::BufReader::new(File::open(input)?);
    let mut writer = std::io::BufWriter::new(File::create(to)?);
    let mut line = Vec::new();
    for _ in 0..lines {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        writer.write_all(&line)?;
    }
    writer.flush()?;
    Ok(())
}

fn count_lines(path: &Path) -> anyhow::Result<u64> {
    use std::io::Read;
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut lines = 0;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(lines);
        }
        lines += buf[..n].iter().filter(|b| **b == b'\n').count() as u64;
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name").map(|m| m.trim_start_matches([' ', '\t', ':']).to_string()))
        })
        .unwrap_or_else(|| "unknown CPU".into())
}
