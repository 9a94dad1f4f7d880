//! Where a granted request goes: the network, or answers from fixtures.
//!
//! `cojobs test` (src/cli/test.rs) builds its sandbox with
//! [`HttpSender::Fixtures`]: a request that passes the allowlist and the
//! job's limits, exactly as in production, is then answered from the
//! case's fixtures (method + URL → status, headers, body) instead of being
//! sent. Nothing is resolved or connected. A request no fixture answers is
//! refused like a denied one (`HttpRequestDenied`, a line in the job's
//! log) and recorded, so the case fails naming it.

use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use http::uri::Scheme;

/// How a sandbox sends the requests its plugins are granted.
#[derive(Debug, Clone, Default)]
pub enum HttpSender {
    /// Resolve, check the addresses, connect and send (src/sandbox/http.rs).
    #[default]
    Network,
    /// Answer from these fixtures; never touch the network.
    Fixtures(std::sync::Arc<Fixtures>),
}

/// One canned answer: a request's method and URL, and the response.
#[derive(Debug, Clone)]
pub struct Fixture {
    method: http::Method,
    target: Target,
    /// The URL as written, for messages.
    url: String,
    pub(super) status: http::StatusCode,
    pub(super) headers: Vec<(http::HeaderName, http::HeaderValue)>,
    pub(super) body: Bytes,
}

/// What a fixture's URL and a request's must share: scheme, host (any
/// case), port (the scheme's when omitted), path and query.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    https: bool,
    host: String,
    port: u16,
    path_and_query: String,
}

impl Target {
    fn of(uri: &http::Uri) -> Option<Target> {
        let https = match uri.scheme() {
            Some(s) if *s == Scheme::HTTPS => true,
            Some(s) if *s == Scheme::HTTP => false,
            _ => return None,
        };
        Some(Target {
            https,
            host: uri.host()?.trim_end_matches('.').to_ascii_lowercase(),
            port: uri.port_u16().unwrap_or(if https { 443 } else { 80 }),
            path_and_query: uri
                .path_and_query()
                .map_or_else(|| "/".to_string(), |p| p.as_str().to_string()),
        })
    }
}

impl Fixture {
    /// A fixture answering `method url` with `status`, `headers` and `body`;
    /// or why one of them is not valid.
    pub fn new(
        method: &str,
        url: &str,
        status: u16,
        headers: &[(String, String)],
        body: Bytes,
    ) -> Result<Fixture, String> {
        let method = http::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
            .map_err(|_| format!("'{method}' is not an HTTP method"))?;
        let target = url
            .parse::<http::Uri>()
            .ok()
            .as_ref()
            .and_then(Target::of)
            .ok_or_else(|| format!("'{url}' is not an http:// or https:// URL"))?;
        let status = http::StatusCode::from_u16(status)
            .map_err(|_| format!("{status} is not an HTTP status"))?;
        let headers = headers
            .iter()
            .map(|(n, v)| {
                let name = http::HeaderName::from_bytes(n.as_bytes())
                    .map_err(|_| format!("'{n}' is not a header name"))?;
                let value = http::HeaderValue::from_str(v)
                    .map_err(|_| format!("header '{n}': '{v}' is not a header value"))?;
                Ok((name, value))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Fixture {
            method,
            target,
            url: url.to_string(),
            status,
            headers,
            body,
        })
    }

    /// `METHOD URL`, as written.
    pub fn request(&self) -> String {
        format!("{} {}", self.method, self.url)
    }
}

/// A case's fixtures, and the requests none of them answered.
#[derive(Debug, Default)]
pub struct Fixtures {
    answers: Vec<Fixture>,
    /// `METHOD URL` of each request no fixture answered, in order.
    unexpected: Mutex<Vec<String>>,
}

impl Fixtures {
    pub fn new(answers: Vec<Fixture>) -> Fixtures {
        Fixtures {
            answers,
            unexpected: Mutex::new(Vec::new()),
        }
    }

    /// The fixture for this request (the first that matches), or `None`
    /// after recording the request as unexpected.
    pub(super) fn answer(&self, method: &http::Method, uri: &http::Uri) -> Option<&Fixture> {
        let target = Target::of(uri);
        let found = self
            .answers
            .iter()
            .find(|f| f.method == *method && Some(&f.target) == target.as_ref());
        if found.is_none() {
            self.unexpected
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(format!("{method} {uri}"));
        }
        found
    }

    /// The requests no fixture answered (`METHOD URL`), in order.
    pub fn unexpected(&self) -> Vec<String> {
        self.unexpected
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(method: &str, url: &str) -> Fixture {
        Fixture::new(method, url, 200, &[], Bytes::new()).expect(url)
    }

    #[test]
    fn a_fixture_answers_its_method_and_url_only() {
        let f = Fixtures::new(vec![
            fixture("get", "http://API.test/doc?x=1"),
            fixture("POST", "https://api.test/hook"),
        ]);
        let uri = |u: &str| u.parse::<http::Uri>().expect(u);
        assert!(
            f.answer(&http::Method::GET, &uri("http://api.test:80/doc?x=1"))
                .is_some()
        );
        assert!(
            f.answer(&http::Method::POST, &uri("https://api.test:443/hook"))
                .is_some()
        );
        assert!(
            f.answer(&http::Method::GET, &uri("http://api.test/doc"))
                .is_none()
        );
        assert!(
            f.answer(&http::Method::POST, &uri("http://api.test/hook"))
                .is_none()
        );
        assert_eq!(
            f.unexpected(),
            ["GET http://api.test/doc", "POST http://api.test/hook"]
        );
    }

    #[test]
    fn bad_fixtures_are_refused() {
        let bad = |m: &str, u: &str, s: u16, h: &[(&str, &str)]| {
            let h: Vec<(String, String)> = h
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect();
            Fixture::new(m, u, s, &h, Bytes::new()).expect_err(u)
        };
        assert!(bad("GET", "ftp://x/y", 200, &[]).contains("not an http"));
        assert!(bad("GET", "/relative", 200, &[]).contains("not an http"));
        assert!(bad("G T", "http://x/", 200, &[]).contains("not an HTTP method"));
        assert!(bad("GET", "http://x/", 1000, &[]).contains("not an HTTP status"));
        assert!(bad("GET", "http://x/", 200, &[("a b", "v")]).contains("header name"));
    }
}
