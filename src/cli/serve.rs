//! `cojobs serve [--listen ADDR]`: the HTTP API, the dashboard and
//! metrics ([`crate::serve`]). Without tokens it serves loopback only, and
//! says so; on any other address it refuses to start without tokens.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;

use super::{Error, Global, current_user, runtime};
use crate::serve::{AppState, Inner, auth};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The address to listen on (port 0: any free port, printed).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
}

pub fn run(g: &Global, args: Args, out: &mut dyn Write) -> Result<(), Error> {
    let _log = super::run::init_daemon_tracing("info");
    let sandbox = Arc::new(g.sandbox()?);
    let rt = runtime()?;
    rt.block_on(async {
        let store = g.runner_store().await?;
        let tokens = store.list_tokens().await?;
        let live = tokens.iter().filter(|t| t.revoked.is_none()).count();
        let open = live == 0;
        if open && !args.listen.ip().is_loopback() {
            return Err(Error::Input(format!(
                "refusing to serve on {} without tokens: anyone who reaches it would be an \
                 admin; create one with `cojobs token add NAME --role admin`, or listen on \
                 127.0.0.1",
                args.listen
            )));
        }
        let secret = auth::random_bytes()
            .map_err(|e| Error::Input(format!("no randomness for the CSRF secret: {e}")))?;
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let user = current_user();
        let state = AppState::new(Inner::new(
            store,
            sandbox,
            open,
            user.clone(),
            secret,
            shutdown,
        ));
        let mut said = Ok(());
        crate::serve::serve(args.listen, state, stop, |addr| {
            said = announce(out, addr, open, live, &user);
        })
        .await
        .map_err(|e| Error::Input(e.to_string()))?;
        said
    })
}

/// Say where the server listens and who may use it.
fn announce(
    out: &mut dyn Write,
    addr: SocketAddr,
    open: bool,
    live: usize,
    user: &str,
) -> Result<(), Error> {
    writeln!(out, "cojobs serve: listening on http://{addr}")?;
    if open {
        writeln!(
            out,
            "no tokens: loopback only, and every request acts as admin '{user}' \
             (create tokens with `cojobs token add` to require them)"
        )?;
    } else {
        writeln!(out, "{live} live token(s): every request needs one")?;
    }
    out.flush()?;
    Ok(())
}
