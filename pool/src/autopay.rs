//! Automatic payouts (`[payouts] auto_interval_secs`, `hook`): every interval,
//! plan a batch of every miner balance at or over the threshold and hand it to
//! the operator's program, which pays it and prints the transaction reference;
//! the batch is then confirmed with that reference.
//!
//! What it never does is pay twice. A batch the hook did not confirm (it failed,
//! printed no reference, or ran out of time) may have been paid in part, so it
//! stays planned, its balances reserved, and no new batch is planned while any
//! batch is planned: the operator looks, then confirms it (`zkpool payouts
//! confirm N --tx ...`) or voids it, and automatic payouts go on from there.

use std::{process::Stdio, sync::Arc, time::Duration};

use payouts::{Batch, BatchState};
use tokio::io::AsyncWriteExt;
use tracing::{error, info, warn};

use crate::server::Pool;

/// What one run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Run {
    /// No miner balance reaches the threshold.
    Nothing,
    /// A batch is planned and not confirmed (by an earlier run or by hand):
    /// nothing new until the operator settles it.
    Waiting(u64),
    /// The hook paid the batch; it is confirmed with this reference.
    Paid { batch: u64, tx: String },
    /// The hook did not confirm the batch: it stays planned.
    Failed { batch: u64, why: String },
}

/// Runs until shutdown, one run every `auto_interval_secs`.
pub async fn run(pool: Arc<Pool>) {
    let every = Duration::from_secs(pool.config().payouts.auto_interval_secs);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = pool.shutdown().cancelled() => return,
            _ = tick.tick() => {}
        }
        // Several pool processes on one database: only the leader pays.
        if pool.cluster().is_some_and(|c| !c.is_leader()) {
            continue;
        }
        match once(&pool).await {
            Ok(Run::Nothing) => {}
            Ok(Run::Waiting(batch)) => warn!(
                batch,
                "automatic payouts wait: batch {batch} is planned and not confirmed; check whether it was paid, then `zkpool payouts confirm {batch} --tx REF` or `zkpool payouts void {batch}`"
            ),
            Ok(Run::Paid { batch, tx }) => {
                info!(batch, tx = %tx, "payout batch paid by the hook and confirmed")
            }
            Ok(Run::Failed { batch, why }) => error!(
                batch,
                why = %why,
                "the payout hook did not confirm batch {batch}; it stays planned (its balances reserved) and automatic payouts wait: check whether it was paid, then `zkpool payouts confirm {batch} --tx REF` or `zkpool payouts void {batch}`"
            ),
            Err(e) => error!(error = %e, "automatic payouts: the ledger failed; trying again next interval"),
        }
    }
}

/// One run: plan, pay through the hook, confirm.
pub async fn once(pool: &Pool) -> Result<Run, payouts::LedgerError> {
    let ledger = pool.ledger();
    if let Some(b) = ledger
        .batches()
        .await?
        .into_iter()
        .find(|b| b.state == BatchState::Planned)
    {
        return Ok(Run::Waiting(b.id));
    }
    let Some(batch) = ledger.plan_payouts(pool.config().payouts.threshold).await? else {
        return Ok(Run::Nothing);
    };
    ledger.flush().await?;
    info!(
        batch = batch.id,
        items = batch.items.len(),
        total = batch.total,
        "payout batch planned for the hook"
    );
    let cfg = &pool.config().payouts;
    match pay(
        &cfg.hook,
        &batch,
        Duration::from_secs(cfg.hook_timeout_secs),
    )
    .await
    {
        Ok(tx) => {
            // Paid: if the books cannot record it now, the batch stays planned
            // (nothing is paid again) and the reference must reach the operator.
            let recorded = match ledger.confirm(batch.id, &tx).await {
                Ok(_) => ledger.flush().await,
                Err(e) => Err(e),
            };
            match recorded {
                Ok(()) => Ok(Run::Paid {
                    batch: batch.id,
                    tx,
                }),
                Err(e) => Ok(Run::Failed {
                    batch: batch.id,
                    why: format!(
                        "the hook paid it with reference {tx:?}, but the books could not record that ({e}): confirm it with `zkpool payouts confirm {} --tx {tx}`",
                        batch.id
                    ),
                }),
            }
        }
        Err(why) => Ok(Run::Failed {
            batch: batch.id,
            why,
        }),
    }
}

/// The batch as the hook reads it: what `zkpool payouts export N --format csv` gives.
pub fn csv(b: &Batch) -> String {
    let mut out = String::from("batch,addr,amount\n");
    for i in &b.items {
        out.push_str(&format!("{},{},{}\n", b.id, i.addr, i.amount));
    }
    out
}

/// Runs the hook on `batch`; its transaction reference, or why there is none.
async fn pay(hook: &[String], batch: &Batch, timeout: Duration) -> Result<String, String> {
    let (program, args) = hook
        .split_first()
        .ok_or("payouts.hook is empty".to_owned())?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .env("ZKPOOL_BATCH", batch.id.to_string())
        .env("ZKPOOL_BATCH_TOTAL", batch.total.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {program:?}: {e}"))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let input = csv(batch);
    let work = async move {
        // A hook that does not read its input still gets to answer.
        let _ = stdin.write_all(input.as_bytes()).await;
        drop(stdin);
        child.wait_with_output().await
    };
    let out = match tokio::time::timeout(timeout, work).await {
        Err(_) => {
            return Err(format!(
                "{program:?} ran past {}s and was stopped",
                timeout.as_secs()
            ))
        }
        Ok(Err(e)) => return Err(format!("{program:?} failed to run: {e}")),
        Ok(Ok(out)) => out,
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last_err = stderr.lines().last().unwrap_or("").trim();
    if !out.status.success() {
        return Err(format!(
            "{program:?} exited with {}: {last_err}",
            out.status
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    match stdout.lines().map(str::trim).rfind(|l| !l.is_empty()) {
        Some(tx) if tx.len() <= 256 => Ok(tx.to_owned()),
        Some(_) => Err(format!(
            "{program:?} printed a last line over 256 characters; it must print the transaction reference"
        )),
        None => Err(format!(
            "{program:?} exited 0 but printed no transaction reference"
        )),
    }
}
