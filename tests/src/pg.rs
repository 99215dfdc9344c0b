//! A PostgreSQL server for tests: the one `ZKPOOL_TEST_PG_URL` names
//! (`postgres://user@host:port/db`, a role that may create databases), or else a
//! throw-away cluster of this test process's own, made with `initdb` in a temporary
//! directory and listening on a free loopback port. Each test takes a fresh
//! database of it ([`Server::fresh_database`]), so tests running in parallel see
//! nothing of each other.
//!
//! The server programs are found on `PATH` or under `/usr/lib/postgresql/*/bin`
//! (where Debian puts them), and installed ([`tools`]) when missing and this
//! process can. PostgreSQL refuses to run as root, and CI runs as root: then the
//! cluster belongs to a system user `zkpool-test` (made with `useradd` if missing)
//! and its programs run as that user (`setpriv`, or `runuser`).
//!
//! The cluster ends with the test process, however that ends: it is started by a
//! small shell script that holds the read end of a pipe whose write end only this
//! process has. When this process exits (or is killed), the script reads the end
//! of its input, stops the server and removes the directory. A `static` is never
//! dropped, so a `Drop` guard could not do this.
//!
//! Like `tools.rs`, it uses nothing but std: `pool/tests/store.rs` includes both
//! files by path, because the `pool` package cannot depend on this crate.

use std::{
    io::{BufRead, BufReader, Read},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    sync::{
        atomic::{AtomicU32, Ordering},
        Mutex, OnceLock,
    },
};

use super::tools;

/// Names an existing server to use instead of a throw-away cluster.
pub const URL_ENV: &str = "ZKPOOL_TEST_PG_URL";

/// The unprivileged user a root test process runs the cluster as.
pub const USER: &str = "zkpool-test";

/// A PostgreSQL server tests may create databases on.
pub struct Server {
    /// A URL of the server's maintenance database (`postgres`), or the one
    /// `ZKPOOL_TEST_PG_URL` names.
    url: String,
    /// `createdb` of the server's own installation (or of the one found).
    createdb: PathBuf,
    /// The running cluster, when it is this process's own: the pipe into its
    /// script, whose closing (at this process's exit) stops it.
    _cluster: Option<Mutex<(Child, ChildStdin)>>,
}

/// The test server of this process, started by the first test that asks.
pub fn server() -> Result<&'static Server, String> {
    static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
    SERVER
        .get_or_init(|| match std::env::var(URL_ENV) {
            Ok(url) if !url.is_empty() => Ok(Server {
                createdb: bin_dir()?.join("createdb"),
                url,
                _cluster: None,
            }),
            _ => start_cluster(),
        })
        .as_ref()
        .map_err(Clone::clone)
}

impl Server {
    /// The URL of the server's maintenance database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Creates a new, empty database whose name starts with `label` and returns
    /// its URL.
    pub fn fresh_database(&self, label: &str) -> Result<String, String> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let label: String = label
            .chars()
            .map(|c| match c {
                'a'..='z' | '0'..='9' => c,
                'A'..='Z' => c.to_ascii_lowercase(),
                _ => '_',
            })
            .take(40)
            .collect();
        let name = format!(
            "{label}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let out = Command::new(&self.createdb)
            .arg(format!("--maintenance-db={}", self.url))
            .arg(&name)
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.createdb.display()))?;
        if !out.status.success() {
            return Err(format!(
                "createdb {name} on {} failed ({}): {}",
                self.url,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(with_database(&self.url, &name))
    }
}

/// A throw-away cluster of the caller's own, not shared with other tests, that
/// it may stop and start ([`Server::crash`], [`Server::restart`]): PostgreSQL
/// going away under a running pool. `ZKPOOL_TEST_PG_URL` does not apply.
pub fn own_server() -> Result<Server, String> {
    start_cluster()
}

impl Server {
    /// Stops the server as a crash would (`pg_ctl stop -m immediate`: every
    /// connection is cut, nothing is checkpointed) and returns once it no longer
    /// accepts connections. Only for an [`own_server`].
    pub fn crash(&self) -> Result<(), String> {
        self.order("stop", false)
    }

    /// Starts the server again (it recovers from its WAL) and returns once it
    /// accepts connections (`pg_isready`).
    pub fn restart(&self) -> Result<(), String> {
        self.order("start", true)
    }

    fn order(&self, order: &str, up: bool) -> Result<(), String> {
        use std::io::Write;
        let cluster = self
            ._cluster
            .as_ref()
            .ok_or("not a cluster of this process: it cannot be stopped or started")?;
        {
            let mut guard = cluster.lock().map_err(|e| e.to_string())?;
            writeln!(guard.1, "{order}").map_err(|e| format!("cannot order {order}: {e}"))?;
        }
        let port: u16 = self
            .url
            .rsplit(':')
            .next()
            .and_then(|p| p.split('/').next())
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("no port in {}", self.url))?;
        let isready = bin_dir()?.join("pg_isready");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            // Accepting connections, not only listening: a server recovering
            // from its WAL listens and refuses ("not yet accepting").
            let accepting = Command::new(&isready)
                .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if accepting == up {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(format!("the server did not {order} within 60 s"));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

/// `url` with its database replaced by `name`: the path after the host, before
/// any `?` parameters.
pub fn with_database(url: &str, name: &str) -> String {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let path_start = url[after_scheme..]
        .find(['/', '?'])
        .map_or(url.len(), |i| after_scheme + i);
    let query = url[path_start..]
        .find('?')
        .map_or("", |i| &url[path_start + i..]);
    format!("{}/{name}{query}", &url[..path_start])
}

/// The directory of PostgreSQL's server programs (`initdb`, `pg_ctl`,
/// `createdb`), installing Debian's `postgresql` when none is found.
pub fn bin_dir() -> Result<PathBuf, String> {
    let initdb = tools::require_found("initdb", &find_initdb)?;
    let real = initdb.canonicalize().unwrap_or(initdb);
    Ok(real
        .parent()
        .expect("a program's path has a directory")
        .to_owned())
}

/// `initdb` on `PATH`, else the newest under `/usr/lib/postgresql/*/bin`.
fn find_initdb() -> Option<PathBuf> {
    if let Some(path) = tools::find_on_path("initdb") {
        return Some(path);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let initdb = e.path().join("bin/initdb");
            initdb.is_file().then_some((version, initdb))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, p)| p)
}

/// Initialises and starts the cluster, then waits for the script's word that the
/// server accepts connections (`pg_ctl start -w`); the error carries the
/// server's log. A port taken between choosing and binding it is tried again.
fn start_cluster() -> Result<Server, String> {
    let bin = bin_dir()?;
    let run_as = if tools::is_root() {
        Some(unprivileged_user()?)
    } else {
        None
    };
    let mut last = String::new();
    for _ in 0..3 {
        match start_once(&bin, run_as.as_ref()) {
            Ok(server) => return Ok(server),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// What starts and stops the cluster: `$1` the directory, `$2` the port, `$3`
/// the programs' directory. fsync is off: a test cluster never outlives a
/// machine crash, and the tests are many small commits.
const SCRIPT: &str = r#"
dir=$1 port=$2 bin=$3
# A test process killed while the cluster starts must not take the script with
# it (SIGPIPE on "ready"): the script goes on, finds its input closed, and stops
# the server it has just started.
trap '' PIPE
if ! "$bin/initdb" -D "$dir/data" -U postgres --auth=trust --no-sync -E UTF8 --locale=C >"$dir/initdb.log" 2>&1; then
    cat "$dir/initdb.log" >&2; rm -rf "$dir"; exit 1
fi
opts="-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
if ! "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 -o "$opts" start >/dev/null 2>&1; then
    cat "$dir/server.log" >&2; "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1; rm -rf "$dir"; exit 1
fi
echo ready
# The test process may be gone from here on: write nowhere it would read.
exec >/dev/null 2>&1
# Until the test process ends (its end of the pipe closes): its orders to stop
# the server as a crash would, and to start it again.
while read -r order; do
    case "$order" in
        stop) "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop ;;
        start) "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 -o "$opts" start ;;
    esac
done
"$bin/pg_ctl" -D "$dir/data" -m fast -w stop
rm -rf "$dir"
"#;

fn start_once(bin: &Path, run_as: Option<&(u32, u32)>) -> Result<Server, String> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port: {e}"))?
        .port();
    let dir = std::env::temp_dir().join(format!(
        "zkpool-pg-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut cmd = match run_as {
        Some(&(uid, gid)) => {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .map_err(|e| format!("cannot chown {} to {USER}: {e}", dir.display()))?;
            if let Some(setpriv) = tools::find_on_path("setpriv") {
                let mut c = Command::new(setpriv);
                c.args([
                    &format!("--reuid={uid}"),
                    &format!("--regid={gid}"),
                    "--clear-groups",
                    "sh",
                ]);
                c
            } else {
                let mut c = Command::new("runuser");
                c.args(["-u", USER, "--", "sh"]);
                c
            }
        }
        None => Command::new("sh"),
    };
    cmd.arg("-c")
        .arg(SCRIPT)
        .arg("zkpool-test-pg")
        .arg(&dir)
        .arg(port.to_string())
        .arg(bin)
        // The script runs in the cluster's directory, which its user can enter.
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start PostgreSQL's script: {e}"))?;
    let stdin = child.stdin.take().expect("stdin is piped");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("stdout is piped");
    let _ = BufReader::new(stdout).read_line(&mut line);
    if line.trim() != "ready" {
        let mut log = String::new();
        if let Some(mut stderr) = child.stderr.take() {
            let _ = stderr.read_to_string(&mut log);
        }
        drop(stdin);
        let status = child.wait().map_err(|e| e.to_string())?;
        let _ = std::fs::remove_dir_all(&dir);
        return Err(format!(
            "PostgreSQL (from {}) did not start on port {port} ({status}):\n{log}",
            bin.display()
        ));
    }
    Ok(Server {
        url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        createdb: bin.join("createdb"),
        _cluster: Some(Mutex::new((child, stdin))),
    })
}

/// The uid and gid of [`USER`], made first (a system user without a home or a
/// shell) when it does not exist.
fn unprivileged_user() -> Result<(u32, u32), String> {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, USER]).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().parse().ok())?
    };
    if id("-u").is_none() {
        // Serialised with every other test process's installs and user adds.
        let _lock = tools::lock()?;
        if id("-u").is_none() {
            let out = Command::new("useradd")
                .args([
                    "--system",
                    "--no-create-home",
                    "--home-dir",
                    "/nonexistent",
                    "--shell",
                    "/usr/sbin/nologin",
                    USER,
                ])
                .output()
                .map_err(|e| format!("cannot run useradd (PostgreSQL refuses to run as root, so the tests run it as {USER}): {e}"))?;
            if !out.status.success() && id("-u").is_none() {
                return Err(format!(
                    "useradd {USER} failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
    }
    match (id("-u"), id("-g")) {
        (Some(uid), Some(gid)) => Ok((uid, gid)),
        _ => Err(format!("cannot read the uid and gid of {USER}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_name_replaces_the_urls_path_and_keeps_its_parameters() {
        assert_eq!(
            with_database("postgres://u@h:5/postgres", "t_1"),
            "postgres://u@h:5/t_1"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "t_1"),
            "postgres://u:p@h/t_1?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "t_1"), "postgres://h/t_1");
        assert_eq!(
            with_database("postgres://h?host=/run", "t_1"),
            "postgres://h/t_1?host=/run"
        );
    }
}
