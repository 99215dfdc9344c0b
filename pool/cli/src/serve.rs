//! `zkpool serve`: a pool from its config file, on its listening sockets, until
//! SIGTERM or Ctrl-C, then a drained shutdown.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context;
use pool::Config;
use tokio::net::TcpListener;

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Config file (TOML); every key is optional, see deploy/pool.toml.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Data directory (overrides storage.data_dir).
    #[arg(long)]
    data: Option<PathBuf>,
    /// PostgreSQL database for the records and the ledger (overrides
    /// storage.url): postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE. Without
    /// it (and without storage.url) the pool uses the embedded sled store.
    #[arg(long, env = STORAGE_URL_ENV, hide_env_values = true)]
    storage_url: Option<String>,
    /// Stratum listen address (overrides stratum.listen).
    #[arg(long)]
    stratum_listen: Option<std::net::SocketAddr>,
    /// HTTP listen address (overrides http.listen).
    #[arg(long)]
    http_listen: Option<std::net::SocketAddr>,
}

/// The environment variable that sets `http.admin_token`, over the config file:
/// a container or a systemd unit passes the secret without writing it into a file.
pub const ADMIN_TOKEN_ENV: &str = "ZKPOOL_ADMIN_TOKEN";

/// The environment variable that sets `storage.url` (as `--storage-url` does),
/// so a database password need not be written into a file or a command line.
pub const STORAGE_URL_ENV: &str = "ZKPOOL_STORAGE_URL";

pub fn load_config(
    path: Option<&Path>,
    data: Option<PathBuf>,
    storage_url: Option<String>,
) -> anyhow::Result<Config> {
    let mut c = match path {
        Some(p) => Config::from_file(p)?,
        None => Config::default(),
    };
    if let Some(d) = data {
        c.storage.data_dir = d;
    }
    if let Some(url) = storage_url {
        c.storage.url = Some(url);
        // The flag's value is checked as the file's would be.
        c.validate()?;
    }
    if let Some(token) = std::env::var_os(ADMIN_TOKEN_ENV) {
        let token = token
            .into_string()
            .map_err(|_| anyhow::anyhow!("{ADMIN_TOKEN_ENV} is not UTF-8"))?;
        // Empty is a mistake (an unset variable in a compose file), not "no token".
        anyhow::ensure!(
            !token.trim().is_empty(),
            "{ADMIN_TOKEN_ENV} is set but empty: give it a long random string, or unset it"
        );
        c.http.admin_token = Some(token);
    }
    Ok(c)
}

async fn bind(addr: std::net::SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen for {what} on {addr} (in use? change it with --{what}-listen)")
    })
}

pub async fn run(a: ServeArgs) -> anyhow::Result<()> {
    let mut config = load_config(a.config.as_deref(), a.data, a.storage_url)?;
    if let Some(s) = a.stratum_listen {
        config.stratum.listen = s;
    }
    if let Some(h) = a.http_listen {
        config.http.listen = h;
    }
    // One socket per miner: raise the soft open-file limit to the hard one, so a
    // pool can hold thousands of sessions without an operator's ulimit.
    let open_files = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the open-file limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE)
                .map(|(soft, _)| soft)
                .unwrap_or(0)
        }
    };
    let data_dir = config.storage.data_dir.clone();
    let database = config.storage.url.as_deref().map(pool::config::redact_url);
    let admin_from_env = std::env::var_os(ADMIN_TOKEN_ENV).is_some();
    let admin_on = config.http.admin_token.is_some();
    let scheme = config.payouts.scheme;
    let fee_bps = config.payouts.fee_bps;
    let stratum = bind(config.stratum.listen, "stratum").await?;
    let http = bind(config.http.listen, "http").await?;
    let pool = pool::start(config, stratum, http).await?;
    println!(
        "zkpool {} serving: stratum+{}://{} | {}://{}",
        env!("CARGO_PKG_VERSION"),
        if pool.state.tls().is_some() {
            "ssl"
        } else {
            "tcp"
        },
        pool.stratum_addr,
        if pool.state.http_tls().is_some() {
            "https"
        } else {
            "http"
        },
        pool.http_addr
    );
    for c in pool.state.circuits().all() {
        println!(
            "  circuit {:<9} {} ({} constraints)",
            c.record.name, c.record.id, c.record.constraints
        );
    }
    match &database {
        Some(url) => {
            println!("  storage:    PostgreSQL at {url} (records and ledger)");
            println!("  data:       {} (circuit keys)", data_dir.display());
        }
        None => println!("  data:       {}", data_dir.display()),
    }
    println!(
        "  admin API:  {}",
        match (admin_on, admin_from_env) {
            (true, true) => format!("on (token from {ADMIN_TOKEN_ENV})"),
            (true, false) => "on (http.admin_token)".to_owned(),
            (false, _) => format!(
                "off: operator commands are refused; set http.admin_token or {ADMIN_TOKEN_ENV}"
            ),
        }
    );
    println!(
        "  payouts:    {scheme}, fee {}.{:02} %",
        fee_bps / 100,
        fee_bps % 100
    );
    println!(
        "  keys:       a single-party setup: whoever reads {} can forge proofs; keep it private",
        data_dir.display()
    );
    println!("  open files: up to {open_files} (about that many miner sessions)");
    let token = pool.token();
    tokio::select! {
        _ = miner::process::wait_for_signal() => {}
        _ = token.cancelled() => {}
    }
    println!("shutting down: miners are told to reconnect, work in flight is drained");
    pool.shutdown(Duration::from_secs(10)).await;
    Ok(())
}
