//! `ctrflow lambda`: the pipeline as an AWS Lambda function behind a Kinesis event source
//! mapping. The same pipeline file as a long-running consumer; its `kinesis` source's
//! records come from each invocation's event instead of GetRecords, and Lambda's event
//! source mapping does the shard bookkeeping, scaling and retries.
//!
//! - [`source`]: the stand-in for the `kinesis` source node (KPL de-aggregation, arrival
//!   times, one acknowledgement per Kinesis record);
//! - [`warm`]: the topology kept up across warm invocations, and replaced after a fault;
//! - [`invocation`]: one event in, every record acknowledged or dead-lettered (or the
//!   deadline), and the partial batch response (`batchItemFailures`);
//! - [`emf`]: per-invocation figures as CloudWatch Embedded Metric Format lines;
//! - [`compile`]: `ctrflow compile`, the plugins precompiled into the function's package.
//!
//! The runtime API client is the `lambda_runtime` crate (on the hyper and tokio the AWS SDK
//! already brings). Init — building the pipeline, loading (precompiled) plugins, opening the
//! sinks — happens before the first `next` call, in Lambda's init phase.
//!
//! It does not invoke anything itself nor read the stream: without Lambda's runtime API
//! (`AWS_LAMBDA_RUNTIME_API`) it has nothing to do.

pub mod compile;
pub mod emf;
pub mod invocation;
pub mod source;
pub mod warm;

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::event::streams::{KinesisBatchItemFailure, KinesisEventResponse};
use lambda_runtime::{LambdaEvent, service_fn};
use tokio::sync::Mutex;

use crate::pipeline::Pipeline;
use crate::record::now_ms;
use invocation::Delivery;
use warm::{Builder, Running};

/// How the function runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The pipeline's name, the metrics' `Pipeline` dimension.
    pub pipeline_name: String,
    /// How long before Lambda's deadline an invocation stops waiting and reports what is
    /// not delivered yet.
    pub deadline_margin: Duration,
    /// The CloudWatch metric namespace of the EMF lines.
    pub namespace: String,
    /// The longest a sink waits for a fuller batch (caps each sink's `linger`).
    pub linger: Duration,
}

struct State {
    running: Option<Running>,
    starting: Option<tokio::task::JoinHandle<anyhow::Result<Running>>>,
    invocations: u64,
}

/// Builds and starts the pipeline (Lambda's init phase), then serves invocations until the
/// process is stopped.
pub fn serve(
    build: impl Fn() -> anyhow::Result<Pipeline> + Send + Sync + 'static,
    opts: Options,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let build: Builder = Arc::new(build);
    let running = Running::start(build.clone(), opts.linger)?;
    tracing::info!(
        source = %running.source,
        init_ms = started.elapsed().as_millis() as u64,
        "Pipeline running; serving Lambda invocations."
    );
    let state = Arc::new(Mutex::new(State { running: Some(running), starting: None, invocations: 0 }));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let opts = Arc::new(opts);
    // The event as JSON: `source::records` reads the arrival times `aws_lambda_events` cuts.
    rt.block_on(lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let (state, build, opts) = (state.clone(), build.clone(), opts.clone());
        async move { invoke(&state, &build, &opts, event).await }
    })))
    .map_err(|e| anyhow::anyhow!("Lambda runtime API: {e}"))
}

async fn invoke(
    state: &Mutex<State>,
    build: &Builder,
    opts: &Options,
    event: LambdaEvent<serde_json::Value>,
) -> Result<KinesisEventResponse, lambda_runtime::Error> {
    let received = Instant::now();
    let remaining_ms = (event.context.deadline as i64 - now_ms() - opts.deadline_margin.as_millis() as i64).max(0);
    let deadline = received + Duration::from_millis(remaining_ms as u64);
    let records = source::records(event.payload).map_err(|e| format!("not a Kinesis event: {e}"))?;
    let mut st = state.lock().await;
    st.invocations += 1;
    let cold = st.invocations == 1;

    // A pipeline a node halted (a destination gone, denied) is replaced.
    if st.running.as_ref().is_some_and(Running::ended)
        && let Some(old) = st.running.take()
    {
        old.retire();
    }
    if st.running.is_none() {
        let (build, linger) = (build.clone(), opts.linger);
        let starting =
            st.starting.get_or_insert_with(|| tokio::task::spawn_blocking(move || Running::start(build, linger)));
        match tokio::time::timeout_at(deadline.into(), starting).await {
            Ok(started) => {
                st.starting = None;
                match started {
                    Ok(Ok(running)) => st.running = Some(running),
                    // Lambda retries the whole batch (and reports the error).
                    Ok(Err(e)) => return Err(format!("cannot start the pipeline: {e:#}").into()),
                    Err(e) => return Err(format!("starting the pipeline panicked: {e}").into()),
                }
            }
            Err(_) => {
                tracing::warn!("The pipeline is still starting at the invocation's deadline; every record is retried.");
                return Ok(response(records.first().map(|r| r.kinesis.sequence_number.clone())));
            }
        }
    }
    let running = st.running.as_mut().expect("started above");
    let marks = emf::mark(&running.timing);
    let delivery: Delivery = invocation::deliver(running, records, deadline).await;
    let elapsed_ms = received.elapsed().as_secs_f64() * 1000.0;
    let line = emf::line(
        &marks,
        &running.timing,
        &delivery,
        &emf::Invocation {
            request_id: &event.context.request_id,
            namespace: &opts.namespace,
            pipeline: &opts.pipeline_name,
            elapsed_ms,
            cold,
        },
    );
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
    if let Some(seq) = &delivery.retry_from {
        tracing::warn!(
            retry_from = %seq,
            delivered = delivery.delivered,
            records = delivery.records,
            timed_out = delivery.timed_out,
            "Records not delivered by the deadline; Lambda retries from the first of them on a fresh pipeline."
        );
        // What is stuck in it must not hold the retried records back.
        if let Some(old) = st.running.take() {
            old.retire();
        }
    }
    Ok(response(delivery.retry_from))
}

/// The partial batch response: the first record not delivered, if any.
fn response(retry_from: Option<String>) -> KinesisEventResponse {
    KinesisEventResponse {
        batch_item_failures: retry_from
            .into_iter()
            .map(|seq| KinesisBatchItemFailure { item_identifier: Some(seq) })
            .collect(),
    }
}
