//! Outbound HTTP (`wasi:http/outgoing-handler`) under the side file's
//! allowlist (docs/design.md#outbound-http).
//!
//! Every plugin links `wasi:http`, but a request leaves the host only when
//! all of these hold, else the guest gets `HttpRequestDenied` and the job's
//! log a line naming the URL:
//!
//! - its scheme, host and port match an `allowed_hosts` entry
//!   (`scheme://host[:port]`, `*.` wildcards on the left only, the scheme's
//!   port when omitted);
//! - every address the host name resolves to (the host resolves it itself,
//!   once) is public, or is named literally in the allowlist: loopback,
//!   private, link-local (cloud metadata), unique-local, CGNAT and the other
//!   special ranges are refused, so DNS cannot point a granted name inside;
//!   the connection goes to the address that was checked, never through a
//!   second lookup;
//! - the job has requests left (`max_http_requests`, default 100).
//!
//! A request that passes is sent by the sandbox's [`HttpSender`]: over
//! the network (below), or answered from `cojobs test`'s fixtures
//! ([`super::fixtures`]), checked and counted the same way.
//!
//! Redirects are not followed: the guest sees the 3xx and its next request
//! is checked like any other. Response bodies count against the job's
//! `max_response_bytes` (default 10 MiB); a longer one ends in
//! `HttpResponseBodySize`. Each request runs within the job's wall clock and
//! is logged: method, URL without its query, status, bytes, milliseconds.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::Scheme;
use http_body_util::BodyExt;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use super::fixtures::{Fixture, HttpSender};
use super::output::Capture;

/// Requests a job may make unless its side file says otherwise.
pub const DEFAULT_HTTP_REQUESTS: u32 = 100;
/// Response body bytes a job may receive unless its side file says otherwise.
pub const DEFAULT_RESPONSE_BYTES: u64 = 10 * 1024 * 1024;

/// The host part of an allowlist entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostMatch {
    /// Exactly this name (lower case, no trailing dot).
    Name(String),
    /// `*.suffix`: any name with one or more labels before `.suffix`.
    Wildcard(String),
    /// This address, written literally.
    Ip(IpAddr),
}

/// One `allowed_hosts` entry: `scheme://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    https: bool,
    host: HostMatch,
    port: u16,
}

/// An IP literal (`127.0.0.1`, `[::1]` or `::1`), if `host` is one.
fn ip_literal(host: &str) -> Option<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok()
}

/// A host name as compared: lower case, without a trailing dot.
fn normal_name(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

impl std::str::FromStr for HostPattern {
    type Err = String;

    fn from_str(entry: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("allowed_hosts entry '{entry}': {why}");
        let (scheme, rest) = entry
            .split_once("://")
            .ok_or_else(|| bad("expected scheme://host[:port]"))?;
        let https = match scheme.to_ascii_lowercase().as_str() {
            "https" => true,
            "http" => false,
            _ => return Err(bad("the scheme must be http or https")),
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
            return Err(bad(
                "give scheme://host[:port] only: no path, query or user",
            ));
        }
        let uri: http::uri::Authority = authority
            .parse()
            .map_err(|e| bad(&format!("not a host[:port]: {e}")))?;
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let host = uri.host();
        let host = if let Some(ip) = ip_literal(host) {
            HostMatch::Ip(ip)
        } else if let Some(suffix) = host.strip_prefix("*.") {
            if suffix.is_empty() || suffix.contains('*') || !suffix.contains('.') {
                return Err(bad(
                    "a wildcard is '*.' then a domain of two labels or more, on the left only",
                ));
            }
            HostMatch::Wildcard(normal_name(suffix))
        } else if host.contains('*') {
            return Err(bad(
                "'*' is allowed only as the whole leftmost label ('*.')",
            ));
        } else {
            HostMatch::Name(normal_name(host))
        };
        Ok(HostPattern { https, host, port })
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        match &self.host {
            HostMatch::Name(n) => write!(f, "{scheme}://{n}:{}", self.port),
            HostMatch::Wildcard(s) => write!(f, "{scheme}://*.{s}:{}", self.port),
            HostMatch::Ip(IpAddr::V6(ip)) => write!(f, "{scheme}://[{ip}]:{}", self.port),
            HostMatch::Ip(ip) => write!(f, "{scheme}://{ip}:{}", self.port),
        }
    }
}

impl HostPattern {
    fn matches(&self, https: bool, host: &str, port: u16) -> bool {
        if self.https != https || self.port != port {
            return false;
        }
        match (&self.host, ip_literal(host)) {
            (HostMatch::Ip(granted), Some(ip)) => *granted == ip,
            (_, Some(_)) | (HostMatch::Ip(_), None) => false,
            (HostMatch::Name(n), None) => *n == normal_name(host),
            (HostMatch::Wildcard(suffix), None) => normal_name(host)
                .strip_suffix(suffix.as_str())
                .is_some_and(|left| left.len() > 1 && left.ends_with('.')),
        }
    }
}

/// What a plugin's side file grants for HTTP, with its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpGrant {
    pub allowed: Vec<HostPattern>,
    pub max_requests: u32,
    pub max_response_bytes: u64,
}

impl Default for HttpGrant {
    fn default() -> Self {
        HttpGrant {
            allowed: Vec::new(),
            max_requests: DEFAULT_HTTP_REQUESTS,
            max_response_bytes: DEFAULT_RESPONSE_BYTES,
        }
    }
}

impl HttpGrant {
    /// Addresses the allowlist names literally for this scheme and port:
    /// the only special addresses a request may reach.
    fn literal_addresses(&self, https: bool, port: u16) -> Vec<IpAddr> {
        self.allowed
            .iter()
            .filter(|p| p.https == https && p.port == port)
            .filter_map(|p| match p.host {
                HostMatch::Ip(ip) => Some(ip),
                _ => None,
            })
            .collect()
    }
}

/// Is `ip` an ordinary public unicast address? Loopback, private,
/// link-local (where cloud metadata lives), CGNAT, unique-local,
/// multicast, documentation, benchmarking and reserved ranges are not,
/// nor IPv6 forms that embed one of those IPv4 addresses.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || a >= 240
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (b == 18 || b == 19)))
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    let embedded_v4 = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) reach an IPv4 address.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return is_public_v4(embedded_v4(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return is_public_v4(embedded_v4(s[1], s[2]));
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local, fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link local, fe80::/10
        || (s[0] & 0xffc0) == 0xfec0 // site local (deprecated), fec0::/10
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x2001 && s[1] == 0) // Teredo
        || s[0..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible (deprecated)
}

/// Where a checked request goes.
struct Target {
    https: bool,
    host: String,
    port: u16,
    /// Addresses the allowlist names literally for this scheme and port.
    literal: Vec<IpAddr>,
}

/// The per-job gate in front of `wasi:http`: the grant, what is left of
/// the job's budget, and the job's log.
pub(super) struct HttpGate {
    grant: Arc<HttpGrant>,
    requests: u32,
    /// Response bytes received so far, shared with the bodies in flight.
    received: Arc<AtomicU64>,
    capture: Capture,
    deadline: Option<Instant>,
    /// Where a granted request goes.
    sender: HttpSender,
}

impl HttpGate {
    pub(super) fn new(
        grant: Arc<HttpGrant>,
        capture: Capture,
        deadline: Option<Instant>,
        sender: HttpSender,
    ) -> Self {
        HttpGate {
            grant,
            requests: 0,
            received: Arc::new(AtomicU64::new(0)),
            capture,
            deadline,
            sender,
        }
    }

    fn note(&self, line: &str) {
        self.capture.append(format!("[http] {line}\n").as_bytes());
    }

    /// The request's target if the allowlist grants it, else why not.
    fn check(&self, uri: &http::Uri) -> Result<Target, String> {
        let https = match uri.scheme() {
            Some(s) if *s == Scheme::HTTPS => true,
            Some(s) if *s == Scheme::HTTP => false,
            _ => return Err("only http and https are allowed".into()),
        };
        let host = uri.host().ok_or("the URL has no host")?;
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        if self.grant.allowed.is_empty() {
            return Err("this plugin is granted no hosts (allowed_hosts)".into());
        }
        if !self
            .grant
            .allowed
            .iter()
            .any(|p| p.matches(https, host, port))
        {
            return Err("scheme, host or port not in allowed_hosts".into());
        }
        Ok(Target {
            https,
            host: host.to_string(),
            port,
            literal: self.grant.literal_addresses(https, port),
        })
    }

    /// How long a request may take: until the job's wall clock runs out,
    /// plus a second, so the job's own timeout (and its clear summary)
    /// fires first; this only stops a request outliving its job.
    fn remaining(&self) -> Duration {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(3600))
            .saturating_add(Duration::from_secs(1))
    }
}

/// The URL as logged: scheme, authority and path, never the query (it may
/// carry a token).
fn loggable(uri: &http::Uri) -> String {
    format!(
        "{}://{}{}",
        uri.scheme_str().unwrap_or("?"),
        uri.authority().map(|a| a.as_str()).unwrap_or("?"),
        uri.path()
    )
}

type Sent = Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ),
    HttpError,
>;

fn fail_now(e: HttpError) -> Box<dyn Future<Output = Sent> + Send> {
    Box::new(async move { Err(e) })
}

impl WasiHttpHooks for HttpGate {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<dyn Future<Output = Sent> + Send> {
        let method = request.method().clone();
        let url = loggable(request.uri());
        let target = match self.check(request.uri()) {
            Ok(t) => t,
            Err(why) => {
                self.note(&format!("denied {method} {url}: {why}"));
                return fail_now(HttpError::HttpRequestDenied);
            }
        };
        if self.requests >= self.grant.max_requests {
            self.note(&format!(
                "denied {method} {url}: request limit of {} per job reached",
                self.grant.max_requests
            ));
            return fail_now(HttpError::ConnectionLimitReached);
        }
        self.requests += 1;
        let log = RequestLog {
            capture: self.capture.clone(),
            line: format!("{method} {url}"),
            started: Instant::now(),
        };
        let budget = Budget {
            received: Arc::clone(&self.received),
            limit: self.grant.max_response_bytes,
        };
        let remaining = self.remaining();
        if let HttpSender::Fixtures(fixtures) = &self.sender {
            let Some(fixture) = fixtures.answer(&method, request.uri()) else {
                log.finish("denied: no fixture answers this request");
                return fail_now(HttpError::HttpRequestDenied);
            };
            return Box::new(answer(request, fixture.clone(), log, budget));
        }
        Box::new(async move {
            match tokio::time::timeout(remaining, send(request, target, &log, budget)).await {
                Ok(r) => r,
                Err(_) => {
                    log.finish("no answer before the job's wall clock ran out");
                    Err(HttpError::ConnectionReadTimeout)
                }
            }
        })
    }
}

/// One request's log line, written when its response body is done.
#[derive(Clone)]
struct RequestLog {
    capture: Capture,
    line: String,
    started: Instant,
}

impl RequestLog {
    fn finish(&self, what: &str) {
        self.capture.append(
            format!(
                "[http] {} -> {what}, {} ms\n",
                self.line,
                self.started.elapsed().as_millis()
            )
            .as_bytes(),
        );
    }
}

/// The job's response-byte budget.
#[derive(Clone)]
struct Budget {
    received: Arc<AtomicU64>,
    limit: u64,
}

impl Budget {
    fn left(&self) -> u64 {
        self.limit
            .saturating_sub(self.received.load(Ordering::Relaxed))
    }
}

/// Answer a request from a fixture: its body is read first (the guest
/// writes it after asking), then the fixture's response is counted like
/// one from the network.
async fn answer(
    request: http::Request<WasiBody>,
    fixture: Fixture,
    log: RequestLog,
    budget: Budget,
) -> Sent {
    request
        .into_body()
        .collect()
        .await
        .inspect_err(|e| log.finish(&format!("failed: {e}")))?;
    let mut response = http::Response::new(
        http_body_util::Full::new(fixture.body)
            .map_err(HttpError::from)
            .boxed_unsync(),
    );
    *response.status_mut() = fixture.status;
    for (name, value) in fixture.headers {
        response.headers_mut().append(name, value);
    }
    let response = counted(response, &log, budget)?;
    let io: Box<dyn Future<Output = Result<(), HttpError>> + Send> = Box::new(async { Ok(()) });
    Ok((response, io))
}

/// The response as the guest gets it: refused at once when its declared
/// length is over what is left of the job's response budget, else with
/// its body counted against that budget.
fn counted(
    response: http::Response<WasiBody>,
    log: &RequestLog,
    budget: Budget,
) -> Result<http::Response<WasiBody>, HttpError> {
    let status = response.status().as_u16();
    let declared = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .or_else(|| http_body::Body::size_hint(response.body()).exact());
    if declared.is_some_and(|n| n > budget.left()) {
        log.finish(&format!(
            "{status}, body of {} bytes refused: over the job's response limit of {} bytes",
            declared.unwrap_or(0),
            budget.limit
        ));
        return Err(HttpError::HttpResponseBodySize(declared));
    }
    Ok(response.map(|inner| {
        CountedBody {
            inner,
            budget,
            bytes: 0,
            status,
            log: log.clone(),
            outcome: None,
        }
        .boxed_unsync()
    }))
}

/// Resolve the target's host (once) and pick the address to connect to:
/// every address must be public or granted literally.
async fn resolve(t: &Target) -> Result<SocketAddr, String> {
    if let Some(ip) = ip_literal(&t.host) {
        // `check` matched an entry naming this address literally.
        return Ok(SocketAddr::new(ip, t.port));
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((t.host.as_str(), t.port))
        .await
        .map_err(|e| format!("cannot resolve {}: {e}", t.host))?
        .collect();
    let refused = addrs
        .iter()
        .find(|a| !is_public(a.ip()) && !t.literal.contains(&a.ip()));
    if let Some(a) = refused {
        return Err(format!(
            "{} resolves to {}, a loopback, private or otherwise internal address not named in allowed_hosts",
            t.host,
            a.ip()
        ));
    }
    addrs
        .first()
        .copied()
        .ok_or_else(|| format!("{} has no address", t.host))
}

/// The TLS client configuration: ring, Mozilla's roots, built once.
/// `None` only if the provider refused the default protocol versions.
fn tls_config() -> Option<Arc<tokio_rustls::rustls::ClientConfig>> {
    static CONFIG: OnceLock<Option<Arc<tokio_rustls::rustls::ClientConfig>>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = tokio_rustls::rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.into(),
            };
            let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
            tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .ok()
                .map(|b| Arc::new(b.with_root_certificates(roots).with_no_client_auth()))
        })
        .clone()
}

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Sync + Unpin + 'static {}
impl<T> Stream for T where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Sync + Unpin + 'static
{
}

/// Connect to the checked address; TLS against the host's name.
async fn connect(t: &Target, addr: SocketAddr) -> Result<Box<dyn Stream>, HttpError> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(HttpError::Connect)?;
    if !t.https {
        return Ok(Box::new(tcp));
    }
    let name = match ip_literal(&t.host) {
        Some(ip) => tokio_rustls::rustls::pki_types::ServerName::from(ip),
        None => tokio_rustls::rustls::pki_types::ServerName::try_from(t.host.clone())
            .map_err(|_| HttpError::HttpRequestUriInvalid)?,
    };
    let config = tls_config().ok_or(HttpError::TlsProtocolError)?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(HttpError::Tls)?;
    Ok(Box::new(tls))
}

/// Send one granted request and wrap its response body in the job's
/// byte budget.
async fn send(
    mut request: http::Request<WasiBody>,
    target: Target,
    log: &RequestLog,
    budget: Budget,
) -> Sent {
    let addr = match resolve(&target).await {
        Ok(a) => a,
        Err(why) => {
            log.finish(&format!("denied: {why}"));
            return Err(HttpError::HttpRequestDenied);
        }
    };
    let stream = connect(&target, addr).await.inspect_err(|e| {
        log.finish(&format!("failed: {e}"));
    })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(HttpError::from)?;
    // The request line carries only the path: the scheme and authority
    // went into the connection and the Host header.
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".to_string());
    *request.uri_mut() = http::Uri::try_from(path).map_err(|_| HttpError::HttpRequestUriInvalid)?;
    let mut conn = Box::pin(conn);
    let mut conn_done = false;
    let mut response = Box::pin(sender.send_request(request));
    // Drive the connection while waiting for the response head.
    let response = std::future::poll_fn(|cx| {
        if let Poll::Ready(r) = response.as_mut().poll(cx) {
            return Poll::Ready(r.map_err(HttpError::from));
        }
        if !conn_done {
            match ready!(conn.as_mut().poll(cx)) {
                Ok(()) => conn_done = true,
                Err(e) => return Poll::Ready(Err(HttpError::from(e))),
            }
            return response.as_mut().poll(cx).map_err(HttpError::from);
        }
        Poll::Pending
    })
    .await
    .inspect_err(|e| log.finish(&format!("failed: {e}")))?;
    let response = counted(
        response.map(|b| b.map_err(HttpError::from).boxed_unsync()),
        log,
        budget,
    )?;
    let io: Box<dyn Future<Output = Result<(), HttpError>> + Send> = Box::new(async move {
        if conn_done {
            return Ok(());
        }
        conn.await.map_err(HttpError::from)
    });
    Ok((response, io))
}

/// A response body that counts its bytes against the job's budget and
/// logs the request when it is done (or dropped).
struct CountedBody {
    inner: WasiBody,
    budget: Budget,
    bytes: u64,
    status: u16,
    log: RequestLog,
    /// Set once the body ended another way than by being read to its end.
    outcome: Option<String>,
}

impl http_body::Body for CountedBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, HttpError>>> {
        let frame = match ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
            None => return Poll::Ready(None),
            Some(Err(e)) => {
                self.outcome = Some(format!("body failed: {e}"));
                return Poll::Ready(Some(Err(e)));
            }
            Some(Ok(frame)) => frame,
        };
        if let Some(data) = frame.data_ref() {
            let n = data.len() as u64;
            self.bytes = self.bytes.saturating_add(n);
            let before = self.budget.received.fetch_add(n, Ordering::Relaxed);
            if before.saturating_add(n) > self.budget.limit {
                self.outcome = Some(format!(
                    "body cut: over the job's response limit of {} bytes",
                    self.budget.limit
                ));
                return Poll::Ready(Some(Err(HttpError::HttpResponseBodySize(Some(
                    self.budget.limit,
                )))));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for CountedBody {
    fn drop(&mut self) {
        let mut what = format!("{}, {} bytes", self.status, self.bytes);
        if let Some(o) = &self.outcome {
            what.push_str(", ");
            what.push_str(o);
        }
        self.log.finish(&what);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> HostPattern {
        s.parse().expect(s)
    }

    #[test]
    fn patterns_match_scheme_host_and_port() {
        let api = p("https://api.example.org");
        assert!(api.matches(true, "api.example.org", 443));
        assert!(api.matches(true, "API.Example.org.", 443));
        assert!(!api.matches(false, "api.example.org", 443), "scheme");
        assert!(!api.matches(true, "api.example.org", 8443), "port");
        assert!(!api.matches(true, "evil.example.org", 443), "host");
        let wild = p("https://*.example.com");
        assert!(wild.matches(true, "a.example.com", 443));
        assert!(wild.matches(true, "a.b.example.com", 443));
        assert!(
            !wild.matches(true, "example.com", 443),
            "no label on the left"
        );
        assert!(!wild.matches(true, "badexample.com", 443));
        let local = p("http://127.0.0.1:8081");
        assert!(local.matches(false, "127.0.0.1", 8081));
        assert!(
            !local.matches(false, "localhost", 8081),
            "a name is not the literal"
        );
        assert!(p("http://[::1]:80").matches(false, "[::1]", 80));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in [
            "api.example.org",
            "ftp://x.org",
            "https://x.org/path",
            "https://a.*.org",
            "https://*.org",
            "https://u@x.org",
            "https://",
        ] {
            assert!(bad.parse::<HostPattern>().is_err(), "{bad}");
        }
    }

    #[test]
    fn internal_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.100.100.200",
            "0.0.0.0",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
        ] {
            assert!(!is_public(ip.parse().expect(ip)), "{ip}");
        }
        for ip in ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"] {
            assert!(is_public(ip.parse().expect(ip)), "{ip}");
        }
    }
}
