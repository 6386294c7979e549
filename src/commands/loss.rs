//! `oxrl loss`: evaluates a file of loss / advantage / KL cases (the golden `FORMAT.md` schema,
//! TRL and verl field names) with the trainer's own functions in f64 and writes
//! `{"results": [...]}`. With `--expect GOLDEN.json` it also compares against reference results
//! and prints a per-kind report (exit code 1 when a case differs).
//!
//! A bad case is an `error` in its own result; the exit code is non-zero only when the file
//! itself cannot be read (or, with `--expect`, when a comparison fails).

use anyhow::{bail, Context, Result};
use oxrl_trainer::cases::{self, compare};
use std::io::Write;
use std::path::PathBuf;

/// Arguments of `oxrl loss`.
#[derive(clap::Args, Debug)]
pub struct LossArgs {
    /// JSON file of cases: `{"cases": [...]}` or a list of cases.
    pub cases: PathBuf,
    /// Where to write the results; stdout when absent.
    #[arg(short, long)]
    pub out: Option<PathBuf>,
    /// A file with reference `results` (a golden file) to compare against; defaults to the cases
    /// file itself when it holds `results`, with `--check`.
    #[arg(long)]
    pub expect: Option<PathBuf>,
    /// Compare against the `results` held in the cases file itself.
    #[arg(long)]
    pub check: bool,
    /// Relative tolerance of the comparison.
    #[arg(long, default_value_t = 1e-6)]
    pub rel_tol: f64,
    /// Absolute tolerance of the comparison.
    #[arg(long, default_value_t = 1e-9)]
    pub abs_tol: f64,
}

fn read_doc(path: &PathBuf) -> Result<serde_json::Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    cases::parse_lenient(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Runs `oxrl loss`.
pub fn run(args: LossArgs) -> Result<()> {
    let doc = read_doc(&args.cases)?;
    let out = cases::evaluate_document(&doc).with_context(|| args.cases.display().to_string())?;
    let text = serde_json::to_string(&out)?;
    match &args.out {
        Some(p) => std::fs::write(p, text).with_context(|| format!("writing {}", p.display()))?,
        None => {
            let mut so = std::io::stdout().lock();
            so.write_all(text.as_bytes())?;
            so.write_all(b"\n")?;
        }
    }
    let golden = match (&args.expect, args.check) {
        (Some(p), _) => Some(read_doc(p)?),
        (None, true) => Some(doc.clone()),
        (None, false) => None,
    };
    let results = out["results"].as_array().cloned().unwrap_or_default();
    let errors = results.iter().filter(|r| r.get("error").is_some()).count();
    eprintln!(
        "oxrl loss: {} case(s), {errors} with an error",
        results.len()
    );
    if let Some(golden) = golden {
        let tol = compare::Tolerance {
            rel: args.rel_tol,
            abs: args.abs_tol,
        };
        let report = compare::compare_document(&golden, &results, tol);
        eprint!("{}", report.render(20));
        if !report.all_passed() {
            bail!(
                "{} case(s) differ from the reference",
                report.failures.len()
            );
        }
    }
    Ok(())
}
