//! The `ctrflow` command: `run`, `validate`, `graph`, `plugins`, and for running processes
//! `top` and `tap`.
//!
//! Exit codes: 0 success; 1 the pipeline is invalid or the run failed; 2 bad usage.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use std::collections::BTreeMap;

use crate::config::{PipelineConfig, RuntimeConfig};
use crate::contract::Destination;
use crate::flow::Shutdown;
use crate::graph::{Graph, GraphError};
use crate::host::{BUNDLED, CompileCache, Host};
use crate::monitor::RunOptions;
use crate::pipeline::Pipeline;
use crate::topology::RunOutcome;
use crate::units::parse_duration;

/// Routes Amazon Connect contact trace records through a TOML-defined graph of sandboxed
/// WebAssembly plugins, timing every hop.
#[derive(Debug, Parser)]
#[command(name = "ctrflow", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Log filter (`info`, `debug`, `ctrflow=trace`…); also `RUST_LOG`.
    #[arg(long, global = true, env = "CTRFLOW_LOG", default_value = "info")]
    pub log: String,
    /// Log lines as text, or as one JSON object per line (with the node's key).
    #[arg(long, global = true, value_enum, env = "CTRFLOW_LOG_FORMAT", default_value = "text")]
    pub log_format: crate::logs::LogFormat,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a pipeline until its sources end (or Ctrl-C), then print where the time went.
    Run {
        /// The pipeline file.
        pipeline: PathBuf,
        /// Write the timing report here: `.json` for data, `.html` for a page with the
        /// graph and a waterfall per sink. May be given more than once.
        #[arg(long, value_name = "FILE")]
        report: Vec<PathBuf>,
        /// Also print the timing table this often while running (e.g. `10s`).
        #[arg(long, value_name = "DURATION", value_parser = duration)]
        report_interval: Option<Duration>,
        /// No progress bar, no final table.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Check a pipeline: every problem at once, each naming its key. Exit 0 when valid.
    Validate {
        /// The pipeline file.
        pipeline: PathBuf,
    },
    /// Print a pipeline's graph, for Graphviz (`dot`) or Mermaid.
    Graph {
        /// The pipeline file.
        pipeline: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value = "dot")]
        format: GraphFormat,
    },
    /// Run a pipeline's unit tests (default: the `<name>.tests.toml` beside it): records put
    /// into nodes, conditions on where they went. Nothing is read or written. Exit 1 on a
    /// failure, with a diff.
    Test {
        /// The pipeline file.
        pipeline: PathBuf,
        /// Test files (default: the pipeline's sidecar `<name>.tests.toml`).
        tests: Vec<PathBuf>,
    },
    /// Print the JSON Schema of the pipeline file (for editors: README, "Editing pipelines").
    Schema,
    /// Write plugins: `ctrflow plugin new <name> --world transform|enrich|sink`.
    Plugin {
        /// What to do.
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// List the bundled plugins.
    Plugins,
    /// Print the KCL lease table of each `kinesis` source with `checkpoint = { dynamodb = … }`:
    /// shard, owner, checkpoint, counter, age.
    Leases {
        /// The pipeline file.
        pipeline: PathBuf,
        /// The time between the two scans that tell a live lease from a still one.
        #[arg(long, value_name = "DURATION", value_parser = duration, default_value = "5s")]
        interval: Duration,
    },
    /// A live view of running processes (their `[runtime] admin_addr`): per node rates,
    /// queue fill, latency, dead letters, retries; per stream source, lag and shards.
    Top {
        /// A process's admin address; repeat for a fleet.
        #[arg(long, value_name = "HOST:PORT", default_value = crate::admin::client::DEFAULT_ADDR)]
        addr: Vec<String>,
        /// Refresh this often (and, with `--once`, measure rates over this long).
        #[arg(long, value_name = "DURATION", value_parser = duration, default_value = "1s")]
        interval: Duration,
        /// Print one snapshot as plain text and exit.
        #[arg(long)]
        once: bool,
    },
    /// Print the records leaving a node of a running process, as JSON lines. They are
    /// customer data, as they leave the node (after `redact`: redacted).
    Tap {
        /// The node: `redact`, `transforms.redact`, or `route.VOICE` for a named output.
        node: String,
        /// The process's admin address.
        #[arg(long, value_name = "HOST:PORT", default_value = crate::admin::client::DEFAULT_ADDR)]
        addr: String,
        /// Only this named output of the node (default: all its outputs).
        #[arg(long, value_name = "NAME")]
        output: Option<String>,
        /// Stop after this many records (default: until the pipeline ends or Ctrl-C).
        #[arg(long, value_name = "N")]
        limit: Option<u64>,
    },
    /// Run the pipeline as an AWS Lambda function (the process Lambda starts, runtime
    /// `provided.al2023`): each invocation's Kinesis event feeds the pipeline's `kinesis`
    /// source; the response reports the first record not delivered (docs/lambda.md).
    Lambda {
        /// The pipeline file.
        pipeline: PathBuf,
        /// Load the plugins `ctrflow compile` wrote into DIR (no compiling at cold start).
        #[arg(long, value_name = "DIR", env = "CTRFLOW_PRECOMPILED")]
        precompiled: Option<PathBuf>,
        /// Stop waiting this long before Lambda's deadline and report what is undelivered.
        #[arg(long, value_name = "DURATION", value_parser = duration, env = "CTRFLOW_LAMBDA_DEADLINE_MARGIN", default_value = "1s")]
        deadline_margin: Duration,
        /// The CloudWatch namespace of the per-invocation metric lines (EMF, on stdout).
        #[arg(long, value_name = "NAME", env = "CTRFLOW_METRICS_NAMESPACE", default_value = "ctrflow")]
        metrics_namespace: String,
        /// The longest a sink waits for a fuller batch (caps each sink's `linger`): an
        /// invocation's records arrive together, so waiting only adds to its time.
        #[arg(long, value_name = "DURATION", value_parser = duration, env = "CTRFLOW_LAMBDA_LINGER", default_value = "0ms")]
        linger: Duration,
    },
    /// Compile a pipeline's plugins ahead of time into DIR, for `ctrflow lambda
    /// --precompiled DIR` (run it with the same binary on the function's architecture).
    Compile {
        /// The pipeline file.
        pipeline: PathBuf,
        /// Where to write them (`DIR/plugins`, `DIR/plugins.key`).
        #[arg(short, long, value_name = "DIR")]
        out: PathBuf,
    },
}

/// `ctrflow plugin …`.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Create a plugin project (code, README, a native test on a real CTR, an example
    /// pipeline and its tests) that builds and runs in a pipeline as it is.
    New {
        /// The plugin's name (lowercase letters, digits, `-`); also its folder's.
        name: String,
        /// What it is: a transform, an enrich (a transform with lookups) or a sink plugin.
        #[arg(long, value_enum)]
        world: crate::scaffold::World,
        /// Its language.
        #[arg(long, value_enum, default_value = "rust")]
        lang: crate::scaffold::Lang,
        /// Where its folder is created.
        #[arg(long, value_name = "DIR", default_value = ".")]
        dir: PathBuf,
        /// The ctrflow checkout whose plugin SDK it builds with (default: the checkout it is
        /// created in).
        #[arg(long = "ctrflow", value_name = "CHECKOUT")]
        checkout: Option<PathBuf>,
    },
}

/// `graph --format`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum GraphFormat {
    /// Graphviz DOT.
    Dot,
    /// A Mermaid flowchart.
    Mermaid,
}

fn duration(s: &str) -> Result<Duration, String> {
    parse_duration(s)
}

/// Problems that make a pipeline unusable, printed one per line.
#[derive(Debug)]
pub struct Invalid(pub Vec<GraphError>);

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.len();
        writeln!(f, "the pipeline has {n} problem{}:", if n == 1 { "" } else { "s" })?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Invalid {}

fn load_graph(path: &Path) -> Result<Graph, Invalid> {
    let config =
        PipelineConfig::load(path).map_err(|errs| Invalid(errs.into_iter().map(GraphError::from).collect()))?;
    Graph::from_config(config).map_err(Invalid)
}

fn host_for(config: &PipelineConfig) -> anyhow::Result<Host> {
    let runtime: &RuntimeConfig = &config.runtime;
    let cache = match runtime.plugin_cache.as_deref() {
        Some("") => None,
        Some(dir) => Some(CompileCache::new(config.resolve(dir))),
        None => CompileCache::default_dir().map(CompileCache::new),
    };
    Ok(Host::new(cache)?)
}

/// Reads, validates and builds a pipeline (plugins loaded and initialised), reporting every
/// problem of the file, the graph, the connectors and the plugins together.
pub fn build(path: &Path) -> anyhow::Result<Pipeline> {
    let read = PipelineConfig::read(path).map_err(|errs| Invalid(errs.into_iter().map(GraphError::from).collect()))?;
    let host = host_for(&read.config)?;
    Ok(Pipeline::build(read, &host).map_err(Invalid)?)
}

/// [`build`], loading the plugins from a `ctrflow compile` folder when given one.
fn build_lambda(path: &Path, precompiled: Option<&Path>) -> anyhow::Result<Pipeline> {
    let Some(dir) = precompiled else { return build(path) };
    let read = PipelineConfig::read(path).map_err(|errs| Invalid(errs.into_iter().map(GraphError::from).collect()))?;
    let host = Host::new(Some(CompileCache::packaged(dir.join("plugins"))))?;
    Ok(Pipeline::build(read, &host).map_err(Invalid)?)
}

/// Runs the command line.
pub fn main(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Validate { pipeline } => {
            let p = build(&pipeline)?;
            let c = &p.graph().config;
            println!(
                "{} is valid: {} source(s), {} transform(s), {} sink(s).",
                pipeline.display(),
                c.sources.len(),
                c.transforms.len(),
                c.sinks.len()
            );
            Ok(())
        }
        Command::Graph { pipeline, format } => {
            let graph = load_graph(&pipeline)?;
            match format {
                GraphFormat::Dot => print!("{}", graph.to_dot()),
                GraphFormat::Mermaid => print!("{}", graph.to_mermaid()),
            }
            Ok(())
        }
        Command::Leases { pipeline, interval } => {
            let config = PipelineConfig::load(&pipeline)
                .map_err(|errs| anyhow::anyhow!(errs.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n")))?;
            for (id, source) in &config.sources {
                if source.type_name == "kinesis" {
                    let opts: crate::connectors::aws::kinesis::KinesisSourceOptions =
                        toml::Value::Table(source.options.clone())
                            .try_into()
                            .map_err(|e| anyhow::anyhow!("sources.{id}: {e}"))?;
                    print!(
                        "{}",
                        crate::connectors::aws::kinesis::leases_report::report(&config.aws, id, &opts, interval)?
                    );
                }
            }
            Ok(())
        }
        Command::Test { pipeline, tests } => {
            let read =
                PipelineConfig::read(&pipeline).map_err(|e| Invalid(e.into_iter().map(GraphError::from).collect()))?;
            let host = host_for(&read.config)?;
            let summary = crate::pipeline_tests::run(&pipeline, &tests, &host, &mut std::io::stdout().lock())?;
            if summary.failed > 0 {
                anyhow::bail!("{} pipeline test(s) failed", summary.failed);
            }
            Ok(())
        }
        Command::Schema => {
            println!("{}", serde_json::to_string_pretty(&crate::schema::pipeline_schema())?);
            Ok(())
        }
        Command::Plugin { command: PluginCommand::New { name, world, lang, dir, checkout } } => {
            let request = crate::scaffold::Request { name, world, parent: dir, checkout };
            let created = crate::scaffold::create(&request, lang)?;
            println!("Created {} ({} plugin). Next:", created.display(), world.as_str());
            println!("  cd {}", created.display());
            for step in lang.next_steps() {
                println!("  {step}");
            }
            Ok(())
        }
        Command::Plugins => {
            for (name, bytes) in BUNDLED {
                println!("{name:<16} {:>7} bytes", bytes.len());
            }
            Ok(())
        }
        Command::Lambda { pipeline, precompiled, deadline_margin, metrics_namespace, linger } => {
            let opts = crate::lambda::Options {
                pipeline_name: pipeline.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
                deadline_margin,
                namespace: metrics_namespace,
                linger,
            };
            crate::lambda::serve(move || build_lambda(&pipeline, precompiled.as_deref()), opts)
        }
        Command::Compile { pipeline, out } => {
            let config = PipelineConfig::load(&pipeline)
                .map_err(|errs| Invalid(errs.into_iter().map(GraphError::from).collect()))?;
            for spec in crate::lambda::compile::compile(&config, &out)? {
                println!("{spec:<16} compiled");
            }
            println!("Wrote {}: ship it with the binary; `ctrflow lambda --precompiled <it>`.", out.display());
            Ok(())
        }
        Command::Top { addr, interval, once } => crate::admin::top::run(&addr, interval, once),
        Command::Tap { node, addr, output, limit } => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            crate::admin::tap::run(&addr, &node, output.as_deref(), limit, &mut out)?;
            Ok(())
        }
        Command::Run { pipeline, report, report_interval, quiet } => {
            for r in &report {
                if !matches!(r.extension().and_then(|e| e.to_str()), Some("json" | "html")) {
                    anyhow::bail!("--report {}: the file must end in .json or .html", r.display());
                }
            }
            let p = build(&pipeline)?;
            let graph = p.graph().clone();
            let destinations = p.destinations();
            let shutdown = Shutdown::default();
            watch_signals(shutdown.clone());
            let interactive = std::io::IsTerminal::is_terminal(&std::io::stderr());
            let started = std::time::Instant::now();
            let outcome =
                crate::topology::run(p, shutdown, RunOptions { progress: interactive && !quiet, report_interval })?;
            for r in &report {
                write_report(r, &outcome, &graph)?;
            }
            if !quiet {
                eprintln!("\n{}", outcome.report.table());
                eprint!("{}", where_it_went(&graph, &destinations, &outcome, started.elapsed()));
            }
            Ok(())
        }
    }
}

fn write_report(path: &Path, outcome: &RunOutcome, graph: &Graph) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let text = if path.extension().is_some_and(|e| e == "html") {
        crate::timing::html::render(&outcome.report, graph)
    } else {
        serde_json::to_string_pretty(&outcome.report)?
    };
    std::fs::write(path, text).map_err(|e| anyhow::anyhow!("--report {}: {e}", path.display()))?;
    Ok(())
}

/// The closing summary: counts, and where each sink's data is, with a query to paste.
fn where_it_went(
    graph: &Graph,
    destinations: &BTreeMap<String, Destination>,
    outcome: &RunOutcome,
    elapsed: Duration,
) -> String {
    let c = &graph.config;
    let read: u64 = outcome.report.nodes.iter().filter(|n| n.kind == "source").map(|n| n.records_in).sum();
    let mut s = format!(
        "{read} records read in {:.1}s ({:.0} records/s).\n\nWhere the data went:\n",
        elapsed.as_secs_f64(),
        read as f64 / elapsed.as_secs_f64().max(1e-9)
    );
    for (id, d) in destinations {
        let written = outcome.report.nodes.iter().find(|n| &n.id == id).map_or(0, |n| n.records_out);
        s.push_str(&format!("  sinks.{id}: {written} {} → {}\n", d.unit, d.place));
        if let Some(look) = &d.look {
            s.push_str(&format!("      {look}\n"));
        }
    }
    if let Some(p) = &outcome.dead_letter_path {
        s.push_str(&format!("  dead letters: {} → {}\n", outcome.dead_letters, p.display()));
    } else if outcome.dead_letters > 0 {
        s.push_str(&format!(
            "  dead letters: {} → sinks.{}\n",
            outcome.dead_letters,
            c.dead_letter.sink.as_deref().unwrap_or("?")
        ));
    }
    s
}

/// SIGINT/SIGTERM: stop reading and drain; a second SIGINT exits at once.
fn watch_signals(shutdown: Shutdown) {
    let _ = std::thread::Builder::new().name("ctrflow-signals".into()).spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        rt.block_on(async move {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            let term_recv = async {
                match term.as_mut() {
                    Some(t) => {
                        t.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term_recv => {}
            }
            tracing::warn!("Stopping: finishing what was read (Ctrl-C again to abort).");
            shutdown.request();
            let _ = tokio::signal::ctrl_c().await;
            std::process::exit(130);
        });
    });
}
