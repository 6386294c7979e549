//! Throughput benchmark of the `math` verifier: completions scored per second on one core.
//! Run with `cargo bench -p oxrl-verifiers --bench math_throughput`.

fn main() {}
