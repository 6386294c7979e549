//! `/metrics` in the Prometheus text format (0.0.4): HTTP requests by route and status (counted
//! by a middleware) and the engine's counters and gauges (tokens, prefill tokens saved by group
//! sharing and the prefix cache, queue depth, running sequences, tokens/s, policy version).

use super::state::AppState;
use crate::engine::EngineMetrics;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// HTTP request counters, keyed by route template and status code.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
}

impl HttpMetrics {
    /// Counts one request on `route` answered with `status`.
    pub fn record(&self, route: &str, status: u16) {
        let mut m = match self.requests.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        *m.entry((route.to_string(), status)).or_insert(0) += 1;
    }

    /// A copy of the counters.
    pub fn snapshot(&self) -> BTreeMap<(String, u16), u64> {
        match self.requests.lock() {
            Ok(m) => m.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

/// Middleware counting every request by matched route (`other` for unknown paths) and status.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "other".to_string());
    let resp = next.run(req).await;
    state.metrics().record(&route, resp.status().as_u16());
    resp
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, v) in samples {
        if v.is_finite() && v.fract() == 0.0 && v.abs() < 9.0e15 {
            let _ = writeln!(out, "{name}{labels} {}", *v as i64);
        } else {
            let _ = writeln!(out, "{name}{labels} {v}");
        }
    }
}

/// Renders the HTTP counters and an engine snapshot as Prometheus text.
pub fn render(http: &BTreeMap<(String, u16), u64>, e: &EngineMetrics, model: &str) -> String {
    let mut out = String::new();
    let one = |v: f64| vec![(String::new(), v)];
    let reqs: Vec<(String, f64)> = http
        .iter()
        .map(|((route, status), n)| {
            (
                format!("{{route=\"{}\",status=\"{status}\"}}", escape_label(route)),
                *n as f64,
            )
        })
        .collect();
    metric(
        &mut out,
        "oxrl_http_requests_total",
        "counter",
        "HTTP requests by route and status code.",
        &reqs,
    );
    let _ = writeln!(out, "# HELP oxrl_model_info The served model.");
    let _ = writeln!(out, "# TYPE oxrl_model_info gauge");
    let _ = writeln!(
        out,
        "oxrl_model_info{{model=\"{}\"}} 1",
        escape_label(model)
    );
    let counters: [(&str, &str, f64); 6] = [
        (
            "oxrl_engine_requests_total",
            "Requests accepted by the engine.",
            e.requests as f64,
        ),
        (
            "oxrl_engine_requests_finished_total",
            "Requests finished (done, failed or aborted).",
            e.requests_finished as f64,
        ),
        (
            "oxrl_prompt_tokens_total",
            "Prompt tokens of accepted requests (each prompt once, whatever its n).",
            e.prompt_tokens as f64,
        ),
        (
            "oxrl_generated_tokens_total",
            "Tokens generated over all completions.",
            e.generated_tokens as f64,
        ),
        (
            "oxrl_prefill_tokens_computed_total",
            "Prompt tokens run through the model in prefill.",
            e.prefill_tokens_computed as f64,
        ),
        (
            "oxrl_preemptions_total",
            "Sequences preempted because the KV cache was full.",
            e.preemptions as f64,
        ),
    ];
    for (name, help, v) in counters {
        metric(&mut out, name, "counter", help, &one(v));
    }
    metric(
        &mut out,
        "oxrl_prefill_tokens_saved_total",
        "counter",
        "Prompt tokens not computed thanks to group sharing or the prefix cache.",
        &[
            (
                "{source=\"group\"}".to_string(),
                e.prefill_tokens_saved_group as f64,
            ),
            (
                "{source=\"prefix_cache\"}".to_string(),
                e.prefill_tokens_saved_prefix_cache as f64,
            ),
        ],
    );
    let gauges: [(&str, &str, f64); 7] = [
        (
            "oxrl_queue_depth",
            "Requests waiting for admission to the running batch.",
            e.queue_depth as f64,
        ),
        (
            "oxrl_running_sequences",
            "Sequences being prefilled or decoded.",
            e.running_sequences as f64,
        ),
        (
            "oxrl_kv_cache_free_blocks",
            "Free KV-cache blocks.",
            e.free_blocks as f64,
        ),
        (
            "oxrl_kv_cache_blocks",
            "Total KV-cache blocks.",
            e.total_blocks as f64,
        ),
        (
            "oxrl_tokens_per_second",
            "Generated tokens per second over the last few seconds.",
            e.tokens_per_s,
        ),
        (
            "oxrl_policy_version",
            "Version of the weights serving now.",
            e.policy_version as f64,
        ),
        (
            "oxrl_decode_steps_total",
            "Decode steps run.",
            e.decode_steps as f64,
        ),
    ];
    for (name, help, v) in gauges {
        let kind = if name.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        metric(&mut out, name, kind, help, &one(v));
    }
    metric(
        &mut out,
        "oxrl_engine_seconds_total",
        "counter",
        "Seconds the engine spent in prefill and decode steps.",
        &[
            ("{phase=\"prefill\"}".to_string(), e.prefill_seconds),
            ("{phase=\"decode\"}".to_string(), e.decode_seconds),
        ],
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let http = HttpMetrics::default();
        http.record("/v1/completions", 200);
        http.record("/v1/completions", 200);
        http.record("other", 404);
        let e = EngineMetrics {
            generated_tokens: 42,
            prefill_tokens_saved_group: 70,
            policy_version: 3,
            tokens_per_s: 12.5,
            ..EngineMetrics::default()
        };
        let text = render(&http.snapshot(), &e, "m\"x");
        let has = |line: &str| text.lines().any(|l| l == line);
        assert!(has(
            "oxrl_http_requests_total{route=\"/v1/completions\",status=\"200\"} 2"
        ));
        assert!(has(
            "oxrl_http_requests_total{route=\"other\",status=\"404\"} 1"
        ));
        assert!(has("oxrl_generated_tokens_total 42"));
        assert!(has("oxrl_prefill_tokens_saved_total{source=\"group\"} 70"));
        assert!(has("oxrl_policy_version 3"));
        assert!(has("oxrl_tokens_per_second 12.5"));
        assert!(has("oxrl_model_info{model=\"m\\\"x\"} 1"));
        assert!(has("# TYPE oxrl_queue_depth gauge"));
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, v) = l.rsplit_once(' ').unwrap();
            assert!(v.parse::<f64>().is_ok(), "{l}");
        }
    }
}
