//! Bearer tokens with scopes. Only each token's SHA-256 is configured; a presented token is
//! hashed and compared with every configured hash in constant time, so neither the
//! comparison nor the order of tokens leaks how much of a guess was right. A group of routes
//! needs one scope, checked by [`require`] before any of its handlers runs.

use std::sync::Arc;

use axum::extract::Request;
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
    match auth.check(request.headers(), scope) {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(problem) => problem.into_response(),
    }
}

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

/// The configured tokens, hashes decoded.
pub struct Auth {
    tokens: Vec<(String, [u8; 32], Vec<Scope>)>,
}

impl Auth {
    pub fn new(settings: &[TokenSetting]) -> Self {
        let tokens = settings
            .iter()
            .map(|t| {
                let mut hash = [0u8; 32];
                // Validated as 64 hex digits when the configuration was read.
                hex::decode_to_slice(&t.sha256, &mut hash).expect("validated token hash");
                (t.name.clone(), hash, t.scopes.clone())
            })
            .collect();
        Auth { tokens }
    }

    /// Whether any token is configured (otherwise only loopback may listen).
    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// The name and scopes of a configured token, if `presented` is one.
    pub fn identify(&self, presented: &str) -> Option<(&str, &[Scope])> {
        let hash: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found: Option<&(String, [u8; 32], Vec<Scope>)> = None;
        for entry in &self.tokens {
            if bool::from(entry.1.ct_eq(&hash)) {
                found = Some(entry);
            }
        }
        found.map(|(name, _, scopes)| (name.as_str(), scopes.as_slice()))
    }

    /// The caller, if the request's `Authorization: Bearer …` grants `scope`.
    pub fn check(&self, headers: &HeaderMap, scope: Scope) -> Result<Caller, Problem> {
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
            .map(str::trim)
            .ok_or_else(|| {
                Problem::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthenticated",
                    "this route needs a bearer token: Authorization: Bearer <token>",
                )
            })?;
        let Some((name, scopes)) = self.identify(presented) else {
            return Err(Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "the bearer token is not one this server knows",
            ));
        };
        if !scopes.contains(&scope) {
            return Err(Problem::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("token `{name}` lacks the `{scope}` scope this route needs"),
            ));
        }
        Ok(Caller::Token(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        Auth::new(&[TokenSetting {
            name: "ops".into(),
            sha256: hex::encode(Sha256::digest(b"secret")),
            scopes: vec![Scope::Read],
        }])
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
            auth().check(&bearer("secret"), Scope::Read).unwrap(),
            Caller::Token("ops".into())
        );
    }

    #[test]
    fn missing_wrong_and_underprivileged_tokens_are_refused() {
        let auth = auth();
        assert_eq!(
            auth.check(&HeaderMap::new(), Scope::Read)
                .unwrap_err()
                .status,
            401
        );
        assert_eq!(
            auth.check(&bearer("secreT"), Scope::Read)
                .unwrap_err()
                .status,
            401
        );
        let refused = auth.check(&bearer("secret"), Scope::Admin).unwrap_err();
        assert_eq!((refused.status, refused.code.as_str()), (403, "forbidden"));
    }

    #[test]
    fn without_tokens_everyone_is_the_loopback_caller() {
        assert_eq!(
            Auth::new(&[])
                .check(&HeaderMap::new(), Scope::Admin)
                .unwrap(),
            Caller::Loopback
        );
    }
}
