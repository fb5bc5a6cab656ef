//! Bearer tokens and client certificates with scopes. Only each token's SHA-256 is
//! configured, and each certificate's SHA-256 fingerprint; a presented token (or, without
//! one, the certificate the TLS connection presented, verified against `tls_client_ca`) is
//! hashed and compared with every configured hash in constant time, so neither the
//! comparison nor the order of tokens leaks how much of a guess was right. A group of routes
//! needs one scope, checked by [`require`] before any of its handlers runs.

use std::sync::Arc;

use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::problem::Problem;
use crate::config::{Scope, TokenSetting};

/// The layer of a group of routes that need `scope`: the request goes on with its
/// [`Caller`] as an extension, or is refused with 401 or 403.
pub async fn require(scope: Scope, mut request: Request, next: Next) -> Response {
    let auth = request
        .extensions()
        .get::<Arc<Auth>>()
        .cloned()
        .expect("the router carries the tokens as an extension");
    let certificate = request
        .extensions()
        .get::<ConnectInfo<PeerCertificate>>()
        .and_then(|info| info.0.0);
    match auth.check(request.headers(), certificate.as_ref(), scope) {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(problem) => problem.into_response(),
    }
}

/// The SHA-256 of the client certificate a TLS connection presented (and the server
/// verified against `tls_client_ca`), if any; `None` over plain HTTP.
#[derive(Debug, Clone, Copy, Default)]
pub struct PeerCertificate(pub Option<[u8; 32]>);

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A configured token's holder.
    Token(String),
    /// No tokens are configured: the server listens on loopback only and everyone there may
    /// do everything.
    Loopback,
}

impl Caller {
    /// The name recorded with what the caller did.
    pub fn name(&self) -> &str {
        match self {
            Caller::Token(name) => name,
            Caller::Loopback => "loopback",
        }
    }
}

/// One configured holder: the hashes of its bearer token and client certificate.
struct Credential {
    name: String,
    bearer: Option<[u8; 32]>,
    certificate: Option<[u8; 32]>,
    scopes: Vec<Scope>,
}

/// The configured tokens, hashes decoded.
pub struct Auth {
    credentials: Vec<Credential>,
}

/// 64 hex digits as bytes (validated when the configuration was read).
fn hash_of(hex_text: Option<&str>) -> Option<[u8; 32]> {
    let mut hash = [0u8; 32];
    hex::decode_to_slice(hex_text?, &mut hash).expect("validated hash");
    Some(hash)
}

impl Auth {
    pub fn new(settings: &[TokenSetting]) -> Self {
        let credentials = settings
            .iter()
            .map(|t| Credential {
                name: t.name.clone(),
                bearer: hash_of(t.sha256.as_deref()),
                certificate: hash_of(t.client_cert_sha256.as_deref()),
                scopes: t.scopes.clone(),
            })
            .collect();
        Auth { credentials }
    }

    /// Whether any token is configured (otherwise only loopback may listen).
    pub fn enabled(&self) -> bool {
        !self.credentials.is_empty()
    }

    /// The name and scopes of a configured token, if `presented` is one.
    pub fn identify(&self, presented: &str) -> Option<(&str, &[Scope])> {
        let hash: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        self.find(|c| c.bearer.as_ref(), &hash)
    }

    /// The holder whose `which` hash is `hash`, compared in constant time with every one.
    fn find(
        &self,
        which: impl Fn(&Credential) -> Option<&[u8; 32]>,
        hash: &[u8; 32],
    ) -> Option<(&str, &[Scope])> {
        let mut found: Option<&Credential> = None;
        for credential in &self.credentials {
            if let Some(known) = which(credential)
                && bool::from(known.ct_eq(hash))
            {
                found = Some(credential);
            }
        }
        found.map(|c| (c.name.as_str(), c.scopes.as_slice()))
    }

    /// The caller, if the request's `Authorization: Bearer …` — or without one, the client
    /// certificate its connection presented (`certificate`, its SHA-256) — grants `scope`.
    pub fn check(
        &self,
        headers: &HeaderMap,
        certificate: Option<&[u8; 32]>,
        scope: Scope,
    ) -> Result<Caller, Problem> {
        if !self.enabled() {
            return Ok(Caller::Loopback);
        }
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        let holder = match (presented, certificate) {
            (Some(token), _) => self.identify(token).ok_or_else(|| {
                Problem::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthenticated",
                    "the bearer token is not one this server knows",
                )
            })?,
            (None, Some(fingerprint)) => self.find(|c| c.certificate.as_ref(), fingerprint).ok_or_else(|| {
                Problem::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthenticated",
                    "the client certificate is not one this server's tokens name; give a bearer token: Authorization: Bearer <token>",
                )
            })?,
            (None, None) => {
                return Err(Problem::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthenticated",
                    "this route needs a bearer token: Authorization: Bearer <token>",
                ));
            }
        };
        let (name, scopes) = holder;
        if !scopes.contains(&scope) {
            return Err(Problem::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("`{name}` lacks the `{scope}` scope this route needs"),
            ));
        }
        Ok(Caller::Token(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        Auth::new(&[
            TokenSetting {
                name: "ops".into(),
                sha256: Some(hex::encode(Sha256::digest(b"secret"))),
                scopes: vec![Scope::Read],
                ..Default::default()
            },
            TokenSetting {
                name: "batch".into(),
                client_cert_sha256: Some(hex::encode(Sha256::digest(b"certificate"))),
                scopes: vec![Scope::Invoke],
                ..Default::default()
            },
        ])
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        headers
    }

    #[test]
    fn a_known_token_with_the_scope_is_its_holder() {
        assert_eq!(
            auth().check(&bearer("secret"), None, Scope::Read).unwrap(),
            Caller::Token("ops".into())
        );
    }

    #[test]
    fn missing_wrong_and_underprivileged_tokens_are_refused() {
        let auth = auth();
        assert_eq!(
            auth.check(&HeaderMap::new(), None, Scope::Read)
                .unwrap_err()
                .status,
            401
        );
        assert_eq!(
            auth.check(&bearer("secreT"), None, Scope::Read)
                .unwrap_err()
                .status,
            401
        );
        let refused = auth
            .check(&bearer("secret"), None, Scope::Admin)
            .unwrap_err();
        assert_eq!((refused.status, refused.code.as_str()), (403, "forbidden"));
    }

    #[test]
    fn a_listed_client_certificate_is_its_holder_unless_a_bearer_token_is_given() {
        let auth = auth();
        let listed: [u8; 32] = Sha256::digest(b"certificate").into();
        let other: [u8; 32] = Sha256::digest(b"another").into();
        assert_eq!(
            auth.check(&HeaderMap::new(), Some(&listed), Scope::Invoke)
                .unwrap(),
            Caller::Token("batch".into())
        );
        let refused = auth.check(&HeaderMap::new(), Some(&listed), Scope::Read);
        assert_eq!(refused.unwrap_err().status, 403);
        let unknown = auth.check(&HeaderMap::new(), Some(&other), Scope::Invoke);
        assert_eq!(unknown.unwrap_err().status, 401);
        // An explicit bearer token is judged alone: a wrong one is refused.
        let wrong = auth.check(&bearer("nope"), Some(&listed), Scope::Invoke);
        assert_eq!(wrong.unwrap_err().status, 401);
        // A certificate is never taken for a bearer token's hash.
        assert!(auth.identify("certificate").is_none());
    }

    #[test]
    fn without_tokens_everyone_is_the_loopback_caller() {
        assert_eq!(
            Auth::new(&[])
                .check(&HeaderMap::new(), None, Scope::Admin)
                .unwrap(),
            Caller::Loopback
        );
    }
}
