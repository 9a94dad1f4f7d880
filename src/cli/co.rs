//! `cojobs co add NAME` / `cojobs co list`: the COs that own jobs.

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
    /// List the COs.
    List,
}

pub fn run(g: &Global, cmd: Command, out: &mut dyn Write) -> Result<(), Error> {
    let db = g.open_store()?;
    match cmd {
        Command::Add { name, description } => {
            let id = db.wait(db.add_co(&name, description.as_deref()))?;
            writeln!(out, "{id}")?;
        }
        Command::List => {
            let rows: Vec<Vec<String>> = db
                .wait(db.list_cos())?
                .into_iter()
                .map(|c| {
                    vec![
                        c.id.to_string(),
                        c.name,
                        c.status,
                        cell(c.created.as_deref()),
                        cell(c.description.as_deref()),
                    ]
                })
                .collect();
            write_table(
                out,
                &["ID", "NAME", "STATUS", "CREATED", "DESCRIPTION"],
                &rows,
            )?;
        }
    }
    Ok(())
}
