//! The miner's receipts: every accepted share comes back with a receipt signed by
//! the pool; the miner appends it to `receipts.jsonl` in its cache directory, and
//! `zkminer audit` checks them against what the pool publishes.

use std::{
    collections::BTreeMap,
    io::Write,
    path::{Path, PathBuf},
    sync::Mutex,
};

use payouts::{receipt, split, Receipt, ReceiptBody};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One line of `receipts.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stored {
    /// The pool's HTTP API, where its credit lists are published.
    pub pool: String,
    pub receipt: Receipt,
}

/// Appends receipts to a JSON-lines file.
pub struct ReceiptLog {
    path: PathBuf,
    file: Mutex<std::fs::File>,
}

impl ReceiptLog {
    pub fn open(path: PathBuf) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        Ok(ReceiptLog {
            path,
            file: Mutex::new(file),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one receipt as one line (a single write, so lines never interleave).
    pub fn append(&self, pool: &str, receipt: Receipt) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(&Stored {
            pool: pool.to_owned(),
            receipt,
        })
        .expect("receipts serialise");
        line.push(b'\n');
        self.file
            .lock()
            .expect("receipt log lock is never poisoned")
            .write_all(&line)
    }
}

/// The pool's HTTP base from a proving-key URL (`{base}/v1/circuits/...`).
pub fn pool_base(key_url: &str) -> String {
    match key_url.find("/v1/") {
        Some(i) => key_url[..i].to_owned(),
        None => key_url.trim_end_matches('/').to_owned(),
    }
}

/// What an audit found.
#[derive(Debug, Default)]
pub struct Report {
    /// One line per job (and per problem), for people.
    pub lines: Vec<String>,
    /// Differences between the receipts and what the pool published.
    pub problems: Vec<String>,
    pub receipts: usize,
    pub jobs_settled: usize,
    pub jobs_pending: usize,
}

impl Report {
    fn problem(&mut self, p: String) {
        self.lines.push(format!("  PROBLEM: {p}"));
        self.problems.push(p);
    }
}

async fn get(http: &reqwest::Client, url: &str) -> anyhow::Result<Value> {
    let r = http
        .get(url)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach {url}: {e}"))?;
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        anyhow::bail!(
            "{url}: HTTP {status}: {}",
            v["error"].as_str().unwrap_or("")
        );
    }
    Ok(v)
}

/// Checks every receipt in `path`: its signature against the pool's key; that
/// the job's published credit list holds it, unchanged, at its position, and
/// hashes to the published root; and that each worker's settlement is exactly
/// its work's share of the reward (largest remainder, as the pool splits it).
pub async fn audit(path: &Path) -> anyhow::Result<Report> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read receipts {}: {e}", path.display()))?;
    let mut report = Report::default();
    // pool -> job -> position -> receipt
    let mut by_job: BTreeMap<String, BTreeMap<String, BTreeMap<u64, Receipt>>> = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Stored>(line) {
            Ok(s) => {
                report.receipts += 1;
                by_job
                    .entry(s.pool)
                    .or_default()
                    .entry(s.receipt.body.job.clone())
                    .or_default()
                    .insert(s.receipt.body.position, s.receipt);
            }
            Err(e) => report.problem(format!("line {}: not a receipt ({e})", n + 1)),
        }
    }
    let http = reqwest::Client::new();
    for (pool, jobs) in by_job {
        let status = get(&http, &format!("{pool}/v1/status")).await?;
        let key = status["receipt_public_key"].as_str().unwrap_or_default();
        let fee_bps = status["payouts"]["fee_bps"].as_u64();
        report.lines.push(format!(
            "pool {pool} (receipt key {}…)",
            &key[..key.len().min(16)]
        ));
        for (job, mine) in jobs {
            audit_job(&http, &pool, key, fee_bps, &job, &mine, &mut report).await?;
        }
    }
    Ok(report)
}

async fn audit_job(
    http: &reqwest::Client,
    pool: &str,
    key: &str,
    fee_bps: Option<u64>,
    job: &str,
    mine: &BTreeMap<u64, Receipt>,
    report: &mut Report,
) -> anyhow::Result<()> {
    let mut my_work: BTreeMap<String, u64> = BTreeMap::new();
    for r in mine.values() {
        if let Err(e) = r.verify(key) {
            report.problem(format!(
                "job {job} receipt at position {} (task {}, work {}): {e}",
                r.body.position, r.body.task, r.body.work
            ));
            continue;
        }
        *my_work.entry(r.body.worker.clone()).or_default() += r.body.work;
    }
    let published = get(http, &format!("{pool}/v1/jobs/{job}/credits")).await?;
    let credits: Vec<ReceiptBody> = serde_json::from_value(published["credits"].clone())
        .map_err(|e| anyhow::anyhow!("job {job}: the pool's credit list is unreadable: {e}"))?;
    let leaves: Vec<[u8; 32]> = credits.iter().map(|c| c.leaf()).collect();
    let root = hex::encode(receipt::merkle_root(&leaves));
    if published["credits_root"].as_str() != Some(root.as_str()) {
        report.problem(format!(
            "job {job}: the published root {} is not the root of the published credits ({root})",
            published["credits_root"]
        ));
    }
    for r in mine.values().filter(|r| r.verify(key).is_ok()) {
        match credits.get(r.body.position as usize) {
            Some(c) if *c == r.body => {
                let path = receipt::merkle_path(&leaves, r.body.position as usize)
                    .expect("position is inside the list");
                let root_bytes: [u8; 32] = hex::decode(&root)
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .expect("hex of 32 bytes");
                if !receipt::merkle_verify(r.body.leaf(), &path, root_bytes) {
                    report.problem(format!(
                        "job {job}: credit at position {} does not prove against the root",
                        r.body.position
                    ));
                }
            }
            Some(c) => report.problem(format!(
                "job {job}: position {} is published as {} work for {} (task {}), but your receipt says {} work for {} (task {})",
                r.body.position, c.work, c.worker, c.task, r.body.work, r.body.worker, r.body.task
            )),
            None => report.problem(format!(
                "job {job}: your credit at position {} (task {}, {} work) is missing from the published list of {}",
                r.body.position, r.body.task, r.body.work, credits.len()
            )),
        }
    }
    let total_credited: u64 = credits.iter().map(|c| c.work).sum();
    let settlement = &published["settlement"];
    if settlement.is_null() {
        report.jobs_pending += 1;
        report.lines.push(format!(
            "  job {job}: {} receipt(s), your work {} of {} credited so far; not settled yet (root {}…)",
            mine.len(),
            my_work.values().sum::<u64>(),
            total_credited,
            &root[..12]
        ));
        return Ok(());
    }
    report.jobs_settled += 1;
    let s: payouts::Settlement = serde_json::from_value(settlement.clone())
        .map_err(|e| anyhow::anyhow!("job {job}: the settlement is unreadable: {e}"))?;
    if s.credits_root != root {
        report.problem(format!(
            "job {job}: settled over root {} but the published list hashes to {root}",
            s.credits_root
        ));
    }
    // A completed job earns only the work credited in it: statements it had
    // proven before were refunded to its client (the pool's rule, shared).
    let expected_earned = split::earned(s.escrow, total_credited, s.total_work);
    if s.earned != expected_earned || s.earned + s.refund != s.escrow {
        report.problem(format!(
            "job {job}: earned {} and refund {} do not follow from escrow {} and work {total_credited} of {}",
            s.earned, s.refund, s.escrow, s.total_work
        ));
    }
    if let (payouts::Scheme::Prop | payouts::Scheme::Pplns, Some(bps)) = (s.scheme, fee_bps) {
        if !s.parts.is_empty() && s.fee != split::fee(s.earned, bps as u32) {
            report.problem(format!(
                "job {job}: fee {} is not {bps} bp of {}",
                s.fee, s.earned
            ));
        }
    }
    let distributable = s.earned.saturating_sub(s.fee).saturating_sub(s.to_pool);
    let expected: Vec<payouts::Part> = match s.scheme {
        payouts::Scheme::Prop if !s.parts.is_empty() => split::largest_remainder(
            distributable,
            &credits
                .iter()
                .map(|c| (c.worker.clone(), c.work))
                .collect::<Vec<_>>(),
        ),
        _ => s.parts.clone(),
    };
    for (worker, work) in &my_work {
        let got = s
            .parts
            .iter()
            .find(|p| &p.worker == worker)
            .map_or(0, |p| p.amount);
        let want = expected
            .iter()
            .find(|p| &p.worker == worker)
            .map_or(0, |p| p.amount);
        let line = format!(
            "  job {job} ({}): {worker} work {work} of {total_credited} x {distributable} to share = {want}; settled {got}",
            s.scheme
        );
        report.lines.push(line);
        if got != want {
            report.problem(format!(
                "job {job}: {worker} was settled {got}, but its work's share is {want}"
            ));
        }
    }
    Ok(())
}
