//! `wasmtx publish` and `wasmtx invoke`: the command line as a client of `wasmtx serve`.
//!
//! Exit status of `invoke`: as `run` (0 committed, 1 aborted, 2 bad input, 3 in doubt),
//! and 4 when the server gave no outcome (unreachable, not ready, overloaded): nothing ran.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde_json::Value;
use wasmtx::report::TxReport;
use wasmtx::server::InvokeRequest;

use super::run::read_input;
use super::{output, resolve_script};

/// Exit status when the server gave no outcome.
const NO_OUTCOME: u8 = 4;

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// The server's base URL.
    #[arg(
        long,
        value_name = "URL",
        env = "WASMTX_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    server: String,
    /// Bearer token (prefer the environment variable: arguments are visible to other users).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "WASMTX_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// For an https:// server: trust the CAs of this PEM file instead of the system's roots.
    #[arg(long, value_name = "PEM", env = "WASMTX_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// For an https:// server asking for client certificates: present this certificate
    /// chain (PEM), with --client-key.
    #[arg(
        long,
        value_name = "PEM",
        env = "WASMTX_CLIENT_CERT",
        requires = "client_key"
    )]
    client_cert: Option<PathBuf>,
    /// The key of --client-cert (PEM).
    #[arg(
        long,
        value_name = "PEM",
        env = "WASMTX_CLIENT_KEY",
        requires = "client_cert"
    )]
    client_key: Option<PathBuf>,
}

impl ServerArgs {
    /// An HTTP client for `--server`: for an https:// URL with the TLS settings given;
    /// exit status 2, having said why, when they cannot be used.
    fn client(&self) -> Result<reqwest::Client, ExitCode> {
        let builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(10));
        let builder = if self.server.starts_with("https://") {
            let identity = self.client_cert.as_deref().zip(self.client_key.as_deref());
            match wasmtx::tls::client_config(self.ca_file.as_deref(), identity) {
                Ok(config) => builder.tls_backend_preconfigured(config),
                Err(err) => {
                    eprintln!("wasmtx: {err}");
                    return Err(ExitCode::from(2));
                }
            }
        } else {
            builder
        };
        builder.build().map_err(|e| {
            eprintln!("wasmtx: cannot set up an HTTP client: {}", error_chain(&e));
            ExitCode::from(2)
        })
    }

    fn request(
        &self,
        client: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        let url = format!("{}{path}", self.server.trim_end_matches('/'));
        let request = client.request(method, url);
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The component: a .wasm file, or a guest crate or Python script directory (built first).
    #[arg(value_name = "SCRIPT")]
    script: PathBuf,
    /// Plugin name (a-z 0-9 . _ -).
    #[arg(long, value_name = "NAME")]
    name: String,
    /// Version (semver, e.g. 1.0.0); immutable once published.
    #[arg(long, value_name = "VERSION")]
    version: String,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct InvokeArgs {
    /// The plugin's name.
    #[arg(value_name = "NAME")]
    name: String,
    /// A version, an alias or sha256:<hex> (default: latest).
    #[arg(long, value_name = "VERSION")]
    version: Option<String>,
    /// The script's input: JSON text, or @FILE.
    #[arg(long, value_name = "JSON|@FILE", default_value = "{}")]
    input: String,
    /// Only these of the server's participants (comma-separated names).
    #[arg(long = "participants", value_name = "A,B", value_delimiter = ',')]
    participants: Vec<String>,
    /// The transaction's deadline in milliseconds (default: the server's).
    #[arg(long, value_name = "MS")]
    timeout_ms: Option<u64>,
    /// Runs at most once per key: a repeat returns the first run's answer.
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
    /// Print one JSON object (the transaction's report) instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerArgs,
}

pub async fn publish(args: PublishArgs) -> ExitCode {
    let path = match resolve_script(&args.script, false) {
        Ok(path) => path,
        Err(error) => return output::print_failure(&error, false),
    };
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("wasmtx: cannot read {}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    let client = match args.server.client() {
        Ok(client) => client,
        Err(code) => return code,
    };
    let route = format!("/v1/plugins/{}/versions/{}", args.name, args.version);
    let response = args
        .server
        .request(&client, reqwest::Method::PUT, &route)
        .header(reqwest::header::CONTENT_TYPE, "application/wasm")
        .body(bytes)
        .send()
        .await;
    let (status, body) = match read(response).await {
        Ok(answer) => answer,
        Err(code) => return code,
    };
    if !status.is_success() {
        return problem(status, &body);
    }
    let digest = body.get("digest").and_then(Value::as_str).unwrap_or("?");
    let what = if status == reqwest::StatusCode::CREATED {
        "published"
    } else {
        "already published (same bytes)"
    };
    println!("{what}: {}@{} {digest}", args.name, args.version);
    ExitCode::SUCCESS
}

pub async fn invoke(args: InvokeArgs) -> ExitCode {
    let input = match read_input(&args.input) {
        Ok(input) => input,
        Err(error) => return output::print_failure(&error, args.json),
    };
    let input: Value = serde_json::from_str(&input).expect("read_input checked the JSON");
    let body = InvokeRequest {
        input: Some(input),
        version: args.version.clone(),
        participants: (!args.participants.is_empty()).then(|| args.participants.clone()),
        timeout_ms: args.timeout_ms,
    };
    let client = match args.server.client() {
        Ok(client) => client,
        Err(code) => return code,
    };
    let mut request = args
        .server
        .request(
            &client,
            reqwest::Method::POST,
            &format!("/v1/plugins/{}/invoke", args.name),
        )
        .json(&body);
    if let Some(key) = &args.idempotency_key {
        request = request.header("Idempotency-Key", key);
    }
    let (status, body) = match read(request.send().await).await {
        Ok(answer) => answer,
        Err(code) => return code,
    };
    match body
        .get("transaction")
        .cloned()
        .map(serde_json::from_value::<TxReport>)
    {
        Some(Ok(report)) => {
            output::print_report(&report, args.json);
            output::exit_code(&report)
        }
        _ if status.is_success() => {
            // A repeated key whose first run was interrupted: its status, not a report.
            println!(
                "{}",
                serde_json::to_string_pretty(&body).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        _ => problem(status, &body),
    }
}

/// The status and JSON body, or the exit status after saying why there is none.
async fn read(
    response: reqwest::Result<reqwest::Response>,
) -> Result<(reqwest::StatusCode, Value), ExitCode> {
    let response = response.map_err(|e| {
        eprintln!("wasmtx: no answer from the server: {}", error_chain(&e));
        ExitCode::from(NO_OUTCOME)
    })?;
    let status = response.status();
    let text = response.text().await.map_err(|e| {
        eprintln!("wasmtx: the server's answer was cut off: {e}");
        ExitCode::from(NO_OUTCOME)
    })?;
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok((status, body))
}

/// An error and its causes, one after the other: reqwest's own message alone does not say
/// why a connection failed (a refused certificate, say).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// Prints a problem answer; 2 for the request's fault, 4 for the server's.
fn problem(status: reqwest::StatusCode, body: &Value) -> ExitCode {
    let code = body.get("code").and_then(Value::as_str).unwrap_or("error");
    let detail = body
        .get("detail")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| body.to_string());
    eprintln!("wasmtx: {} {code}: {detail}", status.as_u16());
    if let Some(hint) = body.get("hint").and_then(Value::as_str) {
        eprintln!("hint: {hint}");
    }
    if status.is_client_error() && status != reqwest::StatusCode::TOO_MANY_REQUESTS {
        ExitCode::from(2)
    } else {
        ExitCode::from(NO_OUTCOME)
    }
}
