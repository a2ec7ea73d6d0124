//! The pipeline kept running between invocations (a warm function reuses it): built and
//! started once at the function's init, fed by each invocation, and replaced when an
//! invocation had to give up on records still in it.
//!
//! It does not decide what an invocation reports ([`super::invocation`] does), and it
//! never waits for an old topology to drain: that happens on a thread of its own, while
//! the next invocations run on a fresh one.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::source::{EventSource, Work};
use crate::ack::Completion;
use crate::flow::Shutdown;
use crate::monitor::RunOptions;
use crate::pipeline::Pipeline;
use crate::timing::Timing;
use crate::topology::RunOutcome;

/// Builds the pipeline (plugins loaded, settings checked), each time the function needs one.
pub type Builder = Arc<dyn Fn() -> anyhow::Result<Pipeline> + Send + Sync>;

/// A running topology whose `kinesis` source is fed by invocations.
pub struct Running {
    /// Work for the source node.
    pub inbox: std_mpsc::Sender<Work>,
    /// Completions of the source's batches.
    pub completions: mpsc::UnboundedReceiver<Completion>,
    /// Completions that arrived before their invocation looked for them.
    pub done: HashMap<u64, bool>,
    /// The pipeline's clocks (for the per-invocation metrics).
    pub timing: Arc<Timing>,
    /// The source node's id.
    pub source: String,
    shutdown: Shutdown,
    thread: std::thread::JoinHandle<anyhow::Result<RunOutcome>>,
}

/// The id of the one `kinesis` source a function's pipeline must have.
pub fn kinesis_source(pipeline: &Pipeline) -> anyhow::Result<String> {
    let sources = &pipeline.graph().config.sources;
    let kinesis: Vec<&String> = sources.iter().filter(|(_, s)| s.type_name == "kinesis").map(|(id, _)| id).collect();
    let others: Vec<String> =
        sources.iter().filter(|(_, s)| s.type_name != "kinesis").map(|(id, _)| format!("sources.{id}")).collect();
    if !others.is_empty() {
        anyhow::bail!(
            "as a Lambda function the pipeline reads only the invocation's Kinesis records; remove {}",
            others.join(", ")
        );
    }
    match kinesis.as_slice() {
        [one] => Ok((*one).clone()),
        [] => anyhow::bail!("as a Lambda function the pipeline needs a source of type = \"kinesis\""),
        _ => anyhow::bail!("as a Lambda function the pipeline may have only one source of type = \"kinesis\""),
    }
}

impl Running {
    /// Builds the pipeline (on the topology's own thread, where it then runs), puts the
    /// invocation source in place of its `kinesis` source (which is never opened: no
    /// DescribeStreamSummary, no GetRecords), starts it, and waits until its connectors are
    /// open and the source runs. Blocks.
    ///
    /// Sinks wait at most `linger` for a fuller batch: an invocation's records enter the
    /// pipeline all at once, so the default 100 ms would only add to every invocation, while
    /// without it a sink still writes whatever queued up during its previous write.
    pub fn start(build: Builder, linger: Duration) -> anyhow::Result<Running> {
        let shutdown = Shutdown::default();
        let stop = shutdown.clone();
        let (ready_tx, ready_rx) = std_mpsc::channel();
        let thread = std::thread::Builder::new().name("ctrflow-topology".into()).spawn(move || {
            let prepared = build().and_then(|mut pipeline| {
                let source = kinesis_source(&pipeline)?;
                let (stand_in, handle) = EventSource::new();
                pipeline.sources.insert(source.clone(), Box::new(stand_in));
                for sink in pipeline.sinks.values_mut() {
                    sink.linger = sink.linger.min(linger);
                }
                Ok((pipeline, source, handle))
            });
            let pipeline = match prepared {
                Ok((pipeline, source, handle)) => {
                    let _ = ready_tx.send((source, pipeline.timing(), handle));
                    pipeline
                }
                Err(e) => return Err(e),
            };
            crate::topology::run(pipeline, stop, RunOptions { progress: false, report_interval: None })
        })?;
        let started = ready_rx.recv().ok().and_then(|(source, timing, handle)| {
            let completions = handle.completions.blocking_recv().ok()?;
            Some((source, timing, handle.inbox, completions))
        });
        match started {
            Some((source, timing, inbox, completions)) => {
                Ok(Running { inbox, completions, done: HashMap::new(), timing, source, shutdown, thread })
            }
            // The build failed, or the topology ended before its source ran (a connector
            // would not open).
            None => match thread.join() {
                Ok(Err(e)) => Err(e),
                Ok(Ok(_)) => anyhow::bail!("the pipeline ended before it read anything"),
                Err(_) => anyhow::bail!("the pipeline panicked while starting"),
            },
        }
    }

    /// Whether the topology ended (a node halted it).
    pub fn ended(&self) -> bool {
        self.thread.is_finished()
    }

    /// Stops it without waiting: the source ends, what is in flight drains (a failing
    /// destination gives up after a few more attempts, leaving its records unacknowledged —
    /// they were reported as failures), and the outcome is logged.
    pub fn retire(self) {
        let Running { inbox, shutdown, thread, .. } = self;
        drop(inbox);
        shutdown.request();
        let _ = std::thread::Builder::new().name("ctrflow-retired".into()).spawn(move || match thread.join() {
            Ok(Ok(outcome)) => tracing::info!(dead_letters = outcome.dead_letters, "Retired pipeline drained."),
            Ok(Err(e)) => tracing::warn!("Retired pipeline ended: {e:#}"),
            Err(_) => tracing::warn!("Retired pipeline panicked."),
        });
    }
}
