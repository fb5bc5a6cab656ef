//! Prometheus metrics (the `metrics` crate, rendered by its Prometheus exporter at
//! `/metrics`). Labels are bounded: plugin names come from the registry, participants from
//! the configuration, routes are templates; never a gid.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `wasmtx_build_info` | gauge | `version`, `node` |
//! | `wasmtx_transactions_total` | counter | `plugin`, `outcome` (committed, committing, in-doubt, aborted), `error` (script, trap, timeout, …, none) |
//! | `wasmtx_transaction_duration_seconds` | histogram | `plugin`, `outcome` |
//! | `wasmtx_phase_duration_seconds` | histogram | `phase` (queue, begin, script, prepare, decide, commit, rollback) |
//! | `wasmtx_decision_log_batch_size`, `wasmtx_decision_log_sync_seconds` | histogram | — |
//! | `wasmtx_decision_log_commits_total`, `_batches_total`, `_syncs_total` | counter | — |
//! | `wasmtx_in_doubt_branches` | gauge | — (left by the last recovery run) |
//! | `wasmtx_pending_commits` | gauge | — (COMMIT recorded, phase 2 not confirmed) |
//! | `wasmtx_oldest_in_doubt_age_seconds` | gauge | — (since the oldest one's deadline) |
//! | `wasmtx_recovery_runs_total` | counter | `trigger` (startup, periodic, manual, takeover, lease-regained), `result` |
//! | `wasmtx_recovery_actions_total` | counter | `action` |
//! | `wasmtx_node_lease_remaining_seconds` | gauge | — (cluster only; 0 when not held) |
//! | `wasmtx_node_lease_lost_total`, `wasmtx_takeovers_total` | counter | — (cluster only) |
//! | `wasmtx_adopted_pending_commits` | gauge | — (COMMITs of other nodes not yet DONE) |
//! | `wasmtx_component_cache_total` | counter | `result` (hit, compiled) |
//! | `wasmtx_sandbox_instances_in_use` | gauge | — |
//! | `wasmtx_warm_instances_parked` | gauge | — (instances waiting for their plugin's next transaction) |
//! | `wasmtx_warm_transactions_total` | counter | `plugin` (only plugins run warm), `instance` (fresh, reused) |
//! | `wasmtx_http_requests_total` | counter | `route`, `method`, `status` |
//! | `wasmtx_http_request_duration_seconds` | histogram | `route`, `method` |
//!
//! A route no template matches is `unmatched` and a method HTTP does not define is `other`,
//! so no request can add series. Every family has a `# HELP` line, and the families without
//! labels (and `wasmtx_transactions_total` for every published plugin) are there from the
//! start, at zero.

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::cluster::LeaseStatus;
use crate::gid::Gid;
use crate::host::Host;
use crate::recovery::{Action, RecoveryReport, TxState};
use crate::report::TxReport;
use crate::script::CacheState;

const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];
/// How often the histograms' samples are folded into their buckets between scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's metrics recorder.
pub struct Metrics {
    handle: PrometheusHandle,
}

impl Metrics {
    /// Installs the recorder (once per process) and records the build info.
    pub fn install(node: &str) -> Metrics {
        let handle = HANDLE
            .get_or_init(|| {
                let builder = PrometheusBuilder::new()
                    .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                    .and_then(|b| {
                        b.set_buckets_for_metric(
                            Matcher::Suffix("_batch_size".into()),
                            BATCH_BUCKETS,
                        )
                    })
                    .expect("bucket lists are not empty");
                let recorder = builder.build_recorder();
                let handle = recorder.handle();
                // Another recorder already installed (a library user's): keep ours unexported.
                let _ = metrics::set_global_recorder(recorder);
                handle
            })
            .clone();
        describe();
        gauge!("wasmtx_build_info", "version" => env!("CARGO_PKG_VERSION"), "node" => node.to_owned())
            .set(1.0);
        for name in [
            "wasmtx_in_doubt_branches",
            "wasmtx_pending_commits",
            "wasmtx_adopted_pending_commits",
            "wasmtx_oldest_in_doubt_age_seconds",
            "wasmtx_sandbox_instances_in_use",
            "wasmtx_warm_instances_parked",
        ] {
            gauge!(name).set(0.0);
        }
        for name in [
            "wasmtx_decision_log_commits_total",
            "wasmtx_decision_log_batches_total",
            "wasmtx_decision_log_syncs_total",
        ] {
            counter!(name).absolute(0);
        }
        let _ = histogram!("wasmtx_decision_log_sync_seconds");
        let _ = histogram!("wasmtx_decision_log_batch_size");
        Metrics { handle }
    }

    /// A plugin's transaction counters, at zero until its first transaction.
    pub fn plugin_published(&self, plugin: &str) {
        for outcome in ["committed", "aborted"] {
            counter!("wasmtx_transactions_total", "plugin" => plugin.to_owned(), "outcome" => outcome, "error" => "none")
                .increment(0);
        }
    }

    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Folds the histograms' samples into their buckets every few seconds, for as long as
    /// it runs. The exporter keeps each recorded sample until the next scrape or upkeep, so
    /// a server nobody scrapes would otherwise grow by every request's and transaction's
    /// samples without bound.
    pub fn upkeep(&self) -> impl Future<Output = ()> + Send + 'static {
        let handle = self.handle.clone();
        async move {
            let mut tick = tokio::time::interval(UPKEEP_EVERY);
            loop {
                tick.tick().await;
                handle.run_upkeep();
            }
        }
    }

    /// Every sample of the rendered metrics, for pages that show them (the console).
    pub fn samples(&self) -> Vec<Sample> {
        self.render().lines().filter_map(Sample::parse).collect()
    }

    pub fn transaction(&self, plugin: &str, report: &TxReport) {
        let outcome = TxState::of_report(report).as_str();
        let error = report.error.as_ref().map_or("none", |e| e.kind.as_str());
        counter!("wasmtx_transactions_total", "plugin" => plugin.to_owned(), "outcome" => outcome, "error" => error)
            .increment(1);
        histogram!("wasmtx_transaction_duration_seconds", "plugin" => plugin.to_owned(), "outcome" => outcome)
            .record(report.elapsed_ms / 1000.0);
        for (phase, ms) in &report.phases_ms {
            histogram!("wasmtx_phase_duration_seconds", "phase" => phase.as_str())
                .record(ms / 1000.0);
        }
    }

    /// How long an admitted transaction waited for its slot.
    pub fn queued(&self, waited: Duration) {
        histogram!("wasmtx_phase_duration_seconds", "phase" => "queue")
            .record(waited.as_secs_f64());
    }

    pub fn cache_result(&self, state: CacheState) {
        let result = match state {
            CacheState::Compiled => "compiled",
            _ => "hit",
        };
        counter!("wasmtx_component_cache_total", "result" => result).increment(1);
    }

    /// One recovery run: its result, its actions, and what it left in doubt.
    pub fn recovery(&self, trigger: &'static str, report: &RecoveryReport) {
        let result = if report.all_resolved() {
            "resolved"
        } else {
            "unresolved"
        };
        counter!("wasmtx_recovery_runs_total", "trigger" => trigger, "result" => result)
            .increment(1);
        let mut left: Vec<&str> = Vec::new();
        for branch in &report.branches {
            if matches!(branch.action, Action::WouldCommit | Action::WouldRollBack) {
                continue;
            }
            let action = branch.action.name();
            counter!("wasmtx_recovery_actions_total", "action" => action).increment(1);
            if matches!(branch.action, Action::LeftInDoubt | Action::Failed(_)) {
                left.push(&branch.gid);
            }
        }
        gauge!("wasmtx_in_doubt_branches").set(left.len() as f64);
        let oldest = left
            .iter()
            .filter_map(|gid| Gid::parse(gid).ok())
            .map(|gid| gid.deadline())
            .min()
            .and_then(|deadline| SystemTime::now().duration_since(deadline).ok())
            .map_or(0.0, |age| age.as_secs_f64());
        gauge!("wasmtx_oldest_in_doubt_age_seconds").set(oldest);
    }

    /// Gauges read at scrape time: `slots_in_use` sandbox instances, the warm instances
    /// (`warm`: per plugin run warm, transactions on a fresh and on a reused instance), and
    /// `host`'s decision store and lease.
    pub fn sample(&self, slots_in_use: usize, warm: &[(String, u64, u64)], host: &Host) {
        gauge!("wasmtx_sandbox_instances_in_use").set(slots_in_use as f64);
        gauge!("wasmtx_warm_instances_parked").set(host.sandbox().parked_instances() as f64);
        for (plugin, fresh, reused) in warm {
            counter!("wasmtx_warm_transactions_total", "plugin" => plugin.clone(), "instance" => "fresh")
                .absolute(*fresh);
            counter!("wasmtx_warm_transactions_total", "plugin" => plugin.clone(), "instance" => "reused")
                .absolute(*reused);
        }
        if let Some(stats) = host.decision_stats() {
            counter!("wasmtx_decision_log_commits_total").absolute(stats.commits_written);
            counter!("wasmtx_decision_log_batches_total").absolute(stats.batches_written);
            counter!("wasmtx_decision_log_syncs_total").absolute(stats.syncs);
        }
        if let Some(cluster) = host.cluster() {
            let lease = cluster.lease();
            let remaining = match lease.status() {
                LeaseStatus::Held(left) => left.as_secs_f64(),
                _ => 0.0,
            };
            gauge!("wasmtx_node_lease_remaining_seconds").set(remaining);
            counter!("wasmtx_node_lease_lost_total").absolute(lease.lost_total());
            counter!("wasmtx_takeovers_total").increment(0);
        }
    }

    /// This node's COMMITs not yet DONE, and (in a cluster) other nodes'.
    pub fn pending_commits(&self, own: usize, others: usize) {
        gauge!("wasmtx_pending_commits").set(own as f64);
        gauge!("wasmtx_adopted_pending_commits").set(others as f64);
    }

    /// A dead node adopted.
    pub fn takeover(&self) {
        counter!("wasmtx_takeovers_total").increment(1);
    }
}

/// One line of the Prometheus text format: a series and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    /// `name{a="b",…} value`; `None` for comments and lines not of that shape.
    fn parse(line: &str) -> Option<Sample> {
        if line.starts_with('#') {
            return None;
        }
        let (series, value) = line.rsplit_once(' ')?;
        let value: f64 = value.parse().ok()?;
        let (name, labels) = match series.split_once('{') {
            None => (series, Vec::new()),
            Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}')?)?),
        };
        Some(Sample {
            name: name.to_owned(),
            labels,
            value,
        })
    }

    /// The value of label `name`, if the series has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `a="b",c="d\"e"` as pairs, escapes undone.
fn parse_labels(text: &str) -> Option<Vec<(String, String)>> {
    let mut labels = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (name, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((name.trim_start_matches(',').to_owned(), value));
        rest = after[end + 1..].trim_start_matches(',');
    }
    Some(labels)
}

/// The `# HELP` line of every family.
fn describe() {
    describe_gauge!(
        "wasmtx_build_info",
        "this server's version and node (always 1)"
    );
    describe_counter!(
        "wasmtx_transactions_total",
        "transactions finished, by plugin, outcome and error kind"
    );
    describe_histogram!(
        "wasmtx_transaction_duration_seconds",
        "how long transactions took, by plugin and outcome"
    );
    describe_histogram!(
        "wasmtx_phase_duration_seconds",
        "how long each phase of a transaction took"
    );
    describe_histogram!(
        "wasmtx_decision_log_batch_size",
        "COMMIT records written per decision-log batch"
    );
    describe_histogram!(
        "wasmtx_decision_log_sync_seconds",
        "how long one decision-log sync took"
    );
    describe_counter!(
        "wasmtx_decision_log_commits_total",
        "COMMIT records written to the decision log"
    );
    describe_counter!(
        "wasmtx_decision_log_batches_total",
        "batches written to the decision log"
    );
    describe_counter!(
        "wasmtx_decision_log_syncs_total",
        "syncs of the decision log"
    );
    describe_gauge!(
        "wasmtx_in_doubt_branches",
        "branches the last recovery run left in doubt or failed on"
    );
    describe_gauge!(
        "wasmtx_pending_commits",
        "this node's COMMITs recorded whose phase 2 is not confirmed"
    );
    describe_gauge!(
        "wasmtx_adopted_pending_commits",
        "other nodes' COMMITs this node adopted, not yet done"
    );
    describe_gauge!(
        "wasmtx_oldest_in_doubt_age_seconds",
        "seconds since the deadline of the oldest branch left in doubt"
    );
    describe_counter!(
        "wasmtx_recovery_runs_total",
        "recovery runs, by trigger and result"
    );
    describe_counter!(
        "wasmtx_recovery_actions_total",
        "what recovery did to branches, by action"
    );
    describe_gauge!(
        "wasmtx_node_lease_remaining_seconds",
        "seconds left on this node's lease (0 when not held)"
    );
    describe_counter!(
        "wasmtx_node_lease_lost_total",
        "times this node lost its lease"
    );
    describe_counter!("wasmtx_takeovers_total", "dead nodes this node adopted");
    describe_counter!(
        "wasmtx_component_cache_total",
        "component loads, by whether the compiled code was cached"
    );
    describe_gauge!(
        "wasmtx_sandbox_instances_in_use",
        "sandbox instances running a transaction now"
    );
    describe_gauge!(
        "wasmtx_warm_instances_parked",
        "warm instances waiting for their plugin's next transaction"
    );
    describe_counter!(
        "wasmtx_warm_transactions_total",
        "transactions of plugins run warm, on a fresh or a reused instance"
    );
    describe_counter!(
        "wasmtx_http_requests_total",
        "HTTP requests answered, by route template, method and status"
    );
    describe_histogram!(
        "wasmtx_http_request_duration_seconds",
        "how long HTTP requests took, by route template and method"
    );
}

/// The method as a label: one HTTP defines, or `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

/// Counts and times every request by its route template (never the raw path).
pub async fn track_http(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    counter!("wasmtx_http_requests_total", "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    histogram!("wasmtx_http_request_duration_seconds", "route" => route, "method" => method)
        .record(started.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_read_back_with_their_labels() {
        let sample = Sample::parse(r#"wasmtx_x_bucket{phase="pre\"pare",le="0.5"} 12"#).unwrap();
        assert_eq!(sample.name, "wasmtx_x_bucket");
        assert_eq!(sample.label("phase"), Some("pre\"pare"));
        assert_eq!(sample.label("le"), Some("0.5"));
        assert_eq!(sample.value, 12.0);
        assert_eq!(Sample::parse("wasmtx_y 3.5").unwrap().labels, vec![]);
        assert_eq!(Sample::parse("# HELP wasmtx_y what"), None);
    }

    #[test]
    fn methods_http_does_not_define_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        for word in ["XA1", "FOO", "get"] {
            let method = Method::from_bytes(word.as_bytes()).unwrap();
            assert_eq!(method_label(&method), "other", "{word}");
        }
    }
}
