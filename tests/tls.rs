//! `wasmtx serve` over TLS, with certificates made here by a CA of the test's own: the CLI
//! invokes over https with that CA, a client that trusts another CA is refused, a changed
//! certificate is served without a restart, client certificates from the configured CA
//! are accepted while others are refused at the handshake, and a client certificate a token
//! names authenticates as that token's holder.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::serve::*;
use common::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;

/// A certificate authority of the test's own.
struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let pem = params.self_signed(&key).unwrap().pem();
        Ca { params, key, pem }
    }

    /// A certificate for `names` (DNS names or IP addresses) and its key, as PEM.
    fn issue(&self, common_name: &str, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn write(&self, dir: &TestDir, name: &str) -> PathBuf {
        let path = dir.path(name);
        std::fs::write(&path, &self.pem).unwrap();
        path
    }
}

/// Writes a certificate and its key under `dir` as NAME.pem and NAME.key.
fn write_pair(dir: &TestDir, name: &str, (cert, key): &(String, String)) -> (PathBuf, PathBuf) {
    let (cert_path, key_path) = (
        dir.path(&format!("{name}.pem")),
        dir.path(&format!("{name}.key")),
    );
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, key).unwrap();
    (cert_path, key_path)
}

/// A TLS server on the SQLite bank, with `client_ca` asking for client certificates.
fn tls_server(dir: &TestDir, cert: &Path, key: &Path, client_ca: Option<&Path>) -> ServerProcess {
    let mut tls = format!("[server]\ntls_cert = {cert:?}\ntls_key = {key:?}\n");
    if let Some(ca) = client_ca {
        tls.push_str(&format!("tls_client_ca = {ca:?}\n"));
    }
    let (_, _, config) = sqlite_bank(dir, &tls);
    let server = ServerProcess::spawn(dir, &config, &[]);
    assert!(server.url.starts_with("https://"), "{}", server.url);
    server
}

/// A TLS connection to `url`'s address trusting `ca`, presenting `identity` if given; the
/// certificate the server showed, or why the handshake failed.
async fn handshake(
    url: &str,
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<CertificateDer<'static>, String> {
    let addr = url.trim_start_matches("https://");
    let config = wasmtx::tls::client_config(Some(ca), identity).map_err(|e| e.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let mut tls = connector
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    // TLS 1.3 reports a refused client certificate after the handshake: make the server
    // read something, so a refusal shows here.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer)
        .await
        .map_err(|e| e.to_string())?;
    if !answer.starts_with(b"HTTP/1.1 200") {
        return Err(format!(
            "unexpected answer: {}",
            String::from_utf8_lossy(&answer)
        ));
    }
    let (_, session) = tls.get_ref();
    Ok(session.peer_certificates().unwrap()[0].clone().into_owned())
}

/// Waits until the server at `url` answers `/readyz` over TLS with `ca`.
fn wait_ready_tls(url: &str, ca: &Path) {
    let started = Instant::now();
    runtime().block_on(async {
        loop {
            if handshake(url, ca, None).await.is_ok() {
                let client = https_client(ca);
                let ready = client.get(format!("{url}/readyz")).send().await;
                if ready.is_ok_and(|r| r.status() == 200) {
                    return;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "not ready over TLS"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

fn https_client(ca: &Path) -> reqwest::Client {
    let config = wasmtx::tls::client_config(Some(ca), None).unwrap();
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .build()
        .unwrap()
}

/// `wasmtx invoke` of the transfer over `url`; its exit status, stdout and stderr.
fn invoke_cli(dir: &TestDir, url: &str, ca: Option<&Path>, amount: i64) -> (i32, String, String) {
    let mut command = dir.wasmtx();
    command
        .args(["invoke", "transfer", "--json", "--server", url, "--input"])
        .arg(transfer_input(("a", "alice"), ("b", "bob"), amount))
        .env("WASMTX_TOKEN", INVOKER);
    if let Some(ca) = ca {
        command.arg("--ca-file").arg(ca);
    }
    let output = output_within(command, RUN_LIMIT);
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_cli_invokes_over_tls_and_a_client_trusting_another_ca_is_refused() {
    let dir = TestDir::new();
    let ca = Ca::new("wasmtx test CA");
    let ca_path = ca.write(&dir, "ca.pem");
    let (cert, key) = write_pair(
        &dir,
        "server",
        &ca.issue("wasmtx test server", &["127.0.0.1"]),
    );
    let (a, b) = (dir.path("a.db"), dir.path("b.db"));
    let server = tls_server(&dir, &cert, &key, None);
    wait_ready_tls(&server.url, &ca_path);

    let publish = {
        let mut command = dir.wasmtx();
        command
            .args(["publish"])
            .arg(guest("examples/transfer"))
            .args([
                "--name",
                "transfer",
                "--version",
                "1.0.0",
                "--server",
                &server.url,
            ])
            .arg("--ca-file")
            .arg(&ca_path)
            .env("WASMTX_TOKEN", ADMIN);
        output_within(command, RUN_LIMIT)
    };
    assert!(
        publish.status.success(),
        "publish over TLS: {}",
        String::from_utf8_lossy(&publish.stderr)
    );
    let (code, stdout, stderr) = invoke_cli(&dir, &server.url, Some(&ca_path), 30);
    assert_eq!(code, 0, "invoke over TLS: {stdout} {stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["outcome"], "committed", "{report}");
    assert_eq!((balance(&a, "alice"), balance(&b, "bob")), (70, 30));

    // A client that trusts another CA (here: the system's roots) is refused before it sends
    // anything; nothing runs.
    let other = Ca::new("another CA");
    let other_path = other.write(&dir, "other-ca.pem");
    for ca in [Some(other_path.as_path()), None] {
        let (code, stdout, stderr) = invoke_cli(&dir, &server.url, ca, 30);
        assert_eq!(code, 4, "trusting {ca:?}: {stdout} {stderr}");
        assert!(
            stderr.contains("certificate") || stderr.contains("UnknownIssuer"),
            "trusting {ca:?}, the error should be the certificate: {stderr}"
        );
    }
    assert_eq!((balance(&a, "alice"), balance(&b, "bob")), (70, 30));

    // Plain HTTP to the TLS port gets no answer either.
    let (code, _, stderr) = invoke_cli(&dir, &server.url.replace("https://", "http://"), None, 30);
    assert_eq!(code, 4, "{stderr}");
}

#[test]
fn a_changed_certificate_is_served_without_a_restart() {
    let dir = TestDir::new();
    let ca = Ca::new("wasmtx test CA");
    let ca_path = ca.write(&dir, "ca.pem");
    let first = ca.issue("first", &["127.0.0.1"]);
    let (cert, key) = write_pair(&dir, "server", &first);
    let server = tls_server(&dir, &cert, &key, None);
    wait_ready_tls(&server.url, &ca_path);
    let runtime = runtime();
    let served = || {
        runtime
            .block_on(handshake(&server.url, &ca_path, None))
            .unwrap()
    };
    let pem_der = |pem: &str| CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
    assert_eq!(served(), pem_der(&first.0));

    // A renewal: new key and certificate written over the old files.
    let second = ca.issue("second", &["127.0.0.1"]);
    write_pair(&dir, "server", &second);
    let started = Instant::now();
    while served() != pem_der(&second.0) {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the new certificate was not served within 15 s; stderr: {}",
            server.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // A broken write keeps the certificate in use.
    std::fs::write(&cert, "not a certificate").unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        served(),
        pem_der(&second.0),
        "a bad file replaced a good certificate"
    );
    assert!(
        server.stderr_text().contains("TLS files not reloaded"),
        "the failed reload is not logged: {}",
        server.stderr_text()
    );
}

/// A CA and the server's certificate from it, and another CA for client certificates,
/// written under `dir`: the CA's path, the certificate's and key's, the clients' CA and its
/// path.
fn mutual(dir: &TestDir) -> (PathBuf, PathBuf, PathBuf, Ca, PathBuf) {
    let ca = Ca::new("wasmtx test CA");
    let ca_path = ca.write(dir, "ca.pem");
    let (cert, key) = write_pair(dir, "server", &ca.issue("server", &["127.0.0.1"]));
    let clients = Ca::new("clients CA");
    let clients_path = clients.write(dir, "clients.pem");
    (ca_path, cert, key, clients, clients_path)
}

#[test]
fn client_certificates_of_the_configured_ca_are_accepted_and_others_refused() {
    let dir = TestDir::new();
    let (ca_path, cert, key, clients, clients_path) = mutual(&dir);
    let server = tls_server(&dir, &cert, &key, Some(&clients_path));
    wait_ready_tls(&server.url, &ca_path);
    let runtime = runtime();

    let (good_cert, good_key) = write_pair(&dir, "good", &clients.issue("batch", &["batch"]));
    let (bad_cert, bad_key) = write_pair(&dir, "bad", &Ca::new("rogue").issue("batch", &["batch"]));
    let with_good = runtime.block_on(handshake(
        &server.url,
        &ca_path,
        Some((&good_cert, &good_key)),
    ));
    assert!(
        with_good.is_ok(),
        "a certificate of the clients CA: {with_good:?}"
    );
    let without = runtime.block_on(handshake(&server.url, &ca_path, None));
    assert!(
        without.is_ok(),
        "no client certificate (tokens still work): {without:?}"
    );
    let with_bad = runtime.block_on(handshake(
        &server.url,
        &ca_path,
        Some((&bad_cert, &bad_key)),
    ));
    assert!(
        with_bad.is_err(),
        "a certificate of another CA was accepted"
    );
}

#[test]
fn a_client_certificate_named_by_a_token_authenticates_without_a_bearer_token() {
    let dir = TestDir::new();
    let (ca_path, cert, key, clients, clients_path) = mutual(&dir);
    let listed = write_pair(&dir, "listed", &clients.issue("batch", &["batch"]));
    let unlisted = write_pair(&dir, "unlisted", &clients.issue("other", &["other"]));
    let fingerprint = sha256_der(&std::fs::read_to_string(&listed.0).unwrap());
    let tls = format!(
        "[server]\ntls_cert = {cert:?}\ntls_key = {key:?}\ntls_client_ca = {clients_path:?}\n"
    );
    let (_, _, config) = sqlite_bank(&dir, &tls);
    // The bank's configuration ends with its tokens: one more, named by a certificate.
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[[server.tokens]]\nname = \"batch\"\nclient_cert_sha256 = \"{fingerprint}\"\nscopes = [\"read\"]\n"
    ));
    std::fs::write(&config, text).unwrap();
    let server = ServerProcess::spawn(&dir, &config, &[]);
    wait_ready_tls(&server.url, &ca_path);

    let get = |identity: Option<&(PathBuf, PathBuf)>, bearer: Option<&str>, path: &str| {
        let config = wasmtx::tls::client_config(
            Some(&ca_path),
            identity.map(|(c, k)| (c.as_path(), k.as_path())),
        )
        .unwrap();
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(config)
            .build()
            .unwrap();
        runtime().block_on(async {
            let mut request = client.get(format!("{}{path}", server.url));
            if let Some(token) = bearer {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.text().await.unwrap_or_default())
        })
    };
    let (status, body) = get(Some(&listed), None, "/v1/plugins");
    assert_eq!(status, 200, "the listed certificate reads: {body}");
    let (status, body) = get(Some(&listed), None, "/v1/plugins/x/versions/1.0.0/wasm");
    assert_eq!(status, 403, "admin is not the certificate's scope: {body}");
    assert!(body.contains("`batch` lacks the `admin` scope"), "{body}");
    let (status, body) = get(Some(&unlisted), None, "/v1/plugins");
    assert_eq!(status, 401, "a certificate no token names: {body}");
    let (status, body) = get(None, None, "/v1/plugins");
    assert_eq!(status, 401, "neither certificate nor token: {body}");
    let (status, body) = get(Some(&listed), Some("wrong"), "/v1/plugins");
    assert_eq!(
        status, 401,
        "a wrong bearer token is not saved by the certificate: {body}"
    );
    let (status, body) = get(None, Some(ADMIN), "/v1/plugins");
    assert_eq!(status, 200, "tokens still work: {body}");
}

/// The SHA-256 (hex) of a PEM certificate's DER bytes.
fn sha256_der(pem: &str) -> String {
    use sha2::Digest;
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
    hex::encode(sha2::Sha256::digest(der.as_ref()))
}
