//! The `http` variant of `wasmtx bench`: the same transaction as an invoke of a plugin on a
//! running `wasmtx serve`, over HTTP on the same machine — what the server's HTTP layer,
//! JSON and task hand-off add to the in-process run. Given several servers (the nodes of a
//! cluster), the invokes go to each in turn. The `http-keyed` variant sends each invoke
//! with an `Idempotency-Key` of its own.

use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use serde_json::Value;
use wasmtx::server::InvokeRequest;

use super::runner::{BenchUnit, UnitOutcome};

/// `POST {server}/v1/plugins/{name}/invoke` with the unit's input.
pub struct HttpInvokeUnit {
    client: reqwest::Client,
    /// One invoke URL per server.
    urls: Vec<String>,
    next: AtomicUsize,
    version: Option<String>,
    token: Option<String>,
    /// Keys unique to this run (`None`: unkeyed invokes): a prefix and a counter.
    keys: Option<(String, AtomicUsize)>,
}

impl HttpInvokeUnit {
    /// `plugin` is `NAME` or `NAME@VERSION`; `keyed` sends an `Idempotency-Key` with each.
    pub fn new(servers: &[String], plugin: &str, token: Option<String>, keyed: bool) -> Self {
        let (name, version) = match plugin.split_once('@') {
            Some((name, version)) => (name, Some(version.to_owned())),
            None => (plugin, None),
        };
        HttpInvokeUnit {
            client: reqwest::Client::new(),
            urls: servers
                .iter()
                .map(|server| format!("{}/v1/plugins/{name}/invoke", server.trim_end_matches('/')))
                .collect(),
            next: AtomicUsize::new(0),
            version,
            token,
            keys: keyed.then(|| (run_key_prefix(), AtomicUsize::new(0))),
        }
    }
}

#[async_trait]
impl BenchUnit for HttpInvokeUnit {
    async fn run(&self, input: &str) -> UnitOutcome {
        let input: Value = serde_json::from_str(input).unwrap_or(Value::Null);
        let body = InvokeRequest {
            input: Some(input),
            version: self.version.clone(),
            ..InvokeRequest::default()
        };
        let url = &self.urls[self.next.fetch_add(1, Ordering::Relaxed) % self.urls.len()];
        let mut request = self.client.post(url).json(&body);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some((prefix, next)) = &self.keys {
            let n = next.fetch_add(1, Ordering::Relaxed);
            request = request.header("Idempotency-Key", format!("{prefix}-{n}"));
        }
        let Ok(response) = request.send().await else {
            return UnitOutcome::Error;
        };
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        match (status, body.get("code").and_then(Value::as_str)) {
            (200, _) => UnitOutcome::Committed,
            (422, Some("script-aborted")) => UnitOutcome::Aborted,
            _ => UnitOutcome::Error,
        }
    }
}

/// A prefix no earlier run used: the process id and the start time in nanoseconds.
fn run_key_prefix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("bench-{}-{nanos}", std::process::id())
}
