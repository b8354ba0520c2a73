//! `kiln gradcheck`: every op on random shapes against finite differences.

use kiln_core::gradcheck::op_suite;
use kiln_core::{gradcheck, GradcheckOptions};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::process::ExitCode;

/// Flags of `kiln gradcheck`.
#[derive(clap::Args, Debug)]
pub struct GradcheckArgs {
    /// Only ops whose name contains this.
    #[arg(long)]
    op: Option<String>,
    /// Seed of the random shapes and values.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Runs the suite and prints the table; exits 1 if any op fails.
pub fn run(a: GradcheckArgs) -> kiln_core::Result<ExitCode> {
    let opts = GradcheckOptions::default();
    let mut rng = ChaCha8Rng::seed_from_u64(a.seed);
    let cases: Vec<_> = op_suite(a.seed)
        .into_iter()
        .filter(|c| a.op.as_deref().is_none_or(|o| c.name.contains(o)))
        .collect();
    if cases.is_empty() {
        return Err(kiln_core::Error::Invalid(format!(
            "no op matches {:?}; run kiln gradcheck without --op to list them",
            a.op.unwrap_or_default()
        )));
    }
    println!(
        "gradcheck: f64, central differences, eps {:e}, atol {:e}, rtol {:e}, seed {}",
        opts.eps, opts.atol, opts.rtol, a.seed
    );
    println!("| op | shapes | max abs err | max rel err | ok |");
    println!("|---|---|---|---|---|");
    let mut failed = 0;
    for case in &cases {
        let inputs = case.inputs(&mut rng)?;
        let shapes: Vec<String> = case.shapes.iter().map(|s| format!("{s:?}")).collect();
        match gradcheck(&case.f, &inputs, opts) {
            Ok(r) => {
                if !r.ok {
                    failed += 1;
                }
                println!(
                    "| {} | {} | {:.2e} | {:.2e} | {} |",
                    case.name,
                    shapes.join(" "),
                    r.max_abs_err,
                    r.max_rel_err,
                    if r.ok { "ok" } else { "FAIL" }
                );
            }
            Err(e) => {
                failed += 1;
                println!("| {} | {} | - | - | ERROR: {e} |", case.name, shapes.join(" "));
            }
        }
    }
    println!("{} passed, {} failed", cases.len() - failed, failed);
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
