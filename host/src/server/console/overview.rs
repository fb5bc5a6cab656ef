//! The overview: transactions per minute and their outcomes over the last hour (a chart and
//! its table), latency by phase, what is in doubt and the oldest of it, pending COMMITs,
//! recovery runs, the instance pool, and this node with its lease.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::State;
use maud::{Markup, html};

use super::Signed;
use super::page::{layout, table, time};
use crate::cluster::LeaseStatus;
use crate::gid::Gid;
use crate::recovery::{InDoubtFilter, TxState};
use crate::server::history::now_ms;
use crate::server::metrics::Sample;
use crate::server::state::AppState;

const MINUTE_MS: i64 = 60_000;
/// The chart's span, in minutes.
const MINUTES: i64 = 60;

pub async fn page(State(state): State<Arc<AppState>>, signed: Signed) -> Markup {
    let now = now_ms();
    let first_minute = (now / MINUTE_MS - (MINUTES - 1)) * MINUTE_MS;
    let counts = state.history.per_minute(first_minute).await;
    let in_doubt = state.in_doubt(InDoubtFilter::default()).await;
    let pending = state.host.pending_commits().await;
    state.sample_metrics();
    let samples = state.metrics.samples();

    let in_doubt_gids: std::collections::BTreeSet<&str> =
        in_doubt.entries.iter().map(|e| e.gid.as_str()).collect();
    let oldest_deadline = in_doubt_gids
        .iter()
        .filter_map(|gid| Gid::parse(gid).ok())
        .map(|gid| gid.deadline())
        .min();
    let body = html! {
        section aria-labelledby="tx-heading" {
            h2 id="tx-heading" { "Transactions, last hour" }
            @match &counts {
                Ok(counts) => (chart(counts, first_minute)),
                Err(err) => div.notice.bad role="alert" { p { "The history cannot be read: " (err) } },
            }
        }
        div.cards {
            section.card aria-labelledby="doubt-heading" {
                h2 id="doubt-heading" { "In doubt" }
                p.big { a href="/console/in-doubt" { (in_doubt_gids.len()) } }
                p { "transactions with a branch prepared or a COMMIT unfinished (" (in_doubt.entries.len()) " branches)" }
                @if let Some(deadline) = oldest_deadline {
                    p { "Oldest: deadline " (age(deadline)) }
                }
                @for failure in &in_doubt.failures {
                    p.notice.bad { "Cannot list " (failure.participant) ": " (failure.message) }
                }
            }
            section.card aria-labelledby="pending-heading" {
                h2 id="pending-heading" { "Pending commits" }
                @match pending {
                    Some((own, others)) => {
                        p.big { (own) }
                        p { "COMMITs recorded by this node whose phase 2 is not confirmed" @if others > 0 { "; " (others) " of other nodes" } }
                    }
                    None => p { "No decision log to read (or it cannot be read now)." },
                }
            }
            section.card aria-labelledby="pool-heading" {
                h2 id="pool-heading" { "Instance pool" }
                p.big { (state.slots_in_use()) " / " (state.settings.concurrency) }
                p { "transaction slots in use; " (state.host.sandbox().parked_instances()) " warm instances parked" }
                @let warm = state.warm_counts();
                @if !warm.is_empty() {
                    p { "Run warm: "
                        @for (plugin, fresh, reused) in &warm {
                            (plugin) " (" (fresh) " fresh, " (reused) " reused) "
                        }
                    }
                }
            }
            section.card aria-labelledby="node-heading" {
                h2 id="node-heading" { "This node" }
                p.big { (state.host.config().node.to_string()) }
                p { "wasmtx " (env!("CARGO_PKG_VERSION")) "; "
                    @match state.readiness() {
                        Ok(()) => "ready",
                        Err(reason) => { "not ready: " (reason) },
                    }
                }
                @if let Some(cluster) = state.host.cluster() {
                    p { "Lease (incarnation " (cluster.lease().incarnation()) "): "
                        @match cluster.lease().status() {
                            LeaseStatus::Held(left) => { "held, " (left.as_secs()) " s left" },
                            LeaseStatus::Unconfirmed => "not confirmed lately",
                            LeaseStatus::Lost => "lost",
                        }
                        " · " a href="/console/nodes" { "every node" }
                    }
                } @else {
                    p { "A single node (no shared decision log)." }
                }
            }
        }
        section aria-labelledby="phase-heading" {
            h2 id="phase-heading" { "Latency by phase, since the server started" }
            (phase_table(&samples))
        }
        section aria-labelledby="recovery-heading" {
            h2 id="recovery-heading" { "Recovery runs, since the server started" }
            (recovery_table(&samples))
        }
    };
    layout("Overview", "/console/", Some(&signed.session), body)
}

/// How long ago `deadline` passed ("in …" if it has not).
fn age(deadline: SystemTime) -> Markup {
    let ms = deadline
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let text = match SystemTime::now().duration_since(deadline) {
        Ok(ago) => format!("passed {} ago", duration_words(ago.as_secs())),
        Err(ahead) => format!("in {}", duration_words(ahead.duration().as_secs())),
    };
    html! { (time(ms)) " (" (text) ")" }
}

fn duration_words(secs: u64) -> String {
    match secs {
        0..120 => format!("{secs} s"),
        120..7200 => format!("{} min", secs / 60),
        _ => format!("{} h", secs / 3600),
    }
}

/// The outcome a status counts as in the chart.
fn outcome(state: TxState) -> &'static str {
    match state {
        TxState::Committed | TxState::HeuristicCommit => "committed",
        TxState::Aborted | TxState::HeuristicRollback => "aborted",
        _ => "other",
    }
}

/// Stacked bars, one per minute (committed, aborted, other), and the same figures as a table
/// for screen readers and exact numbers.
fn chart(counts: &[(i64, TxState, i64)], first_minute: i64) -> Markup {
    let mut minutes: BTreeMap<i64, [i64; 3]> = (0..MINUTES)
        .map(|i| (first_minute + i * MINUTE_MS, [0; 3]))
        .collect();
    for (minute, state, n) in counts {
        if let Some(slot) = minutes.get_mut(minute) {
            let index = match outcome(*state) {
                "committed" => 0,
                "aborted" => 1,
                _ => 2,
            };
            slot[index] += n;
        }
    }
    let busiest = minutes
        .values()
        .map(|c| c.iter().sum::<i64>())
        .max()
        .unwrap_or(0);
    // The chart's scale: the busiest minute fills it.
    let peak = busiest.max(1);
    let totals = minutes.values().fold([0i64; 3], |mut acc, c| {
        for i in 0..3 {
            acc[i] += c[i];
        }
        acc
    });
    let (width, height, bar) = (600.0, 160.0, 10.0);
    let summary = format!(
        "{} committed, {} aborted, {} other in the last hour; busiest minute {} transactions ({:.1} per second)",
        totals[0],
        totals[1],
        totals[2],
        busiest,
        busiest as f64 / 60.0
    );
    html! {
        figure.chart {
            svg viewBox={ "0 0 " (width) " " (height + 20.0) } role="img" aria-label=(summary) {
                @for (i, (_, c)) in minutes.iter().enumerate() {
                    @let x = i as f64 * bar;
                    @let mut y = height;
                    @for (k, class) in ["bar-ok", "bar-bad", "bar-other"].iter().enumerate() {
                        @let h = c[k] as f64 / peak as f64 * height;
                        @if h > 0.0 {
                            @let top = { y -= h; y };
                            rect class=(class) x=(x + 1.0) y=(top) width=(bar - 2.0) height=(h) {}
                        }
                    }
                }
                line.axis x1="0" y1=(height) x2=(width) y2=(height) {}
                text x="0" y=(height + 16.0) { "60 min ago" }
                text x=(width) y=(height + 16.0) text-anchor="end" { "now" }
                text x="2" y="12" { (busiest) " / min" }
            }
            figcaption {
                span.key.ok { "committed " (totals[0]) } " "
                span.key.bad { "aborted " (totals[1]) } " "
                span.key.other { "other " (totals[2]) } " — " (summary)
            }
        }
        details {
            summary { "Per minute" }
            (table("", None, &["Minute", "Committed", "Aborted", "Other", "Per second"], html! { @for (minute, c) in minutes.iter().rev().filter(|(_, c)| c.iter().sum::<i64>() > 0) {
                            tr { td { (time(*minute)) } td { (c[0]) } td { (c[1]) } td { (c[2]) } td { (format!("{:.2}", c.iter().sum::<i64>() as f64 / 60.0)) } }
                        } }))
        }
    }
}

/// Per phase: how many, the mean, and the bucket bounds of the median and the 99th
/// percentile, from the phase histogram.
fn phase_table(samples: &[Sample]) -> Markup {
    #[derive(Default)]
    struct Phase {
        buckets: Vec<(f64, f64)>,
        sum: f64,
        count: f64,
    }
    // In the order a transaction goes through them.
    const ORDER: &[&str] = &[
        "queue", "begin", "script", "prepare", "decide", "commit", "rollback",
    ];
    let rank = |name: &str| ORDER.iter().position(|p| *p == name).unwrap_or(ORDER.len());
    let mut phases: BTreeMap<String, Phase> = BTreeMap::new();
    for sample in samples {
        let Some(part) = sample.name.strip_prefix("wasmtx_phase_duration_seconds_") else {
            continue;
        };
        let Some(phase) = sample.label("phase") else {
            continue;
        };
        let entry = phases.entry(phase.to_owned()).or_default();
        match part {
            "bucket" => {
                let le = sample
                    .label("le")
                    .and_then(|le| le.parse::<f64>().ok())
                    .unwrap_or(f64::INFINITY);
                entry.buckets.push((le, sample.value));
            }
            "sum" => entry.sum = sample.value,
            "count" => entry.count = sample.value,
            _ => {}
        }
    }
    let mut ordered: Vec<(&String, &Phase)> = phases.iter().collect();
    ordered.sort_by_key(|(name, _)| rank(name));
    let bound = |phase: &Phase, q: f64| -> String {
        let wanted = phase.count * q;
        let mut buckets = phase.buckets.clone();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        match buckets.iter().find(|(_, n)| *n >= wanted) {
            Some((le, _)) if le.is_finite() => format!("≤ {} ms", le * 1000.0),
            _ => "above the largest bucket".into(),
        }
    };
    html! {
        @if phases.values().all(|p| p.count == 0.0) {
            p { "No transaction has run since the server started." }
        } @else {
            (table("", None, &["Phase", "Count", "Mean", "Median", "99th percentile"], html! { @for (name, phase) in ordered.iter().filter(|(_, p)| p.count > 0.0) {
                            tr {
                                td { (name) }
                                td { (phase.count) }
                                td { (format!("{:.2} ms", phase.sum / phase.count * 1000.0)) }
                                td { (bound(phase, 0.5)) }
                                td { (bound(phase, 0.99)) }
                            }
                        } }))
        }
    }
}

/// Recovery runs by trigger and result.
fn recovery_table(samples: &[Sample]) -> Markup {
    let runs: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == "wasmtx_recovery_runs_total")
        .collect();
    html! {
        @if runs.is_empty() {
            p { "None yet." }
        } @else {
            (table("", None, &["Trigger", "Result", "Runs"], html! { @for run in runs {
                            tr { td { (run.label("trigger").unwrap_or("")) } td { (run.label("result").unwrap_or("")) } td { (run.value) } }
                        } }))
        }
    }
}
