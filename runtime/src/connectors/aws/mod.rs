//! The AWS connectors: a `kinesis` source, `dynamodb`, `firehose` and `kinesis` sinks, and
//! `dynamodb` lookup tables, on the official aws-sdk-rust clients.
//!
//! What they share lives here: the client settings (region and credentials from aws-config's
//! default chain, `endpoint_url` per connector or once under `[aws]`), one small runtime
//! every AWS call runs on, error classification (retry or give up), and the retry loop for
//! batch APIs whose 200 responses can still carry per-entry failures (Kinesis
//! `FailedRecordCount`, Firehose `FailedPutCount`, DynamoDB `UnprocessedItems`; the SDK only
//! retries whole requests).
//!
//! Why one runtime: SDK clients keep pooled connections whose I/O tasks live on the runtime
//! that opened them. Sinks run on their own current-thread runtimes, sources and lookups on
//! plain threads, and startup checks on the main thread; running every call here keeps the
//! pool alive and shared whatever the caller.
//!
//! What it does not do: talk to AWS at `ctrflow validate` time. Streams, tables and delivery
//! streams are checked when a run starts (`Describe*`), naming the key and the resource.

pub mod dynamodb;
pub mod firehose;
pub mod kinesis;
pub mod kinesis_sink;
pub mod lookup;
pub mod sns;

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_kinesis::config::ProvideCredentials;
use aws_sdk_kinesis::config::http::HttpResponse;
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};

use crate::config::AwsConfig;
use crate::contract::{Backoff, Written};
use crate::dead_letter::DeadLetterKind;
use crate::flow::Shutdown;

/// The runtime every AWS call runs on (two worker threads: the calls are I/O).
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ctrflow-aws")
            .enable_all()
            .build()
            .expect("start the AWS runtime")
    })
}

/// Runs `f` on the AWS runtime and waits for it from async code on any runtime.
pub async fn call<F>(f: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match runtime().spawn(f).await {
        Ok(v) => v,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("the AWS runtime stopped: {e}"),
    }
}

/// Runs `f` on the AWS runtime from synchronous code. Never blocks inside an async
/// context: called from one, it waits on a scoped helper thread instead.
pub fn block_on<F>(f: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|s| s.spawn(|| runtime().block_on(f)).join().expect("AWS call thread panicked"))
    } else {
        runtime().block_on(f)
    }
}

/// Where a connector's clients point.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// `[aws] region`, else the default chain (`AWS_REGION`, profile).
    pub region: Option<String>,
    /// The connector's `endpoint_url`, else `[aws] endpoint_url`, else the default (which
    /// also honours `AWS_ENDPOINT_URL`).
    pub endpoint_url: Option<String>,
}

impl Settings {
    /// The settings for a connector with an optional `endpoint_url` of its own. Empty
    /// strings count as unset, so `${AWS_ENDPOINT_URL:-}` works in pipeline files.
    pub fn new(aws: &AwsConfig, endpoint_url: Option<&str>) -> Self {
        let nonempty = |s: Option<&str>| s.map(str::trim).filter(|s| !s.is_empty()).map(str::to_string);
        Settings {
            region: nonempty(aws.region.as_deref()),
            endpoint_url: nonempty(endpoint_url).or_else(|| nonempty(aws.endpoint_url.as_deref())),
        }
    }

    /// Loads the SDK configuration and checks that a region and credentials are there, so
    /// a missing one fails the run at its start with what to set.
    pub async fn load(&self) -> Result<SdkConfig, String> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(r) = &self.region {
            loader = loader.region(Region::new(r.clone()));
        }
        if let Some(e) = &self.endpoint_url {
            loader = loader.endpoint_url(e.clone());
        }
        let sdk = loader.load().await;
        if sdk.region().is_none() {
            return Err("no AWS region: set `region` under [aws], or AWS_REGION / a profile's region".into());
        }
        let Some(creds) = sdk.credentials_provider() else {
            return Err("no AWS credentials provider".into());
        };
        creds.provide_credentials().await.map_err(|e| {
            format!(
                "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run with a role ({})",
                aws_sdk_kinesis::error::DisplayErrorContext(&e)
            )
        })?;
        Ok(sdk)
    }

    /// "region R, endpoint E" for messages.
    pub fn describe(&self, sdk: &SdkConfig) -> String {
        let region = sdk.region().map(|r| r.to_string()).unwrap_or_else(|| "?".into());
        match &self.endpoint_url {
            Some(e) => format!("region {region}, endpoint {e}"),
            None => format!("region {region}"),
        }
    }
}

/// Loads settings from synchronous code.
pub fn load_blocking(settings: &Settings) -> anyhow::Result<SdkConfig> {
    let s = settings.clone();
    block_on(async move { s.load().await }).map_err(anyhow::Error::msg)
}

/// What to do about a failed AWS call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Transient (throttling, a 5xx, a timeout, a dropped connection): back off and retry.
    Retry(String),
    /// The request itself is wrong (validation): retrying the same request will not help,
    /// and the records in it are refused.
    Fatal(String),
    /// Nothing will work until someone fixes the setup (access denied, expired or unknown
    /// credentials, the resource or its KMS key gone): the run stops, leaving what was not
    /// written unacknowledged, instead of dead-lettering everything after it.
    Halt(String),
}

/// Error codes AWS documents as "back off and retry" (docs/aws-api-quotas.md §1, §5, §6).
const RETRYABLE_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "RequestLimitExceeded",
    "ServiceUnavailableException",
    "ServiceUnavailable",
    "InternalFailure",
    "InternalFailureException",
    "InternalServerError",
    "LimitExceededException",
    "KMSThrottlingException",
    "TransactionInProgressException",
];

/// Error codes that mean the setup is broken, not the request.
const SETUP_CODES: &[&str] = &[
    "AccessDeniedException",
    "AccessDenied",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "ExpiredTokenException",
    "ExpiredToken",
    "InvalidSignatureException",
    "MissingAuthenticationToken",
    "ResourceNotFoundException",
    "KMSAccessDeniedException",
    "KMSDisabledException",
    "KMSNotFoundException",
    "KMSInvalidStateException",
    "KMSOptInRequired",
];

/// Whether a per-entry or request error code is worth retrying.
pub fn retryable_code(code: &str) -> bool {
    RETRYABLE_CODES.contains(&code)
}

/// Classifies an SDK error: throttling codes and 5xx/429 statuses are retried, as are
/// timeouts and dropped connections; other service errors are not.
pub fn classify<E>(err: &SdkError<E, HttpResponse>) -> Fault
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let text = describe(err);
    match err {
        SdkError::ConstructionFailure(_) => Fault::Fatal(text),
        SdkError::ServiceError(_) => {
            let code = err.code().unwrap_or_default();
            let status = err.raw_response().map(|r| r.status().as_u16()).unwrap_or(0);
            if retryable_code(code) || status >= 500 || status == 429 {
                Fault::Retry(text)
            } else if SETUP_CODES.contains(&code) || status == 401 || status == 403 {
                Fault::Halt(text)
            } else {
                Fault::Fatal(text)
            }
        }
        // Timeouts, dispatch failures (connection refused/reset), unparseable responses.
        _ => Fault::Retry(text),
    }
}

/// `Code: message`, or the whole error chain when the service gave no code.
pub fn describe<E, R>(err: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match (err.code(), err.message()) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.to_string(),
        _ => aws_sdk_kinesis::error::DisplayErrorContext(err).to_string(),
    }
}

/// The outcome of a connector's start-up `Describe*` call: the answer, or an error naming the
/// key and the AWS resource — `table: DynamoDB table "x" does not exist (region …)`, to
/// which the runtime adds the node — so a missing resource fails the run before any record
/// moves.
pub fn described<T, E, R>(
    result: Result<T, SdkError<E, R>>,
    key: &str,
    (kind, name): (&str, &str),
    settings: &Settings,
    sdk: &SdkConfig,
) -> anyhow::Result<T>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match result {
        Ok(v) => Ok(v),
        // Every service here spells it the same way.
        Err(e) if e.code() == Some("ResourceNotFoundException") => {
            anyhow::bail!("{key}: {kind} {name:?} does not exist ({})", settings.describe(sdk))
        }
        Err(e) => {
            anyhow::bail!("{key}: cannot describe {kind} {name:?} ({}): {}", settings.describe(sdk), describe(&e))
        }
    }
}

/// Per-entry outcomes from a batch API's per-entry error codes (Firehose's
/// `RequestResponses`, Kinesis's `Records`): no code is done, any code is retried (both
/// services report only transient per-entry codes). Entries the response left out are
/// retried too, so the result always has `n` outcomes.
pub fn entry_outcomes<'a>(codes: impl Iterator<Item = Option<&'a str>>, n: usize) -> Vec<EntryOutcome> {
    let mut outcomes: Vec<EntryOutcome> = codes
        .map(|code| match code {
            None => EntryOutcome::Done,
            Some(code) => EntryOutcome::Retry(code.to_string()),
        })
        .collect();
    outcomes.resize(n, EntryOutcome::Retry("missing from the response".into()));
    outcomes
}

/// What a batch API said about one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryOutcome {
    /// Written.
    Done,
    /// Failed transiently (its error code): send it again.
    Retry(String),
    /// Refused for good.
    Refused(String),
}

/// A future answering one request: an outcome per entry sent, in order, or a fault for the
/// whole request.
pub type Sent = Pin<Box<dyn Future<Output = Result<Vec<EntryOutcome>, Fault>> + Send>>;

/// API limits for one request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Entries per request.
    pub max_entries: usize,
    /// Bytes per request.
    pub max_bytes: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
}

/// Splits entry indices into requests within `limits` (entries and bytes), in order.
pub fn chunk(indices: &[usize], sizes: &[usize], limits: Limits) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut cur: Vec<usize> = Vec::new();
    let mut bytes = 0usize;
    for &i in indices {
        let size = sizes[i];
        if !cur.is_empty() && (cur.len() >= limits.max_entries || bytes + size > limits.max_bytes) {
            out.push(std::mem::take(&mut cur));
            bytes = 0;
        }
        cur.push(i);
        bytes += size;
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Sends entries through a batch API until each is written or refused: chunked to the
/// API's limits, chunks in flight concurrently, failed entries (and whole failed requests)
/// sent again after a capped exponential backoff with full jitter. A request refused as a
/// whole is split up so that one bad entry only refuses itself. Once the run is stopping,
/// what still fails after a few attempts is left [`Written::Unwritten`] (it will be read
/// again). `results` holds entries decided beforehand (e.g. too large); the others must be
/// `None`.
pub async fn send_all(
    what: &str,
    mut results: Vec<Option<Written>>,
    sizes: &[usize],
    limits: Limits,
    shutdown: &Shutdown,
    mut send: impl FnMut(&[usize]) -> Sent,
) -> Vec<Written> {
    let mut pending: Vec<usize> = (0..results.len()).filter(|i| results[*i].is_none()).collect();
    let mut alone: Vec<usize> = Vec::new(); // entries to isolate after a whole-request refusal
    let mut backoff = Backoff::default();
    while !pending.is_empty() || !alone.is_empty() {
        let mut requests = chunk(&pending, sizes, limits);
        requests.extend(alone.drain(..).map(|i| vec![i]));
        pending.clear();
        let mut last_error = String::new();
        for wave in requests.chunks(limits.concurrency.max(1)) {
            let handles: Vec<_> = wave.iter().map(|req| runtime().spawn(send(req))).collect();
            for (req, handle) in wave.iter().zip(handles) {
                let answer = match handle.await {
                    Ok(a) => a,
                    Err(e) => Err(Fault::Retry(format!("request task failed: {e}"))),
                };
                match answer {
                    Ok(outcomes) => {
                        for (&i, outcome) in req.iter().zip(outcomes) {
                            match outcome {
                                EntryOutcome::Done => results[i] = Some(Written::Ok),
                                EntryOutcome::Retry(code) => {
                                    last_error = code;
                                    pending.push(i);
                                }
                                EntryOutcome::Refused(reason) => {
                                    results[i] = Some(Written::Refused { kind: DeadLetterKind::Rejected, reason })
                                }
                            }
                        }
                    }
                    Err(Fault::Retry(e)) => {
                        last_error = e;
                        pending.extend(req);
                    }
                    Err(Fault::Fatal(e)) if req.len() > 1 => {
                        tracing::debug!(what, error = %e, "Request refused whole; sending its entries one by one.");
                        alone.extend(req);
                    }
                    Err(Fault::Fatal(e)) => {
                        results[req[0]] = Some(Written::Refused { kind: DeadLetterKind::Rejected, reason: e });
                    }
                    Err(Fault::Halt(e)) => {
                        shutdown.halt(format!("{what}: {e}"));
                        last_error = e;
                        pending.extend(req);
                    }
                }
            }
        }
        if pending.is_empty() {
            continue;
        }
        pending.sort_unstable();
        if shutdown.halted().is_some() || (shutdown.is_requested() && backoff.attempts() >= 3) {
            tracing::warn!(what, records = pending.len(), error = %last_error, "Stopping while writes still fail; leaving them unwritten.");
            for &i in &pending {
                results[i] = Some(Written::Unwritten);
            }
            pending.clear();
            break;
        }
        let delay = backoff.next_delay();
        tracing::warn!(what, records = pending.len(), retry = backoff.attempts(), error = %last_error, "Write partly failed; retrying the failed entries.");
        tokio::time::sleep(delay).await;
    }
    results.into_iter().map(|r| r.unwrap_or(Written::Unwritten)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_respect_entry_and_byte_limits() {
        let sizes = vec![10; 60];
        let idx: Vec<usize> = (0..60).collect();
        let limits = Limits { max_entries: 25, max_bytes: 1 << 20, concurrency: 4 };
        let c = chunk(&idx, &sizes, limits);
        assert_eq!(c.iter().map(Vec::len).collect::<Vec<_>>(), [25, 25, 10]);
        let limits = Limits { max_entries: 500, max_bytes: 35, concurrency: 4 };
        let c = chunk(&idx[..7], &sizes, limits);
        assert_eq!(c.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 1]);
    }

    #[test]
    fn empty_endpoint_strings_count_as_unset() {
        let aws = AwsConfig { region: Some("eu-west-2".into()), endpoint_url: Some("".into()) };
        let s = Settings::new(&aws, Some(" "));
        assert_eq!(s.endpoint_url, None);
        let s = Settings::new(&aws, Some("http://127.0.0.1:5000"));
        assert_eq!(s.endpoint_url.as_deref(), Some("http://127.0.0.1:5000"));
    }

    #[test]
    fn throttling_is_retried_and_validation_is_not() {
        assert!(retryable_code("ProvisionedThroughputExceededException"));
        assert!(retryable_code("ServiceUnavailableException"));
        assert!(!retryable_code("ValidationException"));
        assert!(!retryable_code("ConditionalCheckFailedException"));
        assert!(SETUP_CODES.contains(&"AccessDeniedException") && !SETUP_CODES.contains(&"ValidationException"));
    }
}
