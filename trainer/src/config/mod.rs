//! The `oxrl train` configuration: one TOML file with the sections `model`, `task` (or
//! `task_file`), `algorithm`, `rollout`, `optim`, `kl`, `checkpoint`, `eval`, `log` and the
//! top-level `seed` / `output_dir`. Every table rejects unknown keys, and a wrong type or an
//! unknown key is reported with its dotted path (`algorithm.steps`), before any work starts.
//! `--set key=value` overrides are applied to the TOML tree before it is read, so they are checked
//! exactly like the file.
//!
//! The file is over 600 lines on purpose: it holds every section's type with the doc comment of
//! each key, so the whole configuration surface reads in one place.

pub mod overrides;
pub mod rlhf;
pub mod validate;

use crate::aggregation::LossAggregation;
use crate::kl::KlEstimator;
use crate::optim::{AdamWConfig, ScheduleConfig};
use crate::policy_loss::{KlTerm, PolicyLossConfig};
use crate::task::TaskConfig;
use crate::train_error::{TrainError, TrainResult};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub use overrides::Override;
pub use rlhf::{CriticKind, PpoConfig};

/// The whole `oxrl train` configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Seed of every random choice of the run (LoRA init, shuffles, sampling).
    #[serde(default)]
    pub seed: u64,
    /// Where checkpoints, `metrics.jsonl` and a built tiny model go (relative to the current
    /// directory).
    #[serde(default = "default_output_dir")]
    pub output_dir: PathBuf,
    /// The policy to train.
    pub model: ModelConfig,
    /// The task, inline (`[task]` with `[task.dataset]`, `[task.prompt]`, `[[task.verifiers]]`).
    #[serde(default)]
    pub task: Option<TaskConfig>,
    /// The task, from a file holding a `[task]` table (relative to this config's folder).
    #[serde(default)]
    pub task_file: Option<PathBuf>,
    /// Which algorithm and its batch shape.
    pub algorithm: AlgorithmConfig,
    /// How completions are sampled (GRPO; also the greedy evaluation's `max_tokens`).
    #[serde(default)]
    pub rollout: RolloutConfig,
    /// AdamW, gradient clipping and the learning-rate schedule.
    #[serde(default)]
    pub optim: OptimConfig,
    /// KL to the reference policy.
    #[serde(default)]
    pub kl: KlConfig,
    /// When and how many checkpoints are written.
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
    /// Periodic evaluation on the task's held-out split.
    #[serde(default)]
    pub eval: EvalConfig,
    /// Metrics file and console output.
    #[serde(default)]
    pub log: LogConfig,
}

fn default_output_dir() -> PathBuf {
    PathBuf::from("runs/oxrl")
}

/// `[model]`: a model to load (`path`) or a tiny one to build (`init = "tiny"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// HF model directory, `.gguf` file or HF id in the local hub cache.
    #[serde(default)]
    pub path: Option<String>,
    /// Build a random model instead: `"tiny"` (the built-in tiny Llama and its tokenizer).
    #[serde(default)]
    pub init: Option<InitKind>,
    /// Sizes of the tiny model (with `init = "tiny"`).
    #[serde(default)]
    pub tiny: TinyModelConfig,
    /// Weight and compute dtype.
    #[serde(default)]
    pub dtype: DTypeName,
    /// Train LoRA adapters instead of every weight.
    #[serde(default)]
    pub lora: Option<LoraSection>,
}

/// Random models `oxrl train` can build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InitKind {
    /// The built-in tiny Llama (byte-level BPE tokenizer with a ChatML template).
    Tiny,
}

/// `[model.tiny]`: sizes of the built-in tiny model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TinyModelConfig {
    /// Vocabulary size (>= 300).
    pub vocab_size: usize,
    /// Model width.
    pub hidden_size: usize,
    /// Decoder layers.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads.
    pub num_kv_heads: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Weight standard deviation.
    pub init_std: f64,
    /// Seed of the random weights.
    pub init_seed: u64,
}

impl Default for TinyModelConfig {
    fn default() -> Self {
        Self {
            vocab_size: 512,
            hidden_size: 64,
            num_layers: 2,
            num_heads: 4,
            num_kv_heads: 2,
            intermediate_size: 128,
            init_std: 0.02,
            init_seed: 0,
        }
    }
}

/// Weight dtypes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DTypeName {
    /// float32 (the CPU default).
    #[default]
    F32,
    /// bfloat16.
    Bf16,
    /// float16.
    F16,
    /// float64.
    F64,
}

impl DTypeName {
    /// The candle dtype.
    pub fn dtype(self) -> candle_core::DType {
        match self {
            DTypeName::F32 => candle_core::DType::F32,
            DTypeName::Bf16 => candle_core::DType::BF16,
            DTypeName::F16 => candle_core::DType::F16,
            DTypeName::F64 => candle_core::DType::F64,
        }
    }
}

/// `[model.lora]`: PEFT-style adapters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoraSection {
    /// Rank `r`.
    pub rank: usize,
    /// Scale numerator (`alpha / rank`).
    pub alpha: f64,
    /// Modules that get adapters.
    pub target_modules: Vec<String>,
}

impl Default for LoraSection {
    fn default() -> Self {
        let d = oxrl_models::LoraConfig::default();
        Self {
            rank: d.rank,
            alpha: d.alpha,
            target_modules: d.target_modules,
        }
    }
}

impl LoraSection {
    /// The models crate's LoRA config.
    pub fn to_lora(&self) -> oxrl_models::LoraConfig {
        oxrl_models::LoraConfig {
            rank: self.rank,
            alpha: self.alpha,
            target_modules: self.target_modules.clone(),
        }
    }
}

/// Training algorithms of this version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlgorithmName {
    /// Supervised fine-tuning on prompt + completion (loss on completion tokens only).
    Sft,
    /// GRPO family: sampled groups, verifier rewards, group-normalised advantages, clipped
    /// surrogate.
    Grpo,
    /// PPO: a value head on the policy, GAE, clipped policy and value losses (`[algorithm.ppo]`).
    Ppo,
    /// A Bradley–Terry reward model on preference pairs: the policy's trunk plus a score head
    /// (`[algorithm.reward_model]`), loaded by the `model` verifier.
    RewardModel,
    /// DPO family offline: a dataset of (prompt, chosen, rejected) pairs.
    Dpo,
    /// DPO family online: pairs built each step from `rollout.n` samples ranked by the verifiers.
    OnlineDpo,
}

/// `[algorithm]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlgorithmConfig {
    /// `sft`, `grpo`, `ppo`, `reward_model`, `dpo` or `online_dpo`.
    pub name: AlgorithmName,
    /// Optimizer steps (SFT) or rollout steps (GRPO) to run.
    pub steps: usize,
    /// Examples per step (SFT) or prompts per step (GRPO; each sampled `rollout.n` times).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// GRPO: sequences per optimizer step within a rollout batch (default: the whole batch).
    #[serde(default)]
    pub mini_batch_size: Option<usize>,
    /// GRPO: optimisation epochs over each rollout batch.
    #[serde(default = "one")]
    pub epochs: usize,
    /// Sequences per forward/backward pass; a mini-batch's gradients are accumulated over its
    /// micro-batches (with the mini-batch's normalisers, so the update is the same). Default:
    /// the whole mini-batch at once.
    #[serde(default)]
    pub micro_batch_size: Option<usize>,
    /// GRPO: the shared-prefix training forward (Prefix Grouper): the completions of one
    /// prompt in a micro-batch attend to one encoding of that prompt instead of n copies, and
    /// all the groups of a micro-batch run as one forward. Same loss and gradients as the plain
    /// forward (to float rounding); less work and memory. Micro-batches then hold whole groups
    /// where they can (the mini-batches stay as drawn). Unset: on for GRPO with
    /// `rollout.n >= 2` ([`TrainConfig::shared_prefix`]); `false` forces the plain forward.
    #[serde(default)]
    pub shared_prefix: Option<bool>,
    /// `[algorithm.dynamic_sampling]` (GRPO): DAPO's dynamic sampling.
    #[serde(default)]
    pub dynamic_sampling: DynamicSamplingConfig,
    /// `[algorithm.overlong]` (GRPO): overlong filtering and the soft overlong penalty.
    #[serde(default)]
    pub overlong: OverlongConfig,
    /// Longest training sequence (prompt + completion); longer SFT examples are truncated.
    #[serde(default = "default_max_seq_len")]
    pub max_seq_len: usize,
    /// `[algorithm.advantage]` (GRPO).
    #[serde(default)]
    pub advantage: AdvantageConfig,
    /// `[algorithm.policy_loss]` (GRPO): objective, clip bounds, aggregation, entropy bonus
    /// (the math crate's [`PolicyLossConfig`]; set the KL term under `[kl]`).
    #[serde(default)]
    pub policy_loss: PolicyLossConfig,
    /// `[algorithm.sft]` (SFT).
    #[serde(default)]
    pub sft: SftConfig,
    /// `[algorithm.ppo]` (PPO): critic, GAE γ/λ, value loss, whitening.
    #[serde(default)]
    pub ppo: PpoConfig,
    /// `[algorithm.reward_model]` (reward model): the Bradley–Terry loss's options.
    #[serde(default)]
    pub reward_model: crate::preference::reward_model::RewardLossConfig,
    /// `[algorithm.preference_loss]` (DPO, online DPO): TRL's `DPOConfig` names (`beta`,
    /// `loss_type`, `loss_weights`, `label_smoothing`, …; the math crate's
    /// [`crate::preference::PreferenceLossConfig`]).
    #[serde(default)]
    pub preference_loss: crate::preference::PreferenceLossConfig,
    /// `[algorithm.dpo]` (DPO, online DPO): the reference policy.
    #[serde(default)]
    pub dpo: crate::dpo::DpoConfig,
}

fn default_batch_size() -> usize {
    8
}
fn one() -> usize {
    1
}
fn default_max_seq_len() -> usize {
    512
}

/// Advantage estimators the loop runs (the math crate's [`crate::advantages::AdvantageEstimator`]
/// of outcome rewards; `gae` is PPO's, with a critic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdvantageEstimator {
    /// Group-normalised reward, TRL's flavour: `scale` = group | batch | none (Dr. GRPO),
    /// `epsilon` added to the std.
    #[default]
    Grpo,
    /// verl's `grpo_vectorized`: float32 group statistics, std floor √ε.
    GrpoVectorized,
    /// verl's `grpo_passk`: only each group's best completion gets r_max − r_second.
    GrpoPassk,
    /// Leave-one-out baseline (a singleton keeps its score).
    Rloo,
    /// Leave-one-out baseline (a singleton gets 0).
    RlooVectorized,
    /// Length-weighted group-mean baseline (OPO).
    Opo,
    /// REINFORCE++: discounted return (`gamma`), whitened over the batch; no groups needed.
    ReinforcePlusPlus,
    /// REINFORCE++ with a group-mean baseline, whitened over the batch.
    ReinforcePlusPlusBaseline,
    /// GPG: group-mean baseline rescaled by B / #non-zero scores.
    Gpg,
    /// BNPO: Beta-normalised advantages (the BNPO paper).
    Bnpo,
    /// ReMax: the reward of a greedy completion of the same prompt is the baseline (one extra
    /// greedy rollout per prompt); no groups needed.
    Remax,
}

impl AdvantageEstimator {
    /// Whether the estimator compares completions within a group (and so needs `n >= 2`).
    pub fn needs_groups(self) -> bool {
        !matches!(
            self,
            AdvantageEstimator::ReinforcePlusPlus | AdvantageEstimator::Remax
        )
    }

    /// The math crate's estimator.
    pub fn math(self) -> crate::advantages::AdvantageEstimator {
        use crate::advantages::AdvantageEstimator as M;
        match self {
            AdvantageEstimator::Grpo => M::Grpo,
            AdvantageEstimator::GrpoVectorized => M::GrpoVectorized,
            AdvantageEstimator::GrpoPassk => M::GrpoPassk,
            AdvantageEstimator::Rloo => M::Rloo,
            AdvantageEstimator::RlooVectorized => M::RlooVectorized,
            AdvantageEstimator::Opo => M::Opo,
            AdvantageEstimator::ReinforcePlusPlus => M::ReinforcePlusPlus,
            AdvantageEstimator::ReinforcePlusPlusBaseline => M::ReinforcePlusPlusBaseline,
            AdvantageEstimator::Gpg => M::Gpg,
            AdvantageEstimator::Bnpo => M::Bnpo,
            AdvantageEstimator::Remax => M::Remax,
        }
    }
}

/// What the centred group reward is divided by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScaleName {
    /// The group's std (GRPO).
    #[default]
    Group,
    /// The batch's std.
    Batch,
    /// No division (Dr. GRPO).
    None,
}

/// `[algorithm.advantage]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdvantageConfig {
    /// The estimator.
    pub estimator: AdvantageEstimator,
    /// Std used to scale the centred reward (`grpo`; `none` also turns off the std division of
    /// `grpo_vectorized` and `grpo_passk`).
    pub scale: ScaleName,
    /// Added to the std (TRL 1e-4, verl 1e-6).
    pub epsilon: f64,
    /// Discount of `reinforce_plus_plus` returns.
    pub gamma: f64,
    /// GPG's `f_norm`.
    pub f_norm: f64,
}

impl Default for AdvantageConfig {
    fn default() -> Self {
        Self {
            estimator: AdvantageEstimator::Grpo,
            scale: ScaleName::Group,
            epsilon: 1e-4,
            gamma: 1.0,
            f_norm: 1.0,
        }
    }
}

/// `[algorithm.dynamic_sampling]`: DAPO's dynamic sampling — groups whose rewards are all equal
/// carry no gradient under group-relative advantages; drop them and sample more prompts until
/// the batch has `batch_size` informative groups, at most `max_refills` extra rollout rounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DynamicSamplingConfig {
    /// On or off.
    pub enabled: bool,
    /// Extra rollout rounds per step before training on what there is.
    pub max_refills: usize,
}

impl Default for DynamicSamplingConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            max_refills: 4,
        }
    }
}

/// `[algorithm.overlong]`: DAPO's handling of completions cut at `rollout.max_tokens`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OverlongConfig {
    /// Overlong filtering: truncated completions get no loss (their tokens are masked out).
    pub filter: bool,
    /// Soft overlong punishment: the last `buffer_tokens` before `max_tokens` add a linear
    /// penalty from 0 to −`penalty` (DAPO Eq. 13); 0 = off.
    pub buffer_tokens: usize,
    /// The penalty at `max_tokens` (DAPO's penalty factor).
    pub penalty: f64,
}

impl Default for OverlongConfig {
    fn default() -> Self {
        Self {
            filter: false,
            buffer_tokens: 0,
            penalty: 1.0,
        }
    }
}

/// Which field of an example is the SFT target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SftTarget {
    /// The example's `completion` (prompt + completion data).
    #[default]
    Completion,
    /// The example's reference `answer` (e.g. the synthetic arithmetic task).
    Answer,
    /// Every assistant turn of a chat example (TRL's `messages` datasets): the conversation is
    /// rendered with the chat template and the loss falls on the template's `{% generation %}`
    /// spans, so system / user / tool turns are context only.
    Conversation,
}

/// `[algorithm.sft]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SftConfig {
    /// The field trained on.
    pub target: SftTarget,
    /// How the per-token negative log-likelihood becomes a scalar.
    pub aggregation: LossAggregation,
    /// Pack the step's examples into as few rows of `algorithm.max_seq_len` tokens as they fit
    /// (best-fit decreasing, TRL's `packing` with its `bfd` strategy) instead of one padded row
    /// each. Every example keeps its own positions and attends to itself only
    /// ([`oxrl_models::Transformer::packed_token_logprobs`]), so the loss and gradients are the
    /// padded batch's; less padding is computed. Needs a token-level aggregation.
    pub packing: bool,
}

impl Default for SftConfig {
    fn default() -> Self {
        Self {
            target: SftTarget::Completion,
            aggregation: LossAggregation::TokenMean,
            packing: false,
        }
    }
}

/// `[rollout]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RolloutConfig {
    /// Where rollouts come from: `"local"` (the in-process engine reading the trainer's weights)
    /// or a list of `oxrl serve` base URLs (`["http://127.0.0.1:8000", …]`), which get the new
    /// weights by `POST /v1/weights` after every step.
    pub engine: EngineSpec,
    /// Key of the servers' inference routes (`oxrl serve --api-key`); default `OXRL_API_KEY`.
    pub api_key: Option<String>,
    /// Key of the servers' `POST /v1/weights` (`oxrl serve --admin-key`); default
    /// `OXRL_ADMIN_KEY`. Required with remote engines.
    pub admin_key: Option<String>,
    /// Timeout of one HTTP call to a server, in seconds.
    pub timeout_s: f64,
    /// Completions per prompt (the group size).
    pub n: usize,
    /// Sampling temperature (the training forward recomputes logprobs at the same temperature).
    pub temperature: f32,
    /// Nucleus sampling (1 = off).
    pub top_p: f32,
    /// Top-k sampling (0 = off).
    pub top_k: usize,
    /// Min-p sampling (0 = off).
    pub min_p: f32,
    /// Most generated tokens per completion.
    pub max_tokens: usize,
    /// Stop strings.
    pub stop: Vec<String>,
    /// Keep generating past EOS until `max_tokens` (vLLM's `ignore_eos`): every completion is
    /// exactly `max_tokens` long, as fixed-shape benchmarks want.
    pub ignore_eos: bool,
    /// Tokens the engine's KV cache holds.
    pub kv_cache_tokens: usize,
    /// Asynchronous rollouts (GRPO): with `max_staleness >= 1` the rollouts of step k+1 are
    /// generated while step k trains, by the policy before step k's update (a version lag of 1;
    /// the pipeline is one step deep, so the lag never exceeds 1). The importance ratio then
    /// uses the rollout logprobs as the old policy's. 0 (the default): synchronous, on-policy.
    pub max_staleness: u64,
}

impl Default for RolloutConfig {
    fn default() -> Self {
        Self {
            engine: EngineSpec::default(),
            api_key: None,
            admin_key: None,
            timeout_s: 600.0,
            n: 4,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            max_tokens: 32,
            stop: Vec::new(),
            ignore_eos: false,
            kv_cache_tokens: 65_536,
            max_staleness: 0,
        }
    }
}

/// `rollout.engine`: a name (`"local"`) or the URLs of `oxrl serve` processes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EngineSpec {
    /// `"local"`, or one server URL.
    Name(String),
    /// Server URLs; prompts are spread over them (least-loaded first).
    Urls(Vec<String>),
}

impl Default for EngineSpec {
    fn default() -> Self {
        EngineSpec::Name("local".into())
    }
}

impl EngineSpec {
    /// The server URLs, or `None` for the in-process engine.
    pub fn urls(&self) -> Option<Vec<String>> {
        match self {
            EngineSpec::Name(n) if n == "local" => None,
            EngineSpec::Name(u) => Some(vec![u.clone()]),
            EngineSpec::Urls(us) => Some(us.clone()),
        }
    }
}

/// `[optim]`: AdamW (the math crate's optimizer), gradient clipping and the LR schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimConfig {
    /// Peak learning rate.
    pub lr: f64,
    /// `[β₁, β₂]`.
    pub betas: (f64, f64),
    /// ε.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Glob patterns of parameters without weight decay (default: norms and biases).
    pub no_decay: Option<Vec<String>>,
    /// Clip the global gradient norm to this (none = off).
    pub max_grad_norm: Option<f64>,
    /// `[optim.schedule]`: `kind` (constant, linear, cosine), `warmup_steps` / `warmup_ratio`, ….
    pub schedule: ScheduleConfig,
}

impl Default for OptimConfig {
    fn default() -> Self {
        let d = AdamWConfig::default();
        Self {
            lr: 1e-5,
            betas: d.betas,
            eps: d.eps,
            weight_decay: 0.0,
            no_decay: None,
            max_grad_norm: Some(1.0),
            schedule: ScheduleConfig::default(),
        }
    }
}

impl OptimConfig {
    /// The optimizer's configuration.
    pub fn adamw(&self) -> AdamWConfig {
        let d = AdamWConfig::default();
        AdamWConfig {
            lr: self.lr,
            betas: self.betas,
            eps: self.eps,
            weight_decay: self.weight_decay,
            no_decay: self.no_decay.clone().unwrap_or(d.no_decay),
            groups: Vec::new(),
        }
    }
}

/// `[kl]`: a KL term to the reference policy in the loss (the reference is the initial
/// weights, or the base model with the LoRA adapters off).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KlConfig {
    /// Coefficient β (0 = off: no reference model is kept); the adaptive controller's start.
    pub coef: f64,
    /// Per-token estimator (`k1`, `abs`, `k2`, `k3`, `low_var_kl`).
    pub estimator: KlEstimator,
    /// The estimator's value with k2's gradient.
    pub straight_through: bool,
    /// Weigh the KL by the importance ratio (TRL `use_bias_correction_kl`).
    pub importance_weighted: bool,
    /// Put the penalty in the reward (r_t = score_t − β·KL_t, verl `use_kl_in_reward`) instead
    /// of the loss.
    pub in_reward: bool,
    /// `fixed` or `adaptive` (Ziegler et al.: β follows the measured KL towards `target`);
    /// adaptive needs `in_reward`.
    pub controller: KlControllerKind,
    /// The adaptive controller's target KL.
    pub target: f64,
    /// The adaptive controller's horizon (samples over which a full ±20 % correction applies).
    pub horizon: f64,
}

/// KL coefficient controllers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KlControllerKind {
    /// β stays `coef`.
    #[default]
    Fixed,
    /// β adapts towards `target`.
    Adaptive,
}

impl Default for KlConfig {
    fn default() -> Self {
        Self {
            coef: 0.0,
            estimator: KlEstimator::K3,
            straight_through: false,
            importance_weighted: false,
            in_reward: false,
            controller: KlControllerKind::Fixed,
            target: 0.1,
            horizon: 10_000.0,
        }
    }
}

impl KlConfig {
    /// Whether a reference policy is needed.
    pub fn enabled(&self) -> bool {
        self.coef > 0.0
    }

    /// The policy loss's KL term, when the KL is on and in the loss.
    pub fn term(&self) -> Option<KlTerm> {
        (self.coef > 0.0 && !self.in_reward).then_some(KlTerm {
            coef: self.coef,
            estimator: self.estimator,
            straight_through: self.straight_through,
            importance_weighted: self.importance_weighted,
        })
    }

    /// The controller of the reward penalty, when the KL is on and in the reward.
    pub fn reward_controller(&self) -> Option<crate::kl::controller::KlController> {
        if !(self.coef > 0.0 && self.in_reward) {
            return None;
        }
        match self.controller {
            KlControllerKind::Fixed => crate::kl::controller::KlController::fixed(self.coef).ok(),
            KlControllerKind::Adaptive => {
                crate::kl::controller::KlController::adaptive(self.coef, self.target, self.horizon)
                    .ok()
            }
        }
    }
}

/// `[checkpoint]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CheckpointConfig {
    /// Write a checkpoint every this many steps (0 = only at the end).
    pub every: usize,
    /// Keep only the last `keep` checkpoints (0 = all).
    pub keep: usize,
    /// Write one after the last step.
    pub at_end: bool,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        Self {
            every: 0,
            keep: 2,
            at_end: true,
        }
    }
}

/// `[eval]`: greedy accuracy (and, for SFT, held-out loss) on the task's held-out split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalConfig {
    /// Evaluate every this many steps (0 = never during the run).
    pub every: usize,
    /// Evaluate before the first step.
    pub at_start: bool,
    /// Evaluate after the last step.
    pub at_end: bool,
    /// Most held-out examples used.
    pub max_examples: usize,
    /// Greedy accuracy through the verifiers (needs a task with verifiers).
    pub accuracy: bool,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            every: 0,
            at_start: false,
            at_end: false,
            max_examples: 64,
            accuracy: true,
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Metrics file name inside `output_dir`.
    pub metrics_file: String,
    /// Show the progress bar on the console.
    pub progress: bool,
    /// Redraw `metrics.png` (reward / accuracy, KL, response length, loss over steps) in
    /// `output_dir` after every step.
    pub plot: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            metrics_file: "metrics.jsonl".into(),
            progress: true,
            plot: true,
        }
    }
}

/// A config read from a file, with where it came from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The parsed configuration (task `base_dir` set).
    pub config: TrainConfig,
    /// The task, inline or from `task_file`.
    pub task: TaskConfig,
    /// The config file.
    pub origin: PathBuf,
}

impl LoadedConfig {
    /// Resolves the task of `config` (read from the file at `path`, which anchors relative task
    /// paths) and validates everything that can be checked without loading the model.
    pub fn check(config: TrainConfig, path: &Path) -> TrainResult<Self> {
        let origin = path.display().to_string();
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let task = config.resolve_task(&origin, &base)?;
        validate::check(&config, &task, &origin)?;
        Ok(Self {
            config,
            task,
            origin: path.to_path_buf(),
        })
    }
}

/// Turns a serde error with its path into a [`TrainError::Config`].
fn path_error<E: std::fmt::Display>(
    origin: &str,
    err: serde_path_to_error::Error<E>,
) -> TrainError {
    let key = err.path().to_string();
    let key = if key == "." {
        "(top level)".to_string()
    } else {
        key
    };
    TrainError::config(origin, key, err.inner().to_string())
}

impl TrainConfig {
    /// Whether GRPO trains through the shared-prefix forward: `algorithm.shared_prefix` when
    /// set, else on for GRPO whenever prompts are sampled more than once (`rollout.n >= 2`). It
    /// was measured faster at every shape tried (SmolLM2-135M, prompts of ~35 tokens, completions
    /// of 16 and 128: BENCHMARKS.md) and gives the plain forward's update to float rounding.
    pub fn shared_prefix(&self) -> bool {
        let a = &self.algorithm;
        a.shared_prefix
            .unwrap_or(a.name == AlgorithmName::Grpo && self.rollout.n >= 2)
    }

    /// Parses TOML text with overrides applied; `origin` names it in errors.
    pub fn from_toml_str(text: &str, origin: &str, overrides: &[Override]) -> TrainResult<Self> {
        let table: toml::Table = toml::from_str(text).map_err(|e| {
            TrainError::config(
                origin,
                "(syntax)",
                e.to_string().trim_end().replace('\n', " "),
            )
        })?;
        Self::from_table(table, origin, overrides)
    }

    /// Reads a parsed TOML tree with overrides applied; `origin` names it in errors.
    pub fn from_table(
        mut table: toml::Table,
        origin: &str,
        overrides: &[Override],
    ) -> TrainResult<Self> {
        for o in overrides {
            o.apply(&mut table)?;
        }
        serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| path_error(origin, e))
    }

    /// Reads and checks a config file: parses it (overrides applied), resolves the task and
    /// validates everything that can be checked without loading the model (see [`validate`]).
    pub fn load(path: &Path, overrides: &[Override]) -> TrainResult<LoadedConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        let origin = path.display().to_string();
        let config = Self::from_toml_str(&text, &origin, overrides)?;
        LoadedConfig::check(config, path)
    }

    /// The task: the inline `[task]` (relative paths against `base`) or `task_file`.
    pub fn resolve_task(&self, origin: &str, base: &Path) -> TrainResult<TaskConfig> {
        match (&self.task, &self.task_file) {
            (Some(_), Some(_)) => Err(TrainError::config(
                origin,
                "task_file",
                "give either [task] or task_file, not both",
            )),
            (None, None) => Err(TrainError::config(
                origin,
                "task",
                "missing: add a [task] table or task_file = \"tasks/....toml\"",
            )),
            (Some(t), None) => {
                let mut t = t.clone();
                t.base_dir = base.to_path_buf();
                t.validate()
                    .map_err(|e| TrainError::config(origin, "task", e.to_string()))?;
                Ok(t)
            }
            (None, Some(f)) => {
                let path = base.join(f);
                if !path.is_file() {
                    return Err(TrainError::config(
                        origin,
                        "task_file",
                        format!("{} does not exist", path.display()),
                    ));
                }
                TaskConfig::from_path(&path)
                    .map_err(|e| TrainError::config(origin, "task_file", e.to_string()))
            }
        }
    }
}

#[cfg(test)]
mod tests;
