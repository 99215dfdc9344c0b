//! The outside programs some tests run: Chromium (the dashboard test), Prometheus's
//! `promtool` (the deploy tests), PostgreSQL (the store tests, see `pg.rs`), and Node.js with `interop/`'s npm packages (the
//! interop tests). The README's `cargo test --workspace` gets them by itself on a
//! machine with only the Rust toolchain: a test asks [`require`] for its program,
//! which finds it on `PATH`; when it is missing and this process can install Debian
//! packages (root, `apt-get`), it installs them, one install at a time across the
//! parallel test threads and processes (a file lock); otherwise it fails with the
//! exact command to run. No test is skipped for want of a tool.
//!
//! It uses nothing but std, because `pool/tests/deploy.rs` includes this file by
//! path: the `pool` package cannot depend on this crate, which depends on it.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::Command,
};

/// A program some test needs, and where it comes from.
#[derive(Debug, Clone, Copy)]
pub struct Tool {
    /// The name looked up on `PATH`.
    pub program: &'static str,
    /// An environment variable that names the program's path instead.
    pub env: &'static str,
    /// The Debian packages that provide it.
    pub packages: &'static [&'static str],
    /// Whether its package starts a service on install (prometheus does, and the
    /// install fails where no service can start, as in most containers): service
    /// starts are denied while it installs, as `.ci/run` does.
    pub deny_service_start: bool,
    /// The tests that need it, for the message when it cannot be had.
    pub needed_by: &'static str,
}

/// Every program a test may [`require`].
pub const TOOLS: &[Tool] = &[
    Tool {
        program: "chromium",
        env: "ZKPOOL_CHROMIUM",
        packages: &["chromium", "fonts-dejavu-core"],
        deny_service_start: false,
        needed_by: "the dashboard test (headless Chromium)",
    },
    Tool {
        program: "promtool",
        env: "ZKPOOL_PROMTOOL",
        packages: &["prometheus"],
        deny_service_start: true,
        needed_by: "the deploy tests (Prometheus's promtool)",
    },
    Tool {
        program: "amtool",
        env: "ZKPOOL_AMTOOL",
        packages: &["prometheus-alertmanager"],
        deny_service_start: true,
        needed_by: "the deploy tests (Alertmanager's amtool checks deploy/alertmanager)",
    },
    Tool {
        program: "node",
        env: "ZKPOOL_NODE",
        packages: &["nodejs", "npm"],
        deny_service_start: false,
        needed_by: "the interop tests (circomlibjs, snarkjs and circom2 run on Node.js)",
    },
    Tool {
        program: "initdb",
        env: "ZKPOOL_INITDB",
        packages: &["postgresql"],
        // Debian's postgresql package creates and starts a cluster on install.
        deny_service_start: true,
        needed_by: "the PostgreSQL store tests (a throw-away cluster, tests/src/pg.rs)",
    },
    Tool {
        program: "npm",
        env: "ZKPOOL_NPM",
        packages: &["nodejs", "npm"],
        deny_service_start: false,
        needed_by: "the interop tests (npm installs interop/'s packages)",
    },
];

/// What [`require`] does about a tool, decided from what it found.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// Run this program.
    Use(PathBuf),
    /// Install the tool's packages, then look again.
    Install,
    /// Fail the test with this message.
    Refuse(String),
}

/// The decision, without side effects: `overridden` is the path the tool's
/// environment variable names, `found` what `PATH` gave, `can_install` whether this
/// process may run `apt-get install`.
pub fn plan(
    tool: &Tool,
    overridden: Option<PathBuf>,
    found: Option<PathBuf>,
    can_install: bool,
) -> Plan {
    if let Some(path) = overridden {
        // An explicit path is used as given, or refused: installing a package
        // would not make that path appear.
        return if path.is_file() {
            Plan::Use(path)
        } else {
            Plan::Refuse(format!(
                "{}={} does not exist: point it at {} or unset it",
                tool.env,
                path.display(),
                tool.program
            ))
        };
    }
    match (found, can_install) {
        (Some(path), _) => Plan::Use(path),
        (None, true) => Plan::Install,
        (None, false) => Plan::Refuse(format!(
            "{} is not on PATH and this process cannot install it (that needs root and apt-get); {} needs it. Install it with:\n    {}\nor run .ci/run as root, which installs every tool the tests need; or set {} to its path",
            tool.program,
            tool.needed_by,
            install_command(tool),
            tool.env
        )),
    }
}

/// The shell command that installs `tool`, as the refusal shows it.
pub fn install_command(tool: &Tool) -> String {
    let install = format!(
        "sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends {}",
        tool.packages.join(" ")
    );
    if tool.deny_service_start {
        // The package's service cannot start in a container and fails the install.
        format!("printf '#!/bin/sh\\nexit 101\\n' | sudo tee /usr/sbin/policy-rc.d >/dev/null && sudo chmod +x /usr/sbin/policy-rc.d && {install}; sudo rm -f /usr/sbin/policy-rc.d")
    } else {
        install
    }
}

/// The path of the program named `name` (one of [`TOOLS`]), installing its
/// packages first when it is missing and this process can; the error says what to
/// run.
pub fn require(name: &str) -> Result<PathBuf, String> {
    require_found(name, &|| find_on_path(name))
}

/// [`require`], with `find` saying where the program is (or `None`) instead of a
/// look on `PATH`: for programs a package puts elsewhere, as Debian puts
/// PostgreSQL's server programs under `/usr/lib/postgresql/VERSION/bin`.
pub fn require_found(name: &str, find: &dyn Fn() -> Option<PathBuf>) -> Result<PathBuf, String> {
    let tool = TOOLS.iter().find(|t| t.program == name).ok_or_else(|| {
        let known: Vec<&str> = TOOLS.iter().map(|t| t.program).collect();
        format!(
            "no tool {name:?} is known to tests/src/tools.rs (known: {}); add it to TOOLS with its Debian packages",
            known.join(", ")
        )
    })?;
    let overridden = std::env::var_os(tool.env).map(PathBuf::from);
    let decide = || plan(tool, overridden.clone(), find(), can_install());
    match decide() {
        Plan::Use(path) => return Ok(path),
        Plan::Refuse(message) => return Err(message),
        Plan::Install => {}
    }
    let _lock = lock()?;
    // Another test may have installed it while this one waited for the lock.
    if let Plan::Use(path) = decide() {
        return Ok(path);
    }
    install(tool)?;
    find().ok_or_else(|| {
        format!(
            "installed {} but {} is still not found; install it by hand:\n    {}",
            tool.packages.join(" "),
            tool.program,
            install_command(tool)
        )
    })
}

/// Installs `dir`'s npm packages from its lockfile (`npm ci`) unless every one of
/// `packages` is already in `dir/node_modules`; Node.js and npm are [`require`]d
/// first. Serialised with the installs, so parallel tests run `npm ci` once.
pub fn npm_packages(dir: &Path, packages: &[&str]) -> Result<(), String> {
    let missing = || {
        packages
            .iter()
            .any(|p| !dir.join("node_modules").join(p).exists())
    };
    if !missing() {
        return Ok(());
    }
    require("node")?;
    let npm = require("npm")?;
    let _lock = lock()?;
    if !missing() {
        return Ok(());
    }
    run(
        Command::new(npm)
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(dir),
        &format!("npm ci in {}", dir.display()),
    )
}

/// `program` in a directory of `PATH`, if it is an executable file there.
pub fn find_on_path(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Whether this process runs as root (effective uid 0, from /proc).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

/// Root with apt-get on PATH.
fn can_install() -> bool {
    is_root() && find_on_path("apt-get").is_some()
}

/// An exclusive lock shared by every test process of this machine, held while
/// packages are installed: two `apt-get install`s at once fail on dpkg's lock, and
/// two `npm ci`s in one directory trample each other.
pub fn lock() -> Result<File, String> {
    let path = std::env::temp_dir().join("zkpool-test-tools.lock");
    let file = File::create(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    file.lock()
        .map_err(|e| format!("cannot lock {}: {e}", path.display()))?;
    Ok(file)
}

fn install(tool: &Tool) -> Result<(), String> {
    let policy = Path::new("/usr/sbin/policy-rc.d");
    let deny = tool.deny_service_start && !policy.exists();
    if deny {
        std::fs::write(policy, "#!/bin/sh\nexit 101\n")
            .and_then(|()| {
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::set_permissions(policy, std::fs::Permissions::from_mode(0o755))
            })
            .map_err(|e| format!("cannot write {}: {e}", policy.display()))?;
    }
    let outcome = run(Command::new("apt-get").arg("update"), "apt-get update").and_then(|()| {
        run(
            Command::new("apt-get")
                .args(["install", "-y", "--no-install-recommends"])
                .args(tool.packages)
                .env("DEBIAN_FRONTEND", "noninteractive"),
            &format!("apt-get install {}", tool.packages.join(" ")),
        )
    });
    if deny {
        let _ = std::fs::remove_file(policy);
    }
    outcome
}

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(20).collect();
    Err(format!(
        "{what} failed ({}):\n{}",
        out.status,
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tool that exists nowhere, to see every decision without installing anything.
    const NOWHERE: Tool = Tool {
        program: "zkpool-no-such-program-7f3a",
        env: "ZKPOOL_NO_SUCH_PROGRAM",
        packages: &["zkpool-no-such-package"],
        deny_service_start: true,
        needed_by: "no test",
    };

    #[test]
    fn a_missing_tool_is_installed_when_possible_and_otherwise_named_with_its_command() {
        let found = find_on_path(NOWHERE.program);
        assert_eq!(found, None);
        assert_eq!(plan(&NOWHERE, None, found.clone(), true), Plan::Install);
        let Plan::Refuse(message) = plan(&NOWHERE, None, found, false) else {
            panic!("a missing tool that cannot be installed must be refused");
        };
        assert!(
            message.contains("zkpool-no-such-program-7f3a is not on PATH")
                && message
                    .contains("apt-get install -y --no-install-recommends zkpool-no-such-package")
                && message.contains("/usr/sbin/policy-rc.d")
                && message.contains("ZKPOOL_NO_SUCH_PROGRAM"),
            "{message}"
        );
    }

    #[test]
    fn a_tool_on_path_or_named_by_its_variable_is_used_as_it_is() {
        let sh = find_on_path("sh").expect("sh is on PATH");
        assert_eq!(
            plan(&NOWHERE, None, Some(sh.clone()), true),
            Plan::Use(sh.clone())
        );
        assert_eq!(plan(&NOWHERE, Some(sh.clone()), None, false), Plan::Use(sh));
        // A variable naming a path that is not there is refused, never "fixed" by
        // installing a package.
        let Plan::Refuse(message) = plan(
            &NOWHERE,
            Some(PathBuf::from("/nonexistent/tool")),
            None,
            true,
        ) else {
            panic!("a variable naming a missing file must be refused");
        };
        assert!(
            message.contains("ZKPOOL_NO_SUCH_PROGRAM=/nonexistent/tool does not exist"),
            "{message}"
        );
    }

    #[test]
    fn an_unknown_tool_name_is_refused_listing_the_known_ones() {
        let e = require(NOWHERE.program).unwrap_err();
        assert!(
            e.contains("no tool \"zkpool-no-such-program-7f3a\"") && e.contains("promtool"),
            "{e}"
        );
    }
}
