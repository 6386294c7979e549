//! The engine thread: continuous batching of prefill chunks and decode steps over the paged KV
//! cache, with group sharing, preemption and weight swaps between steps.

use super::{Command, Shared, TokenDecoder};
use crate::engine::EngineConfig;
use crate::types::{EngineError, StreamEvent};
use oxrl_models::Transformer;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};

/// The scheduler state owned by the engine thread.
pub(crate) struct Scheduler {
    model: Arc<Transformer>,
    shared: Arc<Shared>,
}

impl Scheduler {
    /// A scheduler for `model`.
    pub fn new(
        model: Arc<Transformer>,
        _decoder: Option<Arc<dyn TokenDecoder>>,
        _cfg: EngineConfig,
        shared: Arc<Shared>,
    ) -> Result<Self, oxrl_models::ModelError> {
        Ok(Self { model, shared })
    }

    /// The engine loop (placeholder: answers every request with an error until the scheduler lands).
    pub fn run(mut self, rx: mpsc::Receiver<Command>) {
        while let Ok(cmd) = rx.recv() {
            match cmd {
                Command::Submit(p) => {
                    self.shared.queued.fetch_sub(1, Ordering::AcqRel);
                    let _ = p.tx.send(StreamEvent::Error(EngineError::Model(
                        "the scheduler is not implemented yet".into(),
                    )));
                }
                Command::SwapModel(m, reply) => {
                    self.model = m.clone();
                    if let Ok(mut g) = self.shared.model.write() {
                        *g = m;
                    }
                    let v = self.shared.version.fetch_add(1, Ordering::AcqRel) + 1;
                    let _ = reply.send(v);
                }
                Command::Shutdown => break,
            }
        }
        self.shared.shut_down.store(true, Ordering::Release);
    }
}
