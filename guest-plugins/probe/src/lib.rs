//! `probe`: sandbox probe. Tries to read `/etc/passwd`, list `/`, read the
//! environment, open a TCP connection to 127.0.0.1:`port` and resolve a name,
//! logs each error, and returns a JSON summary where `true` means it SUCCEEDED
//! (so in a default sandbox everything should be false / 0).
use cojobs_plugin::{export_plugin, log, serde_json::json, Failure, Job, ParamSpec, Plugin, PluginInfo};
use std::net::{TcpStream, ToSocketAddrs};

#[derive(serde::Deserialize)]
struct Params {
    #[serde(default = "eighty")]
    port: u16,
}
fn eighty() -> u16 {
    80
}

/// Log the outcome of one attempt and return whether it succeeded.
fn attempt<T, E: std::fmt::Display>(what: &str, r: Result<T, E>) -> bool {
    match r {
        Ok(_) => { log::warn(&format!("{what}: SUCCEEDED")); true }
        Err(e) => { log::info(&format!("{what}: denied: {e}")); false }
    }
}

struct Probe;

impl Plugin for Probe {
    fn describe() -> PluginInfo {
        PluginInfo::new("probe", env!("CARGO_PKG_VERSION"), "Reports what the sandbox lets it do (test plugin).")
            .param(ParamSpec::integer("port", "TCP port to try on 127.0.0.1").default(80))
    }
    fn run(job: Job) -> Result<String, Failure> {
        let port = job.params::<Params>()?.port;
        let read_passwd = attempt("read /etc/passwd", std::fs::read("/etc/passwd"));
        let list_root = attempt("list /", std::fs::read_dir("/"));
        let env_vars = std::env::vars().count();
        log::info(&format!("environment: {env_vars} variables"));
        let home = attempt("env HOME", std::env::var("HOME"));
        let path = attempt("env PATH", std::env::var("PATH"));
        let tcp = attempt(&format!("connect 127.0.0.1:{port}"), TcpStream::connect(("127.0.0.1", port)));
        let dns = attempt("resolve localhost", ("localhost", 80).to_socket_addrs());
        let summary = json!({
            "read_passwd": read_passwd, "list_root": list_root, "env_vars": env_vars,
            "env_home": home, "env_path": path, "tcp": tcp, "dns": dns,
        });
        Ok(summary.to_string())
    }
}

export_plugin!(Probe);
