use super::*;

const GRPO: &str = r#"
seed = 7
[model]
init = "tiny"
[task]
name = "arith"
[task.dataset]
source = "synthetic:arith"
eval_count = 4
[task.dataset.synthetic]
n = 40
seed = 1
[[task.verifiers]]
name = "arith"
[algorithm]
name = "grpo"
steps = 2
batch_size = 2
[rollout]
n = 4
max_tokens = 8
"#;

fn parse(text: &str, sets: &[&str]) -> TrainResult<TrainConfig> {
    let o: Vec<Override> = sets.iter().map(|s| Override::parse(s).unwrap()).collect();
    TrainConfig::from_toml_str(text, "t.toml", &o)
}

fn load(text: &str, sets: &[&str]) -> TrainResult<LoadedConfig> {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("t.toml");
    std::fs::write(&p, text).unwrap();
    let o: Vec<Override> = sets.iter().map(|s| Override::parse(s).unwrap()).collect();
    TrainConfig::load(&p, &o)
}

fn err_of(r: TrainResult<impl std::fmt::Debug>) -> (String, String) {
    match r.unwrap_err() {
        TrainError::Config { key, message, .. } => (key, message),
        other => panic!("expected a config error, got {other}"),
    }
}

#[test]
fn defaults_fill_in_and_the_task_is_kept() {
    let c = parse(GRPO, &[]).unwrap();
    assert_eq!(c.seed, 7);
    assert_eq!(c.algorithm.epochs, 1);
    assert_eq!(c.rollout.engine, super::EngineSpec::Name("local".into()));
    assert_eq!(c.rollout.engine.urls(), None);
    assert_eq!(c.optim.max_grad_norm, Some(1.0));
    assert_eq!(c.task.as_ref().unwrap().name.as_deref(), Some("arith"));
    load(GRPO, &[]).unwrap();
}

#[test]
fn unknown_keys_and_wrong_types_name_the_key() {
    let (key, msg) = err_of(parse(&GRPO.replace("steps = 2", "stepz = 2"), &[]));
    assert_eq!(key, "algorithm.stepz", "{msg}");
    assert!(msg.contains("unknown field `stepz`"), "{msg}");
    let (key, msg) = err_of(parse(&GRPO.replace("\nn = 4\n", "\nn = \"four\"\n"), &[]));
    assert_eq!(key, "rollout.n");
    assert!(msg.contains("invalid type"), "{msg}");
    let (key, msg) = err_of(parse("[model\n", &[]));
    assert_eq!(key, "(syntax)");
    assert!(msg.contains("line 1"), "{msg}");
    let (key, _) = err_of(parse(GRPO, &["optim.lrr=0.1"]));
    assert_eq!(key, "optim.lrr");
    let (key, msg) = err_of(parse(GRPO, &["algorithm.name=ppo2"]));
    assert_eq!(key, "algorithm.name");
    assert!(msg.contains("sft") && msg.contains("grpo"), "{msg}");
    let (key, _) = err_of(parse(GRPO, &["task.dataset.shufle=false"]));
    assert_eq!(key, "task.dataset.shufle");
    let (key, _) = err_of(parse(GRPO, &["algorithm.sft.aggregation=token_mean"]));
    assert_eq!(key, "algorithm.sft.aggregation");
}

#[test]
fn overrides_change_values() {
    let c = parse(
        GRPO,
        &[
            "algorithm.steps=5",
            "optim.lr=0.5",
            "rollout.stop=[\"\\n\"]",
        ],
    )
    .unwrap();
    assert_eq!(c.algorithm.steps, 5);
    assert_eq!(c.optim.lr, 0.5);
    assert_eq!(c.rollout.stop, ["\n"]);
}

#[test]
fn validation_names_the_key_before_any_work() {
    let (key, msg) = err_of(load(GRPO, &["rollout.n=1"]));
    assert_eq!(key, "rollout.n");
    assert!(msg.contains("n >= 2"), "{msg}");
    let (key, msg) = err_of(load(GRPO, &["rollout.engine=tcp://x"]));
    assert_eq!(key, "rollout.engine", "{msg}");
    let (key, _) = err_of(load(GRPO, &["rollout.engine=[]"]));
    assert_eq!(key, "rollout.engine");
    let c = load(
        GRPO,
        &["rollout.engine=[\"http://127.0.0.1:1\", \"http://127.0.0.1:2\"]"],
    )
    .unwrap();
    assert_eq!(c.config.rollout.engine.urls().unwrap().len(), 2);
    let (key, _) = err_of(load(GRPO, &["algorithm.micro_batch_size=0"]));
    assert_eq!(key, "algorithm.micro_batch_size");
    let (key, _) = err_of(load(GRPO, &["kl.controller=\"adaptive\""]));
    assert_eq!(key, "kl.controller");
    let (key, _) = err_of(load(GRPO, &["algorithm.advantage.estimator=\"ppo\""]));
    assert_eq!(key, "algorithm.advantage.estimator");
    let (key, _) = err_of(load(
        GRPO,
        &["rollout.max_tokens=8", "algorithm.overlong.buffer_tokens=8"],
    ));
    assert_eq!(key, "algorithm.overlong.buffer_tokens");
    let (key, _) = err_of(load(GRPO, &["optim.lr=-1"]));
    assert_eq!(key, "optim.lr");
    let (key, _) = err_of(load(GRPO, &["rollout.top_p=2.0"]));
    assert_eq!(key, "rollout.top_p");
    // `--set model.path` replaces the file's `model.init`: the error is now the missing model.
    let (key, _) = err_of(load(GRPO, &["model.path=/nonexistent/model"]));
    assert_eq!(key, "model.path");
    // Both in the file stays an error.
    let both = GRPO.replacen("init = \"tiny\"", "init = \"tiny\"\npath = \"x\"", 1);
    let (key, msg) = err_of(load(&both, &[]));
    assert_eq!(key, "model.init");
    assert!(msg.contains("not both"), "{msg}");
    let no_task: String = GRPO
        .split("[algorithm]")
        .enumerate()
        .map(|(i, s)| {
            if i == 0 {
                s.split("[task]").next().unwrap().to_string()
            } else {
                format!("[algorithm]{s}")
            }
        })
        .collect();
    let (key, _) = err_of(load(&no_task, &[]));
    assert_eq!(key, "task");
}

#[test]
fn task_problems_name_the_key() {
    let c = load(
        GRPO,
        &[
            "task.dataset.source=missing.jsonl",
            "task.dataset.synthetic={}",
        ],
    )
    .unwrap();
    let (key, msg) = err_of(validate::prepare_task(&c.config, &c.task, "t.toml"));
    assert_eq!(key, "task.dataset.source");
    assert!(msg.contains("missing.jsonl"), "{msg}");
    let c = load(
        &GRPO.replace(
            "name = \"arith\"\n[algorithm]",
            "name = \"no-such-verifier\"\n[algorithm]",
        ),
        &[],
    )
    .unwrap();
    let (key, msg) = err_of(validate::prepare_task(&c.config, &c.task, "t.toml"));
    assert_eq!(key, "task.verifiers");
    assert!(msg.contains("no-such-verifier"), "{msg}");
    let c = load(GRPO, &["algorithm.name=sft"]).unwrap();
    let (key, msg) = err_of(validate::prepare_task(&c.config, &c.task, "t.toml"));
    assert_eq!(key, "algorithm.sft.target");
    assert!(msg.contains("answer"), "{msg}");
    let c = load(GRPO, &["algorithm.name=sft", "algorithm.sft.target=answer"]).unwrap();
    validate::prepare_task(&c.config, &c.task, "t.toml").unwrap();
}

#[test]
fn shared_prefix_defaults_to_grpo_with_groups() {
    assert!(parse(GRPO, &[]).unwrap().shared_prefix());
    assert!(!parse(GRPO, &["rollout.n=1"]).unwrap().shared_prefix());
    assert!(!parse(GRPO, &["algorithm.shared_prefix=false"])
        .unwrap()
        .shared_prefix());
    assert!(!parse(GRPO, &["algorithm.name=ppo"])
        .unwrap()
        .shared_prefix());
    // Asked for outside GRPO it is an error naming the key.
    let (key, _) = err_of(load(
        GRPO,
        &["algorithm.name=ppo", "algorithm.shared_prefix=true"],
    ));
    assert_eq!(key, "algorithm.shared_prefix");
}
