//! `oxrl logprobs`: per-token log-probabilities of a text or token ids under a model, as JSON —
//! the scoring primitive evaluation scripts use.

use super::model_arg;
use anyhow::{bail, Context};
use candle_core::{DType, Device, Tensor};
use clap::Args;
use oxrl_models::TrainForward;

/// Arguments of `oxrl logprobs`.
#[derive(Debug, Args)]
pub struct LogprobsArgs {
    /// Model: directory, .gguf file or HF id in the local cache (default: the built-in tiny model).
    #[arg(long)]
    pub model: Option<String>,
    /// Text to score (encoded without added special tokens).
    #[arg(
        long,
        conflicts_with = "token_ids",
        required_unless_present = "token_ids"
    )]
    pub text: Option<String>,
    /// Comma-separated token ids to score.
    #[arg(long, value_delimiter = ',')]
    pub token_ids: Option<Vec<u32>>,
    /// Print JSON (the default and only format; accepted for scripts that pass it).
    #[arg(long)]
    pub json: bool,
}

/// Runs `oxrl logprobs`.
pub fn run(a: LogprobsArgs) -> anyhow::Result<()> {
    let m = model_arg::load(a.model.as_deref())?;
    let ids = match (&a.text, &a.token_ids) {
        (Some(text), _) => m.tokenizer.encode(text, false).context("encoding --text")?,
        (None, Some(ids)) => ids.clone(),
        (None, None) => bail!("give --text or --token-ids"),
    };
    if ids.is_empty() {
        bail!("nothing to score: the input has no tokens");
    }
    let t = ids.len();
    let input = Tensor::from_vec(ids.clone(), (1, t), &Device::Cpu)?;
    let out = m
        .model
        .token_logprobs(
            &input,
            &[t],
            TrainForward {
                track: false,
                adapters: true,
                entropy: false,
                ..TrainForward::default()
            },
        )
        .context("scoring the tokens")?;
    let lp = out
        .logprobs
        .to_dtype(DType::F32)?
        .squeeze(0)?
        .to_vec1::<f32>()?;
    let logprobs: Vec<Option<f32>> = lp
        .into_iter()
        .enumerate()
        .map(|(i, v)| (i > 0).then_some(v))
        .collect();
    let json = serde_json::json!({ "token_ids": ids, "logprobs": logprobs });
    println!("{json}");
    Ok(())
}
