//! A minimal W3C WebDriver client (the handful of commands the dashboard's
//! browser test needs) over a plain socket, and `chromedriver` driving
//! Debian's headless Chromium. WebDriver is JSON over HTTP, so this is a
//! few requests; a client crate (fantoccini) was tried and dropped: its
//! dependencies change `syn`'s features, which invalidates every compiled
//! proc macro of the shared build cache (see the issue note).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// The W3C element key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// `chromedriver` on a free loopback port, killed on drop.
pub struct Driver {
    child: Child,
    port: u16,
}

/// A browser session.
pub struct Session {
    port: u16,
    id: String,
}

impl Driver {
    pub fn start() -> Driver {
        for path in [CHROMEDRIVER, CHROMIUM] {
            assert!(
                std::path::Path::new(path).exists(),
                "{path} is missing: install Debian's chromium and chromium-driver \
                 (scripts/test.sh does: apt-get install -y chromium chromium-driver)"
            );
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(100));
        }
        Driver { child, port }
    }

    /// A new headless Chromium session.
    pub fn session(&self) -> Session {
        let caps = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": CHROMIUM,
                    "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                             "--disable-dev-shm-usage", "--window-size=1280,900"],
                },
            }}
        });
        let v = call(self.port, "POST", "/session", Some(&caps));
        let id = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        Session {
            port: self.port,
            id,
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One WebDriver command; its `value`. A WebDriver error panics, naming it.
fn call(port: u16, method: &str, path: &str, body: Option<&Value>) -> Value {
    let v = try_call(port, method, path, body);
    if let Some(err) = v.get("error") {
        panic!("WebDriver {method} {path}: {err}: {}", v["message"]);
    }
    v
}

/// One WebDriver command: its `value`, errors included.
fn try_call(port: u16, method: &str, path: &str, body: Option<&Value>) -> Value {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to chromedriver");
    let body = body.map(Value::to_string).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("send");
    s.set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    let body = read_answer(&mut s);
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["value"].clone()
}

/// The body of an HTTP/1.1 answer: by `Content-Length` (chromedriver
/// keeps the connection open), else chunked, else to the end.
fn read_answer(s: &mut TcpStream) -> String {
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut buf).expect("read");
        assert!(n > 0, "chromedriver closed the connection");
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    match length {
        Some(len) => {
            while raw.len() < head_end + len {
                let n = s.read(&mut buf).expect("read");
                assert!(n > 0, "chromedriver closed the connection early");
                raw.extend_from_slice(&buf[..n]);
            }
            String::from_utf8_lossy(&raw[head_end..head_end + len]).into_owned()
        }
        None => {
            s.read_to_end(&mut raw).expect("read");
            let rest = String::from_utf8_lossy(&raw[head_end..]).into_owned();
            if head.contains("transfer-encoding: chunked") {
                dechunk(&rest)
            } else {
                rest
            }
        }
    }
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

impl Session {
    fn path(&self, tail: &str) -> String {
        format!("/session/{}{tail}", self.id)
    }

    pub fn goto(&self, url: &str) {
        call(
            self.port,
            "POST",
            &self.path("/url"),
            Some(&json!({ "url": url })),
        );
    }

    /// The element `css` selects, if any.
    pub fn find(&self, css: &str) -> Option<String> {
        let v = try_call(
            self.port,
            "POST",
            &self.path("/element"),
            Some(&json!({ "using": "css selector", "value": css })),
        );
        v.get(ELEMENT).and_then(Value::as_str).map(str::to_string)
    }

    /// The element `css` selects, waiting up to a minute for it.
    #[track_caller]
    pub fn wait_for(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(e) = self.find(css) {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "{css} never appeared: {}",
                self.source()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn text(&self, element: &str) -> String {
        let v = try_call(
            self.port,
            "GET",
            &self.path(&format!("/element/{element}/text")),
            None,
        );
        v.as_str().unwrap_or_default().to_string()
    }

    /// Wait until the element `css` shows `want`.
    #[track_caller]
    pub fn wait_for_text(&self, css: &str, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(e) = self.find(css)
                && self.text(&e).trim() == want
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{css} never showed {want:?}: {}",
                self.source()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn click(&self, css: &str) {
        let e = self.wait_for(css);
        call(
            self.port,
            "POST",
            &self.path(&format!("/element/{e}/click")),
            Some(&json!({})),
        );
    }

    pub fn type_into(&self, css: &str, text: &str) {
        let e = self.wait_for(css);
        call(
            self.port,
            "POST",
            &self.path(&format!("/element/{e}/value")),
            Some(&json!({ "text": text })),
        );
    }

    /// Run a script in the page; its result.
    pub fn execute(&self, script: &str) -> Value {
        call(
            self.port,
            "POST",
            &self.path("/execute/sync"),
            Some(&json!({ "script": script, "args": [] })),
        )
    }

    pub fn source(&self) -> String {
        try_call(self.port, "GET", &self.path("/source"), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// A PNG of the window.
    pub fn screenshot(&self) -> Vec<u8> {
        let v = call(self.port, "GET", &self.path("/screenshot"), None);
        base64_decode(v.as_str().expect("base64 PNG"))
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = try_call(self.port, "DELETE", &self.path(""), None);
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for v in text.bytes().filter_map(value) {
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}
