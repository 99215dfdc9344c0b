//! The end-to-end harness: real `zkpool` and `zkminer` processes on loopback (or an
//! in-process pool for protocol edges), a raw stratum connection, and helpers that
//! wait on observable state instead of sleeping.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader as AsyncBufReader},
    net::TcpStream,
};

pub use pool::api::Client as Api;

pub mod browser;
pub mod pg;
pub mod tools;

/// CPU seconds (user + system) in a `/proc/.../stat` line of a process or a
/// thread; 0 for a line that is not one (a process that has gone).
pub fn stat_cpu_secs(stat: &str) -> f64 {
    // The fields after the command name (which may hold spaces and parentheses)
    // start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 of the line; `rest` starts at field
    // 3. Both are in USER_HZ, 100 a second on Linux.
    (f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)) as f64 / 100.0
}

/// A workspace binary. `cargo test --workspace` builds them (the `zkpool-cli` and
/// miner packages have integration tests of their own, which makes cargo build
/// their bins).
pub fn bin(name: &str) -> PathBuf {
    let dir = match std::env::var_os("ZKPOOL_BIN_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            let exe = std::env::current_exe().expect("test binary path");
            exe.parent()
                .and_then(Path::parent)
                .expect("target/<profile>/deps/<test>")
                .to_path_buf()
        }
    };
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not found: build the binaries first (`cargo build --bins`, or run `cargo test --workspace`, which builds them)",
        path.display()
    );
    path
}

/// Config for test pools: short timeouts so failures show quickly; `extra` is
/// appended (TOML sections).
pub fn test_config(data: &Path, extra: &str) -> String {
    test_config_with(data, "", "", "", extra)
}

/// [`test_config`] with extra keys (TOML lines) in its `[stratum]`, `[http]` and
/// `[scheduler]` sections.
pub fn test_config_with(
    data: &Path,
    stratum: &str,
    http: &str,
    scheduler: &str,
    extra: &str,
) -> String {
    // The lease floor defaults to 20 s here; a caller may set its own (TOML refuses a key twice).
    let scheduler = if scheduler.contains("lease_min_secs") {
        scheduler.to_owned()
    } else {
        format!("lease_min_secs = 20.0\n{scheduler}")
    };
    // Tests that are not about client keys submit anonymous jobs, and every test
    // talks to its pool from one address, faster than a stranger may: unless the
    // test sets its own, keys are not required and request rates are high.
    let extra = if extra.contains("[payouts]") {
        extra.replacen("[payouts]", "[payouts]\nrequire_client_key = false", 1)
    } else {
        format!("{extra}\n[payouts]\nrequire_client_key = false\n")
    };
    let extra = if extra.contains("[limits]") {
        extra
    } else {
        format!("{extra}\n[limits]\n{TEST_RATES}")
    };
    format!(
        r#"
[storage]
data_dir = "{}"
[stratum]
listen = "127.0.0.1:0"
{stratum}
[http]
listen = "127.0.0.1:0"
{http}
[scheduler]
target_task_secs = 1.0
sweep_interval_secs = 0.2
{scheduler}
[circuits]
chain_steps = 16
{extra}
"#,
        data.display()
    )
}

/// `[limits]` keys for test pools, which one test process drives hard from one
/// address (a test that is about limits writes its own `[limits]`).
pub const TEST_RATES: &str = "jobs_per_minute = 60000\njobs_burst = 10000\nhttp_requests_per_second = 100000\ncircuits_per_hour = 100000\npreparing_per_caller = 8\nhttp_connections_per_ip = 1024\nstratum_handshakes_per_ip = 10000\n";

/// A `zkpool serve` process.
pub struct PoolProcess {
    pub child: Child,
    pub stratum: SocketAddr,
    pub http: SocketAddr,
    pub api: Api,
    /// `http://ADDR` or `https://ADDR`.
    pub base: String,
    pub config: PathBuf,
}

impl PoolProcess {
    /// Starts `zkpool serve --config CONFIG`, optionally on fixed addresses, and
    /// waits for its "serving" line.
    pub fn start(
        config: &Path,
        addrs: Option<(SocketAddr, SocketAddr)>,
        log: &Path,
    ) -> anyhow::Result<Self> {
        let mut cmd = Command::new(bin("zkpool"));
        // The config decides: an operator's exported token must not turn on the
        // admin API of a pool whose test expects it off.
        cmd.arg("serve")
            .arg("--config")
            .arg(config)
            .env_remove("ZKPOOL_ADMIN_TOKEN");
        if let Some((s, h)) = addrs {
            cmd.arg("--stratum-listen")
                .arg(s.to_string())
                .arg("--http-listen")
                .arg(h.to_string());
        }
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .context("spawn zkpool")?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            while let Some(Ok(line)) = lines.next() {
                if line.contains("serving:") {
                    let _ = tx.send(line);
                }
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(120))
            .with_context(|| format!("zkpool did not start; see {}", log.display()))?;
        // "zkpool X serving: stratum+tcp://A | http://B"
        let stratum = line
            .split("stratum+tcp://")
            .nth(1)
            .or_else(|| line.split("stratum+ssl://").nth(1))
            .and_then(|s| s.split_whitespace().next())
            .context("stratum address")?
            .parse()?;
        let scheme = if line.contains("https://") {
            "https"
        } else {
            "http"
        };
        let http: SocketAddr = line
            .split(&format!("{scheme}://"))
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .context("http address")?
            .parse()?;
        Ok(PoolProcess {
            child,
            stratum,
            http,
            api: Api::new(&format!("{scheme}://{http}")),
            base: format!("{scheme}://{http}"),
            config: config.to_owned(),
        })
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PoolProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `zkminer` process.
pub struct MinerProcess {
    pub child: Child,
    pub worker: String,
}

impl MinerProcess {
    pub fn start(
        pool: SocketAddr,
        worker: &str,
        threads: usize,
        cache: &Path,
        log: &Path,
    ) -> anyhow::Result<Self> {
        let pool = format!("stratum+tcp://{pool}");
        let threads = threads.to_string();
        let cache = cache.to_str().context("cache path is not UTF-8")?;
        Self::spawn(
            &[
                "--pool",
                &pool,
                "--worker",
                worker,
                "--threads",
                &threads,
                "--status-interval",
                "1",
                "--cache-dir",
                cache,
            ],
            worker,
            log,
        )
    }

    /// Starts `zkminer --config FILE` with nothing else on its command line.
    pub fn start_with_config(config: &Path, worker: &str, log: &Path) -> anyhow::Result<Self> {
        let config = config.to_str().context("config path is not UTF-8")?;
        Self::spawn(&["--config", config], worker, log)
    }

    /// `zkminer ARGS`, its output (stdout and stderr) appended to `log`.
    pub fn spawn(args: &[&str], worker: &str, log: &Path) -> anyhow::Result<Self> {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let child = Command::new(bin("zkminer"))
            .args(args)
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .context("spawn zkminer")?;
        Ok(MinerProcess {
            child,
            worker: worker.to_owned(),
        })
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for MinerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `check` every 100 ms until it returns `Some`, or fails after `timeout`
/// with `what` and the last value seen.
pub async fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {}s waiting for {what}", timeout.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A raw line-level stratum connection, for protocol edge tests.
pub struct RawConn {
    reader: AsyncBufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

impl RawConn {
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        let (r, w) = TcpStream::connect(addr).await?.into_split();
        Ok(RawConn {
            reader: AsyncBufReader::new(r),
            writer: w,
        })
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.writer.write_all(bytes).await?;
        Ok(())
    }

    pub async fn send(&mut self, v: &Value) -> anyhow::Result<()> {
        self.send_raw(format!("{v}\n").as_bytes()).await
    }

    /// The next line as JSON; `None` at end of stream.
    pub async fn recv(&mut self) -> anyhow::Result<Option<Value>> {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(30), self.reader.read_line(&mut line))
            .await
            .context("no line within 30s")??;
        if n == 0 {
            return Ok(None);
        }
        Ok(Some(serde_json::from_str(&line).with_context(|| {
            format!("pool sent non-JSON: {line:?}")
        })?))
    }

    /// The next message that is a response (skipping notifications, which are returned too).
    pub async fn response(&mut self) -> anyhow::Result<(Value, Vec<Value>)> {
        let mut notes = vec![];
        loop {
            let v = self
                .recv()
                .await?
                .context("connection closed while waiting for a response")?;
            if v.get("method").is_some() {
                notes.push(v);
            } else {
                return Ok((v, notes));
            }
        }
    }

    /// Subscribes and authorizes as `worker`; returns notifications seen meanwhile.
    pub async fn handshake(&mut self, worker: &str) -> anyhow::Result<Vec<Value>> {
        self.handshake_with(worker, None).await
    }

    /// [`RawConn::handshake`] with a password in `mining.authorize`.
    pub async fn handshake_with(
        &mut self,
        worker: &str,
        password: Option<&str>,
    ) -> anyhow::Result<Vec<Value>> {
        self.send(&serde_json::json!({"jsonrpc":"2.0","id":1,"method":"mining.subscribe","params":{"agent":"raw-test","protocol":"zkpool/1"}})).await?;
        let (r, mut notes) = self.response().await?;
        anyhow::ensure!(r.get("result").is_some(), "subscribe failed: {r}");
        self.send(&serde_json::json!({"jsonrpc":"2.0","id":2,"method":"mining.authorize","params":{"worker":worker,"password":password}})).await?;
        let (r, more) = self.response().await?;
        anyhow::ensure!(r.get("result").is_some(), "authorize failed: {r}");
        notes.extend(more);
        Ok(notes)
    }

    /// Waits for the next `mining.notify`.
    pub async fn next_notify(&mut self) -> anyhow::Result<Value> {
        loop {
            let v = self
                .recv()
                .await?
                .context("connection closed while waiting for a task")?;
            if v["method"] == "mining.notify" {
                return Ok(v["params"].clone());
            }
        }
    }
}

/// An in-process pool on loopback with a temporary data directory.
pub async fn inproc_pool(extra: &str) -> anyhow::Result<(pool::RunningPool, tempfile::TempDir)> {
    inproc_pool_with("", "", "", extra).await
}

/// [`inproc_pool`] with extra keys in the `[stratum]`, `[http]` and `[scheduler]` sections.
pub async fn inproc_pool_with(
    stratum: &str,
    http: &str,
    scheduler: &str,
    extra: &str,
) -> anyhow::Result<(pool::RunningPool, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let config = pool::Config::from_toml(
        &test_config_with(&dir.path().join("data"), stratum, http, scheduler, extra),
        "test",
    )?;
    let s = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let h = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    Ok((pool::start(config, s, h).await?, dir))
}

/// The proving keys of a `mining.notify` task, fetched by URL and checked against
/// its hash, as a miner does.
pub async fn task_keys(task: &Value) -> anyhow::Result<zk::CircuitKeys> {
    let url = task["key"]["url"]
        .as_str()
        .context("task without key url")?;
    let key_bytes = reqwest::get(url).await?.bytes().await?;
    let spec: zk::CircuitSpec = serde_json::from_value(task["spec"].clone())?;
    Ok(zk::CircuitKeys::from_pk_bytes(
        spec,
        &key_bytes,
        task["key"]["hash"]
            .as_str()
            .context("task without key hash")?,
    )?)
}

/// Proves every statement of a `mining.notify` task the way a miner does (key fetched
/// by URL and checked against its hash); returns the submit's `proofs` array.
pub async fn prove_task(task: &Value) -> anyhow::Result<Vec<Value>> {
    let keys = task_keys(task).await?;
    let field = |v: &Value| -> anyhow::Result<Vec<zk::Fr>> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|x| Ok(zk::field::parse_fr(x.as_str().context("not a string")?)?))
                    .collect()
            })
            .unwrap_or(Ok(vec![]))
    };
    let mut proofs = vec![];
    for st in task["statements"]
        .as_array()
        .context("task without statements")?
    {
        let statement = zk::Statement::new(field(&st["public"])?, field(&st["private"])?);
        proofs.push(
            serde_json::json!({"index": st["index"], "proof": keys.prove(&statement)?.to_hex()}),
        );
    }
    Ok(proofs)
}
