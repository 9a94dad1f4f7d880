//! Who a request is, and what it may do.
//!
//! - A token's secret is `cjt_` and 64 hex digits (32 random bytes); the
//!   store keeps only its SHA-256 ([`hash`]), so a copy of the database
//!   gives no working token. API clients send `Authorization: Bearer`;
//!   the dashboard keeps the token in an `HttpOnly; SameSite=Strict`
//!   cookie set at login.
//! - The open mode (no tokens when the server started): loopback only,
//!   every request is the local user, an admin; a `Host` that is not a
//!   loopback name is refused ([`loopback_host`]), so a web page whose
//!   name resolves to 127.0.0.1 (DNS rebinding) cannot use the API.
//! - Roles are ordered ([`Role`]); a token with a CO sees that CO's jobs
//!   only, and any other job is "not found" (404, never 403: a CO admin
//!   cannot tell another CO's job from a missing one).
//! - The dashboard's forms carry a CSRF token derived from the session and
//!   a secret of this process ([`Principal::csrf`]); the API's `POST`s
//!   need `Content-Type: application/json`, which no cross-site form can
//!   send.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use sha2::{Digest, Sha256};

use super::AppState;
use super::error::ApiError;
use crate::store::Role;

/// The dashboard's cookie.
pub const COOKIE: &str = "cojobs_token";

/// A token's secret is at most this long; longer ones are refused unread.
const MAX_TOKEN_LEN: usize = 256;

/// Who a request is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's name (or the local user in the open mode): who
    /// cancels or retries, as recorded on the row.
    pub name: String,
    pub role: Role,
    /// `Some(n)`: CO n's jobs only.
    pub co: Option<i64>,
    /// What the CSRF token is bound to: the token's hash, or "open".
    pub session: String,
}

impl Principal {
    /// Refuse (403) unless the role is at least `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "token '{}' is a {}; this needs {}",
                self.name, self.role, role
            )))
        }
    }

    /// Whether this principal may see CO `co`'s jobs.
    pub fn sees(&self, co: i64) -> bool {
        self.co.is_none_or(|mine| mine == co)
    }

    /// The CSRF token of this session's forms.
    pub fn csrf(&self, secret: &[u8; 32]) -> String {
        let mut h = Sha256::new();
        h.update(secret);
        h.update(b"csrf:");
        h.update(self.session.as_bytes());
        hex(&h.finalize())
    }

    /// Whether `given` is this session's CSRF token (compared in constant
    /// time).
    pub fn csrf_ok(&self, secret: &[u8; 32], given: &str) -> bool {
        let want = self.csrf(secret);
        want.len() == given.len()
            && want
                .bytes()
                .zip(given.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The hash the store keeps of a token's secret.
pub fn hash(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// A new random token secret, or 32 random bytes for a server secret.
pub fn random_bytes() -> Result<[u8; 32], getrandom::Error> {
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b)?;
    Ok(b)
}

/// A new token secret: `cjt_` and 64 hex digits.
pub fn new_token() -> Result<String, getrandom::Error> {
    Ok(format!("cjt_{}", hex(&random_bytes()?)))
}

/// The token a request carries: `Authorization: Bearer`, else the cookie.
fn presented(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
    bearer.or_else(|| cookie(headers, COOKIE))
}

/// The value of cookie `name`.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

/// Who the token `secret` is, if it is a live token.
pub async fn principal_for(state: &AppState, secret: &str) -> Result<Option<Principal>, ApiError> {
    if secret.is_empty() || secret.len() > MAX_TOKEN_LEN {
        return Ok(None);
    }
    let hash = hash(secret);
    let token = state.store.token_by_hash(&hash).await?;
    Ok(token.map(|t| Principal {
        name: t.name,
        role: t.role,
        co: t.co_id,
        session: hash,
    }))
}

/// The principal of the open mode.
pub fn local(state: &AppState) -> Principal {
    Principal {
        name: state.local_user.clone(),
        role: Role::Admin,
        co: None,
        session: "open".to_string(),
    }
}

/// Find who the request is (a [`Principal`] extension for the handler) or
/// answer 401 (API, metrics, events) or send a browser to the login page.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let who = if state.open {
        Ok(Some(local(&state)))
    } else {
        match presented(req.headers()) {
            Some(secret) => principal_for(&state, secret).await,
            None => Ok(None),
        }
    };
    match who {
        Ok(Some(p)) => {
            req.extensions_mut().insert(p);
            next.run(req).await
        }
        Ok(None) if wants_html(&req) => Redirect::to("/login").into_response(),
        Ok(None) => ApiError::unauthorized().into_response(),
        Err(e) => e.into_response(),
    }
}

/// A page of the dashboard (not the API, metrics or the event stream).
fn wants_html(req: &Request) -> bool {
    let path = req.uri().path();
    !(path.starts_with("/api/") || path == "/metrics" || path == "/events")
}

/// In the open mode, refuse a request whose `Host` is not a loopback name
/// (DNS rebinding).
pub async fn loopback_host(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if state.open && !is_loopback_host(req.headers()) {
        return ApiError::forbidden(
            "this server has no tokens and answers only requests to a loopback address \
             (Host: 127.0.0.1, localhost or [::1])",
        )
        .into_response();
    }
    next.run(req).await
}

fn is_loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.split(':').next().unwrap_or(""),
    };
    matches!(name, "127.0.0.1" | "localhost" | "::1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(header::HeaderName, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn bearer_then_cookie() {
        let h = headers(&[
            (header::AUTHORIZATION, "bearer abc"),
            (header::COOKIE, "cojobs_token=def"),
        ]);
        assert_eq!(presented(&h), Some("abc"));
        let h = headers(&[(header::COOKIE, "x=1; cojobs_token=def")]);
        assert_eq!(presented(&h), Some("def"));
        assert_eq!(presented(&HeaderMap::new()), None);
    }

    #[test]
    fn loopback_hosts() {
        for ok in ["127.0.0.1:8080", "localhost", "[::1]:80"] {
            assert!(is_loopback_host(&headers(&[(header::HOST, ok)])), "{ok}");
        }
        for bad in ["evil.example:8080", "127.0.0.1.evil.example", "[::2]"] {
            assert!(!is_loopback_host(&headers(&[(header::HOST, bad)])), "{bad}");
        }
    }

    #[test]
    fn csrf_is_bound_to_session_and_secret() {
        let p = Principal {
            name: "a".into(),
            role: Role::Admin,
            co: None,
            session: "s1".into(),
        };
        let secret = [7u8; 32];
        let token = p.csrf(&secret);
        assert!(p.csrf_ok(&secret, &token));
        assert!(!p.csrf_ok(&[8u8; 32], &token));
        let other = Principal {
            session: "s2".into(),
            ..p.clone()
        };
        assert!(!other.csrf_ok(&secret, &token));
        assert!(!p.csrf_ok(&secret, ""));
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let a = new_token().expect("random");
        let b = new_token().expect("random");
        assert_ne!(a, b);
        assert_eq!(a.len(), 68);
        assert_eq!(hash(&a).len(), 64);
        assert_ne!(hash(&a), hash(&b));
    }
}
