//! `cojobs token add|list|revoke`: the access tokens of `cojobs serve`.
//! A token's secret is printed once, at `add`; the store keeps only its
//! hash.

use std::io::Write;

use super::{Error, Global, cell, write_table};
use crate::serve::auth;
use crate::store::{NewToken, Role};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a token; prints its secret (once: it cannot be shown again).
    Add {
        /// The token's name (who acts, as recorded on the jobs it cancels
        /// or retries): [A-Za-z0-9][A-Za-z0-9_.@-]{0,63}.
        name: String,
        /// viewer reads; operator also queues, cancels, retries; admin
        /// also manages tokens and COs.
        #[arg(long, value_name = "ROLE", value_parser = parse_role)]
        role: Role,
        /// See and act on this CO's jobs only.
        #[arg(long, value_name = "N")]
        co: Option<i64>,
    },
    /// List the tokens (never their secrets).
    List,
    /// Revoke a live token by name.
    Revoke {
        /// The token's name.
        name: String,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
        .map_err(|e: crate::store::StoreError| e.to_string())
}

pub fn run(g: &Global, cmd: Command, out: &mut dyn Write) -> Result<(), Error> {
    let db = g.open_store()?;
    match cmd {
        Command::Add { name, role, co } => {
            let secret = auth::new_token()
                .map_err(|e| Error::Input(format!("no randomness for a token: {e}")))?;
            let token = NewToken {
                name,
                role,
                co_id: co,
                hash: auth::hash(&secret),
            };
            db.wait(db.add_token(&token))?;
            writeln!(out, "{secret}")?;
        }
        Command::List => {
            let rows: Vec<Vec<String>> = db
                .wait(db.list_tokens())?
                .into_iter()
                .map(|t| {
                    vec![
                        t.name,
                        t.role.to_string(),
                        t.co_id.map_or_else(|| "all".to_string(), |c| c.to_string()),
                        cell(t.created.as_deref()),
                        cell(t.revoked.as_deref()),
                    ]
                })
                .collect();
            write_table(out, &["NAME", "ROLE", "CO", "CREATED", "REVOKED"], &rows)?;
        }
        Command::Revoke { name } => {
            db.wait(db.revoke_token(&name))?;
            writeln!(out, "revoked {name}")?;
        }
    }
    Ok(())
}
