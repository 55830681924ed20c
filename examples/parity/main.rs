//! Reference-parity checker for any MA-SAM fixture folder.
//!
//! ```text
//! cargo run --release --example parity -- --fixture tests/fixtures/reference-tiny
//! ```
//!
//! Builds the model from the folder's `config.json`, loads `sam_base` + `masam_adapter`
//! (`.safetensors`, else `.pth`), runs `inputs.safetensors` and prints one JSON object: for every
//! tensor of `outputs.safetensors`, `grads.safetensors`, `bbox_outputs.safetensors` (when present)
//! and the checkpoint round trip, its error, tolerance and pass/fail; the set of parameters with a
//! non-zero gradient against `trainable_keys`; and an overall `pass`. Exits 1 when a check fails,
//! 2 (with a message) when the folder is missing or invalid.

mod check;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Command line.
#[derive(Parser)]
#[command(about = "Compare MA-SAM with a reference fixture folder")]
struct Args {
    /// Fixture folder (same file names and config.json schema as reference-tiny).
    #[arg(long, default_value = "tests/fixtures/reference-tiny")]
    fixture: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let report = match check::run(&args.fixture) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&report).expect("a report is valid JSON")
    );
    for c in report.checks.iter().filter(|c| !c.pass) {
        let (g, n, m) = (c.group, &c.name, c.metric);
        eprintln!("FAIL {g}/{n}: {m} {:e} > {:e}", c.error, c.tolerance);
    }
    if !report.trainable_set.pass {
        eprintln!("FAIL trainable set: {:?}", report.trainable_set);
    }
    if report.pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
