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
//! non-zero gradient against `trainable_keys`; and an overall `pass`. Exits 1 when anything fails.

mod check;

use std::path::PathBuf;

use clap::Parser;

/// Command line.
#[derive(Parser)]
#[command(about = "Compare MA-SAM with a reference fixture folder")]
struct Args {
    /// Fixture folder (same file names and config.json schema as reference-tiny).
    #[arg(long, default_value = "tests/fixtures/reference-tiny")]
    fixture: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let report = check::run(&args.fixture)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    for c in report.checks.iter().filter(|c| !c.pass) {
        eprintln!(
            "FAIL {}/{}: {} {:e} > {:e}",
            c.group, c.name, c.metric, c.error, c.tolerance
        );
    }
    if !report.trainable_set.pass {
        eprintln!("FAIL trainable set: {:?}", report.trainable_set);
    }
    if !report.pass {
        std::process::exit(1);
    }
    Ok(())
}
