//! `GET /openapi.json`: the OpenAPI 3.1 document of every route in [`ROUTES`], with the request
//! and response schemas of the JSON bodies. Paths and methods come from [`ROUTES`] (the table the
//! router is built from); each route's operation comes from an exhaustive match on its
//! [`RouteId`], so a route cannot be added without its documentation. The unit tests check the
//! schemas' property names against the fields of the Rust wire types.
//!
//! The file runs past 600 lines because the document is one literal schema per wire type, kept
//! next to the exhaustive match that ties it to its route: split apart, a schema and the route
//! it documents could drift.

use super::{Route, RouteAuth, RouteId, ROUTES};
use axum::Json;
use serde_json::{json, Map, Value};
use std::sync::OnceLock;

/// `GET /openapi.json`.
pub async fn openapi_json() -> Json<Value> {
    static DOC: OnceLock<Value> = OnceLock::new();
    Json(DOC.get_or_init(document).clone())
}

/// The OpenAPI 3.1 document of the server.
pub fn document() -> Value {
    let mut paths = Map::new();
    for r in ROUTES {
        let entry = paths
            .entry(r.path.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(ops) = entry {
            ops.insert(r.method.as_str().to_ascii_lowercase(), operation(r));
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "oxrl serve",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The HTTP API of `oxrl serve`: OpenAI-compatible completions and chat, \
                oxrl's native rollout API, atomic versioned weight updates, health and metrics. \
                Every error is `{\"error\": {\"message\", \"type\", \"param\", \"code\"}}`. \
                Reference: docs/http-api.md."
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "`oxrl serve --api-key` (or OXRL_API_KEY); without one the \
                        inference routes are open. The admin key is accepted too."
                },
                "adminKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "`oxrl serve --admin-key` (or OXRL_ADMIN_KEY); without one \
                        POST /v1/weights refuses every call (403)."
                }
            },
            "schemas": schemas(),
        }
    })
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn json_body(name: &str) -> Value {
    json!({ "application/json": { "schema": schema_ref(name) } })
}

fn error_response(description: &str) -> Value {
    json!({ "description": description, "content": json_body("ErrorResponse") })
}

/// The error responses every JSON route can give, plus the route's own.
fn responses(ok: Value, errors: &[(&str, &str)]) -> Value {
    let mut out = Map::new();
    out.insert("200".into(), ok);
    for (code, what) in errors {
        out.insert((*code).into(), error_response(what));
    }
    Value::Object(out)
}

const E400: (&str, &str) = (
    "400",
    "Malformed JSON, an unknown or wrongly typed field (`param` names it), or a value out of range",
);
const E401: (&str, &str) = (
    "401",
    "Missing or wrong bearer key (the server runs with --api-key)",
);
const E404_MODEL: (&str, &str) = ("404", "`model` names a model this server does not serve");
const E413: (&str, &str) = ("413", "The body exceeds the limit (--max-body-mb)");
const E429: (&str, &str) = (
    "429",
    "The engine's queue is full (--max-queue); retry after `Retry-After` seconds",
);
const E503: (&str, &str) = (
    "503",
    "The server is shutting down, or the engine has stopped; `Retry-After` is set",
);
const E500: (&str, &str) = ("500", "The model failed while running the request");

fn security(auth: RouteAuth) -> Value {
    match auth {
        // Open when the server has no --api-key.
        RouteAuth::ApiKey => json!([{ "apiKey": [] }, { "adminKey": [] }, {}]),
        RouteAuth::AdminKey => json!([{ "adminKey": [] }]),
        RouteAuth::Open => json!([]),
    }
}

fn operation(r: &Route) -> Value {
    let inference_errors = [E400, E401, E404_MODEL, E413, E429, E503, E500];
    let mut op = match r.id {
        RouteId::Completions => json!({
            "operationId": "createCompletion",
            "tags": ["openai"],
            "description": "OpenAI-compatible completions. `prompt` is a string, a list of \
                strings, a list of token ids or a list of token-id lists; each prompt gets `n` \
                choices (choice index = prompt index x n + sample index). `echo` with \
                `logprobs` and `max_tokens: 0` scores the prompt. With `stream: true` the answer \
                is Server-Sent Events: `data: <CompletionResponse chunk>` lines, then \
                `data: [DONE]`.",
            "requestBody": {
                "required": true,
                "content": { "application/json": {
                    "schema": schema_ref("CompletionRequest"),
                    "example": { "prompt": "1 + 2 =", "max_tokens": 8, "temperature": 0 }
                } }
            },
            "responses": responses(json!({
                "description": "The completions (or, with `stream`, an SSE stream of chunks)",
                "content": {
                    "application/json": { "schema": schema_ref("CompletionResponse") },
                    "text/event-stream": { "schema": { "type": "string" } }
                }
            }), &inference_errors),
        }),
        RouteId::ChatCompletions => json!({
            "operationId": "createChatCompletion",
            "tags": ["openai"],
            "description": "OpenAI-compatible chat: `messages` are rendered with the model's \
                chat template. With `stream: true` the answer is Server-Sent Events of \
                `ChatCompletionChunk`s, then `data: [DONE]`.",
            "requestBody": {
                "required": true,
                "content": { "application/json": {
                    "schema": schema_ref("ChatCompletionRequest"),
                    "example": {
                        "messages": [{ "role": "user", "content": "What is 2 + 3?" }],
                        "max_tokens": 8,
                        "temperature": 0
                    }
                } }
            },
            "responses": responses(json!({
                "description": "The chat completion (or, with `stream`, an SSE stream of chunks)",
                "content": {
                    "application/json": { "schema": schema_ref("ChatCompletionResponse") },
                    "text/event-stream": { "schema": { "type": "string" } }
                }
            }), &inference_errors),
        }),
        RouteId::Models => json!({
            "operationId": "listModels",
            "tags": ["openai"],
            "description": "The one served model: its id (--served-model-name), where it was \
                loaded from (`root`: with --watch, the checkpoint serving now), its context \
                length and the policy version serving now.",
            "responses": responses(json!({
                "description": "The served model",
                "content": json_body("ModelList")
            }), &[E401]),
        }),
        RouteId::Rollouts => json!({
            "operationId": "createRollouts",
            "tags": ["oxrl"],
            "description": "oxrl's native batch call: every prompt is sampled `params.n` times \
                with the engine's sampling parameters; each completion carries token ids, \
                text, per-token logprobs and the policy versions that produced it. A prompt \
                whose completions would run past the context stops there \
                (`finish_reason: length`) instead of being refused.",
            "requestBody": {
                "required": true,
                "content": { "application/json": {
                    "schema": schema_ref("RolloutsRequest"),
                    "example": {
                        "prompts": [
                            "1 + 2 =",
                            { "messages": [{ "role": "user", "content": "What is 2 + 3?" }] }
                        ],
                        "params": { "n": 2, "max_tokens": 8, "temperature": 1.0, "seed": 0 }
                    }
                } }
            },
            "responses": responses(json!({
                "description": "One result per prompt, in order",
                "content": json_body("RolloutsResponse")
            }), &inference_errors),
        }),
        RouteId::Weights => json!({
            "operationId": "updateWeights",
            "tags": ["oxrl"],
            "description": "Replaces the served weights in one atomic, versioned transaction: \
                the tensors are parsed, validated (names, shapes, dtypes, finite values) and \
                swapped in between two decode steps; the policy version goes up by one. On any \
                failure the old weights keep serving. The body is a safetensors file (any \
                content type but JSON; limit --max-weights-body-mb) or JSON `{\"path\": ...}` \
                naming a safetensors file or an HF-layout directory on the server's disk.",
            "requestBody": {
                "required": true,
                "content": {
                    "application/json": {
                        "schema": schema_ref("WeightsPathRequest"),
                        "example": { "path": "runs/grpo-arith/checkpoints/step-000010" }
                    },
                    "application/octet-stream": {
                        "schema": { "type": "string", "contentMediaType": "application/octet-stream" }
                    }
                }
            },
            "responses": responses(json!({
                "description": "The update was applied",
                "content": json_body("WeightsResponse")
            }), &[
                ("400", "Invalid weights (unknown tensor, wrong shape or dtype, non-finite value, \
                    unreadable safetensors; code `invalid_weights`) or malformed JSON"),
                ("401", "Missing or wrong admin key"),
                ("403", "The server has no --admin-key: weight updates are disabled"),
                ("404", "`path` does not exist on the server (code `weights_not_found`)"),
                ("413", "The body exceeds --max-weights-body-mb (or --max-body-mb for JSON)"),
                E503,
            ]),
        }),
        RouteId::Health => json!({
            "operationId": "health",
            "tags": ["operations"],
            "description": "200 while the engine serves; 503 once the server shuts down or the \
                engine has stopped.",
            "responses": responses(json!({
                "description": "Serving",
                "content": json_body("Health")
            }), &[E503]),
        }),
        RouteId::Metrics => json!({
            "operationId": "metrics",
            "tags": ["operations"],
            "description": "Prometheus text exposition (0.0.4): HTTP requests by route and \
                status, engine queue and running sequences, tokens, KV-cache use, policy \
                version.",
            "responses": {
                "200": {
                    "description": "Prometheus metrics",
                    "content": { "text/plain": { "schema": { "type": "string" } } }
                }
            },
        }),
        RouteId::OpenApi => json!({
            "operationId": "openapi",
            "tags": ["operations"],
            "description": "This document.",
            "responses": {
                "200": {
                    "description": "The OpenAPI 3.1 document",
                    "content": { "application/json": { "schema": { "type": "object" } } }
                }
            },
        }),
    };
    if let Value::Object(o) = &mut op {
        o.insert("summary".into(), Value::String(r.summary.into()));
        o.insert("security".into(), security(r.auth));
    }
    op
}

fn int() -> Value {
    json!({ "type": "integer", "minimum": 0 })
}

fn nullable(t: &str) -> Value {
    json!({ "type": [t, "null"] })
}

fn schemas() -> Value {
    let mut s = Map::new();
    let mut put = |name: &str, v: Value| {
        s.insert(name.to_string(), v);
    };
    put(
        "ErrorResponse",
        json!({
            "type": "object",
            "required": ["error"],
            "properties": { "error": {
                "type": "object",
                "required": ["message", "type", "param", "code"],
                "properties": {
                    "message": { "type": "string" },
                    "type": {
                        "type": "string",
                        "enum": ["invalid_request_error", "authentication_error",
                            "permission_error", "not_found_error", "rate_limit_error",
                            "server_error", "service_unavailable_error"]
                    },
                    "param": { "type": ["string", "null"], "description": "The request field at fault" },
                    "code": { "type": ["string", "null"], "description": "Machine-readable code, e.g. `invalid_weights`, `queue_full`, `unknown_route`" }
                }
            } }
        }),
    );
    put(
        "StopSpec",
        json!({
            "description": "One stop string or a list of them",
            "oneOf": [{ "type": "string" }, { "type": "array", "items": { "type": "string" } }]
        }),
    );
    put(
        "StreamOptions",
        json!({
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "include_usage": { "type": ["boolean", "null"], "description": "Send a last chunk with `usage` (and `choices: []`) before `[DONE]`" },
                "continuous_usage_stats": { "type": ["boolean", "null"], "description": "Accepted for compatibility; usage is only reported at the end" }
            }
        }),
    );
    put("CompletionRequest", completion_request());
    put(
        "ChatMessage",
        json!({
            "type": "object",
            "required": ["role"],
            "description": "Extra keys (`name`, `refusal`, `tool_calls: null`, ...) are ignored",
            "properties": {
                "role": { "type": "string", "enum": ["system", "developer", "user", "assistant", "tool"] },
                "content": {
                    "description": "A string, a list of `{\"type\": \"text\", \"text\": ...}` parts, or null",
                    "oneOf": [
                        { "type": "string" },
                        { "type": "array", "items": {
                            "type": "object",
                            "required": ["type", "text"],
                            "properties": { "type": { "const": "text" }, "text": { "type": "string" } }
                        } },
                        { "type": "null" }
                    ]
                }
            }
        }),
    );
    put("ChatCompletionRequest", chat_request());
    put(
        "OpenAiUsage",
        json!({
            "type": "object",
            "required": ["prompt_tokens", "completion_tokens", "total_tokens"],
            "properties": {
                "prompt_tokens": int(), "completion_tokens": int(), "total_tokens": int()
            }
        }),
    );
    put(
        "LegacyLogprobs",
        json!({
            "type": "object",
            "required": ["tokens", "token_logprobs", "top_logprobs", "text_offset"],
            "properties": {
                "tokens": { "type": "array", "items": { "type": "string" } },
                "token_logprobs": { "type": "array", "items": nullable("number"), "description": "null for the first prompt token when echoing" },
                "top_logprobs": { "type": "array", "items": {
                    "type": ["object", "null"], "additionalProperties": { "type": "number" }
                }, "description": "Token string -> logprob, the chosen token included" },
                "text_offset": { "type": "array", "items": int() }
            }
        }),
    );
    put(
        "CompletionChoice",
        json!({
            "type": "object",
            "required": ["index", "text", "logprobs", "finish_reason"],
            "properties": {
                "index": int(),
                "text": { "type": "string" },
                "logprobs": { "oneOf": [schema_ref("LegacyLogprobs"), { "type": "null" }] },
                "finish_reason": { "type": ["string", "null"], "enum": ["stop", "length", "abort", null] }
            }
        }),
    );
    put(
        "CompletionResponse",
        json!({
            "type": "object",
            "description": "Also the shape of each SSE chunk of a streamed completion",
            "required": ["id", "object", "created", "model", "choices", "policy_version"],
            "properties": {
                "id": { "type": "string" },
                "object": { "const": "text_completion" },
                "created": int(),
                "model": { "type": "string" },
                "choices": { "type": "array", "items": schema_ref("CompletionChoice") },
                "usage": schema_ref("OpenAiUsage"),
                "policy_version": { "type": "integer", "minimum": 0, "description": "oxrl extension: the newest policy version that produced a token of the response" }
            }
        }),
    );
    put(
        "ChatTopLogprob",
        json!({
            "type": "object",
            "required": ["token", "logprob", "bytes"],
            "properties": {
                "token": { "type": "string" },
                "logprob": { "type": "number" },
                "bytes": { "type": "array", "items": int() }
            }
        }),
    );
    put(
        "ChatTokenLogprob",
        json!({
            "type": "object",
            "required": ["token", "logprob", "bytes", "top_logprobs"],
            "properties": {
                "token": { "type": "string" },
                "logprob": { "type": "number" },
                "bytes": { "type": "array", "items": int() },
                "top_logprobs": { "type": "array", "items": schema_ref("ChatTopLogprob") }
            }
        }),
    );
    put(
        "ChatLogprobs",
        json!({
            "type": "object",
            "required": ["content"],
            "properties": { "content": { "type": "array", "items": schema_ref("ChatTokenLogprob") } }
        }),
    );
    put(
        "ChatMessageOut",
        json!({
            "type": "object",
            "properties": {
                "role": { "const": "assistant" },
                "content": { "type": "string" }
            }
        }),
    );
    put(
        "ChatChoice",
        json!({
            "type": "object",
            "required": ["index", "message", "logprobs", "finish_reason"],
            "properties": {
                "index": int(),
                "message": schema_ref("ChatMessageOut"),
                "logprobs": { "oneOf": [schema_ref("ChatLogprobs"), { "type": "null" }] },
                "finish_reason": { "type": ["string", "null"], "enum": ["stop", "length", "abort", null] }
            }
        }),
    );
    put(
        "ChatCompletionResponse",
        json!({
            "type": "object",
            "required": ["id", "object", "created", "model", "choices", "usage", "policy_version"],
            "properties": {
                "id": { "type": "string" },
                "object": { "const": "chat.completion" },
                "created": int(),
                "model": { "type": "string" },
                "choices": { "type": "array", "items": schema_ref("ChatChoice") },
                "usage": schema_ref("OpenAiUsage"),
                "policy_version": { "type": "integer", "minimum": 0, "description": "oxrl extension: the newest policy version that produced a token of the response" }
            }
        }),
    );
    put(
        "ChatChunkChoice",
        json!({
            "type": "object",
            "required": ["index", "delta", "logprobs", "finish_reason"],
            "properties": {
                "index": int(),
                "delta": schema_ref("ChatMessageOut"),
                "logprobs": { "oneOf": [schema_ref("ChatLogprobs"), { "type": "null" }] },
                "finish_reason": { "type": ["string", "null"] }
            }
        }),
    );
    put(
        "ChatCompletionChunk",
        json!({
            "type": "object",
            "description": "One SSE chunk of a streamed chat completion",
            "required": ["id", "object", "created", "model", "choices"],
            "properties": {
                "id": { "type": "string" },
                "object": { "const": "chat.completion.chunk" },
                "created": int(),
                "model": { "type": "string" },
                "choices": { "type": "array", "items": schema_ref("ChatChunkChoice") },
                "usage": schema_ref("OpenAiUsage")
            }
        }),
    );
    put(
        "ModelCard",
        json!({
            "type": "object",
            "required": ["id", "object", "created", "owned_by", "root", "max_model_len", "policy_version"],
            "properties": {
                "id": { "type": "string", "description": "The model id clients send as `model`" },
                "object": { "const": "model" },
                "created": int(),
                "owned_by": { "const": "oxrl" },
                "root": { "type": "string", "description": "Where the weights serving now were loaded from (with --watch: the checkpoint directory)" },
                "max_model_len": int(),
                "policy_version": { "type": "integer", "minimum": 0, "description": "Policy version serving now (+1 per weight update or watched checkpoint)" }
            }
        }),
    );
    put(
        "ModelList",
        json!({
            "type": "object",
            "required": ["object", "data"],
            "properties": {
                "object": { "const": "list" },
                "data": { "type": "array", "items": schema_ref("ModelCard") }
            }
        }),
    );
    put("SamplingParams", sampling_params());
    put(
        "RolloutsRequest",
        json!({
            "type": "object",
            "required": ["prompts"],
            "additionalProperties": false,
            "properties": {
                "model": { "type": "string", "description": "Must be the served model's name, when given" },
                "prompts": {
                    "type": "array",
                    "minItems": 1,
                    "items": { "oneOf": [
                        { "type": "string", "description": "Tokenised as is" },
                        { "type": "array", "items": int(), "description": "Token ids" },
                        { "type": "object", "required": ["text"], "additionalProperties": false, "properties": { "text": { "type": "string" } } },
                        { "type": "object", "required": ["messages"], "additionalProperties": false, "properties": { "messages": { "type": "array", "items": schema_ref("ChatMessage") } }, "description": "Rendered with the chat template" },
                        { "type": "object", "required": ["token_ids"], "additionalProperties": false, "properties": { "token_ids": { "type": "array", "items": int() } } }
                    ] }
                },
                "params": schema_ref("SamplingParams"),
                "add_generation_prompt": { "type": "boolean", "default": true, "description": "For `messages` prompts: append the assistant prefix" }
            }
        }),
    );
    put(
        "TokenLogprob",
        json!({
            "type": "object",
            "required": ["token_id", "logprob"],
            "properties": { "token_id": int(), "logprob": { "type": "number" } }
        }),
    );
    put(
        "PromptTokenLogprob",
        json!({
            "type": "object",
            "required": ["token_id", "logprob", "top_logprobs"],
            "properties": {
                "token_id": int(),
                "logprob": { "type": "number", "description": "log p(token | earlier prompt tokens), T = 1" },
                "top_logprobs": { "type": "array", "items": schema_ref("TokenLogprob") }
            }
        }),
    );
    put(
        "Completion",
        json!({
            "type": "object",
            "required": ["index", "token_ids", "text", "logprobs", "top_logprobs", "finish_reason",
                "stop_reason", "policy_version", "policy_version_end"],
            "properties": {
                "index": { "type": "integer", "minimum": 0, "description": "Sample index within the group, 0..n" },
                "token_ids": { "type": "array", "items": int(), "description": "Every sampled token, including a final stop/EOS token" },
                "text": { "type": "string", "description": "Detokenised completion without a final stop token or matched stop string" },
                "logprobs": { "type": "array", "items": { "type": "number" }, "description": "log softmax(logits / T) of each sampled token over the full vocabulary, before top-k/top-p/min-p truncation (T = 1 when greedy)" },
                "top_logprobs": { "type": ["array", "null"], "items": { "type": "array", "items": schema_ref("TokenLogprob") } },
                "finish_reason": { "type": "string", "enum": ["stop", "length", "abort"] },
                "stop_reason": {
                    "description": "With finish_reason = stop: the token or string that stopped it",
                    "oneOf": [
                        { "type": "object", "required": ["token"], "properties": { "token": int() } },
                        { "type": "object", "required": ["string"], "properties": { "string": { "type": "string" } } },
                        { "type": "null" }
                    ]
                },
                "policy_version": { "type": "integer", "minimum": 0, "description": "Policy version when the first token was sampled" },
                "policy_version_end": { "type": "integer", "minimum": 0, "description": "Policy version when the last token was sampled" }
            }
        }),
    );
    put(
        "Usage",
        json!({
            "type": "object",
            "required": ["prompt_tokens", "completion_tokens", "total_tokens", "cached_prompt_tokens"],
            "properties": {
                "prompt_tokens": int(),
                "completion_tokens": int(),
                "total_tokens": int(),
                "cached_prompt_tokens": { "type": "integer", "minimum": 0, "description": "Prompt tokens whose KV came from the prefix cache" }
            }
        }),
    );
    put(
        "RolloutResult",
        json!({
            "type": "object",
            "required": ["prompt_token_ids", "prompt_logprobs", "completions", "usage"],
            "properties": {
                "prompt_token_ids": { "type": "array", "items": int() },
                "prompt_logprobs": {
                    "type": ["array", "null"],
                    "items": { "oneOf": [schema_ref("PromptTokenLogprob"), { "type": "null" }] },
                    "description": "With params.prompt_logprobs: one entry per prompt token, the first null"
                },
                "completions": { "type": "array", "items": schema_ref("Completion") },
                "usage": schema_ref("Usage")
            }
        }),
    );
    put(
        "RolloutsResponse",
        json!({
            "type": "object",
            "required": ["id", "object", "created", "model", "results", "usage", "policy_version"],
            "properties": {
                "id": { "type": "string" },
                "object": { "const": "rollout" },
                "created": int(),
                "model": { "type": "string" },
                "results": { "type": "array", "items": schema_ref("RolloutResult") },
                "usage": schema_ref("Usage"),
                "policy_version": { "type": "integer", "minimum": 0, "description": "Policy version serving when the response was written" }
            }
        }),
    );
    put(
        "WeightsPathRequest",
        json!({
            "type": "object",
            "required": ["path"],
            "additionalProperties": false,
            "properties": {
                "path": { "type": "string", "description": "A safetensors file or an HF-layout directory on the server's disk" }
            }
        }),
    );
    put(
        "WeightsResponse",
        json!({
            "type": "object",
            "required": ["object", "policy_version", "num_tensors", "bytes", "elapsed_ms", "load_ms", "apply_ms"],
            "properties": {
                "object": { "const": "weights_update" },
                "policy_version": { "type": "integer", "minimum": 0, "description": "The new policy version" },
                "num_tensors": int(),
                "bytes": int(),
                "elapsed_ms": { "type": "number" },
                "load_ms": { "type": "number", "description": "Receiving / reading and parsing the tensors" },
                "apply_ms": { "type": "number", "description": "Validating and swapping them in" }
            }
        }),
    );
    put(
        "Health",
        json!({
            "type": "object",
            "required": ["status", "engine", "model", "policy_version"],
            "properties": {
                "status": { "const": "ok" },
                "engine": { "const": "running" },
                "model": { "type": "string" },
                "policy_version": int()
            }
        }),
    );
    Value::Object(s)
}

fn completion_request() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "description": "Unknown fields are a 400. OpenAI fields oxrl does not implement are accepted only with their neutral value.",
        "properties": {
            "model": { "type": "string", "description": "Must be the served model's name (or its source), when given" },
            "prompt": {
                "description": "A string, a list of strings, a list of token ids, or a list of token-id lists",
                "oneOf": [
                    { "type": "string" },
                    { "type": "array", "items": { "type": "string" } },
                    { "type": "array", "items": int() },
                    { "type": "array", "items": { "type": "array", "items": int() } }
                ]
            },
            "suffix": { "type": ["string", "null"], "description": "Unsupported: absent, null or empty" },
            "max_tokens": { "type": "integer", "minimum": 0, "default": 16, "description": "0 with `echo` scores the prompt" },
            "temperature": { "type": "number", "minimum": 0, "default": 1, "description": "0 = greedy" },
            "top_p": { "type": "number", "exclusiveMinimum": 0, "maximum": 1, "default": 1 },
            "top_k": { "type": "integer", "default": 0, "description": "0 or -1: off" },
            "min_p": { "type": "number", "minimum": 0, "maximum": 1, "default": 0 },
            "n": { "type": "integer", "minimum": 1, "default": 1 },
            "best_of": { "type": "integer", "description": "Must equal `n` when given" },
            "stream": { "type": "boolean", "default": false },
            "stream_options": schema_ref("StreamOptions"),
            "logprobs": { "type": ["integer", "null"], "minimum": 0, "description": "Return logprobs and this many top alternatives per token (legacy format)" },
            "echo": { "type": "boolean", "default": false, "description": "Prepend the prompt to the text (and its tokens to `logprobs`)" },
            "stop": schema_ref("StopSpec"),
            "seed": { "type": "integer", "description": "Sampling seed: the same request and seed give the same completions" },
            "presence_penalty": { "type": "number", "description": "Unsupported: must be 0" },
            "frequency_penalty": { "type": "number", "description": "Unsupported: must be 0" },
            "repetition_penalty": { "type": "number", "description": "Unsupported: must be 1" },
            "logit_bias": { "type": "object", "additionalProperties": { "type": "number" }, "description": "Unsupported: must be empty" },
            "user": { "type": "string", "description": "Ignored" },
            "ignore_eos": { "type": "boolean", "default": false, "description": "Keep generating past EOS" },
            "stop_token_ids": { "type": "array", "items": int(), "description": "Extra token ids that end a completion" }
        }
    })
}

fn chat_request() -> Value {
    json!({
        "type": "object",
        "required": ["messages"],
        "additionalProperties": false,
        "description": "Unknown fields are a 400. OpenAI fields oxrl does not implement are accepted only with their neutral value.",
        "properties": {
            "model": { "type": "string", "description": "Must be the served model's name (or its source), when given" },
            "messages": { "type": "array", "minItems": 1, "items": schema_ref("ChatMessage") },
            "max_tokens": { "type": "integer", "minimum": 0, "description": "Tokens to generate (older OpenAI name)" },
            "max_completion_tokens": { "type": "integer", "minimum": 0, "description": "Tokens to generate; wins over `max_tokens`" },
            "temperature": { "type": "number", "minimum": 0, "default": 1 },
            "top_p": { "type": "number", "exclusiveMinimum": 0, "maximum": 1, "default": 1 },
            "top_k": { "type": "integer", "default": 0, "description": "0 or -1: off" },
            "min_p": { "type": "number", "minimum": 0, "maximum": 1, "default": 0 },
            "n": { "type": "integer", "minimum": 1, "default": 1 },
            "stream": { "type": "boolean", "default": false },
            "stream_options": schema_ref("StreamOptions"),
            "logprobs": { "type": "boolean", "default": false, "description": "Return logprobs of the sampled tokens" },
            "top_logprobs": { "type": "integer", "minimum": 0, "description": "Top alternatives per token (needs `logprobs: true`)" },
            "stop": schema_ref("StopSpec"),
            "seed": { "type": "integer" },
            "presence_penalty": { "type": "number", "description": "Unsupported: must be 0" },
            "frequency_penalty": { "type": "number", "description": "Unsupported: must be 0" },
            "repetition_penalty": { "type": "number", "description": "Unsupported: must be 1" },
            "logit_bias": { "type": "object", "additionalProperties": { "type": "number" }, "description": "Unsupported: must be empty" },
            "user": { "type": "string", "description": "Ignored" },
            "ignore_eos": { "type": "boolean", "default": false },
            "stop_token_ids": { "type": "array", "items": int() },
            "add_generation_prompt": { "type": "boolean", "default": true, "description": "Append the assistant prefix after the last message" },
            "tools": { "type": "array", "maxItems": 0, "description": "Unsupported: absent or empty" },
            "tool_choice": { "description": "Unsupported: absent, \"none\", or \"auto\" with no tools" },
            "parallel_tool_calls": { "type": "boolean", "description": "Ignored" },
            "response_format": { "type": "object", "description": "Only {\"type\": \"text\"}" },
            "metadata": { "description": "Ignored" },
            "store": { "type": "boolean", "description": "Ignored" },
            "service_tier": { "type": "string", "description": "Ignored" }
        }
    })
}

fn sampling_params() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "description": "The engine's sampling parameters (native API); every field is optional",
        "properties": {
            "n": { "type": "integer", "minimum": 1, "default": 1, "description": "Completions per prompt (the group size; the prompt is prefilled once)" },
            "max_tokens": { "type": "integer", "minimum": 0, "default": 16, "description": "Most tokens per completion (0: only score the prompt)" },
            "temperature": { "type": "number", "minimum": 0, "default": 1, "description": "0 = greedy" },
            "top_p": { "type": "number", "exclusiveMinimum": 0, "maximum": 1, "default": 1 },
            "top_k": { "type": "integer", "minimum": 0, "default": 0, "description": "0 = off" },
            "min_p": { "type": "number", "minimum": 0, "maximum": 1, "default": 0 },
            "stop": { "type": "array", "items": { "type": "string", "minLength": 1 }, "default": [], "description": "Stop strings; the text ends before the match, token_ids keep every sampled token" },
            "stop_token_ids": { "type": "array", "items": int(), "default": [] },
            "ignore_eos": { "type": "boolean", "default": false },
            "seed": { "type": ["integer", "null"], "minimum": 0, "description": "Per-sample RNG seed (ChaCha8, stream = sample index); null: random" },
            "logprobs": { "type": ["integer", "null"], "minimum": 0, "description": "Top alternatives per sampled token" },
            "prompt_logprobs": { "type": ["integer", "null"], "minimum": 0, "description": "Logprob of every prompt token (T = 1) plus this many alternatives" }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::{self, Deserialize, Visitor};
    use std::collections::BTreeSet;

    /// The serde field names of a struct: a deserializer that records what `deserialize_struct`
    /// is told and then gives up.
    struct FieldNames<'a>(&'a mut Vec<&'static str>);

    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("stop")
        }
    }
    impl std::error::Error for Stop {}
    impl de::Error for Stop {
        fn custom<T: std::fmt::Display>(_: T) -> Self {
            Stop
        }
    }

    impl<'de> de::Deserializer<'de> for FieldNames<'_> {
        type Error = Stop;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            self.0.extend_from_slice(fields);
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }

    fn fields<T: for<'de> Deserialize<'de>>() -> BTreeSet<String> {
        let mut out = Vec::new();
        let _ = T::deserialize(FieldNames(&mut out));
        assert!(
            !out.is_empty(),
            "{} is not a struct",
            std::any::type_name::<T>()
        );
        out.into_iter().map(String::from).collect()
    }

    fn properties(doc: &Value, schema: &str) -> BTreeSet<String> {
        doc["components"]["schemas"][schema]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("schema {schema} has no properties"))
            .keys()
            .cloned()
            .collect()
    }

    #[test]
    fn every_route_is_documented_and_nothing_else() {
        let doc = document();
        let mut documented = BTreeSet::new();
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for (method, op) in ops.as_object().unwrap() {
                assert!(op["responses"]["200"].is_object(), "{method} {path}");
                assert!(op["summary"].is_string(), "{method} {path}");
                documented.insert((method.to_ascii_uppercase(), path.clone()));
            }
        }
        let routes: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|r| (r.method.as_str().to_string(), r.path.to_string()))
            .collect();
        assert_eq!(routes.len(), ROUTES.len(), "a route is listed twice");
        assert_eq!(documented, routes);
    }

    #[test]
    fn every_schema_reference_resolves() {
        let doc = document();
        fn walk(v: &Value, doc: &Value) {
            match v {
                Value::Object(o) => {
                    if let Some(Value::String(r)) = o.get("$ref") {
                        let name = r.trim_start_matches("#/components/schemas/");
                        assert!(
                            doc["components"]["schemas"][name].is_object(),
                            "dangling {r}"
                        );
                    }
                    o.values().for_each(|x| walk(x, doc));
                }
                Value::Array(a) => a.iter().for_each(|x| walk(x, doc)),
                _ => {}
            }
        }
        walk(&doc, &doc);
    }

    #[test]
    fn schemas_name_exactly_the_fields_of_the_wire_types() {
        use crate::http::openai_types as o;
        use crate::types as t;
        let doc = document();
        let pairs: Vec<(&str, BTreeSet<String>)> = vec![
            ("CompletionRequest", fields::<o::CompletionRequest>()),
            (
                "ChatCompletionRequest",
                fields::<o::ChatCompletionRequest>(),
            ),
            ("ChatMessage", fields::<o::ChatMessageIn>()),
            ("StreamOptions", fields::<o::StreamOptions>()),
            ("CompletionResponse", fields::<o::CompletionResponse>()),
            ("CompletionChoice", fields::<o::CompletionChoice>()),
            ("LegacyLogprobs", fields::<o::LegacyLogprobs>()),
            ("OpenAiUsage", fields::<o::OpenAiUsage>()),
            (
                "ChatCompletionResponse",
                fields::<o::ChatCompletionResponse>(),
            ),
            ("ChatChoice", fields::<o::ChatChoice>()),
            ("ChatMessageOut", fields::<o::ChatMessageOut>()),
            ("ChatLogprobs", fields::<o::ChatLogprobs>()),
            ("ChatTokenLogprob", fields::<o::ChatTokenLogprob>()),
            ("ChatTopLogprob", fields::<o::ChatTopLogprob>()),
            ("ChatCompletionChunk", fields::<o::ChatCompletionChunk>()),
            ("ChatChunkChoice", fields::<o::ChatChunkChoice>()),
            ("ModelCard", fields::<o::ModelCard>()),
            ("ModelList", fields::<o::ModelList>()),
            ("SamplingParams", fields::<t::SamplingParams>()),
            ("RolloutsRequest", fields::<t::RolloutsRequest>()),
            ("RolloutsResponse", fields::<t::RolloutsResponse>()),
            ("RolloutResult", fields::<t::RolloutResponse>()),
            ("Completion", fields::<t::Completion>()),
            ("TokenLogprob", fields::<t::TokenLogprob>()),
            ("PromptTokenLogprob", fields::<t::PromptTokenLogprob>()),
            ("Usage", fields::<t::Usage>()),
            ("WeightsPathRequest", fields::<t::WeightsPathRequest>()),
            ("WeightsResponse", fields::<t::WeightsResponse>()),
        ];
        for (schema, want) in pairs {
            assert_eq!(properties(&doc, schema), want, "schema {schema}");
        }
        // The error body and /health are built in code, not from a Deserialize type.
        let err = crate::http::ApiError::bad_request("x").body();
        let v = serde_json::to_value(err).unwrap();
        let keys: BTreeSet<String> = v["error"].as_object().unwrap().keys().cloned().collect();
        let documented: BTreeSet<String> = doc["components"]["schemas"]["ErrorResponse"]
            ["properties"]["error"]["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(keys, documented);
    }
}
