//! The `http` sink: POSTs records as JSON to a URL — a webhook for a chat channel, an
//! incident tool, a CRM — one request per record, or one JSON array per write with
//! `batch = true`.
//!
//! The body is the sink plugin's payload (`notify-template` renders one) or the record's JSON.
//! Header values may come from the environment (`{ env = "TOKEN", prefix = "Bearer " }`) and
//! are never logged, nor is the URL's path and query (webhook URLs often carry a secret):
//! messages show `scheme://host/…` only.
//!
//! What a response means:
//! - 2xx: written.
//! - 429 (honouring `Retry-After`), 408, 5xx, a timeout, a refused or dropped connection: the
//!   endpoint's fault, retried without limit with capped exponential backoff and full
//!   jitter; the node shows as degraded meanwhile.
//! - 401, 403, 407 or a redirect: the setup is wrong (a bad token, a moved URL); every record
//!   would fail alike, so the run stops and leaves them unacknowledged instead of
//!   dead-lettering them all.
//! - any other 4xx: this record's fault. It is dead-lettered (`http_status`) with the status
//!   and the start of the response body; with `batch = true` the batch's records are sent
//!   again one by one first, so only the refused one is dead-lettered.
//!
//! TLS is rustls with the machine's root certificates — the stack the AWS SDK already
//! uses, so this sink adds no HTTP client of its own. Requests go one at a time, in order.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

use crate::connectors::once;
use crate::contract::{
    Backoff, Destination, Env, Health, Item, SinkConnector, SinkOptions, WriteFuture, Writer, Written,
};
use crate::dead_letter::DeadLetterKind;
use crate::flow::Shutdown;
use crate::units::parse_duration;

/// `type = "http"`.
#[derive(Clone, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpSink {
    /// Where to POST (`http://` or `https://`).
    pub url: String,
    /// One JSON array per write instead of one request per record (default false).
    #[serde(default)]
    pub batch: bool,
    /// Request headers: a value as text, or `{ env = "VAR", prefix = "Bearer " }` read from
    /// the environment when the run starts. Never logged.
    #[serde(default)]
    pub headers: BTreeMap<String, Header>,
    /// The body's `Content-Type` (default `application/json`).
    #[serde(default = "json_type")]
    pub content_type: String,
    /// How long one request may take, connecting included (default `"10s"`).
    pub timeout: Option<String>,
    /// Records per request with `batch = true` (default 100).
    pub max_batch: Option<usize>,
    /// Send one request per value of this field (`"ContactId"`): see `remember`.
    pub once_per: Option<String>,
    /// How long a sent key is remembered (default `"7d"`).
    pub remember: Option<String>,
}

fn json_type() -> String {
    "application/json".into()
}

/// A header value as configured.
#[derive(Clone, Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(untagged)]
pub enum Header {
    /// The value as written.
    Text(String),
    /// From the environment, after an optional prefix.
    Env {
        /// The environment variable.
        env: String,
        /// Text before the variable's value (`"Bearer "`).
        #[serde(default)]
        prefix: String,
    },
}

// Hand-written so a header value never reaches a log or an error message.
impl std::fmt::Debug for HttpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSink")
            .field("url", &redacted(&self.url))
            .field("batch", &self.batch)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .field("once_per", &self.once_per)
            .finish_non_exhaustive()
    }
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_MAX_BATCH: usize = 100;
/// How much of a refusing response's body the dead letter quotes.
const BODY_QUOTE_CHARS: usize = 300;
/// The longest `Retry-After` honoured; a longer one is capped (the run must still stop).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

impl HttpSink {
    fn timeout(&self) -> Result<Duration, String> {
        match &self.timeout {
            None => Ok(DEFAULT_TIMEOUT),
            Some(t) => match parse_duration(t) {
                Ok(d) if d.is_zero() => Err("timeout: must be longer than zero".into()),
                Ok(d) => Ok(d),
                Err(e) => Err(format!("timeout: {e}")),
            },
        }
    }

    /// The headers with their values, read from the environment where configured.
    fn header_values(&self) -> Result<Vec<(HeaderName, HeaderValue)>, Vec<String>> {
        let mut out = Vec::new();
        let mut problems = Vec::new();
        for (name, header) in &self.headers {
            let Ok(header_name) = HeaderName::from_bytes(name.as_bytes()) else {
                problems.push(format!("headers: {name:?} is not a header name"));
                continue;
            };
            let text = match header {
                Header::Text(t) => t.clone(),
                Header::Env { env, prefix } => match std::env::var(env) {
                    Ok(v) if !v.is_empty() => format!("{prefix}{v}"),
                    _ => {
                        problems.push(format!("headers.{name}: the environment variable {env} is not set"));
                        continue;
                    }
                },
            };
            match HeaderValue::from_str(&text) {
                Ok(mut v) => {
                    v.set_sensitive(true);
                    out.push((header_name, v));
                }
                // The value is not quoted: it may be a secret.
                Err(_) => problems.push(format!("headers.{name}: the value is not valid in an HTTP header")),
            }
        }
        if problems.is_empty() { Ok(out) } else { Err(problems) }
    }
}

impl SinkConnector for HttpSink {
    fn validate(&self, _env: &Env) -> Vec<String> {
        let mut problems = Vec::new();
        match self.url.parse::<Uri>() {
            Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => {}
            _ => problems.push(format!("url: {:?} is not an http:// or https:// URL", redacted(&self.url))),
        }
        if let Err(e) = self.timeout() {
            problems.push(e);
        }
        if self.max_batch == Some(0) {
            problems.push("max_batch: must be at least 1".into());
        }
        if self.max_batch.is_some() && !self.batch {
            problems.push("max_batch: only means something with `batch = true`".into());
        }
        if HeaderValue::from_str(&self.content_type).is_err() {
            problems.push("content_type: not valid in an HTTP header".into());
        }
        if let Err(found) = self.header_values() {
            problems.extend(found);
        }
        problems.extend(once::validate(self.once_per.as_deref(), self.remember.as_deref()));
        problems
    }

    fn open(&self, env: &Env, options: SinkOptions) -> anyhow::Result<Box<dyn Writer>> {
        let writer = Box::new(HttpWriter::open(env, self, &options)?);
        once::wrap(writer, env.id, self.once_per.as_deref(), self.remember.as_deref(), &options)
    }

    fn destination(&self, _env: &Env) -> Destination {
        Destination { unit: "records", place: format!("HTTP POST {}", redacted(&self.url)), look: None }
    }

    fn max_records(&self) -> usize {
        if self.batch { self.max_batch.unwrap_or(DEFAULT_MAX_BATCH) } else { 1 }
    }
}

/// `scheme://host[:port]/…`: a URL as messages may show it.
fn redacted(url: &str) -> String {
    match url.parse::<Uri>() {
        Ok(u) => match (u.scheme_str(), u.authority()) {
            // Userinfo (`user:pass@`) is dropped too.
            (Some(s), Some(a)) => {
                let host = a.as_str().rsplit('@').next().unwrap_or_default();
                let rest = if u.path().len() > 1 || u.query().is_some() { "/…" } else { "" };
                format!("{s}://{host}{rest}")
            }
            _ => "(not a URL)".into(),
        },
        Err(_) => "(not a URL)".into(),
    }
}

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// POSTs records to one URL.
pub struct HttpWriter {
    node: String,
    client: HttpClient,
    uri: Uri,
    shown: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    content_type: HeaderValue,
    batch: bool,
    timeout: Duration,
    health: Health,
    shutdown: Shutdown,
}

/// What one request came to.
enum Answer {
    Written,
    /// The endpoint's fault: retry, after at least this long when it said so.
    Retry(String, Option<Duration>),
    /// The records' fault (a 4xx): the status and the start of the body.
    Refused(String),
    /// The setup's fault: stop the run.
    Halt(String),
}

impl HttpWriter {
    /// Builds the client (rustls with the machine's root certificates).
    pub fn open(env: &Env, cfg: &HttpSink, options: &SinkOptions) -> anyhow::Result<HttpWriter> {
        let uri: Uri = cfg.url.parse().map_err(|_| anyhow::anyhow!("url: not a URL"))?;
        let timeout = cfg.timeout().map_err(anyhow::Error::msg)?;
        let headers = cfg.header_values().map_err(|p| anyhow::anyhow!("{}", p.join("; ")))?;
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(native.certs);
        if uri.scheme_str() == Some("https") && added == 0 {
            anyhow::bail!(
                "url: no trusted root certificates found on this machine for https (install ca-certificates, or set SSL_CERT_FILE)"
            );
        }
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(HttpWriter {
            node: format!("sinks.{}", env.id),
            client: Client::builder(TokioExecutor::new()).build(https),
            shown: redacted(&cfg.url),
            uri,
            headers,
            content_type: HeaderValue::from_str(&cfg.content_type)?,
            batch: cfg.batch,
            timeout,
            health: options.health.clone(),
            shutdown: options.shutdown.clone(),
        })
    }

    /// Sends one body, once.
    async fn post(&self, body: Bytes) -> Answer {
        let mut req = Request::builder().method(Method::POST).uri(self.uri.clone());
        for (name, value) in &self.headers {
            req = req.header(name, value);
        }
        let req = match req.header(CONTENT_TYPE, self.content_type.clone()).body(Full::new(body)) {
            Ok(r) => r,
            Err(e) => return Answer::Halt(format!("cannot build the request: {e}")),
        };
        let sent = tokio::time::timeout(self.timeout, async {
            let resp = self.client.request(req).await?;
            let status = resp.status();
            let retry_after = resp.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(retry_after);
            // Only a refusal's body is read (its start quoted in the dead letter); a success's
            // body is dropped unread.
            let body = if status.is_success() || status.is_server_error() {
                Bytes::new()
            } else {
                Limited::new(resp.into_body(), 64 * 1024).collect().await.map(|b| b.to_bytes()).unwrap_or_default()
            };
            anyhow::Ok((status, retry_after, body))
        })
        .await;
        let (status, retry_after, body) = match sent {
            Err(_) => return Answer::Retry(format!("no answer within {:?}", self.timeout), None),
            Ok(Err(e)) => return Answer::Retry(format!("{e:#}"), None),
            Ok(Ok(v)) => v,
        };
        let described = || {
            let text = String::from_utf8_lossy(&body);
            let quote: String = text.trim().chars().take(BODY_QUOTE_CHARS).collect();
            if quote.is_empty() { format!("HTTP {status}") } else { format!("HTTP {status}: {quote}") }
        };
        match status {
            s if s.is_success() => Answer::Written,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::REQUEST_TIMEOUT => {
                Answer::Retry(format!("HTTP {status}"), retry_after)
            }
            s if s.is_server_error() => Answer::Retry(format!("HTTP {status}"), retry_after),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::PROXY_AUTHENTICATION_REQUIRED => {
                Answer::Halt(format!("{} refused the credentials: {}", self.shown, described()))
            }
            s if s.is_redirection() => {
                Answer::Halt(format!("{} answered with a redirect ({}); set `url` to where it points", self.shown, s))
            }
            _ => Answer::Refused(described()),
        }
    }

    /// Sends one body until it is written, refused, or the run stops.
    async fn deliver(&self, body: Bytes) -> Written {
        let mut backoff = Backoff::default();
        loop {
            let (error, at_least) = match self.post(body.clone()).await {
                Answer::Written => {
                    self.health.recovered();
                    return Written::Ok;
                }
                Answer::Refused(reason) => {
                    self.health.recovered();
                    return Written::Refused { kind: DeadLetterKind::HttpStatus, reason };
                }
                Answer::Halt(reason) => {
                    self.shutdown.halt(format!("{}: {reason}", self.node));
                    return Written::Unwritten;
                }
                Answer::Retry(error, at_least) => (error, at_least),
            };
            if self.shutdown.halted().is_some() || (self.shutdown.is_requested() && backoff.attempts() >= 3) {
                tracing::warn!(sink = %self.node, url = %self.shown, error = %error, "Stopping while the endpoint still fails; leaving records unwritten.");
                return Written::Unwritten;
            }
            let delay = backoff.next_delay().max(at_least.unwrap_or_default().min(MAX_RETRY_AFTER));
            self.health.retrying(&format!("{}: {error}", self.shown), backoff.attempts(), delay);
            tokio::time::sleep(delay).await;
        }
    }

    async fn write_all(&self, items: &[Item]) -> Vec<Written> {
        if !self.batch {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                let w =
                    if self.stopped() { Written::Unwritten } else { self.deliver(Bytes::from(item.payload())).await };
                out.push(w);
            }
            return out;
        }
        match self.deliver(array(items.iter())).await {
            // One record of the array is refused, or the array as a whole: send them one by one
            // (each as a one-element array, the shape the endpoint expects), so only the
            // refused records are dead-lettered.
            Written::Refused { .. } if items.len() > 1 => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    let w =
                        if self.stopped() { Written::Unwritten } else { self.deliver(array([item].into_iter())).await };
                    out.push(w);
                }
                out
            }
            w => vec![w; items.len()],
        }
    }

    fn stopped(&self) -> bool {
        self.shutdown.halted().is_some()
    }
}

/// A JSON array of the items' payloads: JSON payloads as they are, others as strings.
fn array<'a>(items: impl Iterator<Item = &'a Item>) -> Bytes {
    let values: Vec<serde_json::Value> = items
        .map(|item| {
            let payload = item.payload();
            serde_json::from_slice(&payload)
                .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&payload).into_owned()))
        })
        .collect();
    Bytes::from(serde_json::to_vec(&values).unwrap_or_default())
}

/// `Retry-After`: seconds, or an HTTP date.
fn retry_after(text: &str) -> Option<Duration> {
    if let Ok(secs) = text.trim().parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let at = time::PrimitiveDateTime::parse(text.trim(), &format).ok()?.assume_utc();
    let wait = at - time::OffsetDateTime::now_utc();
    Some(Duration::try_from(wait).unwrap_or_default())
}

impl Writer for HttpWriter {
    fn write<'a>(&'a mut self, items: &'a [Item]) -> WriteFuture<'a> {
        Box::pin(self.write_all(items))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(text: &str) -> HttpSink {
        toml::from_str(text).unwrap()
    }

    fn env_problems(s: &HttpSink) -> Vec<String> {
        let aws = crate::config::AwsConfig::default();
        s.validate(&Env { id: "hook", base_dir: std::path::Path::new("."), aws: &aws })
    }

    #[test]
    fn urls_are_shown_without_path_query_or_credentials() {
        assert_eq!(redacted("https://hooks.slack.com/services/T000/B000/XXXX"), "https://hooks.slack.com/…");
        assert_eq!(redacted("http://user:secret@127.0.0.1:8080/x?token=1"), "http://127.0.0.1:8080/…");
        assert_eq!(redacted("http://127.0.0.1:8080"), "http://127.0.0.1:8080");
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(retry_after("soon"), None);
    }

    #[test]
    fn a_header_from_the_environment_is_checked_and_never_shown() {
        // SAFETY: this test alone reads or writes these variables.
        unsafe { std::env::set_var("CTRFLOW_TEST_HTTP_TOKEN", "s3cr3t-value") };
        let s = sink(
            "url = \"https://example.com/hook/abc\"\nheaders = { Authorization = { env = \"CTRFLOW_TEST_HTTP_TOKEN\", prefix = \"Bearer \" }, X-Team = \"ops\" }",
        );
        assert!(env_problems(&s).is_empty(), "{:?}", env_problems(&s));
        let values = s.header_values().unwrap();
        assert!(values.iter().all(|(_, v)| v.is_sensitive()));
        assert_eq!(values[0].1, "Bearer s3cr3t-value");
        let shown = format!("{s:?}");
        assert!(!shown.contains("s3cr3t") && !shown.contains("abc"), "{shown}");

        let missing =
            sink("url = \"https://example.com\"\nheaders = { Authorization = { env = \"CTRFLOW_TEST_UNSET_VAR\" } }");
        assert_eq!(
            env_problems(&missing),
            ["headers.Authorization: the environment variable CTRFLOW_TEST_UNSET_VAR is not set"]
        );
    }

    #[test]
    fn bad_keys_are_named() {
        let s = sink("url = \"ftp://x\"\ntimeout = \"soon\"\nmax_batch = 5\nremember = \"1d\"");
        let p = env_problems(&s);
        for key in ["url:", "timeout:", "max_batch:", "remember:"] {
            assert!(p.iter().any(|e| e.starts_with(key)), "{key} in {p:?}");
        }
    }
}
