//! The training loop behind `oxrl train`: set up (task and verifiers, model, LoRA, reference,
//! optimizer, schedule, in-process engine, metrics file), optionally continue from a checkpoint,
//! then run SFT, GRPO, PPO, reward-model, DPO or online DPO steps with periodic evaluation and
//! checkpoints.
//!
//! Order of work: everything that can be wrong in the configuration is checked first
//! ([`crate::config::TrainConfig::load`] and [`crate::config::validate::prepare_task`]), before a
//! model is built or loaded.

use crate::checkpoint::{self, TrainerState, STATE_FORMAT};
use crate::config::{validate::prepare_task, AlgorithmName, LoadedConfig, TrainConfig};
use crate::eval;
use crate::metrics::{num, MetricsFile, Progress, Record};
use crate::optim::{AdamW, LrSchedule};
use crate::policy::{Policy, Reference};
use crate::reward::Reward;
use crate::score_head::{ScoreHead, SCORE_HEAD_FILE};
use crate::seeds::{derive, Purpose};
use crate::task::Task;
use crate::train_error::{TrainError, TrainResult};
use crate::{grpo, sft};
use candle_core::Device;
use oxrl_models::init::{write_random_model, InitSpec};
use oxrl_models::{LoadOptions, LoadedModel};
use oxrl_rollout::{
    EngineConfig, EngineHandle, HttpClientConfig, HttpRolloutClient, RolloutClient, TokenDecoder,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// How to run (besides the configuration).
#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    /// Continue from this checkpoint directory, or `latest` (the run's newest checkpoint).
    pub resume: Option<PathBuf>,
    /// Show the progress bar (default: the config's `log.progress`).
    pub progress: Option<bool>,
    /// Set (by the binary's Ctrl-C handler) to stop after the current step, with a checkpoint.
    pub stop: Option<Arc<AtomicBool>>,
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    /// The run's output directory.
    pub output_dir: PathBuf,
    /// Its metrics file.
    pub metrics_path: PathBuf,
    /// The step the run started after (0, or the resumed checkpoint's).
    pub resumed_from: u64,
    /// Steps completed in all.
    pub last_step: u64,
    /// The newest checkpoint written, if any.
    pub checkpoint: Option<PathBuf>,
    /// The records this invocation wrote, in order.
    pub records: Vec<Record>,
    /// The run stopped early on request (Ctrl-C), after `last_step`, with a checkpoint.
    pub interrupted: bool,
}

/// The name of an algorithm as stored in checkpoints.
fn algorithm_name(a: AlgorithmName) -> &'static str {
    match a {
        AlgorithmName::Sft => "sft",
        AlgorithmName::Grpo => "grpo",
        AlgorithmName::Ppo => "ppo",
        AlgorithmName::RewardModel => "reward_model",
        AlgorithmName::Dpo => "dpo",
        AlgorithmName::OnlineDpo => "online_dpo",
    }
}

/// Loads (or builds, for `init = "tiny"`) the model named by the config.
fn load_model(cfg: &TrainConfig) -> TrainResult<LoadedModel> {
    let spec = match (&cfg.model.path, &cfg.model.init) {
        (Some(p), _) => p.clone(),
        (None, _) => {
            let dir = cfg.output_dir.join("base-model");
            if !dir.join("config.json").is_file() {
                let t = &cfg.model.tiny;
                let spec = InitSpec {
                    vocab_size: t.vocab_size,
                    hidden_size: t.hidden_size,
                    num_layers: t.num_layers,
                    num_heads: t.num_heads,
                    num_kv_heads: t.num_kv_heads,
                    intermediate_size: t.intermediate_size,
                    init_std: t.init_std,
                    seed: t.init_seed,
                    ..InitSpec::default()
                };
                write_random_model(&dir, &spec)?;
            }
            dir.to_string_lossy().into_owned()
        }
    };
    Ok(LoadedModel::load(
        &spec,
        &LoadOptions {
            dtype: cfg.model.dtype.dtype(),
            device: Device::Cpu,
        },
    )?)
}

/// Optimizer steps the whole run takes (what the LR schedule spans).
fn total_optimizer_steps(cfg: &TrainConfig) -> u64 {
    let a = &cfg.algorithm;
    let per_step = match a.name {
        AlgorithmName::Sft | AlgorithmName::RewardModel => 1,
        AlgorithmName::Dpo | AlgorithmName::OnlineDpo => 1,
        AlgorithmName::Grpo | AlgorithmName::Ppo => {
            let seqs = a.batch_size * cfg.rollout.n;
            let mb = a.mini_batch_size.unwrap_or(seqs).clamp(1, seqs);
            a.epochs * seqs.div_ceil(mb)
        }
    };
    (a.steps * per_step) as u64
}

/// Resolves `--resume` against the run's checkpoint folder.
fn resume_dir(arg: &Path, root: &Path) -> TrainResult<PathBuf> {
    if arg == Path::new("latest") {
        return checkpoint::latest(root).ok_or_else(|| {
            TrainError::checkpoint(root, "no checkpoint to resume (`latest` is missing)")
        });
    }
    Ok(arg.to_path_buf())
}

/// Everything the loop holds.
struct Run<'a> {
    cfg: &'a TrainConfig,
    task: Task,
    reward: Option<Reward>,
    policy: Policy,
    eos: Vec<u32>,
    /// Where rollouts come from (the local engine or remote servers).
    engine: Option<Box<dyn RolloutClient>>,
    /// The in-process engine, to shut it down at the end.
    local: Option<EngineHandle>,
    state: TrainerState,
    /// Asynchronous GRPO: the next step's rollouts, gathered during the last step.
    pending: Option<grpo::pending::PendingRollouts>,
    ckpt_root: PathBuf,
    config_toml: String,
}

impl Run<'_> {
    fn evaluating(&self) -> bool {
        let e = &self.cfg.eval;
        e.every > 0 || e.at_start || e.at_end
    }

    fn eval_due(&self, step: u64) -> bool {
        let e = &self.cfg.eval;
        (e.every > 0 && step.is_multiple_of(e.every as u64))
            || (e.at_end && step == self.cfg.algorithm.steps as u64)
    }

    /// Evaluation metrics (`eval_accuracy`, `eval_reward`, `eval_loss`) merged into `rec`.
    fn evaluate(&mut self, rec: &mut Record) -> TrainResult<()> {
        let cfg = self.cfg;
        let n = cfg.eval.max_examples.min(self.task.data.eval.len());
        let examples = &self.task.data.eval[..n];
        if let (Some(engine), Some(reward), true) = (&self.engine, &self.reward, cfg.eval.accuracy)
        {
            if matches!(cfg.algorithm.name, AlgorithmName::Sft | AlgorithmName::Dpo) {
                // SFT and DPO steps do not sync: publish the current weights (drops stale KV).
                self.state.policy_version = engine
                    .sync_weights(&self.policy.model)
                    .map_err(|e| TrainError::Rollout(e.to_string()))?;
            }
            let g = eval::greedy(
                engine.as_ref(),
                &self.policy.tokenizer,
                examples,
                reward,
                cfg.rollout.max_tokens,
                &cfg.rollout.stop,
            )?;
            rec.insert("eval_accuracy".into(), num(g.accuracy));
            rec.insert("eval_reward".into(), num(g.reward));
            rec.insert("eval_examples".into(), g.count.into());
        }
        if cfg.algorithm.name == AlgorithmName::RewardModel {
            crate::reward_model::evaluate_into(&self.policy, examples, cfg, rec)?;
        }
        if cfg.algorithm.name == AlgorithmName::Dpo {
            crate::dpo::offline::eval(&self.policy, examples, cfg, rec)?;
        }
        if cfg.algorithm.name == AlgorithmName::Sft {
            let a = &cfg.algorithm;
            if let Some(l) = sft::eval_loss(
                &self.policy.model,
                &self.policy.tokenizer,
                examples,
                a.sft.target,
                a.sft.aggregation,
                a.max_seq_len,
                a.batch_size,
            )? {
                rec.insert("eval_loss".into(), num(l));
            }
        }
        Ok(())
    }

    fn save_checkpoint(&self) -> TrainResult<PathBuf> {
        let opt = &self.policy.optimizer;
        let pending = &self.pending;
        let write_opt = |dir: &Path| -> TrainResult<()> {
            opt.save(dir.join(checkpoint::OPTIMIZER_FILE))?;
            if let Some(p) = pending {
                p.save(dir)?;
            }
            if let Some(h) = &self.policy.head {
                h.save(&dir.join(SCORE_HEAD_FILE))?;
            }
            if let Some(c) = &self.policy.critic {
                c.save(dir)?;
            }
            Ok(())
        };
        let dir = checkpoint::save(
            &self.ckpt_root,
            &self.policy.model,
            &self.policy.tokenizer,
            &self.state,
            &self.config_toml,
            &write_opt,
        )?;
        checkpoint::prune(&self.ckpt_root, self.cfg.checkpoint.keep)?;
        Ok(dir)
    }
}

/// Runs a training configuration to its last step.
pub fn train(loaded: &LoadedConfig, opts: &TrainOptions) -> TrainResult<TrainSummary> {
    let cfg = &loaded.config;
    let origin = loaded.origin.display().to_string();
    let (task, reward) = prepare_task(cfg, &loaded.task, &origin)?;

    let out = cfg.output_dir.clone();
    std::fs::create_dir_all(&out).map_err(|e| TrainError::io(&out, e))?;
    let ckpt_root = out.join("checkpoints");
    checkpoint::clean_temporaries(&ckpt_root);
    let resume = match &opts.resume {
        Some(arg) => {
            let dir = resume_dir(arg, &ckpt_root)?;
            let st = checkpoint::load_state(&dir)?;
            if st.algorithm != algorithm_name(cfg.algorithm.name) || st.seed != cfg.seed {
                return Err(TrainError::checkpoint(
                    &dir,
                    format!(
                        "written by a {} run with seed {}; this config is {} with seed {}",
                        st.algorithm,
                        st.seed,
                        algorithm_name(cfg.algorithm.name),
                        cfg.seed
                    ),
                ));
            }
            Some((dir, st))
        }
        None => None,
    };

    let m = load_model(cfg)?;
    let eos = m.eos_token_ids();
    let (mut model, tokenizer) = (m.model, m.tokenizer);
    if let Some(l) = &cfg.model.lora {
        model.attach_lora(&l.to_lora(), derive(cfg.seed, Purpose::Lora, 0, 0))?;
    }
    let rl = matches!(cfg.algorithm.name, AlgorithmName::Grpo | AlgorithmName::Ppo);
    let reference = if crate::dpo::is_dpo(cfg.algorithm.name) {
        Some(crate::dpo::reference(cfg.algorithm.dpo.reference, &model)?)
    } else if rl && cfg.kl.enabled() {
        Some(Reference::of(&model)?)
    } else {
        None
    };
    let mut state = TrainerState {
        format: STATE_FORMAT,
        algorithm: algorithm_name(cfg.algorithm.name).into(),
        step: 0,
        data_position: 0,
        policy_version: 0,
        seed: cfg.seed,
        lora: model.has_lora(),
        kl_controller: None,
        bapo: None,
    };
    // PPO's separate critic: a copy of the initial policy with its own value head and optimizer.
    let separate = cfg.algorithm.name == AlgorithmName::Ppo
        && cfg.algorithm.ppo.critic == crate::config::CriticKind::Separate;
    let mut critic = if separate {
        Some(crate::ppo::critic::SeparateCritic::new(
            &model,
            &crate::ppo::critic::CriticSettings {
                adamw: cfg.optim.adamw(),
                schedule: &cfg.optim.schedule,
                lr: cfg.algorithm.ppo.critic_lr.unwrap_or(cfg.optim.lr),
                total_steps: total_optimizer_steps(cfg),
                max_grad_norm: cfg.optim.max_grad_norm,
                head_seed: derive(cfg.seed, Purpose::ScoreHead, 0, 0),
            },
        )?)
    } else {
        None
    };
    // The reward model's score head, PPO's value head on the shared trunk: trained with the
    // model, by one optimizer.
    let head = match cfg.algorithm.name {
        AlgorithmName::Ppo if separate => None,
        AlgorithmName::Ppo | AlgorithmName::RewardModel => Some(ScoreHead::new(
            model.config().hidden_size,
            model.dtype(),
            model.device(),
            derive(cfg.seed, Purpose::ScoreHead, 0, 0),
        )?),
        _ => None,
    };
    let mut vars = model.trainable_vars();
    vars.extend(head.iter().flat_map(ScoreHead::vars));
    let mut optimizer = AdamW::new(vars, cfg.optim.adamw())?;
    let mut pending = None;
    if let Some((dir, st)) = &resume {
        checkpoint::restore_trainable(dir, &model, st.lora)?;
        if let Some(h) = &head {
            h.restore(&dir.join(SCORE_HEAD_FILE))?;
        }
        optimizer.load(dir.join(checkpoint::OPTIMIZER_FILE))?;
        if let Some(c) = critic.as_mut() {
            c.restore(dir)?;
        }
        state = st.clone();
        if cfg.rollout.max_staleness > 0 {
            pending = grpo::pending::PendingRollouts::load(dir)?;
        }
    }
    let schedule = LrSchedule::new(
        &cfg.optim.schedule,
        cfg.optim.lr,
        total_optimizer_steps(cfg),
    )?;
    let policy = Policy {
        model,
        tokenizer,
        optimizer,
        schedule,
        max_grad_norm: cfg.optim.max_grad_norm,
        reference,
        head,
        critic,
    };
    let config_toml = toml::to_string(cfg)
        .map_err(|e| TrainError::Invariant(format!("cannot write the config as TOML: {e}")))?;
    let mut run = Run {
        cfg,
        task,
        reward,
        policy,
        eos,
        engine: None,
        local: None,
        state,
        pending,
        ckpt_root,
        config_toml,
    };
    let needs_engine = rl
        || cfg.algorithm.name == AlgorithmName::OnlineDpo
        || (run.evaluating() && cfg.eval.accuracy && run.reward.is_some());
    if needs_engine {
        match cfg.rollout.engine.urls() {
            None => {
                let decoder: Arc<dyn TokenDecoder> = Arc::new(run.policy.tokenizer.clone());
                // Rollouts that overlap training (asynchronous mode) read a snapshot, not the
                // tensors the optimizer updates in place.
                let served = if cfg.rollout.max_staleness > 0 {
                    run.policy.model.inference_snapshot()?
                } else {
                    run.policy.model.clone()
                };
                let engine = EngineHandle::start(
                    Arc::new(served),
                    Some(decoder),
                    EngineConfig {
                        eos_token_ids: run.eos.clone(),
                        initial_policy_version: run.state.policy_version,
                        // In lockstep the engine idles while the trainer trains: the backward
                        // gets the KV cache's memory (SmolLM2 at 8 × 8 × 256: 0.85 GiB).
                        release_cache_when_idle: cfg.rollout.max_staleness == 0,
                        ..EngineConfig::default().with_cache_tokens(cfg.rollout.kv_cache_tokens)
                    },
                )
                .map_err(|e| TrainError::Rollout(e.to_string()))?;
                run.local = Some(engine.clone());
                run.engine = Some(Box::new(engine));
            }
            Some(urls) => {
                let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
                let client = HttpRolloutClient::connect(HttpClientConfig {
                    urls,
                    api_key: cfg.rollout.api_key.clone().or_else(|| env("OXRL_API_KEY")),
                    admin_key: cfg
                        .rollout
                        .admin_key
                        .clone()
                        .or_else(|| env("OXRL_ADMIN_KEY")),
                    timeout: std::time::Duration::from_secs_f64(cfg.rollout.timeout_s),
                })
                .map_err(|e| TrainError::Rollout(e.to_string()))?;
                // The servers start from their own copy of the weights: publish the trainer's
                // (the base, or a resumed checkpoint's) before the first rollout.
                run.state.policy_version = client
                    .sync_weights(&run.policy.model)
                    .map_err(|e| TrainError::Rollout(e.to_string()))?;
                run.engine = Some(Box::new(client));
            }
        }
    }

    if let (Some(p), Some((_, st))) = (run.pending.as_mut(), &resume) {
        // Remote servers renumber on the initial push: keep the saved rollouts' lag.
        let lag = st.policy_version.saturating_sub(p.version);
        p.version = run.state.policy_version.saturating_sub(lag);
    }
    let metrics_path = out.join(&cfg.log.metrics_file);
    let resumed_from = run.state.step;
    let mut metrics = MetricsFile::open(&metrics_path, resume.as_ref().map(|_| resumed_from))?;
    let total = cfg.algorithm.steps as u64;
    let progress = Progress::new(
        total,
        resumed_from,
        opts.progress.unwrap_or(cfg.log.progress),
    );
    let mut records = Vec::new();
    let mut last_ckpt = resume.as_ref().map(|(d, _)| d.clone());
    if resume.is_none() && cfg.eval.at_start {
        let mut rec = Record::new();
        rec.insert("step".into(), 0u64.into());
        run.evaluate(&mut rec)?;
        metrics.write(&rec)?;
        progress.println(&format!(
            "eval before training: {}",
            serde_json::Value::Object(rec.clone())
        ));
        records.push(rec);
    }
    let stop_requested = || opts.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst));
    let mut interrupted = false;
    let plot_path = out.join(crate::plot::PLOT_FILE);
    let result = (|| -> TrainResult<()> {
        while run.state.step < total {
            let mut rec = match cfg.algorithm.name {
                AlgorithmName::Sft => sft::step(&mut run.policy, &run.task, cfg, &mut run.state)?,
                AlgorithmName::Grpo => {
                    let (Some(engine), Some(reward)) = (&run.engine, &run.reward) else {
                        return Err(TrainError::Invariant(
                            "GRPO without engine or verifiers".into(),
                        ));
                    };
                    grpo::step(
                        &mut run.policy,
                        engine.as_ref(),
                        &run.task,
                        reward,
                        cfg,
                        &mut run.state,
                        &mut run.pending,
                    )?
                }
                AlgorithmName::Ppo => {
                    let (Some(engine), Some(reward)) = (&run.engine, &run.reward) else {
                        return Err(TrainError::Invariant(
                            "PPO without engine or verifiers".into(),
                        ));
                    };
                    crate::ppo::step(
                        &mut run.policy,
                        engine.as_ref(),
                        &run.task,
                        reward,
                        cfg,
                        &mut run.state,
                    )?
                }
                AlgorithmName::RewardModel => {
                    crate::reward_model::step(&mut run.policy, &run.task, cfg, &mut run.state)?
                }
                AlgorithmName::Dpo => {
                    crate::dpo::offline::step(&mut run.policy, &run.task, cfg, &mut run.state)?
                }
                AlgorithmName::OnlineDpo => {
                    let (Some(engine), Some(reward)) = (&run.engine, &run.reward) else {
                        return Err(TrainError::Invariant(
                            "online DPO without engine or verifiers".into(),
                        ));
                    };
                    crate::dpo::online::step(
                        &mut run.policy,
                        engine.as_ref(),
                        &run.task,
                        reward,
                        cfg,
                        &mut run.state,
                    )?
                }
            };
            let step = run.state.step;
            if let Some(gib) = crate::metrics::peak_rss_gib() {
                rec.insert("peak_rss_gib".into(), num(gib));
            }
            if run.eval_due(step) {
                run.evaluate(&mut rec)?;
            }
            metrics.write(&rec)?;
            progress.step(&rec);
            records.push(rec);
            if cfg.log.plot {
                if let Err(e) = crate::plot::draw(&metrics_path, &plot_path) {
                    progress.println(&format!("plot not drawn: {e}"));
                }
            }
            let every = cfg.checkpoint.every as u64;
            let periodic = every > 0 && step.is_multiple_of(every);
            let saved = if periodic || (cfg.checkpoint.at_end && step == total) {
                last_ckpt = Some(run.save_checkpoint()?);
                true
            } else {
                false
            };
            crate::fault::pause_at("after-step", step, opts.stop.as_deref());
            if stop_requested() && step < total {
                if !saved {
                    last_ckpt = Some(run.save_checkpoint()?);
                }
                interrupted = true;
                break;
            }
        }
        Ok(())
    })();
    progress.finish();
    if let Some(e) = &run.local {
        e.shutdown();
    }
    result?;
    Ok(TrainSummary {
        output_dir: out,
        metrics_path: metrics.path().to_path_buf(),
        resumed_from,
        last_step: run.state.step,
        checkpoint: last_ckpt,
        records,
        interrupted,
    })
}
