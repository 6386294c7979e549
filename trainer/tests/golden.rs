//! The golden cases of TRL 1.16 and verl (`tests/golden/`, copied from the project's shared
//! reference set) evaluated through the library's case evaluator: every number within 1e-6
//! relative + 1e-9 absolute. Prints per kind how many passed and the first failing fields.
//! (`tests/loss_cli.rs` at the workspace root runs the same files through the `oxrl loss` binary.)

use oxrl_trainer::cases::{self, compare};

fn check(file: &str) {
    let path = format!("{}/tests/golden/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("golden file");
    let doc = cases::parse_lenient(&text).expect("golden JSON");
    let out = cases::evaluate_document(&doc).expect("evaluates");
    let results = out["results"].as_array().expect("results").clone();
    let report = compare::compare_document(&doc, &results, compare::Tolerance::default());
    eprintln!("{file}:\n{}", report.render(15));
    assert!(
        report.all_passed(),
        "{} case(s) of {file} differ",
        report.failures.len()
    );
}

#[test]
fn trl_public_cases_match() {
    check("trl_public.json");
}

#[test]
fn verl_public_cases_match() {
    check("verl_public.json");
}
