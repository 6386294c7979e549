//! The sandbox against hostile programs, and the `code` verifier end to end.
//!
//! Every hostile test asserts two things: the verdict the sandbox recorded, and that the host is
//! unharmed (it can still start processes, nothing of the run is left running, nothing was
//! written or reached outside). Tests that depend on a mechanism the OS may forbid (namespaces)
//! check it with `Sandbox::isolation()` and print why they skip that part.
#![cfg(target_os = "linux")]

use oxrl_verifiers::code::CodeVerifier;
use oxrl_verifiers::sandbox::{Isolation, Sandbox, SandboxFile, SandboxOutcome, SandboxRequest};
use oxrl_verifiers::{BuildContext, Group, Registry, Verifier, VerifyExample};
use serde_json::{json, Value};
use std::fs;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn sandbox() -> &'static Sandbox {
    static S: OnceLock<Sandbox> = OnceLock::new();
    S.get_or_init(|| {
        let s = Sandbox::default();
        eprintln!(
            "sandbox isolation on this host: {}",
            s.isolation().summary()
        );
        s
    })
}

fn isolation() -> Isolation {
    sandbox().isolation()
}

/// A Python program as a request (`python3 main.py`), 5 s wall limit.
fn py(code: &str) -> SandboxRequest {
    let mut r = SandboxRequest::new(["python3", "main.py"]);
    r.files.push(SandboxFile::new("main.py", code));
    r.limits.wall = Duration::from_secs(5);
    r
}

/// A shell script as a request (`sh -c script`), 5 s wall limit.
fn sh(script: &str) -> SandboxRequest {
    let mut r = SandboxRequest::new(["sh", "-c", script]);
    r.limits.wall = Duration::from_secs(5);
    r
}

fn run(req: &SandboxRequest) -> SandboxOutcome {
    let o = sandbox().run(req).expect("sandbox run");
    eprintln!(
        "exit {:?} signal {:?} timed_out {} cpu {} mem {} wall {:?} uid {:?}\nstdout: {}\nstderr: {}",
        o.exit_code,
        o.signal,
        o.timed_out,
        o.cpu_limit_hit,
        o.memory_limit_hit,
        o.wall_time,
        o.uid,
        trunc(&o.stdout_text()),
        trunc(&o.stderr_text()),
    );
    o
}

fn trunc(s: &str) -> &str {
    let mut end = s.len().min(600);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// (state, real uid) of a live process, `None` when it does not exist.
fn proc_state(pid: i32) -> Option<(char, u32)> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let state = status
        .lines()
        .find_map(|l| l.strip_prefix("State:"))?
        .trim()
        .chars()
        .next()?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some((state, uid))
}

/// Whether `pid` is running (exists and is not a zombie), waiting up to 2 s for it to die.
fn still_running(pid: i32) -> bool {
    let until = Instant::now() + Duration::from_secs(2);
    loop {
        match proc_state(pid) {
            None | Some(('Z' | 'X', _)) => return false,
            Some(_) if Instant::now() >= until => return true,
            Some(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Live processes with real uid `uid`.
fn processes_of(uid: u32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        if let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) {
            if matches!(proc_state(pid), Some((s, u)) if u == uid && s != 'Z' && s != 'X') {
                out.push(pid);
            }
        }
    }
    out
}

/// The host is fine after a run: it can start a process, and when the run had a dedicated uid,
/// no process of that uid is left.
fn assert_host_unharmed(o: &SandboxOutcome) {
    let st = std::process::Command::new("sh")
        .args(["-c", "exit 7"])
        .status()
        .expect("the host can still spawn processes");
    assert_eq!(st.code(), Some(7));
    if let Some(uid) = o.uid {
        let until = Instant::now() + Duration::from_secs(2);
        loop {
            let left = processes_of(uid);
            if left.is_empty() {
                break;
            }
            assert!(
                Instant::now() < until,
                "processes of sandbox uid {uid} left: {left:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn unique(tag: &str) -> String {
    use std::time::SystemTime;
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("oxrl-escape-{tag}-{}-{nanos}", std::process::id())
}

#[test]
fn a_plain_program_runs_with_stdin_and_files() {
    let mut r = py("import sys\nprint(sys.stdin.read().upper(), open('data.txt').read())");
    r.stdin = b"hello".to_vec();
    r.files.push(SandboxFile::new("data.txt", "from a file"));
    let o = run(&r);
    assert!(o.success());
    assert_eq!(o.stdout_text().trim(), "HELLO from a file");
    assert!(!o.stdout_truncated && o.output_complete);
    assert_eq!(o.isolation, isolation());
    assert_host_unharmed(&o);
}

#[test]
fn infinite_loop_hits_the_wall_timeout() {
    let mut r = py("while True:\n    pass\n");
    r.limits.wall = Duration::from_millis(800);
    let started = Instant::now();
    let o = run(&r);
    assert!(o.timed_out);
    assert_eq!(o.signal, Some(libc::SIGKILL));
    assert!(!o.success());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_host_unharmed(&o);
}

#[test]
fn cpu_burner_hits_the_cpu_limit() {
    let mut r = py("x = 0\nwhile True:\n    x += 1\n");
    r.limits.cpu_s = 1;
    r.limits.wall = Duration::from_secs(8);
    let o = run(&r);
    assert!(o.cpu_limit_hit, "{o:?}");
    assert!(!o.timed_out);
    assert!(o.wall_time < Duration::from_secs(5), "{:?}", o.wall_time);
    assert_host_unharmed(&o);
}

#[test]
fn fork_bomb_is_contained() {
    // The main process counts how many sleeping children it could start, then every process
    // becomes a fork bomb until the wall limit.
    let code = r#"
import os, sys, time
n = 0
while n < 1000:
    try:
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        n += 1
    except OSError:
        break
print(n, flush=True)
while True:
    try:
        os.fork()
    except OSError:
        pass
"#;
    let mut r = py(code);
    r.limits.max_processes = 12;
    r.limits.wall = Duration::from_millis(1500);
    let o = run(&r);
    let forked: usize = o
        .stdout_text()
        .trim()
        .parse()
        .expect("the program reports its fork count");
    if isolation().process_limit {
        assert!(
            forked < 12,
            "{forked} children under a limit of 12 processes"
        );
    } else {
        eprintln!(
            "SKIP (count): no per-run process limit here (uid 0 without setuid, or no user \
             namespace); {forked} children were started, all killed at the wall limit"
        );
    }
    assert!(o.timed_out);
    assert_host_unharmed(&o);
}

#[test]
fn memory_hog_fails_to_allocate() {
    let mut r = py("chunks = []\nwhile True:\n    chunks.append(bytearray(16 << 20))\n");
    r.limits.memory_bytes = 256 << 20;
    let o = run(&r);
    assert!(!o.success());
    assert!(!o.timed_out);
    assert!(o.memory_limit_hit, "{}", o.stderr_text());
    assert!(o.stderr_text().contains("MemoryError"));
    // One big allocation fails too.
    let o = run(&{
        let mut r = py("x = bytearray(4 << 30)\n");
        r.limits.memory_bytes = 256 << 20;
        r
    });
    assert!(o.memory_limit_hit && !o.success());
    assert_host_unharmed(&o);
}

#[test]
fn huge_stdout_is_capped() {
    let mut r = py("import sys\nblock = 'x' * 65536\nfor _ in range(400):\n    sys.stdout.write(block)\nprint('done', file=sys.stderr)\n");
    r.limits.max_output_bytes = 1 << 20;
    let o = run(&r);
    assert!(o.success(), "the program was drained, not blocked");
    assert_eq!(o.stdout.len(), 1 << 20);
    assert!(o.stdout.iter().all(|&b| b == b'x'));
    assert!(o.stdout_truncated);
    assert!(!o.stderr_truncated);
    assert_eq!(o.stderr_text().trim(), "done");
    assert_host_unharmed(&o);
}

#[test]
fn file_size_and_disk_use_are_bounded() {
    // One file beyond the file-size limit: SIGXFSZ.
    let mut r = py("with open('big', 'wb') as f:\n    f.write(b'x' * (8 << 20))\n");
    r.limits.max_file_bytes = 1 << 20;
    let o = run(&r);
    assert!(o.file_size_limit_hit, "{o:?}");
    assert!(!o.success());
    // Many files under the per-file limit: the work dir's tmpfs fills up, the host disk does not.
    let code = "import os\ntry:\n    for i in range(100):\n        with open('f%d' % i, 'wb') as f:\n            f.write(b'x' * (1 << 20))\n    print('WROTE ALL')\nexcept OSError as e:\n    print('STOPPED', i, e.errno)\n";
    let mut r = py(code);
    r.limits.max_file_bytes = 2 << 20;
    r.limits.max_disk_bytes = 8 << 20;
    let o = run(&r);
    assert!(o.success(), "{}", o.stderr_text());
    if isolation().mount_ns {
        assert!(
            o.stdout_text().starts_with("STOPPED"),
            "{}",
            o.stdout_text()
        );
    } else {
        eprintln!("SKIP (part): no mount namespace, the work dir is not a size-limited tmpfs");
    }
    assert_host_unharmed(&o);
}

#[test]
fn unread_stdin_does_not_block_the_run() {
    let mut r = sh("exit 5");
    r.stdin = vec![b'a'; 8 << 20];
    let started = Instant::now();
    let o = run(&r);
    assert_eq!(o.exit_code, Some(5));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_host_unharmed(&o);
}

#[test]
fn writes_outside_the_work_dir_fail() {
    let tmp_target = std::env::temp_dir().join(unique("tmp"));
    let repo_target = Path::new(env!("CARGO_MANIFEST_DIR")).join(unique("repo"));
    let shm_name = unique("shm");
    let rel_name = unique("rel");
    let code = format!(
        r#"
import os
for p in [{tmp:?}, {repo:?}, "../" + {rel:?}]:
    try:
        with open(p, "w") as f:
            f.write("escaped")
        print("WROTE", p)
    except OSError as e:
        print("DENIED", p, e.__class__.__name__)
with open("inside.txt", "w") as f:
    f.write("fine")
print("INSIDE", open("inside.txt").read())
try:
    open("/dev/shm/" + {shm:?}, "w").write("private")
    print("SHM written")
except OSError as e:
    print("SHM", e.__class__.__name__)
"#,
        shm = shm_name,
        tmp = tmp_target.display().to_string(),
        repo = repo_target.display().to_string(),
        rel = rel_name,
    );
    let o = run(&py(&code));
    let out = o.stdout_text();
    assert!(o.success(), "{}", o.stderr_text());
    assert!(
        out.contains("INSIDE fine"),
        "the work dir is writable: {out}"
    );
    let iso = isolation();
    if iso.mount_ns {
        assert!(!out.contains("WROTE"), "{out}");
        assert_eq!(out.matches("DENIED").count(), 3, "{out}");
        // /dev/shm is a private tmpfs of the run: what is written there never reaches the host.
        assert!(!Path::new("/dev/shm").join(&shm_name).exists());
    } else {
        eprintln!("SKIP (part): no mount namespace, world-writable folders stay writable: {out}");
    }
    if iso.mount_ns || iso.uid_dropped {
        assert!(!tmp_target.exists(), "{}", tmp_target.display());
        assert!(!repo_target.exists(), "{}", repo_target.display());
    }
    // Clean up whatever a weaker fallback let through.
    let _ = fs::remove_file(&tmp_target);
    let _ = fs::remove_file(std::env::temp_dir().join(&rel_name));
    let _ = fs::remove_file(Path::new("/dev/shm").join(&shm_name));
    let _ = fs::remove_file(&repo_target);
    assert_host_unharmed(&o);
}

#[test]
fn the_parents_environment_is_invisible() {
    const SECRET: &str = "oxrl-test-secret-7f3a9c";
    // SAFETY-free in edition 2021; no other test reads this variable.
    std::env::set_var("OXRL_SANDBOX_TEST_SECRET", SECRET);
    let parent_environ = fs::read("/proc/self/environ").unwrap_or_default();
    let code = r#"
import os
print("ENV", sorted(os.environ.items()))
for p in ["/proc/%d/environ" % os.getppid(), "/proc/1/environ"]:
    try:
        data = open(p, "rb").read()
        print("GOT_PROC_ENV", p, len(data), data[:4000])
    except OSError as e:
        print("DENIED", p, e.__class__.__name__)
"#;
    let o = run(&py(code));
    let out = o.stdout_text();
    assert!(o.success(), "{}", o.stderr_text());
    assert!(!out.contains(SECRET), "{out}");
    assert!(!out.contains("OXRL_SANDBOX_TEST_SECRET"), "{out}");
    assert!(!out.contains("CARGO_MANIFEST_DIR"), "{out}");
    // Nothing of the parent's initial environment is readable through /proc either: /proc is
    // hidden (mount namespace) or belongs to another uid.
    let iso = isolation();
    if iso.mount_ns || iso.uid_dropped {
        assert!(!out.contains("GOT_PROC_ENV"), "{out}");
        let first = parent_environ
            .split(|&b| b == 0)
            .find(|e| e.len() > 8)
            .map(|e| String::from_utf8_lossy(e).into_owned());
        if let Some(entry) = first {
            assert!(!out.contains(&entry), "{out}");
        }
    } else {
        eprintln!(
            "SKIP (part): same uid and no mount namespace: /proc/<parent>/environ is readable"
        );
    }
    assert_host_unharmed(&o);
}

#[test]
fn network_connections_fail() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let code = format!(
        r#"
import socket
try:
    s = socket.create_connection(("127.0.0.1", {port}), timeout=2)
    print("CONNECTED")
except OSError as e:
    print("FAILED", e)
"#
    );
    let o = run(&py(&code));
    let out = o.stdout_text();
    assert!(o.success(), "{}", o.stderr_text());
    std::thread::sleep(Duration::from_millis(50));
    let accepted = listener.accept();
    if isolation().net_ns {
        assert!(out.contains("FAILED"), "{out}");
        assert!(
            matches!(&accepted, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "the listener got a connection: {accepted:?}"
        );
    } else {
        eprintln!("SKIP: no network namespace on this host (the program said: {out})");
    }
    assert_host_unharmed(&o);
}

#[test]
fn daemons_do_not_outlive_the_run() {
    // Double fork + setsid: the grandchild leaves the run's session and process group.
    let code = r#"
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        print(os.getpid(), flush=True)
        time.sleep(30)
    os._exit(0)
os.wait()
time.sleep(0.2)
"#;
    let started = Instant::now();
    let o = run(&py(code));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(o.exit_code, Some(0));
    let pid: i32 = o
        .stdout_text()
        .trim()
        .parse()
        .expect("the daemon reports its pid");
    let iso = isolation();
    if iso.uid_dropped || iso.user_ns {
        assert!(!still_running(pid), "daemon {pid} outlived the run");
    } else {
        eprintln!(
            "SKIP (part): without a dedicated uid or user namespace a daemon that calls setsid \
             cannot be told from other processes of the user"
        );
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    }
    assert_host_unharmed(&o);
}

#[test]
fn orphans_holding_the_output_pipes_are_killed() {
    let started = Instant::now();
    let o = run(&sh("sleep 30 & echo started; exit 4"));
    assert_eq!(o.exit_code, Some(4));
    assert_eq!(o.stdout_text().trim(), "started");
    assert!(o.output_complete);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_host_unharmed(&o);
}

#[test]
fn ignoring_sigterm_does_not_help() {
    let mut r = sh("trap '' TERM INT HUP; while :; do :; done");
    r.limits.wall = Duration::from_millis(700);
    let o = run(&r);
    assert!(o.timed_out);
    assert_eq!(o.signal, Some(libc::SIGKILL));
    assert!(o.wall_time < Duration::from_secs(3));
    assert_host_unharmed(&o);
}

#[test]
fn closing_stdout_early_returns_promptly() {
    let started = Instant::now();
    let o = run(&sh(
        "echo before; exec 1>&-; sleep 0.3; echo after >&2; exit 3",
    ));
    assert_eq!(o.exit_code, Some(3));
    assert!(!o.timed_out);
    assert_eq!(o.stdout_text().trim(), "before");
    assert_eq!(o.stderr_text().trim(), "after");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_host_unharmed(&o);
}

#[test]
fn missing_programs_are_errors_not_outcomes() {
    let err = sandbox()
        .run(&SandboxRequest::new(["no-such-interpreter-xyz"]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("not found"), "{err}");
    assert!(sandbox()
        .run(&SandboxRequest::new(Vec::<String>::new()))
        .is_err());
    let mut r = py("print(1)");
    r.files.push(SandboxFile::new("../evil", "x"));
    assert!(sandbox().run(&r).is_err());
}

// ---- the `code` verifier ----

fn code_verifier(options: Value) -> Box<dyn Verifier> {
    let mut o = options;
    o.as_object_mut()
        .unwrap()
        .entry("timeout_s")
        .or_insert(json!(5));
    Registry::builtin()
        .build("code", o.as_object().unwrap(), &BuildContext::default())
        .expect("code verifier")
}

fn group(tests: Value, completions: &[&str]) -> Group {
    let mut metadata = serde_json::Map::new();
    if !tests.is_null() {
        metadata.insert("tests".into(), tests);
    }
    Group {
        example: VerifyExample {
            id: "t".into(),
            metadata,
            ..VerifyExample::default()
        },
        completions: completions.iter().map(|s| s.to_string()).collect(),
    }
}

fn sum_tests() -> Value {
    json!([
        {"input": "1 2\n", "output": "3\n"},
        {"input": "2 2\n", "output": "4"},
        {"input": "10 -3\n", "output": "7  \n\n"},
        {"input": "0 0\n", "output": "0"},
    ])
}

#[test]
fn code_verifier_rewards_the_fraction_of_tests_passed() {
    let v = code_verifier(json!({}));
    let correct = "Here you go:\n```python\na, b = map(int, input().split())\nprint(a + b)\n```\n";
    let half = "```python\na, b = map(int, input().split())\nprint(a + b if a + b < 4 else 0)\n```";
    let syntax = "```python\ndef broken(:\n    pass\n```";
    let s = v.score(&[group(sum_tests(), &[correct, half, syntax])]);
    let s = &s[0];
    assert_eq!(s[0].reward, 1.0, "{:?}", s[0]);
    assert_eq!(s[0].components["passed"], 4.0);
    assert_eq!(s[0].components["total"], 4.0);
    assert!(s[0].error.is_none());
    assert_eq!(s[1].reward, 0.5, "{:?}", s[1]);
    assert_eq!(s[2].reward, 0.0);
    assert!(
        s[2].error.is_none(),
        "a syntax error is a failing program, not an error"
    );
    assert_eq!(s[2].components["errors"], 4.0);
}

#[test]
fn code_verifier_runs_assert_tests() {
    let v = code_verifier(json!({}));
    let tests = json!([
        {"assert": "assert double(2) == 4"},
        "assert double(0) == 0",
        {"assert": "assert double(3) == 7"},
        {"assert": "import sys\nassert double(int(sys.stdin.read())) == 10", "input": "5"},
    ]);
    let s = v.score(&[group(tests, &["def double(x):\n    return 2 * x\n"])]);
    assert_eq!(s[0][0].reward, 0.75, "{:?}", s[0][0]);
    assert_eq!(s[0][0].components["errors"], 1.0);
}

#[test]
fn code_verifier_records_timeouts_and_verifier_side_errors() {
    let v = code_verifier(json!({"timeout_s": 0.7, "parallel": 2}));
    let spin = "```python\nwhile True:\n    pass\n```";
    let s = v.score(&[
        group(
            json!([{"input": "", "output": "x"}, {"input": "", "output": "y"}]),
            &[spin],
        ),
        group(Value::Null, &["print(1)", "print(2)"]),
        group(json!("not json"), &["print(1)"]),
    ]);
    assert_eq!(s[0][0].reward, 0.0);
    assert_eq!(s[0][0].components["timeouts"], 2.0);
    assert!(s[0][0].error.is_none());
    for sc in &s[1] {
        assert_eq!(sc.reward, 0.0);
        assert!(
            sc.error.as_deref().unwrap().contains("no `tests`"),
            "{sc:?}"
        );
    }
    assert!(s[2][0].error.is_some());

    let v = code_verifier(json!({"interpreter": ["no-such-python-xyz"]}));
    let s = v.score(&[group(sum_tests(), &["print(3)"])]);
    let err = s[0][0].error.as_deref().unwrap();
    assert!(err.contains("not found"), "{err}");
    assert_eq!(s[0][0].reward, 0.0);
}

#[test]
fn code_verifier_scores_a_batch_in_parallel_within_bounds() {
    let v = CodeVerifier::from_options(json!({"timeout_s": 5, "parallel": 2}).as_object().unwrap())
        .unwrap();
    let correct = "a, b = map(int, input().split())\nprint(a + b)";
    let wrong = "print(0)";
    let groups: Vec<Group> = (0..3)
        .map(|_| group(sum_tests(), &[correct, wrong]))
        .collect();
    let s = v.score(&groups);
    assert_eq!(s.len(), 3);
    for g in &s {
        assert_eq!(g[0].reward, 1.0);
        assert_eq!(g[1].reward, 0.25);
    }
}
