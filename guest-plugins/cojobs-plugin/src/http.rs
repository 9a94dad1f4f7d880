//! Outbound HTTP over `wasi:http/outgoing-handler`, for the hosts the
//! plugin's side file grants (`allowed_hosts`). Anything else is refused by
//! the host with [`HttpError::Denied`] (and a line in the job's log).
//!
//! ```ignore
//! let r = http::Request::get("https://api.example.org/v1/items").send()?;
//! let items: Vec<Item> = r.json()?;
//! ```
//!
//! Redirects are not followed: a 3xx comes back as it is, and following it
//! is a new request, checked against the allowlist like any other.

use crate::bindings::wasi::http::outgoing_handler;
use crate::bindings::wasi::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme,
};
use crate::bindings::wasi::io::streams::StreamError;
use crate::{retry, Failure};

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The URL could not be parsed.
    BadUrl(String),
    /// The host refused it: not granted, or resolving to an internal address.
    Denied,
    /// The job's request limit (`max_http_requests`) is reached.
    TooManyRequests,
    /// The response body is larger than the job's limit (`max_response_bytes`).
    TooLarge,
    /// Any other failure (connection refused, timeout, protocol error).
    Failed(String),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::BadUrl(u) => write!(f, "bad URL '{u}'"),
            HttpError::Denied => f.write_str(
                "request denied: the host is not granted in allowed_hosts, or resolves to an internal address",
            ),
            HttpError::TooManyRequests => f.write_str("the job's HTTP request limit is reached"),
            HttpError::TooLarge => f.write_str("the response body is over the job's size limit"),
            HttpError::Failed(m) => write!(f, "request failed: {m}"),
        }
    }
}

impl std::error::Error for HttpError {}

/// `?` in `run`: an HTTP failure is worth a retry, a denial or a bad URL
/// never succeeds (discard).
impl From<HttpError> for Failure {
    fn from(e: HttpError) -> Self {
        match e {
            HttpError::Denied | HttpError::BadUrl(_) => crate::discard(e.to_string()),
            other => retry(other.to_string()),
        }
    }
}

impl From<ErrorCode> for HttpError {
    fn from(code: ErrorCode) -> Self {
        match code {
            ErrorCode::HttpRequestDenied => HttpError::Denied,
            ErrorCode::ConnectionLimitReached => HttpError::TooManyRequests,
            ErrorCode::HttpResponseBodySize(_) => HttpError::TooLarge,
            other => HttpError::Failed(format!("{other:?}")),
        }
    }
}

/// A response, its body read whole.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name`, as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    /// The body as text (lossy UTF-8).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON into `T`; a parse error is a retry.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, Failure> {
        serde_json::from_slice(&self.body)
            .map_err(|e| retry(format!("response is not the JSON expected: {e}")))
    }
}

/// A request being built.
#[derive(Debug, Clone)]
pub struct Request {
    method: Method,
    url: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Option<Vec<u8>>,
}

impl Request {
    pub fn new(method: Method, url: &str) -> Self {
        Request {
            method,
            url: url.to_string(),
            headers: Vec::new(),
            body: None,
        }
    }
    pub fn get(url: &str) -> Self {
        Self::new(Method::Get, url)
    }
    pub fn post(url: &str) -> Self {
        Self::new(Method::Post, url)
    }
    pub fn put(url: &str) -> Self {
        Self::new(Method::Put, url)
    }
    pub fn delete(url: &str) -> Self {
        Self::new(Method::Delete, url)
    }
    /// Add a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_string(), value.as_bytes().to_vec()));
        self
    }
    /// An `Authorization: Bearer <token>` header.
    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }
    /// The body, as given.
    pub fn body(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.body = Some(bytes.into());
        self
    }
    /// A JSON body, with its content type.
    pub fn json(self, value: &impl serde::Serialize) -> Self {
        let body = serde_json::to_vec(value).unwrap_or_default();
        self.header("content-type", "application/json").body(body)
    }

    /// Send it and read the whole response.
    pub fn send(self) -> Result<Response, HttpError> {
        let (scheme, authority, path) = split_url(&self.url)?;
        let headers = Fields::new();
        for (n, v) in &self.headers {
            headers
                .append(n, v)
                .map_err(|e| HttpError::Failed(format!("header '{n}': {e:?}")))?;
        }
        let req = OutgoingRequest::new(headers);
        let bad = |_| HttpError::BadUrl(self.url.clone());
        req.set_method(&self.method).map_err(bad)?;
        req.set_scheme(Some(&scheme)).map_err(bad)?;
        req.set_authority(Some(authority)).map_err(bad)?;
        req.set_path_with_query(Some(path)).map_err(bad)?;
        let out_body = match &self.body {
            Some(_) => Some(req.body().map_err(|_| HttpError::Failed("request body".into()))?),
            None => None,
        };
        let pending = outgoing_handler::handle(req, None)?;
        if let (Some(ob), Some(bytes)) = (out_body, &self.body) {
            write_body(ob, bytes)?;
        }
        pending.subscribe().block();
        let resp = match pending.get() {
            Some(Ok(r)) => r?,
            _ => return Err(HttpError::Failed("no response".into())),
        };
        let status = resp.status();
        let headers = resp.headers().entries();
        let body = resp
            .consume()
            .map_err(|_| HttpError::Failed("response body".into()))?;
        Ok(Response {
            status,
            headers,
            body: read_body(body)?,
        })
    }
}

fn write_body(body: OutgoingBody, bytes: &[u8]) -> Result<(), HttpError> {
    {
        let stream = body
            .write()
            .map_err(|_| HttpError::Failed("request body stream".into()))?;
        for chunk in bytes.chunks(4096) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| HttpError::Failed(format!("writing the request body: {e:?}")))?;
        }
    }
    OutgoingBody::finish(body, None)?;
    Ok(())
}

fn read_body(body: IncomingBody) -> Result<Vec<u8>, HttpError> {
    let mut out = Vec::new();
    {
        let stream = body
            .stream()
            .map_err(|_| HttpError::Failed("response body stream".into()))?;
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => out.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => {
                    return Err(
                        match crate::bindings::wasi::http::types::http_error_code(&e) {
                            Some(code) => code.into(),
                            None => HttpError::Failed(e.to_debug_string()),
                        },
                    );
                }
            }
        }
    }
    drop(body);
    Ok(out)
}

/// `scheme://authority/path?query` into its parts.
fn split_url(url: &str) -> Result<(Scheme, &str, &str), HttpError> {
    let bad = || HttpError::BadUrl(url.to_string());
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    let scheme = match scheme {
        "https" => Scheme::Https,
        "http" => Scheme::Http,
        _ => return Err(bad()),
    };
    let at = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(at);
    if authority.is_empty() {
        return Err(bad());
    }
    Ok((scheme, authority, if path.is_empty() { "/" } else { path }))
}
