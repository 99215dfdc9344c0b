//! HTTP endpoints of the ledger: clients and their deposits, pool funds and
//! rewards, a job's credit list with its Merkle root, payout batches (plan,
//! export, confirm, void) and the books. Operator endpoints need the admin token;
//! a client sees its own account with its API key.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{Path, Query, State},
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{delete, get, post, MethodRouter},
    Json,
};
use payouts::{account, LedgerError};
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::info;

use crate::{
    circuits::now_ms,
    http::{admin, internal, unavailable, Api, ApiError},
    jobs::JobState,
    server::Pool,
    store::{key_hash, ClientRecord},
};

pub fn routes() -> Vec<(&'static str, &'static str, MethodRouter<Arc<Pool>>)> {
    vec![
        ("post", "/v1/clients", post(post_client)),
        ("get", "/v1/clients", get(list_clients)),
        ("get", "/v1/clients/{id}", get(get_client)),
        ("post", "/v1/clients/{id}/deposits", post(post_deposit)),
        ("post", "/v1/clients/{id}/refunds", post(post_refund)),
        ("post", "/v1/pool/funds", post(post_funds)),
        ("post", "/v1/pool/withdrawals", post(post_withdrawal)),
        ("post", "/v1/rewards", post(post_reward)),
        ("get", "/v1/jobs/{id}/credits", get(get_credits)),
        ("get", "/v1/payouts", get(list_payouts)),
        ("post", "/v1/payouts", post(plan_payouts)),
        ("get", "/v1/payouts/{batch}", get(export_payout)),
        ("post", "/v1/payouts/{batch}/confirm", post(confirm_payout)),
        ("post", "/v1/payouts/{batch}/void", post(void_payout)),
        ("get", "/v1/ledger", get(get_ledger)),
        (
            "post",
            "/v1/workers/{worker}/token",
            post(post_worker_token),
        ),
        (
            "delete",
            "/v1/workers/{worker}/token",
            delete(delete_worker_token),
        ),
        ("get", "/v1/worker-tokens", get(list_worker_tokens)),
        ("get", "/v1/ledger/journal", get(get_journal)),
    ]
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> Self {
        let status = match &e {
            LedgerError::Insufficient { .. } => StatusCode::PAYMENT_REQUIRED,
            LedgerError::Conflict { .. }
            | LedgerError::JobSettled { .. }
            | LedgerError::BatchConfirmed { .. }
            | LedgerError::BatchVoided(_) => StatusCode::CONFLICT,
            LedgerError::UnknownBatch(_) => StatusCode::NOT_FOUND,
            LedgerError::Invalid(_) => StatusCode::BAD_REQUEST,
            LedgerError::Storage(_) => return unavailable(e),
            LedgerError::Corrupt { .. } => return internal(e),
        };
        ApiError(status, e.to_string())
    }
}

/// Parses a JSON body with a message that names what is wrong.
fn body<T: serde::de::DeserializeOwned>(bytes: &Bytes, example: &str) -> Api<T> {
    serde_json::from_slice(if bytes.is_empty() { b"{}" } else { bytes }).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("invalid request body: {e} (expected for example {example})"),
        )
    })
}

async fn flush(s: &Pool) -> Api<()> {
    s.ledger().flush().await.map_err(unavailable)
}

/// The client an `Authorization: Bearer` API key belongs to; `None` without a
/// header; 401 for a key the pool does not know.
pub async fn client_from_key(s: &Pool, headers: &HeaderMap) -> Api<Option<ClientRecord>> {
    let Some(key) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return Ok(None);
    };
    match s.store().client_by_key(key.trim()).await.map_err(unavailable)? {
        Some(c) => Ok(Some(c)),
        None => Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "unknown client API key: check the key the operator gave you (`zkpool clients add` prints it once)".into(),
        )),
    }
}

fn valid_name(kind: &str, id: &str) -> Api<()> {
    if id.is_empty()
        || id.len() > 64
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("{kind} {id:?} must be 1-64 characters of letters, digits, '-' or '_'"),
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewClient {
    id: String,
}

async fn post_client(
    State(s): State<Arc<Pool>>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Api<(StatusCode, Json<Value>)> {
    admin(&s, &headers)?;
    let req: NewClient = body(&bytes, r#"{"id": "acme"}"#)?;
    valid_name("client id", &req.id)?;
    let key = format!("zkc_{}", hex::encode(rand::random::<[u8; 24]>()));
    let record = ClientRecord {
        id: req.id.clone(),
        key_hash: key_hash(&key),
        created_ms: now_ms(),
    };
    if !s.store().add_client(&record).await.map_err(unavailable)? {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!("client {:?} exists already; pick another id", req.id),
        ));
    }
    s.store().flush().await.map_err(unavailable)?;
    info!(client = %req.id, "client added");
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": req.id,
            "api_key": key,
            "note": "the pool stores only a hash of this key: give it to the client now, it cannot be shown again",
        })),
    ))
}

/// A client's balance and its latest jobs (at most 200) with their escrow.
async fn client_view(s: &Pool, id: &str) -> Api<Value> {
    let (recent, _) = s
        .store()
        .jobs_page(&crate::store::JobScope::Client(id.to_owned()), None, 200)
        .await
        .map_err(unavailable)?;
    let mut jobs = Vec::with_capacity(recent.len());
    for j in recent {
        let escrow = s.ledger().balance(&account::escrow(&j.id)).await?;
        jobs.push(json!({"id": j.id, "state": j.state, "reward": j.reward, "escrow": escrow}));
    }
    let escrow: u64 = jobs.iter().filter_map(|j| j["escrow"].as_u64()).sum();
    Ok(json!({
        "id": id,
        "balance": s.ledger().balance(&account::client(id)).await?,
        "escrow": escrow,
        "jobs": jobs,
    }))
}

async fn list_clients(State(s): State<Arc<Pool>>, headers: HeaderMap) -> Api<Json<Value>> {
    admin(&s, &headers)?;
    let mut clients = vec![];
    for c in s.store().clients().await.map_err(unavailable)? {
        let balance = s.ledger().balance(&account::client(&c.id)).await?;
        clients.push(json!({"id": c.id, "created_ms": c.created_ms, "balance": balance}));
    }
    Ok(Json(json!({ "clients": clients })))
}

async fn get_client(
    State(s): State<Arc<Pool>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Api<Json<Value>> {
    let is_admin = admin(&s, &headers).is_ok();
    if !is_admin {
        match client_from_key(&s, &headers).await? {
            Some(c) if c.id == id => {}
            Some(c) => {
                return Err(ApiError(
                    StatusCode::FORBIDDEN,
                    format!("this API key belongs to client {:?}, not {id:?}", c.id),
                ))
            }
            None => {
                return Err(ApiError(
                    StatusCode::UNAUTHORIZED,
                    "send Authorization: Bearer <your client API key> (or the admin token)".into(),
                ))
            }
        }
    }
    if s.store().client(&id).await.map_err(unavailable)?.is_none() {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("no client {id:?}")));
    }
    Ok(Json(client_view(&s, &id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Money {
    amount: u64,
    /// The payment's reference: the idempotency key.
    reference: String,
}

async fn post_deposit(
    State(s): State<Arc<Pool>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Api<Json<Value>> {
    client_money(&s, &headers, id, &bytes, Flow::Deposit).await
}

/// A client's balance paid back to it: out of the books, recorded once per
/// reference; refused whole (409, with the balance) when the balance is short.
async fn post_refund(
    State(s): State<Arc<Pool>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Api<Json<Value>> {
    client_money(&s, &headers, id, &bytes, Flow::Refund).await
}

/// Which way money moves on a client's balance.
#[derive(Clone, Copy)]
enum Flow {
    Deposit,
    Refund,
}

/// A deposit to, or a refund from, client `id`'s balance (operator only):
/// recorded once per reference; answers the entry and the balance after it.
async fn client_money(
    s: &Pool,
    headers: &HeaderMap,
    id: String,
    bytes: &Bytes,
    flow: Flow,
) -> Api<Json<Value>> {
    admin(s, headers)?;
    let example = match flow {
        Flow::Deposit => r#"{"amount": 5000000, "reference": "wire-2026-11-24-001"}"#,
        Flow::Refund => r#"{"amount": 1000000, "reference": "refund-2026-11-26-001"}"#,
    };
    let m: Money = body(bytes, example)?;
    if s.store().client(&id).await.map_err(unavailable)?.is_none() {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no client {id:?}: add it first (`zkpool clients add {id}`), or see `zkpool clients list`"),
        ));
    }
    let acct = account::client(&id);
    let (e, new) = match flow {
        Flow::Deposit => s.ledger().deposit(&acct, m.amount, &m.reference).await?,
        Flow::Refund => s.ledger().withdraw(&acct, m.amount, &m.reference).await?,
    };
    flush(s).await?;
    if new {
        let what = match flow {
            Flow::Deposit => "deposit recorded",
            Flow::Refund => "refund recorded",
        };
        info!(client = %id, amount = m.amount, reference = %m.reference, "{what}");
    }
    Ok(Json(json!({
        "client": id,
        "amount": m.amount,
        "reference": m.reference,
        "entry": e.seq,
        "new": new,
        "balance": s.ledger().balance(&acct).await?,
    })))
}

/// `POST /v1/pool/withdrawals` body: which of the pool's accounts, how much.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Withdrawal {
    /// `fees` (the pool fee collected) or `funds` (the operator's float for PPS).
    from: String,
    amount: u64,
    reference: String,
}

/// The operator takes the pool's fees (or unused funds) out of the books.
async fn post_withdrawal(
    State(s): State<Arc<Pool>>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Api<Json<Value>> {
    admin(&s, &headers)?;
    let w: Withdrawal = body(
        &bytes,
        r#"{"from": "fees", "amount": 1000000, "reference": "fees-2026-11"}"#,
    )?;
    let acct = match w.from.as_str() {
        "fees" => account::FEES,
        "funds" => account::FUNDS,
        other => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("\"from\" is {other:?}: it must be \"fees\" (the pool fee collected) or \"funds\" (the pool's funds); refund a client with POST /v1/clients/{{id}}/refunds"),
            ))
        }
    };
    let (e, new) = s.ledger().withdraw(acct, w.amount, &w.reference).await?;
    flush(&s).await?;
    if new {
        info!(from = %acct, amount = w.amount, reference = %w.reference, "withdrawal recorded");
    }
    Ok(Json(json!({
        "from": acct.to_string(),
        "amount": w.amount,
        "reference": w.reference,
        "entry": e.seq,
        "new": new,
        "balance": s.ledger().balance(acct).await?,
    })))
}

async fn post_funds(
    State(s): State<Arc<Pool>>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Api<Json<Value>> {
    admin(&s, &headers)?;
    let m: Money = body(&bytes, r#"{"amount": 5000000, "reference": "float-1"}"#)?;
    let (e, new) = s
        .ledger()
        .deposit(account::FUNDS, m.amount, &m.reference)
        .await?;
    flush(&s).await?;
    Ok(Json(json!({
        "entry": e.seq,
        "new": new,
        "funds": s.ledger().balance(account::FUNDS).await?,
    })))
}

async fn post_reward(
    State(s): State<Arc<Pool>>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Api<Json<Value>> {
    admin(&s, &headers)?;
    if s.config().payouts.scheme != payouts::Scheme::Pplns {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!(
                "outside rewards are shared by PPLNS, and this pool pays {}: set payouts.scheme = \"pplns\" to use them",
                s.config().payouts.scheme
            ),
        ));
    }
    let m: Money = body(
        &bytes,
        r#"{"amount": 5000000, "reference": "network-epoch-42"}"#,
    )?;
    let (e, new) = s
        .ledger()
        .add_reward(m.amount, &m.reference, &s.config().payouts.policy())
        .await?;
    flush(&s).await?;
    Ok(Json(json!({ "entry": e, "new": new })))
}

/// A job's credit list: what every worker was credited, in order, with the
/// Merkle root over the credits (the receipts' leaves) and the settlement.
async fn get_credits(State(s): State<Arc<Pool>>, Path(id): Path<String>) -> Api<Json<Value>> {
    let job = s
        .store()
        .job(&id)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no job {id:?}")))?;
    let credits = s.ledger().job_credits(&id).await.map_err(unavailable)?;
    let leaves: Vec<[u8; 32]> = credits.iter().map(|c| c.leaf()).collect();
    let root = hex::encode(payouts::receipt::merkle_root(&leaves));
    let settlement = s.ledger().settlement(&id).await.map_err(unavailable)?;
    Ok(Json(json!({
        "job": id,
        "state": job.state,
        "total_work": job.total_work(),
        "reward": job.reward,
        "credits_root": root,
        // A running job's list still grows; a settled one is final and its root
        // is the one recorded in the settlement.
        "final": settlement.is_some() && job.state != JobState::Running,
        "credits": credits,
        "settlement": settlement,
    })))
}

async fn list_payouts(State(s): State<Arc<Pool>>, headers: HeaderMap) -> Api<Json<Value>> {
    admin(&s, &headers)?;
    let due: Vec<Value> = s
        .ledger()
        .balances()
        .await?
        .into_iter()
        .filter_map(|(a, v)| {
            let payouts::Account::Miner(addr) = a else {
                return None;
            };
            Some(json!({"addr": addr, "balance": v, "due": v >= s.config().payouts.threshold}))
        })
        .collect();
    Ok(Json(json!({
        "threshold": s.config().payouts.threshold,
        "balances": due,
        "batches": s.ledger().batches().await?,
    })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct PlanRequest {
    threshold: Option<u64>,
}

async fn plan_payouts(
    State(s): State<Arc<Pool>>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Api<(StatusCode, Json<Value>)> {
    admin(&s, &headers)?;
    let req: PlanRequest = body(&bytes, r#"{"threshold": 1000000}"#)?;
    let threshold = req.threshold.unwrap_or(s.config().payouts.threshold);
    match s.ledger().plan_payouts(threshold).await? {
        Some(b) => {
            flush(&s).await?;
            info!(
                batch = b.id,
                items = b.items.len(),
                total = b.total,
                "payout batch planned"
            );
            Ok((StatusCode::CREATED, Json(json!({ "batch": b }))))
        }
        None => Ok((
            StatusCode::OK,
            Json(json!({
                "batch": null,
                "message": format!(
                    "no miner balance reaches the threshold ({}); nothing planned",
                    s.config().payouts.show(threshold)
                ),
            })),
        )),
    }
}

fn parse_batch(id: &str) -> Api<u64> {
    id.parse().map_err(|_| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("{id:?} is not a batch number; GET /v1/payouts lists them"),
        )
    })
}

#[derive(Deserialize)]
struct ExportQuery {
    format: Option<String>,
}

/// A batch for execution elsewhere: JSON (default) or CSV (`addr,amount`).
async fn export_payout(
    State(s): State<Arc<Pool>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<ExportQuery>,
) -> Api<Response> {
    admin(&s, &headers)?;
    let id = parse_batch(&id)?;
    let b = s
        .ledger()
        .batch(id)
        .await?
        .ok_or(ApiError::from(LedgerError::UnknownBatch(id)))?;
    match q.format.as_deref().unwrap_or("json") {
        "json" => Ok(Json(b).into_response()),
        "csv" => Ok((
            [(header::CONTENT_TYPE, "text/csv")],
            crate::autopay::csv(&b),
        )
            .into_response()),
        other => Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("unknown format {other:?}: use csv or json"),
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfirmRequest {
    tx: String,
}

async fn confirm_payout(
    State(s): State<Arc<Pool>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Api<Json<Value>> {
    admin(&s, &headers)?;
    let id = parse_batch(&id)?;
    let req: ConfirmRequest = body(&bytes, r#"{"tx": "0x5f3a..."}"#)?;
    let (b, new) = s.ledger().confirm(id, &req.tx).await?;
    flush(&s).await?;
    if new {
        info!(batch = id, tx = %req.tx, total = b.total, "payout batch confirmed");
    }
    Ok(Json(json!({ "batch": b, "new": new })))
}

async fn void_payout(
    State(s): State<Arc<Pool>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Api<Json<Value>> {
    admin(&s, &headers)?;
    let id = parse_batch(&id)?;
    let (b, new) = s.ledger().void(id).await?;
    flush(&s).await?;
    if new {
        info!(batch = id, "payout batch voided; balances released");
    }
    Ok(Json(json!({ "batch": b, "new": new })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct TokenRequest {
    /// Replace a token the account already has.
    replace: bool,
}

/// 400 unless `addr` is an account name (the ADDR of ADDR.RIG).
fn account_name(addr: &str) -> Api<()> {
    if addr.contains('.') || stratum::Worker::parse(&format!("{addr}.x")).is_err() {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!(
                "{addr:?} is not an account: a token belongs to ADDR, shared by its rigs ADDR.RIG"
            ),
        ));
    }
    Ok(())
}

/// Issues an account's worker token; its rigs authorize with it. An account that
/// has one keeps it unless the request says `replace`: a second issue by mistake
/// would lock out every rig that uses the first.
async fn post_worker_token(
    State(s): State<Arc<Pool>>,
    headers: HeaderMap,
    Path(addr): Path<String>,
    bytes: Bytes,
) -> Api<(StatusCode, Json<Value>)> {
    admin(&s, &headers)?;
    account_name(&addr)?;
    let req: TokenRequest = body(&bytes, r#"{"replace": true}"#)?;
    let has_one = s
        .store()
        .check_worker_token(&addr, None)
        .await
        .map_err(unavailable)?
        .is_some();
    if has_one && !req.replace {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!(
                "account {addr:?} already has a worker token, which its rigs use; a new one locks them out until they are given it: `zkpool workers token {addr} --replace` (or {{\"replace\": true}}), or `zkpool workers revoke {addr}` to open the account"
            ),
        ));
    }
    let token = format!("zkw_{}", hex::encode(rand::random::<[u8; 24]>()));
    s.store()
        .set_worker_token(&addr, &token)
        .await
        .map_err(unavailable)?;
    s.store().flush().await.map_err(unavailable)?;
    info!(account = %addr, replaced = has_one, "worker token issued");
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "account": addr,
            "token": token,
            "note": "rigs of this account now need it: zkminer --password <token>; the pool keeps only its hash",
        })),
    ))
}

/// The books: totals by kind of account and whether they balance.
async fn get_ledger(State(s): State<Arc<Pool>>, headers: HeaderMap) -> Api<Json<Value>> {
    admin(&s, &headers)?;
    Ok(Json(json!({
        "audit": s.ledger().audit().await?,
        "balances": s.ledger().balances().await?,
        "scheme": s.config().payouts.scheme,
    })))
}

#[derive(Deserialize)]
struct JournalQuery {
    from: Option<u64>,
    limit: Option<usize>,
}

async fn get_journal(
    State(s): State<Arc<Pool>>,
    headers: HeaderMap,
    Query(q): Query<JournalQuery>,
) -> Api<Json<Value>> {
    admin(&s, &headers)?;
    let entries = s
        .ledger()
        .journal(q.from.unwrap_or(0), q.limit.unwrap_or(1000).min(10_000))
        .await
        .map_err(unavailable)?;
    Ok(Json(json!({ "entries": entries })))
}

/// Revokes an account's worker token: its rigs no longer need one (unless
/// `stratum.require_worker_token`).
async fn delete_worker_token(
    State(s): State<Arc<Pool>>,
    headers: HeaderMap,
    Path(addr): Path<String>,
) -> Api<Json<Value>> {
    admin(&s, &headers)?;
    account_name(&addr)?;
    let removed = s
        .store()
        .remove_worker_token(&addr)
        .await
        .map_err(unavailable)?;
    if !removed {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("account {addr:?} has no worker token (`zkpool workers tokens` lists those that do)"),
        ));
    }
    s.store().flush().await.map_err(unavailable)?;
    info!(account = %addr, "worker token revoked");
    Ok(Json(json!({ "account": addr, "revoked": true })))
}

/// The accounts that have a worker token (the tokens themselves are not kept).
async fn list_worker_tokens(State(s): State<Arc<Pool>>, headers: HeaderMap) -> Api<Json<Value>> {
    admin(&s, &headers)?;
    let accounts = s
        .store()
        .worker_token_accounts()
        .await
        .map_err(unavailable)?;
    Ok(Json(json!({ "accounts": accounts })))
}
