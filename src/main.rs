//! The `cojobs` binary: parse, run, print errors, exit.
//!
//! Exit codes: 0 done, 2 usage or input error (clap's own too), 3 refused
//! as duplicate (`queue --unique`), 1 anything else.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use cojobs::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let result = cli::run(cli, &mut out).and_then(|()| out.flush().map_err(cli::Error::from));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if err.is_broken_pipe() => ExitCode::SUCCESS,
        Err(err) if err.is_reported() => {
            let _ = out.flush();
            ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(1))
        }
        Err(err) => {
            let _ = out.flush();
            // A message may carry a plugin's text (a describe that panicked).
            eprintln!("cojobs: {}", cli::printable(&format!("{err:#}"), true));
            ExitCode::from(u8::try_from(err.exit_code()).unwrap_or(1))
        }
    }
}
