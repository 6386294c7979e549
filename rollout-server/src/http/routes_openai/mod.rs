//! The OpenAI-compatible routes: `POST /v1/completions` ([`completions`](fn@completions)),
//! `POST /v1/chat/completions` ([`chat_completions`]) and `GET /v1/models`, with what they
//! share: submitting every prompt, awaiting the results, and one SSE producer (`stream.rs`)
//! that both streaming routes drive with their own chunk format.

mod chat;
mod completions;
mod stream;

pub use chat::chat_completions;
pub use completions::{completions, DEFAULT_COMPLETION_MAX_TOKENS};

use super::errors::ApiError;
use super::openai_types::{ModelCard, ModelList};
use super::state::AppState;
use crate::engine::ResponseReceiver;
use crate::types::{RolloutRequest, RolloutResponse};
use axum::extract::State;
use axum::Json;

/// `GET /v1/models`.
pub async fn list_models(State(state): State<AppState>) -> Json<ModelList> {
    Json(ModelList {
        object: "list".into(),
        data: vec![ModelCard {
            id: state.cfg().served_model_name.clone(),
            object: "model".into(),
            created: state.created(),
            owned_by: "oxrl".into(),
            root: state.weights_source(),
            max_model_len: state.engine().context_len(),
            policy_version: state.engine().policy_version(),
        }],
    })
}

/// Submits every request (streaming or quiet); on a failure the earlier receivers are dropped,
/// which aborts them.
fn submit_all(
    state: &AppState,
    reqs: Vec<RolloutRequest>,
    stream: bool,
) -> Result<Vec<ResponseReceiver>, ApiError> {
    reqs.into_iter()
        .map(|r| {
            if stream {
                state.engine().submit(r)
            } else {
                state.engine().submit_quiet(r)
            }
            .map_err(ApiError::from)
        })
        .collect()
}

/// Awaits every receiver's final response.
pub(crate) async fn finish_all(
    rxs: Vec<ResponseReceiver>,
) -> Result<Vec<RolloutResponse>, ApiError> {
    let mut out = Vec::with_capacity(rxs.len());
    for r in rxs {
        out.push(r.finish().await?);
    }
    Ok(out)
}
