//! Progress bars (indicatif) with an ETA; hidden automatically when stderr is not a terminal.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar over `len` items named `unit` (e.g. "steps", "volumes").
pub fn bar(len: u64, unit: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    let template = format!(
        "{{spinner}} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} {unit} (ETA {{eta}}) {{msg}}"
    );
    if let Ok(style) = ProgressStyle::with_template(&template) {
        pb.set_style(style);
    }
    pb
}
