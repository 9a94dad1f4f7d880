//! `cojobs serve` in the background ([`Server`]: the real binary on a free
//! loopback port, stopped on drop) and a small HTTP/1.0 client over a
//! plain socket ([`Server::request`]), so the API tests need no HTTP
//! client crate and see exactly the bytes the server sent.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::procs::Setup;

/// A running `cojobs serve`.
pub struct Server {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// What it printed on start.
    pub banner: String,
}

/// An answer.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:#?}"))
    }

    /// Assert the status and an `{error, detail}` body; the detail.
    #[track_caller]
    pub fn error(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status, status, "{self:#?}");
        let v = self.json();
        assert_eq!(v["error"], code, "{self:#?}");
        v["detail"].as_str().expect("detail").to_string()
    }
}

impl Server {
    /// `cojobs --plugins <setup's> serve --listen 127.0.0.1:0 ARGS --db <db>`.
    pub fn start(setup: &Setup, args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cojobs"))
            .args([
                "--plugins",
                setup.plugins(),
                "serve",
                "--listen",
                "127.0.0.1:0",
            ])
            .args(args)
            .arg("--db")
            .arg(&setup.env.db)
            .current_dir(setup.env.dir.path())
            .env("USER", "ada")
            .env_remove("COJOBS_DB")
            .env_remove("COJOBS_PLUGINS")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start cojobs serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut banner = String::new();
        let mut addr = None;
        for line in lines.by_ref().take(2) {
            let line = line.expect("read the banner");
            if let Some(a) = line.strip_prefix("cojobs serve: listening on http://") {
                addr = Some(a.to_string());
            }
            banner.push_str(&line);
            banner.push('\n');
        }
        // Keep reading (and dropping) what it prints later, so it never
        // blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let addr = addr.unwrap_or_else(|| panic!("no address in the banner: {banner:?}"));
        Server {
            child,
            addr,
            banner,
        }
    }

    /// Send a request; `headers` as `Name: value` lines.
    pub fn request(&self, method: &str, path: &str, headers: &[&str], body: Option<&str>) -> Resp {
        request_at(&self.addr, method, path, headers, body)
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> Resp {
        let auth = token.map(|t| format!("Authorization: Bearer {t}"));
        let headers: Vec<&str> = auth.iter().map(String::as_str).collect();
        self.request("GET", path, &headers, None)
    }

    /// A JSON POST.
    pub fn post(&self, path: &str, token: Option<&str>, body: &str) -> Resp {
        let auth = token.map(|t| format!("Authorization: Bearer {t}"));
        let mut headers: Vec<&str> = auth.iter().map(String::as_str).collect();
        headers.push("Content-Type: application/json");
        self.request("POST", path, &headers, Some(body))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Send a request to `addr` (`host:port`), any server (a runner's
/// `--metrics` too); `headers` as `Name: value` lines.
pub fn request_at(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[&str],
    body: Option<&str>,
) -> Resp {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut req = format!("{method} {path} HTTP/1.0\r\n");
    if !headers
        .iter()
        .any(|h| h.to_ascii_lowercase().starts_with("host:"))
    {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    if let Some(b) = body {
        req.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    req.push_str("\r\n");
    if let Some(b) = body {
        req.push_str(b);
    }
    s.write_all(req.as_bytes()).expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read the answer");
    parse(&raw)
}

fn parse(raw: &[u8]) -> Resp {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {text:?}"));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Resp {
        status,
        headers,
        body: body.to_string(),
    }
}
