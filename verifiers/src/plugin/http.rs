//! The `http` verifier: POSTs the protocol's score request (see [`super::protocol`]) to a URL and
//! reads the answer from the response body, with a deadline per attempt, retries with
//! exponential backoff on transient failures (connection errors, timeouts, HTTP 5xx, 408, 429),
//! none on other 4xx, and auth headers taken from the environment. Requests of one call run in
//! parallel up to `concurrency`. Every failure becomes `Score::failed` on the items of that
//! request, naming the URL and what happened.
//!
//! `ureq` is blocking and owns no runtime, so the verifier works the same inside a tokio
//! runtime's worker thread or outside one; `https://` URLs use rustls with the webpki roots.

use super::protocol::{self, excerpt, Answer, ScoreRequest};
use super::{config_error, fail_all, seconds, typed_options};
use crate::{BuildContext, Group, Score, Verifier, VerifierError};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

const KIND: &str = "http";

/// Longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Settings of an [`HttpVerifier`], as read from the task's verifier table.
#[derive(Clone, PartialEq)]
pub struct HttpConfig {
    /// Endpoint receiving the POSTs (`http://` or `https://`).
    pub url: String,
    /// Deadline of one attempt (connect, send, receive).
    pub timeout: Duration,
    /// Further attempts after a transient failure.
    pub retries: u32,
    /// Wait before the first retry; doubled for each next one (at most 10 s).
    pub backoff: Duration,
    /// Extra request headers (auth headers included, already resolved from the environment).
    pub headers: Vec<(String, String)>,
    /// Groups per request.
    pub batch_size: usize,
    /// Requests of one call in flight at once.
    pub concurrency: usize,
    /// Sent with every request as `options`.
    pub options: Map<String, Value>,
    /// Largest response body accepted, in bytes.
    pub max_response_bytes: u64,
}

impl std::fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header values may be secrets.
        let headers: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("HttpConfig")
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .field("backoff", &self.backoff)
            .field("headers", &headers)
            .field("batch_size", &self.batch_size)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

impl HttpConfig {
    /// Defaults around a URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            timeout: Duration::from_secs(30),
            retries: 2,
            backoff: Duration::from_millis(200),
            headers: Vec::new(),
            batch_size: 16,
            concurrency: 2,
            options: Map::new(),
            max_response_bytes: 16 << 20,
        }
    }

    /// Reads the options of an `http` verifier table (see `VERIFIERS.md` for the keys).
    /// Environment variables named by `bearer_env` / `header_env` are read here: a missing one
    /// is a configuration error.
    pub fn from_options(
        options: &Map<String, Value>,
        _ctx: &BuildContext,
    ) -> Result<Self, VerifierError> {
        let raw: RawOptions = typed_options(KIND, options)?;
        let url = raw.url.trim().to_string();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(config_error(
                KIND,
                format!("`url` must start with http:// or https://, got `{url}`"),
            ));
        }
        let mut c = Self::new(url);
        c.timeout = seconds(KIND, "timeout_s", raw.timeout_s, c.timeout)?;
        if let Some(r) = raw.retries {
            if r > 20 {
                return Err(config_error(
                    KIND,
                    format!("`retries` must be ≤ 20, got {r}"),
                ));
            }
            c.retries = r;
        }
        c.backoff = match raw.backoff_s {
            Some(0.0) => Duration::ZERO,
            b => seconds(KIND, "backoff_s", b, c.backoff)?,
        };
        let env = |var: &str, key: &str| {
            std::env::var(var).map_err(|_| {
                config_error(
                    KIND,
                    format!("environment variable `{var}` (from `{key}`) is not set"),
                )
            })
        };
        c.headers = raw.headers.into_iter().collect();
        for (header, var) in raw.header_env {
            let value = env(&var, "header_env")?;
            c.headers.push((header, value));
        }
        if let Some(var) = raw.bearer_env {
            let token = env(&var, "bearer_env")?;
            c.headers
                .push(("Authorization".into(), format!("Bearer {}", token.trim())));
        }
        for (k, v) in &c.headers {
            let valid_name = !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !valid_name || v.bytes().any(|b| b == b'\r' || b == b'\n') {
                return Err(config_error(KIND, format!("invalid header `{k}`")));
            }
        }
        if let Some(b) = raw.batch_size {
            if b == 0 {
                return Err(config_error(KIND, "`batch_size` must be at least 1"));
            }
            c.batch_size = b;
        }
        if let Some(n) = raw.concurrency {
            if n == 0 || n > 256 {
                return Err(config_error(
                    KIND,
                    format!("`concurrency` must be in 1..=256, got {n}"),
                ));
            }
            c.concurrency = n;
        }
        c.options = raw.options;
        if let Some(m) = raw.max_response_bytes {
            c.max_response_bytes = m.max(1024);
        }
        Ok(c)
    }
}

/// The table as written in the task file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOptions {
    url: String,
    timeout_s: Option<f64>,
    retries: Option<u32>,
    backoff_s: Option<f64>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    header_env: BTreeMap<String, String>,
    bearer_env: Option<String>,
    batch_size: Option<usize>,
    concurrency: Option<usize>,
    #[serde(default)]
    options: Map<String, Value>,
    max_response_bytes: Option<u64>,
}

/// The `http` verifier: see the module documentation.
pub struct HttpVerifier {
    config: HttpConfig,
    agent: ureq::Agent,
    next_id: AtomicU64,
}

impl std::fmt::Debug for HttpVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpVerifier")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// One failed attempt, and whether another may succeed.
struct AttemptError {
    message: String,
    transient: bool,
}

impl HttpVerifier {
    /// Builds the verifier from a task's verifier table.
    pub fn from_options(
        options: &Map<String, Value>,
        ctx: &BuildContext,
    ) -> Result<Self, VerifierError> {
        Ok(Self::new(HttpConfig::from_options(options, ctx)?))
    }

    /// A verifier with these settings (no connection is made until the first call).
    pub fn new(config: HttpConfig) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(config.timeout))
            .http_status_as_error(false)
            .user_agent(concat!("oxrl-verifiers/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Self {
            config,
            agent,
            next_id: AtomicU64::new(1),
        }
    }

    /// The settings in use.
    pub fn config(&self) -> &HttpConfig {
        &self.config
    }

    /// One POST and its checked answer.
    fn attempt(&self, body: &[u8], id: u64, groups: &[Group]) -> Result<Answer, AttemptError> {
        let mut req = self
            .agent
            .post(&self.config.url)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json");
        for (k, v) in &self.config.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let mut resp = req.send(body).map_err(|e| AttemptError {
            transient: matches!(
                e,
                ureq::Error::Io(_)
                    | ureq::Error::Timeout(_)
                    | ureq::Error::ConnectionFailed
                    | ureq::Error::HostNotFound
                    | ureq::Error::Protocol(_)
                    | ureq::Error::BodyStalled
                    | ureq::Error::ConnectProxyFailed(_)
            ),
            message: describe_error(&e, self.config.timeout),
        })?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(self.config.max_response_bytes)
            .read_to_vec();
        if !(200..300).contains(&status) {
            let text = body
                .map(|b| excerpt(String::from_utf8_lossy(&b).trim(), 300))
                .unwrap_or_default();
            return Err(AttemptError {
                message: format!("HTTP {status}: {text}"),
                transient: status >= 500 || status == 408 || status == 429,
            });
        }
        let body = body.map_err(|e| AttemptError {
            transient: matches!(
                e,
                ureq::Error::Io(_) | ureq::Error::Timeout(_) | ureq::Error::BodyStalled
            ),
            message: format!(
                "reading the response failed: {}",
                describe_error(&e, self.config.timeout)
            ),
        })?;
        protocol::parse_answer(&body, id, groups, false).map_err(|e| AttemptError {
            message: e.to_string(),
            transient: false,
        })
    }

    /// One request with its retries; never fails: problems become failed scores.
    fn run_request(&self, groups: &[Group]) -> Vec<Vec<Score>> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let options = (!self.config.options.is_empty()).then_some(&self.config.options);
        let body = ScoreRequest::new(id, groups, options).to_line();
        let mut wait = self.config.backoff;
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.attempt(&body, id, groups) {
                Ok(Answer::Scores(s)) => return s,
                Ok(Answer::Error(e)) => {
                    return fail_all(
                        groups,
                        &format!("http plugin {} reported an error: {e}", self.config.url),
                    )
                }
                Err(e) if e.transient && attempts <= self.config.retries => {
                    tracing::debug!(
                        target: "oxrl_verifiers::plugin",
                        "http plugin {}: attempt {attempts} failed ({}); retrying in {:?}",
                        self.config.url,
                        e.message,
                        wait
                    );
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(MAX_BACKOFF);
                }
                Err(e) => {
                    let tries = if attempts == 1 {
                        "1 attempt".to_string()
                    } else {
                        format!("{attempts} attempts")
                    };
                    let why = if e.transient || attempts > 1 {
                        ""
                    } else {
                        " (not retried)"
                    };
                    return fail_all(
                        groups,
                        &format!(
                            "http plugin {}: {} after {tries}{why}",
                            self.config.url, e.message
                        ),
                    );
                }
            }
        }
    }
}

/// A short description of a transport error.
fn describe_error(e: &ureq::Error, timeout: Duration) -> String {
    match e {
        ureq::Error::Timeout(t) => format!(
            "timed out after {:.3}s ({t}; timeout_s)",
            timeout.as_secs_f64()
        ),
        ureq::Error::ConnectionFailed => "connection failed".into(),
        other => other.to_string(),
    }
}

impl Verifier for HttpVerifier {
    fn name(&self) -> &str {
        KIND
    }

    fn score(&self, groups: &[Group]) -> Vec<Vec<Score>> {
        let requests: Vec<&[Group]> = groups.chunks(self.config.batch_size).collect();
        let threads = self.config.concurrency.min(requests.len());
        if threads <= 1 {
            return requests
                .into_iter()
                .flat_map(|r| self.run_request(r))
                .collect();
        }
        let results: Vec<OnceLock<Vec<Vec<Score>>>> =
            requests.iter().map(|_| OnceLock::new()).collect();
        let next = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(req) = requests.get(i) else { break };
                    let _ = results[i].set(self.run_request(req));
                });
            }
        });
        results
            .into_iter()
            .zip(&requests)
            .flat_map(|(r, req)| {
                r.into_inner()
                    .unwrap_or_else(|| fail_all(req, "http plugin: request was not sent"))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn opts(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn options_parse_and_resolve_env_headers() {
        std::env::set_var("OXRL_TEST_HTTP_TOKEN", "s3cret\n");
        let c = HttpConfig::from_options(
            &opts(
                json!({"url": "http://127.0.0.1:9/score", "timeout_s": 1, "retries": 4,
                "headers": {"X-Task": "kw"}, "bearer_env": "OXRL_TEST_HTTP_TOKEN",
                "batch_size": 4, "options": {"a": 1}}),
            ),
            &BuildContext::default(),
        )
        .unwrap();
        assert_eq!(c.timeout, Duration::from_secs(1));
        assert_eq!(c.retries, 4);
        assert_eq!(c.batch_size, 4);
        assert_eq!(
            c.headers,
            [
                ("X-Task".to_string(), "kw".to_string()),
                ("Authorization".to_string(), "Bearer s3cret".to_string())
            ]
        );
        // Secrets stay out of debug output.
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn bad_options_are_config_errors() {
        let ctx = BuildContext::default();
        for (v, want) in [
            (json!({}), "missing field `url`"),
            (json!({"url": "ftp://x"}), "must start with http"),
            (
                json!({"url": "http://x", "bearer_env": "OXRL_TEST_UNSET_VAR_XYZ"}),
                "`OXRL_TEST_UNSET_VAR_XYZ` (from `bearer_env`) is not set",
            ),
            (
                json!({"url": "http://x", "headers": {"a b": "1"}}),
                "invalid header",
            ),
            (json!({"url": "http://x", "retries": 99}), "`retries`"),
            (
                json!({"url": "http://x", "concurrency": 0}),
                "`concurrency`",
            ),
            (
                json!({"url": "http://x", "method": "GET"}),
                "unknown field `method`",
            ),
        ] {
            let err = HttpConfig::from_options(&opts(v.clone()), &ctx)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{v}: {err}");
        }
    }
}
