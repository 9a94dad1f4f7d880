//! `cojobs co add NAME` / `cojobs co list` / `cojobs co set ID`: the COs
//! that own jobs, and their limits.

use std::io::Write;

use super::{Error, Global, cell, write_table};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Add a CO; prints its id.
    Add {
        /// The CO's name (unique).
        name: String,
        /// A description.
        #[arg(long, value_name = "D")]
        description: Option<String>,
    },
    /// List the COs, with their limits and whether they are paused.
    List,
    /// Set a CO's limits (kept in the database; every runner obeys them).
    Set {
        /// The CO's id.
        #[arg(allow_negative_numbers = true)]
        id: i64,
        /// Most of its jobs running at once, across all runners
        /// (1 to 1000000), or `none`.
        #[arg(long, value_name = "N|none", required = true)]
        max_running: String,
    },
}

/// `--max-running`: a number in range, or `none` (no limit).
fn max_running(text: &str) -> Result<Option<i64>, Error> {
    if text == "none" {
        return Ok(None);
    }
    let n: i64 = text
        .parse()
        .map_err(|_| Error::Input(format!("--max-running '{text}' is not a number or 'none'")))?;
    super::run::check_option(crate::bounds::MAX_RUNNING, Some(n))?;
    Ok(Some(n))
}

pub fn run(g: &Global, cmd: Command, out: &mut dyn Write) -> Result<(), Error> {
    if let Command::Set { max_running: m, .. } = &cmd {
        // Checked before the database is opened: bad input writes nothing.
        max_running(m)?;
    }
    let db = g.open_store()?;
    match cmd {
        Command::Add { name, description } => {
            let id = db.wait(db.add_co(&name, description.as_deref()))?;
            writeln!(out, "{id}")?;
        }
        Command::List => {
            let limits = db.wait(db.throttles())?;
            let rows: Vec<Vec<String>> = db
                .wait(db.list_cos())?
                .into_iter()
                .map(|c| {
                    let lim = limits.cos.iter().find(|l| l.co_id == c.id);
                    vec![
                        c.id.to_string(),
                        c.name,
                        c.status,
                        cell(
                            lim.and_then(|l| l.max_running)
                                .map(|n| n.to_string())
                                .as_deref(),
                        ),
                        if lim.is_some_and(|l| l.paused_by.is_some()) {
                            "yes".into()
                        } else {
                            "-".into()
                        },
                        cell(c.created.as_deref()),
                        cell(c.description.as_deref()),
                    ]
                })
                .collect();
            write_table(
                out,
                &[
                    "ID",
                    "NAME",
                    "STATUS",
                    "MAX RUNNING",
                    "PAUSED",
                    "CREATED",
                    "DESCRIPTION",
                ],
                &rows,
            )?;
        }
        Command::Set { id, max_running: m } => {
            let max = max_running(&m)?;
            db.wait(db.set_co_max_running(id, max))?;
            match max {
                Some(n) => writeln!(out, "CO {id}: at most {n} jobs running at once")?,
                None => writeln!(out, "CO {id}: no limit on running jobs")?,
            }
        }
    }
    Ok(())
}
