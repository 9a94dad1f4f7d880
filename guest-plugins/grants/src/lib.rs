//! `grants`: uses a granted directory `dir` (default `/data`) and `/scratch`:
//! counts the lines of each regular file in `dir`, writes a report to
//! `/scratch/report.txt`, then tries to escape: `<dir>/../etc/passwd`,
//! `/etc/passwd`, reading through each symlink in `dir`, writing into `dir`.
//! Returns JSON where `true` means the attempt SUCCEEDED (`escape_symlink` is
//! null when `dir` holds no symlink).
use cojobs_plugin::{export_plugin, log, serde_json::json, Failure, Job, ParamSpec, Plugin, PluginInfo, discard, retry};
use std::fs;

#[derive(serde::Deserialize)]
struct Params {
    #[serde(default = "data")]
    dir: String,
}
fn data() -> String {
    "/data".into()
}

fn ok<T, E: std::fmt::Display>(what: &str, r: Result<T, E>) -> bool {
    r.map_err(|e| log::info(&format!("{what}: {e}"))).is_ok()
}

struct Grants;

impl Plugin for Grants {
    fn describe() -> PluginInfo {
        PluginInfo::new("grants", env!("CARGO_PKG_VERSION"), "Uses a granted directory and tries to leave it (test plugin).")
            .param(ParamSpec::text("dir", "The granted directory").default("/data"))
    }
    fn run(job: Job) -> Result<String, Failure> {
        let dir = job.params::<Params>()?.dir;
        let mut entries: Vec<_> = fs::read_dir(&dir).map_err(|e| discard(format!("cannot list {dir}: {e}")))?.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        let (mut files, mut lines, mut report, mut symlink) = (0, 0, String::new(), None);
        for entry in entries {
            let (path, kind) = (entry.path(), entry.file_type().map_err(|e| retry(e.to_string()))?);
            if kind.is_symlink() {
                let followed = ok(&format!("follow {}", path.display()), fs::read(&path));
                symlink = Some(symlink.unwrap_or(false) || followed);
            } else if kind.is_file() {
                let n = fs::read(&path).map(|b| b.iter().filter(|&&c| c == b'\n').count()).unwrap_or(0);
                report.push_str(&format!("{}: {n}\n", path.display()));
                (files, lines) = (files + 1, lines + n);
            }
        }
        let report_written = ok("write /scratch/report.txt", fs::write("/scratch/report.txt", &report));
        let escape_parent = ok("read ../etc/passwd", fs::read(format!("{dir}/../etc/passwd")));
        let escape_abs = ok("read /etc/passwd", fs::read("/etc/passwd"));
        let probe = format!("{dir}/.grants-write-probe");
        let wrote_dir = ok(&format!("write {probe}"), fs::write(&probe, b"x"));
        if wrote_dir {
            let _ = fs::remove_file(&probe);
        }
        Ok(json!({"files": files, "lines": lines, "report_written": report_written, "escape_parent": escape_parent,
                  "escape_abs": escape_abs, "escape_symlink": symlink, "wrote_dir": wrote_dir}).to_string())
    }
}

export_plugin!(Grants);
