//! Rollout collection of one GRPO step: draw prompts from the sampler, sample `n` completions of
//! each through the [`RolloutClient`], check every completion's policy version, score them with
//! the task's verifiers (plus DAPO's soft overlong penalty), and — with dynamic sampling — drop
//! groups whose rewards are all equal and draw more prompts until the batch is full or the
//! refill bound is reached. ReMax's greedy baseline completions are drawn here too.

use super::shaping::{informative, overlong_penalty};
use crate::config::{AdvantageEstimator, TrainConfig};
use crate::prompts::prompt_ids;
use crate::reward::{Reward, Scored};
use crate::seeds::{derive, Purpose};
use crate::task::Task;
use crate::train_error::{TrainError, TrainResult};
use oxrl_datasets::Example;
use oxrl_models::Tokenizer;
use oxrl_rollout::{
    Completion, FinishReason, RolloutClient, RolloutRequest, RolloutResponse, SamplingParams,
};
use std::time::Instant;

/// One prompt and its sampled, scored completions.
#[derive(Debug, Clone)]
pub struct Group<'a> {
    /// The example the prompt came from.
    pub example: &'a Example,
    /// Its index in the task's training split.
    pub train_index: usize,
    /// Its prompt token ids.
    pub prompt: Vec<u32>,
    /// The `n` completions.
    pub completions: Vec<Completion>,
    /// The verifiers' verdicts, one per completion.
    pub scores: Vec<Scored>,
    /// The reward each completion trains on (verifier reward + overlong penalty).
    pub rewards: Vec<f64>,
    /// ReMax: the reward of the prompt's greedy completion.
    pub baseline: Option<f64>,
}

/// What [`collect`] gathered.
#[derive(Debug, Default)]
pub struct Collected<'a> {
    /// The policy version every completion came from.
    pub version: u64,
    /// The groups to train on (at most `batch_size`).
    pub groups: Vec<Group<'a>>,
    /// Prompts drawn from the sampler (the data position advances by this).
    pub prompts_drawn: usize,
    /// Extra rollout rounds (dynamic sampling).
    pub refills: usize,
    /// Groups dropped as uninformative.
    pub dropped_groups: usize,
    /// Mean verifier reward, accuracy and error count over every sampled completion.
    pub reward_mean: f64,
    /// Share of sampled completions judged correct.
    pub accuracy: f64,
    /// Verifier errors among them.
    pub verifier_errors: usize,
    /// Completions sampled.
    pub sampled: usize,
    /// Tokens generated.
    pub generated_tokens: usize,
    /// Completions cut at `max_tokens`.
    pub truncated: usize,
    /// Seconds spent generating.
    pub rollout_s: f64,
    /// Seconds spent scoring.
    pub verify_s: f64,
}

/// Checks that every completion came from `version` and none was aborted.
fn check_completions(responses: &[RolloutResponse], version: u64) -> TrainResult<usize> {
    let mut tokens = 0;
    for r in responses {
        for c in &r.completions {
            if c.policy_version != version || c.policy_version_end != version {
                return Err(TrainError::Invariant(format!(
                    "a completion came from policy version {}..{}, expected {version}",
                    c.policy_version, c.policy_version_end
                )));
            }
            if c.finish_reason == FinishReason::Abort {
                return Err(TrainError::Rollout("a completion was aborted".into()));
            }
            tokens += c.token_ids.len();
        }
    }
    Ok(tokens)
}

/// Gathers the groups of GRPO step `step`, starting at sampler position `position`.
#[allow(clippy::too_many_arguments)]
pub fn collect<'a>(
    client: &dyn RolloutClient,
    tokenizer: &Tokenizer,
    task: &'a Task,
    reward: &Reward,
    cfg: &TrainConfig,
    step: u64,
    position: u64,
    params: impl Fn(Option<u64>) -> SamplingParams,
) -> TrainResult<Collected<'a>> {
    let a = &cfg.algorithm;
    let ds = &a.dynamic_sampling;
    let ov = &a.overlong;
    let max_tokens = cfg.rollout.max_tokens;
    let version = client.policy_version();
    let mut out = Collected {
        version,
        ..Collected::default()
    };
    let mut reward_sum = 0.0;
    let mut correct = 0usize;
    let mut request_index = 0u64;
    loop {
        let need = a.batch_size - out.groups.len();
        let indices: Vec<usize> = task
            .data
            .sampler
            .iter_from(position + out.prompts_drawn as u64)
            .take(need)
            .collect();
        let examples: Vec<&'a Example> = indices.iter().map(|&i| &task.data.train[i]).collect();
        out.prompts_drawn += examples.len();
        let mut prompts = Vec::with_capacity(examples.len());
        for e in &examples {
            prompts.push(prompt_ids(tokenizer, &e.prompt)?);
        }
        let mut requests: Vec<RolloutRequest> = prompts
            .iter()
            .map(|ids| {
                let seed = derive(cfg.seed, Purpose::Rollout, step, request_index);
                request_index += 1;
                RolloutRequest::new(ids.clone(), params(Some(seed)))
            })
            .collect();
        let remax = a.advantage.estimator == AdvantageEstimator::Remax;
        if remax {
            for ids in &prompts {
                let greedy = SamplingParams {
                    stop: cfg.rollout.stop.clone(),
                    ..SamplingParams::greedy(max_tokens)
                };
                requests.push(RolloutRequest::new(ids.clone(), greedy));
            }
        }
        let started = Instant::now();
        let mut responses = client
            .generate(requests)
            .map_err(|e| TrainError::Rollout(e.to_string()))?;
        out.rollout_s += started.elapsed().as_secs_f64();
        out.generated_tokens += check_completions(&responses, version)?;
        let greedy = if remax {
            responses.split_off(examples.len())
        } else {
            Vec::new()
        };

        let started = Instant::now();
        let texts = |rs: &[RolloutResponse]| -> Vec<(&'a Example, Vec<String>)> {
            examples
                .iter()
                .zip(rs)
                .map(|(e, r)| (*e, r.completions.iter().map(|c| c.text.clone()).collect()))
                .collect()
        };
        let scores = reward.score(&texts(&responses));
        let baselines = if remax {
            let g = reward.score(&texts(&greedy));
            greedy
                .iter()
                .zip(g)
                .map(|(r, s)| {
                    let len = r.completions.first().map_or(0, |c| c.token_ids.len());
                    s.first().map_or(0.0, |s| f64::from(s.reward))
                        + overlong_penalty(len, max_tokens, ov.buffer_tokens, ov.penalty)
                })
                .map(Some)
                .collect()
        } else {
            vec![None; examples.len()]
        };
        out.verify_s += started.elapsed().as_secs_f64();

        for ((((example, &train_index), prompt), (resp, sc)), baseline) in examples
            .iter()
            .zip(&indices)
            .zip(prompts)
            .zip(responses.into_iter().zip(scores))
            .zip(baselines)
        {
            if sc.len() != resp.completions.len() {
                return Err(TrainError::Invariant(format!(
                    "{} scores for {} completions",
                    sc.len(),
                    resp.completions.len()
                )));
            }
            let rewards: Vec<f64> = resp
                .completions
                .iter()
                .zip(&sc)
                .map(|(c, s)| {
                    f64::from(s.reward)
                        + overlong_penalty(
                            c.token_ids.len(),
                            max_tokens,
                            ov.buffer_tokens,
                            ov.penalty,
                        )
                })
                .collect();
            out.sampled += sc.len();
            reward_sum += sc.iter().map(|s| f64::from(s.reward)).sum::<f64>();
            correct += sc.iter().filter(|s| s.correct).count();
            out.verifier_errors += sc.iter().filter(|s| s.error.is_some()).count();
            out.truncated += resp
                .completions
                .iter()
                .filter(|c| c.finish_reason == FinishReason::Length)
                .count();
            if ds.enabled && !informative(&rewards) {
                out.dropped_groups += 1;
                continue;
            }
            out.groups.push(Group {
                example,
                train_index,
                prompt,
                completions: resp.completions,
                scores: sc,
                rewards,
                baseline,
            });
        }
        if !ds.enabled || out.groups.len() >= a.batch_size || out.refills >= ds.max_refills {
            break;
        }
        out.refills += 1;
    }
    let n = out.sampled.max(1) as f64;
    out.reward_mean = reward_sum / n;
    out.accuracy = correct as f64 / n;
    Ok(out)
}
