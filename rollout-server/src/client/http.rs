//! [`HttpRolloutClient`]: rollouts from one or more `oxrl serve` processes over HTTP.
//!
//! - **Rollouts**: each request becomes one `POST /v1/rollouts` (its own seed, so one prompt per
//!   call), sent to the server with the fewest prompts in flight; calls run concurrently (one
//!   thread per prompt, scoped to the `generate` call) and the servers batch them continuously.
//!   Every completion must carry the version its server was last synced to, from its first
//!   token to its last; anything else is a protocol error, not a silently off-policy sample.
//! - **Weights**: [`RolloutClient::sync_weights`] serialises
//!   [`Transformer::weights_changed_by_training`] (all weights, or only the LoRA-adapted linears
//!   with the adapters merged) as one safetensors body and posts it to every server with the
//!   admin key; each must answer with its version plus one. A refused update is reported with
//!   the version the server keeps serving ([`RolloutError::WeightsRefused`]).
//! - **Start**: [`HttpRolloutClient::connect`] reads every server's `/health`; the servers must
//!   agree on the policy version (a run owns its servers: start them fresh).
//!
//! `ureq` is blocking and owns no runtime, so the trainer needs no async runtime for this.

use super::{RolloutClient, RolloutError};
use crate::types::{
    Completion, RolloutRequest, RolloutResponse, RolloutsRequest, RolloutsResponse, WeightsResponse,
};
use oxrl_models::weights::tensors_to_safetensors_bytes;
use oxrl_models::Transformer;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Largest response body read (a rollout response of many long completions is big).
const MAX_RESPONSE_BYTES: u64 = 1 << 30;

/// Environment variable that corrupts the weight update of one sync (its value: the 1-based
/// sync number), to test that a refused update is reported and the old weights keep serving.
pub const CORRUPT_SYNC_ENV: &str = "OXRL_FAULT_CORRUPT_WEIGHT_SYNC";

/// How to reach the servers.
#[derive(Debug, Clone)]
pub struct HttpClientConfig {
    /// Base URLs (`http://127.0.0.1:8000`), at least one.
    pub urls: Vec<String>,
    /// Key of the inference routes (`--api-key`), if the servers use one.
    pub api_key: Option<String>,
    /// Key of `POST /v1/weights` (`--admin-key`); required to sync weights.
    pub admin_key: Option<String>,
    /// Timeout of one HTTP call (a rollout call lasts as long as its generation).
    pub timeout: Duration,
}

/// One server and what the client knows of it.
#[derive(Debug)]
struct Server {
    url: String,
    in_flight: AtomicUsize,
    version: AtomicU64,
}

/// Rollouts from `oxrl serve` processes (see the module doc).
#[derive(Debug)]
pub struct HttpRolloutClient {
    servers: Vec<Server>,
    api_key: Option<String>,
    admin_key: Option<String>,
    agent: ureq::Agent,
    syncs: AtomicU64,
    /// Serialises the choice of a server with the in-flight bump.
    pick: Mutex<()>,
}

fn trim_url(u: &str) -> String {
    u.trim().trim_end_matches('/').to_string()
}

/// The error message of an oxrl JSON error body, or an excerpt of the body.
fn error_message(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .and_then(|m| m.as_str())
                .map(String::from)
        })
        .unwrap_or_else(|| text.chars().take(300).collect())
}

impl HttpRolloutClient {
    /// Connects to every server (`GET /health`) and checks that they serve the same policy
    /// version.
    pub fn connect(config: HttpClientConfig) -> Result<Self, RolloutError> {
        if config.urls.is_empty() {
            return Err(RolloutError::Transport("no server URLs given".into()));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(config.timeout))
            .http_status_as_error(false)
            .user_agent(concat!("oxrl-trainer/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let mut client = Self {
            servers: config
                .urls
                .iter()
                .map(|u| Server {
                    url: trim_url(u),
                    in_flight: AtomicUsize::new(0),
                    version: AtomicU64::new(0),
                })
                .collect(),
            api_key: config.api_key,
            admin_key: config.admin_key,
            agent,
            syncs: AtomicU64::new(0),
            pick: Mutex::new(()),
        };
        let mut versions = Vec::new();
        for s in &client.servers {
            let v = client.health_version(&s.url)?;
            s.version.store(v, Ordering::SeqCst);
            versions.push(v);
        }
        if versions.iter().any(|&v| v != versions[0]) {
            let list: Vec<String> = client
                .servers
                .iter()
                .zip(&versions)
                .map(|(s, v)| format!("{} at {v}", s.url))
                .collect();
            return Err(RolloutError::Protocol(format!(
                "the servers serve different policy versions ({}); a training run needs servers started fresh from the same model",
                list.join(", ")
            )));
        }
        client.servers.shrink_to_fit();
        Ok(client)
    }

    /// The server URLs.
    pub fn urls(&self) -> Vec<String> {
        self.servers.iter().map(|s| s.url.clone()).collect()
    }

    fn health_version(&self, url: &str) -> Result<u64, RolloutError> {
        let mut resp = self
            .agent
            .get(format!("{url}/health"))
            .call()
            .map_err(|e| RolloutError::Transport(format!("{url}/health: {e}")))?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_vec()
            .map_err(|e| RolloutError::Transport(format!("{url}/health: {e}")))?;
        if status != 200 {
            return Err(RolloutError::Transport(format!(
                "{url}/health: HTTP {status}: {}",
                error_message(&body)
            )));
        }
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| RolloutError::Protocol(format!("{url}/health: {e}")))?;
        v.get("policy_version")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| RolloutError::Protocol(format!("{url}/health has no policy_version")))
    }

    /// POSTs `body` and returns the response body of a 2xx answer, or `(status, message)`.
    fn post(
        &self,
        url: &str,
        content_type: &str,
        key: Option<&str>,
        body: &[u8],
    ) -> Result<Result<Vec<u8>, (u16, String)>, RolloutError> {
        let mut req = self
            .agent
            .post(url)
            .header("Content-Type", content_type)
            .header("Accept", "application/json");
        if let Some(k) = key {
            req = req.header("Authorization", format!("Bearer {k}"));
        }
        let mut resp = req
            .send(body)
            .map_err(|e| RolloutError::Transport(format!("{url}: {e}")))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_vec()
            .map_err(|e| RolloutError::Transport(format!("{url}: reading the response: {e}")))?;
        Ok(if (200..300).contains(&status) {
            Ok(bytes)
        } else {
            Err((status, error_message(&bytes)))
        })
    }

    /// The least-loaded server, with its in-flight count raised.
    fn acquire(&self) -> usize {
        let _g = self.pick.lock().unwrap_or_else(|p| p.into_inner());
        let i = (0..self.servers.len())
            .min_by_key(|&i| self.servers[i].in_flight.load(Ordering::SeqCst))
            .unwrap_or(0);
        self.servers[i].in_flight.fetch_add(1, Ordering::SeqCst);
        i
    }

    fn one_rollout(
        &self,
        server: usize,
        request: &RolloutRequest,
    ) -> Result<RolloutResponse, RolloutError> {
        let s = &self.servers[server];
        let url = format!("{}/v1/rollouts", s.url);
        let body = RolloutsRequest {
            model: None,
            prompts: vec![serde_json::json!({ "token_ids": request.prompt_token_ids })],
            params: request.params.clone(),
            add_generation_prompt: None,
        };
        let body = serde_json::to_vec(&body)
            .map_err(|e| RolloutError::Protocol(format!("encoding a rollout request: {e}")))?;
        let bytes = self
            .post(&url, "application/json", self.api_key.as_deref(), &body)?
            .map_err(|(status, m)| RolloutError::Transport(format!("{url}: HTTP {status}: {m}")))?;
        let resp: RolloutsResponse = serde_json::from_slice(&bytes)
            .map_err(|e| RolloutError::Protocol(format!("{url}: {e}")))?;
        let mut results = resp.results;
        if results.len() != 1 {
            return Err(RolloutError::Protocol(format!(
                "{url}: {} results for one prompt",
                results.len()
            )));
        }
        let result = results.remove(0);
        let expected = s.version.load(Ordering::SeqCst);
        let off: Option<&Completion> = result
            .completions
            .iter()
            .find(|c| c.policy_version != expected || c.policy_version_end != expected);
        if let Some(c) = off {
            return Err(RolloutError::Protocol(format!(
                "{url}: a completion came from policy version {}..{}, the server was synced to {expected}",
                c.policy_version, c.policy_version_end
            )));
        }
        if result.completions.len() != request.params.n {
            return Err(RolloutError::Protocol(format!(
                "{url}: {} completions, {} asked",
                result.completions.len(),
                request.params.n
            )));
        }
        Ok(result)
    }
}

impl RolloutClient for HttpRolloutClient {
    fn generate(
        &self,
        requests: Vec<RolloutRequest>,
    ) -> Result<Vec<RolloutResponse>, RolloutError> {
        let results: Vec<Result<RolloutResponse, RolloutError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = requests
                .iter()
                .map(|r| {
                    let server = self.acquire();
                    scope.spawn(move || {
                        let out = self.one_rollout(server, r);
                        self.servers[server]
                            .in_flight
                            .fetch_sub(1, Ordering::SeqCst);
                        out
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(RolloutError::Transport("a rollout thread panicked".into()))
                    })
                })
                .collect()
        });
        results.into_iter().collect()
    }

    fn policy_version(&self) -> u64 {
        self.servers
            .first()
            .map(|s| s.version.load(Ordering::SeqCst))
            .unwrap_or(0)
    }

    fn sync_weights(&self, model: &Transformer) -> Result<u64, RolloutError> {
        let sync = self.syncs.fetch_add(1, Ordering::SeqCst) + 1;
        let mut tensors = model
            .weights_changed_by_training()
            .map_err(|e| RolloutError::Protocol(format!("collecting the weights: {e}")))?;
        if std::env::var(CORRUPT_SYNC_ENV)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            == Some(sync)
        {
            // Fault injection: one NaN in one tensor; the server must refuse the whole update.
            if let Some(name) = tensors.keys().min().cloned() {
                let t = &tensors[&name];
                let nan = (t.ones_like()? * f64::NAN)?;
                tensors.insert(name, nan);
            }
        }
        let body = tensors_to_safetensors_bytes(&tensors)
            .map_err(|e| RolloutError::Protocol(format!("serialising the weights: {e}")))?;
        let key = self.admin_key.as_deref();
        if key.is_none() {
            return Err(RolloutError::Transport(
                "syncing weights to a server needs its admin key (`rollout.admin_key` or OXRL_ADMIN_KEY)".into(),
            ));
        }
        let results: Vec<Result<u64, RolloutError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .servers
                .iter()
                .map(|s| {
                    let body = &body;
                    scope.spawn(move || -> Result<u64, RolloutError> {
                        let url = format!("{}/v1/weights", s.url);
                        let before = s.version.load(Ordering::SeqCst);
                        match self.post(&url, "application/octet-stream", key, body)? {
                            Err((_, message)) => Err(RolloutError::WeightsRefused {
                                server: s.url.clone(),
                                serving_version: self.health_version(&s.url).unwrap_or(before),
                                message,
                            }),
                            Ok(bytes) => {
                                let w: WeightsResponse = serde_json::from_slice(&bytes)
                                    .map_err(|e| RolloutError::Protocol(format!("{url}: {e}")))?;
                                if w.policy_version != before + 1 {
                                    return Err(RolloutError::Protocol(format!(
                                        "{url}: policy version went {before} → {}, expected {}",
                                        w.policy_version,
                                        before + 1
                                    )));
                                }
                                s.version.store(w.policy_version, Ordering::SeqCst);
                                Ok(w.policy_version)
                            }
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(RolloutError::Transport(
                            "a weight-sync thread panicked".into(),
                        ))
                    })
                })
                .collect()
        });
        let versions = results.into_iter().collect::<Result<Vec<u64>, _>>()?;
        Ok(versions.first().copied().unwrap_or(0))
    }

    fn describe(&self) -> String {
        self.urls().join(", ")
    }
}

impl From<candle_core::Error> for RolloutError {
    fn from(e: candle_core::Error) -> Self {
        RolloutError::Protocol(e.to_string())
    }
}
