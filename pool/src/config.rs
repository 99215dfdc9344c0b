//! The pool's configuration: one TOML file, every key optional with a documented
//! default, unknown keys refused, and values validated into typed settings.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use serde::Deserialize;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The TOML is malformed or has an unknown key.
    #[error("config {path}: {detail}")]
    Parse { path: String, detail: String },
    /// A value is out of range.
    #[error("config: {key} {problem}")]
    Invalid { key: &'static str, problem: String },
}

/// The pool configuration, as written in `pool.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub storage: StorageConfig,
    pub stratum: StratumConfig,
    pub http: HttpConfig,
    pub scheduler: SchedulerConfig,
    pub circuits: CircuitsConfig,
    pub verifier: VerifierConfig,
    pub bans: BansConfig,
    pub payouts: PayoutsConfig,
    pub limits: LimitsConfig,
    pub aggregation: AggregationConfig,
}

/// Aggregation: every completed job's result carries SnarkPack aggregates of its
/// proofs (`zk::aggregate`), which a client checks instead of every proof.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AggregationConfig {
    /// Aggregate completed jobs' proofs. Default true.
    pub enabled: bool,
    /// Two snarkjs `.ptau` files from two **independent** powers-of-tau ceremonies
    /// (each must have at least `2 x run` powers). Empty (the default): the
    /// insecure test SRS, whose secrets are public, so its aggregates prove nothing
    /// to a client; the pool says so at start, in `/v1/status` and in every check.
    pub ptau: Vec<std::path::PathBuf>,
    /// Statements per aggregate (a power of two, 1 to 65,536): a job's proofs are
    /// aggregated in runs of this many. Default 1024.
    pub run: usize,
    /// Jobs with more statements than this get no aggregate (aggregation costs the
    /// pool about 14 ms of CPU a proof). Default 4096.
    pub max_statements: u64,
}

impl Default for AggregationConfig {
    fn default() -> Self {
        AggregationConfig {
            enabled: true,
            ptau: Vec::new(),
            run: 1024,
            max_statements: 4096,
        }
    }
}

/// What one caller may make the pool spend: every endpoint and message is open to
/// strangers, so each costly thing has a bound here, and the defaults are what a
/// pool on the open internet should run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Poseidon hashes the pool may run natively to prepare one job (a chain job's
    /// segments x steps, a batch job's statement checks); about 27 us each, so the
    /// default is about a second of the pool's CPU. Default 32768.
    pub job_native_hashes: u64,
    /// wasm instructions the pool may run to evaluate one circom job's statements,
    /// charged what they spend (about the circuit's sample's fuel each; each is
    /// also bounded by four times that, and by what the job's budget has left,
    /// so statements dearer than the sample never overspend it). About 3 s of the pool's
    /// CPU: one statement of a 2^18-constraint Poseidon chain, eight of a 2^16
    /// one; raise it for larger jobs of large circuits. Default 4000000000.
    pub job_witness_fuel: u64,
    /// Longest deadline a job may ask for, in seconds. Default 31536000 (a year).
    pub max_deadline_secs: u64,
    /// Largest `POST /v1/circuits` body (the three files, base64). Default 64 MiB.
    pub circuit_upload_bytes: usize,
    /// Jobs and circuit registrations being prepared at once (CPU work off the
    /// async workers), over every caller; 0 = one per core. Default 0.
    pub preparing: usize,
    /// Of those, at once per client (or per address without a key). Default 1.
    pub preparing_per_caller: usize,
    /// `POST /v1/jobs` per client (or address) per minute, after a burst of
    /// `jobs_burst`. Default 600.
    pub jobs_per_minute: u32,
    /// Default 60.
    pub jobs_burst: u32,
    /// `POST /v1/circuits` per client (or address) per hour, after a burst of 5.
    /// Default 30.
    pub circuits_per_hour: u32,
    /// Requests per second from one address to the HTTP API, after a burst of
    /// four times as many. Default 100.
    pub http_requests_per_second: u32,
    /// Open HTTP connections at once; more wait in the kernel's queue. Default 1024.
    pub http_connections: usize,
    /// Open HTTP connections from one address. Default 64.
    pub http_connections_per_ip: usize,
    /// Seconds a client has to send a request's headers (and an idle kept-alive
    /// connection lives). Default 10.
    pub http_header_timeout_secs: u64,
    /// Seconds a whole request (headers and body) may take to arrive. Default 120.
    pub http_request_timeout_secs: u64,
    /// Seconds a response may wait for the client to read any of it (a rig
    /// downloading a key slowly is fine; one that reads nothing is closed). Default 30.
    pub http_write_timeout_secs: u64,
    /// Seconds one write to a miner may take before its session is closed (a
    /// miner that stops reading must not hold its session). Default 10.
    pub stratum_write_timeout_secs: u64,
    /// Connections from one address that have not authorized yet. Default 64.
    pub stratum_handshakes_per_ip: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            job_native_hashes: 32_768,
            job_witness_fuel: 4_000_000_000,
            max_deadline_secs: 31_536_000,
            circuit_upload_bytes: 64 << 20,
            preparing: 0,
            preparing_per_caller: 1,
            jobs_per_minute: 600,
            jobs_burst: 60,
            circuits_per_hour: 30,
            http_requests_per_second: 100,
            http_connections: 1024,
            http_connections_per_ip: 64,
            http_header_timeout_secs: 10,
            http_request_timeout_secs: 120,
            http_write_timeout_secs: 30,
            stratum_write_timeout_secs: 10,
            stratum_handshakes_per_ip: 64,
        }
    }
}

/// How verified work is paid (see the README's worked examples). Amounts are
/// integers in the smallest unit.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PayoutsConfig {
    /// `prop` (default): a finished job's reward minus the fee, split by the work
    /// done on it; `pplns`: job rewards and rewards recorded with `zkpool rewards
    /// add` split over the last `pplns_window_work` units of work; `pps`: each
    /// share paid at once from the pool's funds at `pps_price_per_mwork`.
    pub scheme: payouts::Scheme,
    /// Pool fee in basis points (100 = 1 %). Default 100.
    pub fee_bps: u32,
    /// PPS price: smallest units per 1,000,000 units of work. Default 1000.
    pub pps_price_per_mwork: u64,
    /// PPLNS window in units of work (constraints). Default 100,000,000.
    pub pplns_window_work: u64,
    /// Smallest balance `zkpool payouts plan` pays out. Default 1,000,000 (one
    /// unit when the unit has 6 decimals).
    pub threshold: u64,
    /// Refuse jobs and circuit uploads without a client API key, even reward-0
    /// ones. Default true: a pool that takes anonymous jobs lets strangers spend
    /// its CPU and its miners' time, and see no one's jobs but the public ones.
    pub require_client_key: bool,
    /// Smallest price, in smallest units per 1,000,000 units of work, at which a
    /// job's work joins the pool-wide schemes (paid from the pool's funds under
    /// PPS, counted in the PPLNS window). A job that pays less (a free job, say)
    /// is still proven, and its miners are paid from its own reward only.
    /// Default: `pps_price_per_mwork`.
    pub min_price_per_mwork: Option<u64>,
    /// Automatic payouts: every this many seconds, plan a batch of every miner
    /// balance at or over `threshold` and hand it to `hook`. Default 0: off
    /// (batches are planned and confirmed by hand, `zkpool payouts`).
    pub auto_interval_secs: u64,
    /// The program that pays a batch, as an argument list (no shell), e.g.
    /// `["/usr/local/bin/pay-batch", "--network", "main"]`. It gets the batch as
    /// CSV (`batch,addr,amount`) on stdin and `ZKPOOL_BATCH` / `ZKPOOL_BATCH_TOTAL`
    /// in its environment; exiting 0 with the payment's transaction reference as
    /// the last line of its output confirms the batch. Anything else (an error,
    /// no reference, a timeout) leaves the batch planned for the operator, and no
    /// new batch is planned until it is confirmed or voided: a failed payment may
    /// have paid in part, and paying again could pay twice.
    pub hook: Vec<String>,
    /// Seconds the hook may run before it is stopped (and its batch left planned).
    pub hook_timeout_secs: u64,
    /// What an amount is counted in, shown after every amount on the dashboard
    /// and in the CLI's tables (1-12 letters, digits, `-` or `_`). Display only:
    /// the books keep integers in the smallest unit. Default `ZKP`.
    pub unit: String,
    /// How many decimals the unit has: an amount of 1,500,000 with 6 decimals is
    /// shown as `1.500000 ZKP`. At most 18. Default 6.
    pub decimals: u32,
}

impl Default for PayoutsConfig {
    fn default() -> Self {
        let p = payouts::Policy::default();
        PayoutsConfig {
            scheme: p.scheme,
            fee_bps: p.fee_bps,
            pps_price_per_mwork: p.pps_price_per_mwork,
            pplns_window_work: p.pplns_window_work,
            threshold: 1_000_000,
            require_client_key: true,
            min_price_per_mwork: None,
            auto_interval_secs: 0,
            hook: vec![],
            hook_timeout_secs: 300,
            unit: "ZKP".into(),
            decimals: 6,
        }
    }
}

impl PayoutsConfig {
    /// An amount in the smallest unit as a person reads it, with the unit's
    /// decimals and name: `1.500000 ZKP` (see [`format_amount`]).
    pub fn show(&self, amount: u64) -> String {
        format!("{} {}", format_amount(amount, self.decimals), self.unit)
    }

    /// The price a job must pay for its work to join PPS or PPLNS.
    pub fn min_price(&self) -> u64 {
        self.min_price_per_mwork.unwrap_or(self.pps_price_per_mwork)
    }

    pub fn policy(&self) -> payouts::Policy {
        payouts::Policy {
            scheme: self.scheme,
            fee_bps: self.fee_bps,
            pps_price_per_mwork: self.pps_price_per_mwork,
            pplns_window_work: self.pplns_window_work,
        }
    }
}

/// An integer amount in the smallest unit written with `decimals` decimals, by
/// integer arithmetic only (no float rounds it): `format_amount(1_500_000, 6)` is
/// `1.500000`, `format_amount(7, 0)` is `7`.
pub fn format_amount(amount: u64, decimals: u32) -> String {
    let digits = amount.to_string();
    let d = decimals as usize;
    if d == 0 {
        return digits;
    }
    let padded = format!("{digits:0>width$}", width = d + 1);
    let (whole, frac) = padded.split_at(padded.len() - d);
    format!("{whole}.{frac}")
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Directory of the sled database and key files. Default `./zkpool-data`.
    /// With `url` set, the circuits' key files are still kept here.
    pub data_dir: PathBuf,
    /// A PostgreSQL database for the records and the ledger,
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`. Default: none, the
    /// embedded sled database in `data_dir`.
    pub url: Option<String>,
    /// With `url`: how long a pool process's claims on statements outlive its
    /// last lease renewal (it renews every second), so how soon the others
    /// take over the work of one that died. Default 10 seconds.
    pub node_lease_secs: f64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: PathBuf::from("./zkpool-data"),
            url: None,
            node_lease_secs: 10.0,
        }
    }
}

impl StorageConfig {
    /// What `problem` says about `storage.url`, if anything is wrong with it.
    fn check_url(url: &str) -> Result<(), String> {
        const FORM: &str = "postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE";
        const OR_SLED: &str =
            "or leave storage.url out to use the embedded sled store in storage.data_dir";
        if url.trim().is_empty() {
            return Err(format!(
                "is empty: give a PostgreSQL URL, {FORM}, {OR_SLED}"
            ));
        }
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(format!(
                "{:?} is not a PostgreSQL URL: it must look like {FORM}, {OR_SLED}",
                redact_url(url)
            ));
        }
        url.parse::<tokio_postgres::Config>()
            .map(|_| ())
            .map_err(|e| {
                format!(
                    "{:?} is not a valid PostgreSQL URL ({e}): it must look like {FORM}, {OR_SLED}",
                    redact_url(url)
                )
            })
    }
}

/// `url` with any password replaced by `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    // The user info ends at the last `@` before the host's path.
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    match rest[..at].find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end],
            &rest[..colon],
            &rest[at..]
        ),
        None => url.to_owned(),
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StratumConfig {
    /// Address the stratum server listens on. Default `0.0.0.0:3333`.
    pub listen: SocketAddr,
    /// Longest accepted line in bytes, newline excluded. Default 65536.
    pub max_line: usize,
    /// Seconds a new connection has to subscribe and then to authorize. Default 10.
    pub handshake_timeout_secs: u64,
    /// Seconds of silence after which a session is closed. Default 120.
    pub idle_timeout_secs: u64,
    /// Seconds between the miner's keepalives the pool asks for. Default 15.
    pub ping_interval_secs: u64,
    /// Most concurrent sessions; more are refused with a clear error. Default 10000.
    pub max_sessions: usize,
    /// Most concurrent sessions from one IP address. Default 256 (a farm behind NAT).
    pub max_sessions_per_ip: usize,
    /// Refuse `mining.authorize` without the account's worker token (issued with
    /// `zkpool workers token ADDR`). Default false: an account that has a token
    /// needs it anyway, so nobody else can mine, or be banned, under its name.
    pub require_worker_token: bool,
    /// Seconds a closed session's leased tasks wait for the rig to reconnect and
    /// resume them (`mining.subscribe` with its `resume` token) before they are
    /// re-queued; 0 re-queues at once. Default 10.
    pub resume_grace_secs: u64,
    /// PEM certificate chain: with `tls_key`, the stratum port speaks TLS only
    /// (`stratum+ssl://`). Default: none (plain TCP).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// The stratum URL miners are told to use (the dashboard's "how to connect"
    /// box), e.g. `stratum+tcp://pool.example:3333`. Default: `stratum+ssl://`
    /// with TLS, else `stratum+tcp://`, then the host of `http.public_url` when it
    /// is set, else the listen address (127.0.0.1 if it listens on all
    /// addresses), and the port the stratum server listens on.
    pub public_url: Option<String>,
}

impl Default for StratumConfig {
    fn default() -> Self {
        StratumConfig {
            listen: "0.0.0.0:3333".parse().expect("literal address"),
            max_line: stratum::DEFAULT_MAX_LINE,
            handshake_timeout_secs: 10,
            idle_timeout_secs: 120,
            ping_interval_secs: 15,
            max_sessions: 10_000,
            max_sessions_per_ip: 256,
            require_worker_token: false,
            resume_grace_secs: 10,
            tls_cert: None,
            tls_key: None,
            public_url: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address of the HTTP API. Default `0.0.0.0:8080`.
    pub listen: SocketAddr,
    /// Base URL miners use to fetch proving keys, e.g. `http://pool.example:8080`.
    /// Default: `http://` + the listen address (127.0.0.1 if it listens on all addresses).
    pub public_url: Option<String>,
    /// Largest accepted request body in bytes. Default 16 MiB.
    pub max_body_bytes: usize,
    /// Most statements in one job. Default 100000.
    pub max_job_statements: usize,
    /// Bearer token for operator endpoints (`/v1/bans`); unset: they are disabled.
    pub admin_token: Option<String>,
    /// PEM certificate chain: with `tls_key`, the API is served over HTTPS only.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `http.tls_cert`.
    pub tls_key: Option<PathBuf>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "0.0.0.0:8080".parse().expect("literal address"),
            public_url: None,
            max_body_bytes: 16 << 20,
            max_job_statements: 100_000,
            admin_token: None,
            tls_cert: None,
            tls_key: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerConfig {
    /// Seconds a task should take on the worker it is leased to. Default 10.
    pub target_task_secs: f64,
    /// Shortest lease in seconds; a lease is max(3 x expected task time, this). Default 60.
    pub lease_min_secs: f64,
    /// Most statements in one task (also bounded by the line limit). Default 256.
    pub max_statements_per_task: usize,
    /// Tasks leased to one session at once: one proving, the rest queued so the rig
    /// never waits on the network. Default 2.
    pub tasks_per_session: usize,
    /// Seconds between lease-expiry sweeps. Default 1.
    pub sweep_interval_secs: f64,
    /// Different workers whose attempt at a statement failed (invalid proofs,
    /// expired leases) after which its job fails and the unearned reward is
    /// refunded; 0: never. Default 5.
    pub max_attempts: u32,
    /// At the tail of a job, a task running more than twice its worker's expected
    /// time, and at least this many seconds, gets a backup lease on another
    /// worker; the first verified proof wins. 0: no backup leases. Default 10.
    pub backup_after_secs: f64,
    /// A job whose deadline is less than this many seconds away is served before
    /// fairness across clients, earliest deadline first. Default 600.
    pub urgent_secs: u64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            target_task_secs: 10.0,
            lease_min_secs: 60.0,
            max_statements_per_task: 256,
            tasks_per_session: 2,
            sweep_interval_secs: 1.0,
            max_attempts: 5,
            backup_after_secs: 10.0,
            urgent_secs: 600,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CircuitsConfig {
    /// Poseidon hashes per segment of the built-in `chain` circuit. Default 64.
    pub chain_steps: u32,
}

impl Default for CircuitsConfig {
    fn default() -> Self {
        CircuitsConfig {
            chain_steps: zk::circuits::DEFAULT_CHAIN_STEPS,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BansConfig {
    /// Invalid submits within the window that ban a worker and its address. Default 5.
    pub invalid_threshold: usize,
    /// Seconds over which invalid submits are counted. Default 600.
    pub window_secs: u64,
    /// First ban in seconds; each further ban of the same target doubles (max a day). Default 600.
    pub ban_secs: u64,
    /// Ban the address of every worker banned. Default false: honest rigs share
    /// addresses (a farm behind NAT); see `names_per_ip` instead.
    pub per_ip: bool,
    /// Ban an address once this many different worker names from it were banned
    /// within `window_secs` (renaming the worker does not escape a ban); 0: never.
    /// Default 3.
    pub names_per_ip: usize,
}

impl Default for BansConfig {
    fn default() -> Self {
        BansConfig {
            invalid_threshold: 5,
            window_secs: 600,
            ban_secs: 600,
            per_ip: false,
            names_per_ip: 3,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerifierConfig {
    /// Proof verifications run at once on the blocking pool; 0 = one per core. Default 0.
    pub threads: usize,
    /// Check queued proofs together (one multi-Miller loop per batch, bisection to
    /// find bad ones). `false` verifies proof by proof: only for measuring the
    /// difference (`zkpool-bench --baseline`). Default true.
    pub batch: bool,
}

impl Default for VerifierConfig {
    fn default() -> Self {
        VerifierConfig {
            threads: 0,
            batch: true,
        }
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn from_file(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// Parses and validates config text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let c: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_owned(),
            detail: e.to_string(),
        })?;
        c.validate()?;
        Ok(c)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        fn positive(key: &'static str, v: f64) -> Result<(), ConfigError> {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(ConfigError::Invalid {
                    key,
                    problem: format!("must be a positive number of seconds, got {v}"),
                })
            }
        }
        fn nonzero(key: &'static str, v: u64) -> Result<(), ConfigError> {
            if v > 0 {
                Ok(())
            } else {
                Err(ConfigError::Invalid {
                    key,
                    problem: "must be at least 1".into(),
                })
            }
        }
        positive(
            "scheduler.target_task_secs",
            self.scheduler.target_task_secs,
        )?;
        if self.payouts.auto_interval_secs > 0 {
            if self
                .payouts
                .hook
                .first()
                .is_none_or(|p| p.trim().is_empty())
            {
                return Err(ConfigError::Invalid {
                    key: "payouts.hook",
                    problem: "automatic payouts (payouts.auto_interval_secs > 0) need the program that pays a batch, e.g. hook = [\"/usr/local/bin/pay-batch\"]; or set auto_interval_secs = 0 to plan and confirm batches by hand".into(),
                });
            }
            nonzero("payouts.hook_timeout_secs", self.payouts.hook_timeout_secs)?;
        }
        positive("scheduler.lease_min_secs", self.scheduler.lease_min_secs)?;
        let backup = self.scheduler.backup_after_secs;
        if !(backup.is_finite() && backup >= 0.0) {
            return Err(ConfigError::Invalid {
                key: "scheduler.backup_after_secs",
                problem: format!(
                    "must be 0 (no backup leases) or a positive number of seconds, got {backup}"
                ),
            });
        }
        positive(
            "scheduler.sweep_interval_secs",
            self.scheduler.sweep_interval_secs,
        )?;
        nonzero(
            "scheduler.max_statements_per_task",
            self.scheduler.max_statements_per_task as u64,
        )?;
        nonzero(
            "scheduler.tasks_per_session",
            self.scheduler.tasks_per_session as u64,
        )?;
        nonzero(
            "stratum.handshake_timeout_secs",
            self.stratum.handshake_timeout_secs,
        )?;
        nonzero("stratum.idle_timeout_secs", self.stratum.idle_timeout_secs)?;
        nonzero(
            "stratum.ping_interval_secs",
            self.stratum.ping_interval_secs,
        )?;
        nonzero("stratum.max_sessions", self.stratum.max_sessions as u64)?;
        nonzero(
            "stratum.max_sessions_per_ip",
            self.stratum.max_sessions_per_ip as u64,
        )?;
        nonzero("circuits.chain_steps", self.circuits.chain_steps as u64)?;
        let run = self.aggregation.run;
        if !run.is_power_of_two() || run > 1 << 16 {
            return Err(ConfigError::Invalid {
                key: "aggregation.run",
                problem: format!("must be a power of two from 1 to 65536, got {run}"),
            });
        }
        if !matches!(self.aggregation.ptau.len(), 0 | 2) {
            return Err(ConfigError::Invalid {
                key: "aggregation.ptau",
                problem: format!(
                    "names {} file(s): name two .ptau files of two independent ceremonies, or none for the insecure test SRS",
                    self.aggregation.ptau.len()
                ),
            });
        }
        nonzero(
            "http.max_job_statements",
            self.http.max_job_statements as u64,
        )?;
        if self.payouts.fee_bps > 10_000 {
            return Err(ConfigError::Invalid {
                key: "payouts.fee_bps",
                problem: format!(
                    "must be at most 10000 (100 %), got {}",
                    self.payouts.fee_bps
                ),
            });
        }
        nonzero("payouts.pplns_window_work", self.payouts.pplns_window_work)?;
        let l = &self.limits;
        for (key, v) in [
            ("limits.job_native_hashes", l.job_native_hashes),
            ("limits.job_witness_fuel", l.job_witness_fuel),
            ("limits.max_deadline_secs", l.max_deadline_secs),
            ("limits.circuit_upload_bytes", l.circuit_upload_bytes as u64),
            ("limits.preparing_per_caller", l.preparing_per_caller as u64),
            ("limits.jobs_per_minute", l.jobs_per_minute as u64),
            ("limits.jobs_burst", l.jobs_burst as u64),
            ("limits.circuits_per_hour", l.circuits_per_hour as u64),
            (
                "limits.http_requests_per_second",
                l.http_requests_per_second as u64,
            ),
            ("limits.http_connections", l.http_connections as u64),
            (
                "limits.http_connections_per_ip",
                l.http_connections_per_ip as u64,
            ),
            (
                "limits.http_header_timeout_secs",
                l.http_header_timeout_secs,
            ),
            (
                "limits.http_request_timeout_secs",
                l.http_request_timeout_secs,
            ),
            ("limits.http_write_timeout_secs", l.http_write_timeout_secs),
            (
                "limits.stratum_write_timeout_secs",
                l.stratum_write_timeout_secs,
            ),
            (
                "limits.stratum_handshakes_per_ip",
                l.stratum_handshakes_per_ip as u64,
            ),
        ] {
            nonzero(key, v)?;
        }
        if l.max_deadline_secs > 10 * 31_536_000 {
            return Err(ConfigError::Invalid {
                key: "limits.max_deadline_secs",
                problem: format!("must be at most ten years, got {}", l.max_deadline_secs),
            });
        }
        nonzero("payouts.threshold", self.payouts.threshold)?;
        let unit = &self.payouts.unit;
        if unit.is_empty()
            || unit.len() > 12
            || !unit
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ConfigError::Invalid {
                key: "payouts.unit",
                problem: format!(
                    "must be 1-12 letters, digits, '-' or '_' (a name such as \"ZKP\"), got {unit:?}"
                ),
            });
        }
        if self.payouts.decimals > 18 {
            return Err(ConfigError::Invalid {
                key: "payouts.decimals",
                problem: format!(
                    "must be at most 18 (amounts are 64-bit integers), got {}",
                    self.payouts.decimals
                ),
            });
        }
        if let Some(url) = &self.stratum.public_url {
            let rest = url
                .strip_prefix("stratum+tcp://")
                .or_else(|| url.strip_prefix("stratum+ssl://"));
            if rest.is_none_or(|r| r.is_empty() || r.contains('/')) {
                return Err(ConfigError::Invalid {
                    key: "stratum.public_url",
                    problem: format!(
                        "{url:?} must be stratum+tcp://HOST:PORT or stratum+ssl://HOST:PORT, as miners pass it to zkminer --pool"
                    ),
                });
            }
        }
        if self.http.tls_cert.is_some() != self.http.tls_key.is_some() {
            return Err(ConfigError::Invalid {
                key: "http.tls_cert",
                problem: "and http.tls_key go together: give both PEM files for HTTPS, or neither"
                    .into(),
            });
        }
        if self.stratum.tls_cert.is_some() != self.stratum.tls_key.is_some() {
            return Err(ConfigError::Invalid {
                key: "stratum.tls_cert",
                problem: "and stratum.tls_key go together: give both PEM files for TLS, or neither"
                    .into(),
            });
        }
        if self.stratum.max_line < 4096 {
            return Err(ConfigError::Invalid {
                key: "stratum.max_line",
                problem: format!("must be at least 4096 bytes, got {}", self.stratum.max_line),
            });
        }
        if self.stratum.ping_interval_secs >= self.stratum.idle_timeout_secs {
            return Err(ConfigError::Invalid {
                key: "stratum.ping_interval_secs",
                problem: format!(
                    "({}) must be shorter than stratum.idle_timeout_secs ({}), or idle miners are dropped between pings",
                    self.stratum.ping_interval_secs, self.stratum.idle_timeout_secs
                ),
            });
        }
        if let Some(url) = &self.storage.url {
            StorageConfig::check_url(url).map_err(|problem| ConfigError::Invalid {
                key: "storage.url",
                problem,
            })?;
        }
        let lease = self.storage.node_lease_secs;
        if !(lease.is_finite() && (3.0..=3600.0).contains(&lease)) {
            return Err(ConfigError::Invalid {
                key: "storage.node_lease_secs",
                problem: format!(
                    "({lease}) must be between 3 and 3600 seconds: a process renews its lease every second, so a shorter one lapses on a slow database, and a longer one leaves a dead process's work waiting"
                ),
            });
        }
        if let Some(url) = &self.http.public_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::Invalid {
                    key: "http.public_url",
                    problem: format!("{url:?} must start with http:// or https://"),
                });
            }
        }
        Ok(())
    }

    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.stratum.handshake_timeout_secs)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.stratum.idle_timeout_secs)
    }

    pub fn ban_policy(&self) -> crate::bans::BanPolicy {
        crate::bans::BanPolicy {
            invalid_threshold: self.bans.invalid_threshold,
            window: Duration::from_secs(self.bans.window_secs),
            ban: Duration::from_secs(self.bans.ban_secs),
            names_per_ip: self.bans.names_per_ip,
        }
    }

    /// The blocking jobs (job preparation, circuit registration) at once.
    pub fn preparing(&self) -> usize {
        match self.limits.preparing {
            0 => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            n => n,
        }
    }

    pub fn write_timeout(&self) -> Duration {
        Duration::from_secs(self.limits.stratum_write_timeout_secs)
    }

    pub fn verifier_threads(&self) -> usize {
        if self.verifier.threads == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        } else {
            self.verifier.threads
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_is_the_defaults() {
        let c = Config::from_toml("", "empty").unwrap();
        assert_eq!(c.stratum.listen.port(), 3333);
        assert_eq!(c.scheduler.target_task_secs, 10.0);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_with_the_key_named() {
        let e = Config::from_toml("[stratum]\nlisten_port = 1\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("listen_port"), "{e}");
        let e = Config::from_toml("[scheduler]\ntarget_task_secs = 0\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("scheduler.target_task_secs"), "{e}");
        let e = Config::from_toml("[stratum]\nping_interval_secs = 200\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("idle_timeout_secs"), "{e}");
        let e = Config::from_toml("[payouts]\nscheme = \"pplms\"\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("pplms") && e.contains("pplns"), "{e}");
        let e = Config::from_toml("[payouts]\nfee_bps = 20000\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("payouts.fee_bps"), "{e}");
    }

    #[test]
    fn a_storage_url_must_be_a_postgres_url_and_its_password_is_never_shown() {
        let c = Config::from_toml(
            "[storage]\nurl = \"postgres://pool:s3cret@db.internal:5432/zkpool\"\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(
            c.storage.url.as_deref(),
            Some("postgres://pool:s3cret@db.internal:5432/zkpool")
        );
        for (bad, says) in [
            ("mysql://pool:s3cret@db/zkpool", "is not a PostgreSQL URL"),
            ("", "is empty"),
            (
                "postgres://pool:s3cret@db:notaport/zkpool",
                "is not a valid PostgreSQL URL",
            ),
        ] {
            let e = Config::from_toml(&format!("[storage]\nurl = {bad:?}\n"), "t.toml")
                .unwrap_err()
                .to_string();
            assert!(e.contains("storage.url") && e.contains(says), "{e}");
            assert!(
                e.contains("postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE"),
                "{e}"
            );
            assert!(!e.contains("s3cret"), "the password is shown: {e}");
        }
        assert_eq!(
            redact_url("postgres://pool:s3cret@db:5432/zkpool?sslmode=disable"),
            "postgres://pool:***@db:5432/zkpool?sslmode=disable"
        );
        assert_eq!(
            redact_url("postgres://pool@db/zkpool"),
            "postgres://pool@db/zkpool"
        );
    }

    #[test]
    fn amounts_are_written_with_the_units_decimals_exactly() {
        assert_eq!(format_amount(1_500_000, 6), "1.500000");
        assert_eq!(format_amount(7, 6), "0.000007");
        assert_eq!(format_amount(0, 6), "0.000000");
        assert_eq!(format_amount(7, 0), "7");
        assert_eq!(format_amount(u64::MAX, 18), "18.446744073709551615");
        assert_eq!(format_amount(u64::MAX, 2), "184467440737095516.15");
        let c = Config::from_toml("", "empty").unwrap();
        assert_eq!(c.payouts.show(1_000_000), "1.000000 ZKP");
    }

    #[test]
    fn unit_decimals_and_the_stratum_url_are_checked() {
        for (toml, key) in [
            ("[payouts]\nunit = \"\"\n", "payouts.unit"),
            ("[payouts]\nunit = \"Z K\"\n", "payouts.unit"),
            ("[payouts]\ndecimals = 19\n", "payouts.decimals"),
            (
                "[stratum]\npublic_url = \"http://x:3333\"\n",
                "stratum.public_url",
            ),
        ] {
            let e = Config::from_toml(toml, "t.toml").unwrap_err().to_string();
            assert!(e.contains(key), "{toml}: {e}");
        }
        let c = Config::from_toml(
            "[payouts]\nunit = \"USDC\"\ndecimals = 2\n[stratum]\npublic_url = \"stratum+ssl://pool.example:443\"\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(c.payouts.show(12_345), "123.45 USDC");
    }

    #[test]
    fn example_configs_in_deploy_parse() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            // zkminer.toml is the miner's (parsed by the miner's tests).
            if path.extension().is_some_and(|e| e == "toml")
                && path.file_name().is_some_and(|n| n != "zkminer.toml")
            {
                Config::from_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                n += 1;
            }
        }
        assert!(n >= 1, "no example config in deploy/");
    }
}
