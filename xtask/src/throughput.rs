//! `cargo xtask bench throughput [--records N]`: ctrflow against its two yardsticks, in one
//! run, on one generated input file.
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
//! 3. Checks that ctrflow and the Python script end with the same rows per SQLite table and
//!    the same number of lake lines, prints the table and the ratios.
//!
//! It measures; it does not judge: no target is asserted here, and it is not run in CI.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::{cargo, run, target_dir, wasm_target};

/// Records in the standard run (the figure the docs quote).
const DEFAULT_RECORDS: u64 = 100_000;
/// Records of the unmeasured warm-up run (compiles and caches the plugins).
const WARMUP_RECORDS: usize = 1_000;

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
    let records = parse_records(args)?;
    wasm_target(root)?;
    run(cargo(root).args(["build", "--release", "-p", "ctrflow"]))?;
    // The native limit is its own workspace (its benchmark parsers stay out of the main one).
    let target = target_dir(root);
    run(cargo(root).args(["build", "--release", "--manifest-path", "bench/Cargo.toml", "--target-dir"]).arg(&target))?;
    let bin = target_dir(root).join("release");
    let (ctrflow, native) = (bin.join("ctrflow"), bin.join("native-limit"));
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
    let out_native = fresh(&work.join("out-native"))?;
    eprintln!("\n[1/3] native limit");
    let m_native =
        measure(Command::new(&native).arg(&input).arg(out_native.join("records.jsonl")), &out_native, "native-limit")?;
    // Only its speed matters; do not keep a third copy of the input around.
    let _ = std::fs::remove_file(out_native.join("records.jsonl"));

    let out_python = fresh(&work.join("out-python"))?;
    eprintln!("[2/3] python baseline");
    let m_python = measure(
        Command::new("python3")
            .arg(root.join("bench/baseline.py"))
            .arg("run")
            .arg("--input")
            .arg(&input)
            .arg("--agents")
            .arg(&agents)
            .arg("--out")
            .arg(&out_python),
        &out_python,
        "python",
    )?;

    let out_ctrflow = fresh(&work.join("out-ctrflow"))?;
    eprintln!("[3/3] ctrflow");
    let m_ctrflow = run_ctrflow(root, &ctrflow, &input, &out_ctrflow)?;

    let same = check_outputs(root, &out_ctrflow, &out_python, records)?;

    let rows = [("ctrflow (demo graph)", &m_ctrflow), ("python baseline", &m_python), ("native limit", &m_native)];
    println!();
    println!(
        "throughput: {records} records, {:.1} MB ({:.2} KB/record), {} cores ({})",
        size as f64 / 1e6,
        size as f64 / records as f64 / 1e3,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model()
    );
    println!("load average before the rows: {load}");
    println!(
        "{:<22} {:>11} {:>9} {:>7} {:>14} {:>16}",
        "row", "records/s", "wall s", "CPU %", "peak RSS MB", "records/CPU-s"
    );
    for (name, m) in rows {
        println!(
            "{:<22} {:>11.0} {:>9.2} {:>7.0} {:>14.1} {:>16.0}",
            name,
            m.records_per_s(records),
            m.wall.as_secs_f64(),
            m.cpu_percent(),
            m.peak_rss_kib as f64 / 1024.0,
            records as f64 / m.cpu.as_secs_f64()
        );
    }
    let ctr = m_ctrflow.records_per_s(records);
    println!(
        "ratios (records/s): ctrflow/python {:.2}x, ctrflow/native {:.2}x; peak RSS ctrflow/python {:.1}x",
        ctr / m_python.records_per_s(records),
        ctr / m_native.records_per_s(records),
        m_ctrflow.peak_rss_kib as f64 / m_python.peak_rss_kib.max(1) as f64
    );
    println!("outputs in {}", work.display());
    if !same {
        bail!("ctrflow and the Python baseline disagree on the outputs (see the check above)");
    }
    Ok(())
}

fn parse_records(args: &[String]) -> anyhow::Result<u64> {
    let mut records = DEFAULT_RECORDS;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let value = match arg.strip_prefix("--records=") {
            Some(v) => v.to_string(),
            None if arg == "--records" => it.next().context("--records needs a number")?.clone(),
            None => bail!("unknown argument {arg:?} (usage: cargo xtask bench throughput [--records N])"),
        };
        records = value.replace('_', "").parse().with_context(|| format!("--records {value:?} is not a count"))?;
        if records == 0 {
            bail!("--records must be at least 1");
        }
    }
    Ok(records)
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
