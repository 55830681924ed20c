//! Reference-parity checker for any MA-SAM fixture folder.
//!
//! ```text
//! cargo run --release --example parity -- tests/fixtures/reference-tiny [--strict]
//! ```
//!
//! Reads the folder's `config.json` (every shape comes from it) and compares every file the
//! reference wrote, one group each: `sam_base` and `masam_adapter` (`.pth` equals
//! `.safetensors`), `converted_encoder` (our checkpoint conversion), `plain_outputs` (SAM without
//! adapters), `outputs` (MA-SAM eval forward and loss, plus the checkpoint round trip),
//! `outputs_merged` (the same with FacT folded into the weights), `grads` (and the set of
//! parameters that receive a gradient), `bbox_outputs` and `bbox_outputs_merged`, `adamw` (the
//! loss trajectory), `loss`, `conv3d` and `metrics`. Prints one JSON object: per group its
//! status (`pass`, `fail`, `missing`, `error`), worst absolute and relative error, and every
//! compared tensor with its tolerance. A file that is not there makes its groups `missing`.
//!
//! Exit status: 0 when no group failed (and, with `--strict`, none is missing), 1 otherwise, 2
//! when the folder does not exist.

mod check;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Command line.
#[derive(Parser)]
#[command(about = "Compare MA-SAM with a reference fixture folder")]
struct Args {
    /// Fixture folder (same file names and config.json schema as reference-tiny).
    #[arg(default_value = "tests/fixtures/reference-tiny")]
    folder: PathBuf,
    /// The same folder, as an option (overrides the positional argument).
    #[arg(long)]
    fixture: Option<PathBuf>,
    /// A missing file is a failure.
    #[arg(long)]
    strict: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let dir = args.fixture.unwrap_or(args.folder);
    let report = match check::run(&dir, args.strict) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    match serde_json::to_string_pretty(&report) {
        Ok(json) => println!("{json}"),
        Err(e) => {
            eprintln!("error: the report does not serialise: {e}");
            return ExitCode::from(2);
        }
    }
    for g in &report.groups {
        let note = g.note.as_deref().unwrap_or("");
        eprintln!(
            "{:<20} {:<8} max_abs {:.2e} max_rel {:.2e} {note}",
            g.name,
            format!("{:?}", g.status).to_lowercase(),
            g.max_abs,
            g.max_rel
        );
    }
    for (group, c) in report.checks().filter(|(_, c)| !c.pass) {
        let e = if c.metric == "max_abs" {
            c.max_abs
        } else {
            c.max_rel
        };
        eprintln!(
            "FAIL {group}/{}: {} {e:e} > {:e}",
            c.name, c.metric, c.tolerance
        );
    }
    if report
        .group("config")
        .is_some_and(|g| g.status != check::Status::Pass)
    {
        eprintln!("no valid config.json: only the groups that need no model ran");
    }
    if let Some(ts) = report.trainable_set.as_ref().filter(|t| !t.pass) {
        eprintln!("FAIL trainable set: {ts:?}");
    }
    if report.pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
