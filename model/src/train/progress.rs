//! The progress line a run logs when stderr is not a terminal (a log file, a pipeline
//! stage): no progress bar draws there, so every `log_every` steps one line says where the
//! run is, with the headline metrics and an ETA.

use std::io::IsTerminal;

/// The metrics a line shows when the step logged them, in this order.
const HEADLINE: [&str; 6] = [
    "loss",
    "objective/scores",
    "rewards/accuracies",
    "accuracy",
    "kl",
    "grad_norm",
];

/// Logs `<label> step <step>/<total>: loss …, grad_norm … (<s>/step, ETA <s>)` unless
/// stderr is a terminal (where the caller's progress bar shows the same).
pub(crate) fn progress_line(
    label: &str,
    step: u64,
    total: u64,
    seconds_per_step: f64,
    values: &[(String, f64)],
) {
    if std::io::stderr().is_terminal() {
        return;
    }
    let shown: Vec<String> = HEADLINE
        .iter()
        .filter_map(|key| {
            values
                .iter()
                .find(|(k, _)| k == key)
                .map(|(k, v)| format!("{k} {v:.4}"))
        })
        .collect();
    let eta = seconds_per_step * total.saturating_sub(step) as f64;
    tracing::info!(
        "{label} step {step}/{total}: {} ({seconds_per_step:.1}s/step, ETA {eta:.0}s)",
        shown.join(", "),
    );
}
