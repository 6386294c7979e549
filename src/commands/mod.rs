//! One module per subcommand; this file holds the clap tree and dispatches.

use clap::{Parser, Subcommand};

pub mod bench;
mod bench_gemm;
mod bench_loss;
mod bench_train;
pub mod eval;
pub mod generate;
pub mod init_model;
pub mod logprobs;
pub mod loss;
mod model_arg;
pub mod serve;
pub mod train;
pub mod verify;

/// oxrl: LLM post-training in one binary.
#[derive(Parser, Debug)]
#[command(name = "oxrl", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the version.
    Version,
    /// Throughput benchmarks (`oxrl bench rollout ...`).
    Bench(bench::BenchArgs),
    /// Stream a completion of one prompt to stdout.
    Generate(generate::GenerateArgs),
    /// Print per-token log-probabilities of a text or token ids as JSON.
    Logprobs(logprobs::LogprobsArgs),
    /// Write a randomly initialised model with a tokenizer in HF layout.
    InitModel(init_model::InitModelArgs),
    /// Evaluate loss / advantage / KL cases (TRL and verl field names) in f64 as JSON.
    Loss(loss::LossArgs),
    /// Score a file of completions with a task's verifiers (offline).
    Verify(verify::VerifyArgs),
    /// Serve a model over HTTP: OpenAI-compatible API, rollouts, weight updates, metrics.
    Serve(serve::ServeArgs),
    /// Train a policy from a TOML config (SFT, GRPO family, PPO, DPO, reward model; stages).
    /// Without a config: the quickstart.
    Train(train::TrainArgs),
    /// Accuracy of a model on a task's held-out split (greedy, or sampled with pass@k).
    Eval(eval::EvalArgs),
}

/// Runs one parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Verify(args) => verify::run(args),
        Command::Loss(args) => loss::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Train(args) => train::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Generate(args) => generate::run(args),
        Command::Logprobs(args) => logprobs::run(args),
        Command::InitModel(args) => init_model::run(args),
        Command::Version => {
            println!("oxrl {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
    }
}
