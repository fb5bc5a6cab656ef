//! Console sessions. Signing in with a bearer token makes a session this process holds; the
//! token itself is never kept, never put in a URL and never given to the page. The browser
//! holds only the session's random id, in an `HttpOnly`, `SameSite=Strict` cookie scoped to
//! `/console` (`Secure` over TLS). Each session has a CSRF token of its own that every form
//! changing anything carries and [`Session::check_form`] compares in constant time; such
//! requests must also come from this origin ([`same_origin`]). A session ends on sign-out,
//! after [`IDLE`] without a request, or [`LIFETIME`] after sign-in.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, header};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Scope;
use crate::server::auth::Caller;

/// The cookie's name.
pub const COOKIE: &str = "wasmtx_console";
/// A session ends after this long without a request.
pub const IDLE: Duration = Duration::from_secs(30 * 60);
/// And this long after sign-in, whatever.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// The most sessions held at once; signing in beyond it ends the one idle longest.
const MAX_SESSIONS: usize = 10_000;

/// A signed-in browser: who, with which scopes, and its CSRF token.
#[derive(Debug, Clone)]
pub struct Session {
    pub caller: Caller,
    pub scopes: Vec<Scope>,
    /// Put in every form that changes something; compared on submission.
    pub csrf: String,
    signed_in: Instant,
    last_seen: Instant,
}

impl Session {
    /// Whether the token it was made with has `scope`.
    pub fn can(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }

    /// Whether a submitted form's CSRF token is this session's.
    pub fn check_form(&self, submitted: &str) -> bool {
        bool::from(self.csrf.as_bytes().ct_eq(submitted.as_bytes()))
    }

    fn expired(&self, now: Instant) -> bool {
        now.duration_since(self.last_seen) > IDLE || now.duration_since(self.signed_in) > LIFETIME
    }
}

/// The sessions of this process, by the SHA-256 of their ids (a lookup's timing says
/// nothing about a guessed id).
#[derive(Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<[u8; 32], Session>>,
}

impl Sessions {
    /// A new session for `caller`; its id, for the cookie.
    pub fn start(&self, caller: Caller, scopes: Vec<Scope>) -> Result<String, getrandom::Error> {
        let id = random_hex()?;
        let now = Instant::now();
        let session = Session {
            caller,
            scopes,
            csrf: random_hex()?,
            signed_in: now,
            last_seen: now,
        };
        let mut sessions = self.by_id.lock().unwrap();
        sessions.retain(|_, s| !s.expired(now));
        if sessions.len() >= MAX_SESSIONS
            && let Some(idlest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(k, _)| *k)
        {
            sessions.remove(&idlest);
        }
        sessions.insert(key(&id), session);
        Ok(id)
    }

    /// The live session with `id`, its idle time restarted; an expired one is ended.
    pub fn get(&self, id: &str) -> Option<Session> {
        let now = Instant::now();
        let mut sessions = self.by_id.lock().unwrap();
        let key = key(id);
        let session = sessions.get_mut(&key)?;
        if session.expired(now) {
            sessions.remove(&key);
            return None;
        }
        session.last_seen = now;
        Some(session.clone())
    }

    pub fn end(&self, id: &str) {
        self.by_id.lock().unwrap().remove(&key(id));
    }
}

fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// 32 random bytes from the operating system, as hex.
fn random_hex() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(hex::encode(bytes))
}

/// The session id the request's cookie carries, if any.
pub fn cookie_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// The `Set-Cookie` value that gives the browser session `id`.
pub fn set_cookie(id: &str, secure: bool) -> HeaderValue {
    cookie_value(id, LIFETIME.as_secs(), secure)
}

/// The `Set-Cookie` value that makes the browser forget its session.
pub fn clear_cookie(secure: bool) -> HeaderValue {
    cookie_value("", 0, secure)
}

fn cookie_value(id: &str, max_age: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={id}; Path=/console; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
    ))
    .expect("a hex id makes a valid header")
}

/// Whether a request that changes something comes from a page of this server: the browser's
/// `Sec-Fetch-Site`, when it sends one, says `same-origin`, and `Origin`, when sent, names
/// this host. (The form's CSRF token is checked as well. The pages' referrer policy is
/// `same-origin`: with `no-referrer` a browser sends `Origin: null` even to its own origin.)
pub fn same_origin(headers: &HeaderMap) -> bool {
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text(header::HeaderName::from_static("sec-fetch-site"))
        && site != "same-origin"
    {
        return false;
    }
    match (text(header::ORIGIN), text(header::HOST)) {
        (None, _) => true,
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_some_and(|(_, authority)| authority == host),
        (Some(_), None) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_by_its_id_only_and_ends_on_sign_out() {
        let sessions = Sessions::default();
        let id = sessions
            .start(Caller::Token("ops".into()), vec![Scope::Read])
            .unwrap();
        assert_eq!(id.len(), 64);
        let session = sessions.get(&id).unwrap();
        assert!(session.can(Scope::Read) && !session.can(Scope::Admin));
        assert!(session.check_form(&session.csrf));
        assert!(!session.check_form(""));
        assert!(sessions.get(&id[..63]).is_none());
        sessions.end(&id);
        assert!(sessions.get(&id).is_none());
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_secure_over_tls() {
        let cookie = set_cookie("ab", true);
        let text = cookie.to_str().unwrap();
        for part in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/console"] {
            assert!(text.contains(part), "{text}");
        }
        assert!(!set_cookie("ab", false).to_str().unwrap().contains("Secure"));
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, "a=1; wasmtx_console=ab".parse().unwrap());
        assert_eq!(cookie_id(&headers).as_deref(), Some("ab"));
    }

    #[test]
    fn cross_site_requests_are_not_same_origin() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "127.0.0.1:8080".parse().unwrap());
        assert!(same_origin(&headers));
        headers.insert(header::ORIGIN, "http://127.0.0.1:8080".parse().unwrap());
        assert!(same_origin(&headers));
        headers.insert(header::ORIGIN, "http://evil.example".parse().unwrap());
        assert!(!same_origin(&headers));
        headers.insert(header::ORIGIN, "http://127.0.0.1:8080".parse().unwrap());
        headers.insert("sec-fetch-site", "cross-site".parse().unwrap());
        assert!(!same_origin(&headers));
    }
}
