//! The HTTP API (axum). Every error is JSON `{"error": "..."}` with a status that
//! says whose fault it is and a message that says what to change.

use std::sync::Arc;

use axum::{
    body::{Body, Bytes},
    extract::{ConnectInfo, DefaultBodyLimit, Path, Query, Request, State},
    http::{header, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::{get, MethodRouter},
    Json, Router,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::net::SocketAddr;
use stratum::{CircuitId, JobId};
use tokio::net::TcpListener;
use tracing::error;

use crate::{
    circuits::CircuitRecord,
    jobs::{JobError, JobRecord, JobRequest, JobState},
    lifecycle,
    server::Pool,
};

/// An API error: status and a message for the caller.
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<JobError> for ApiError {
    fn from(e: JobError) -> Self {
        match e {
            JobError::UnknownCircuit(_) => ApiError(StatusCode::NOT_FOUND, e.to_string()),
            JobError::BadRequest(_) => ApiError(StatusCode::BAD_REQUEST, e.to_string()),
            JobError::Unauthorized(_) => ApiError(StatusCode::UNAUTHORIZED, e.to_string()),
            JobError::Forbidden(_) => ApiError(StatusCode::FORBIDDEN, e.to_string()),
            JobError::PaymentRequired { .. } => {
                ApiError(StatusCode::PAYMENT_REQUIRED, e.to_string())
            }
            JobError::TooExpensive(_) => ApiError(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
            JobError::TooMany(_) => ApiError(StatusCode::TOO_MANY_REQUESTS, e.to_string()),
            JobError::Internal(_) => ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            JobError::Unavailable(_) => ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        }
    }
}

impl From<crate::limits::TooMany> for ApiError {
    fn from(e: crate::limits::TooMany) -> Self {
        ApiError(StatusCode::TOO_MANY_REQUESTS, e.0)
    }
}

/// Request bodies: what each kind of route takes at most. A route that takes no
/// body takes none of size.
pub const SMALL_BODY: usize = 64 << 10;
/// `POST /v1/circuits/{id}/verify`: a snarkjs proof and its public signals.
pub const VERIFY_BODY: usize = 1 << 20;

pub(crate) fn internal(e: impl std::fmt::Display) -> ApiError {
    error!(error = %e, "internal error answering an HTTP request");
    ApiError(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("internal error: {e}"),
    )
}

/// A storage fault: the pool's, not the caller's, and temporary (HTTP 503).
pub(crate) fn unavailable(e: impl std::fmt::Display) -> ApiError {
    error!(error = %e, "storage fault answering an HTTP request");
    ApiError(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the pool cannot read or write its records right now ({e}); try again shortly"),
    )
}

pub(crate) type Api<T> = Result<T, ApiError>;

/// Every route of the API: (method, path, handler). The router is built from this
/// table and only from it, so a test can compare it with the OpenAPI document.
pub fn routes() -> Vec<(&'static str, &'static str, MethodRouter<Arc<Pool>>)> {
    let mut v = vec![
        ("get", "/v1/status", get(status)),
        ("get", "/v1/openapi.json", get(openapi)),
        ("get", "/metrics", get(metrics)),
        ("get", "/v1/bans", get(get_bans)),
        (
            "delete",
            "/v1/bans/{target}",
            axum::routing::delete(delete_ban),
        ),
        ("get", "/", get(dashboard)),
        (
            "post",
            "/v1/jobs",
            axum::routing::post(post_job).layer(DefaultBodyLimit::disable()),
        ),
        ("get", "/v1/jobs", get(list_jobs)),
        ("get", "/v1/shares/recent", get(recent_shares)),
        ("get", "/v1/jobs/{id}", get(get_job)),
        ("delete", "/v1/jobs/{id}", axum::routing::delete(cancel_job)),
        ("get", "/v1/jobs/{id}/result", get(get_result)),
        ("get", "/v1/jobs/{id}/aggregate", get(get_aggregate)),
        ("get", "/v1/circuits", get(list_circuits)),
        (
            "post",
            "/v1/circuits",
            // The body is read by the handler, after the caller's checks and
            // within its own limit (see `post_circuit`).
            axum::routing::post(post_circuit).layer(DefaultBodyLimit::disable()),
        ),
        ("get", "/v1/circuits/{id}", get(get_circuit)),
        (
            "post",
            "/v1/circuits/{id}/verify",
            axum::routing::post(post_verify).layer(DefaultBodyLimit::max(VERIFY_BODY)),
        ),
        ("get", "/v1/circuits/{id}/proving-key", get(get_proving_key)),
        ("get", "/v1/workers", get(list_workers)),
        ("get", "/v1/workers/{worker}", get(get_worker)),
    ];
    v.extend(crate::ledger_api::routes());
    v
}

/// The web dashboard: one page, its views routed by the URL fragment, reading
/// this API (see `pool/src/dashboard.html`).
pub const DASHBOARD: &str = include_str!("dashboard.html");

async fn dashboard() -> Response {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        DASHBOARD,
    )
        .into_response()
}

fn share_json(c: &payouts::ShareCredit, paid: u64) -> Value {
    json!({"worker": c.worker, "job": c.job, "task": c.task, "first_statement": c.first_statement,
           "proofs": c.proofs, "work": c.work, "at_ms": c.at_ms, "pps_paid": paid})
}

/// The latest verified shares, pool-wide (the overview's "recent blocks of work").
/// The rigs online now, each with its sessions and proving rate, fastest first.
async fn list_workers(State(s): State<Arc<Pool>>) -> Json<Value> {
    let now = crate::circuits::now_ms();
    let rate = |r: &Value, w: &str| r[w]["proofs_per_s"].as_f64().unwrap_or(0.0);
    let mut workers: Vec<Value> = s
        .dispatch()
        .online_all()
        .into_iter()
        .map(|(name, sessions)| {
            let rates = s.metrics().rates.json_for(now, &name);
            json!({"worker": name, "account": payouts::worker_addr(&name), "sessions": sessions, "rates": rates})
        })
        .collect();
    workers.sort_by(|a, b| {
        rate(&b["rates"], "10m")
            .total_cmp(&rate(&a["rates"], "10m"))
            .then_with(|| a["worker"].as_str().cmp(&b["worker"].as_str()))
    });
    Json(json!({ "workers": workers }))
}

async fn recent_shares(State(s): State<Arc<Pool>>) -> Api<Json<Value>> {
    let shares: Vec<Value> = s
        .ledger()
        .recent_shares("", 20, 5_000)
        .await
        .map_err(unavailable)?
        .iter()
        .map(|(c, p)| share_json(c, *p))
        .collect();
    Ok(Json(json!({ "shares": shares })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JobPage {
    /// At most this many jobs (default 50, at most 200).
    limit: Option<usize>,
    /// The `next` cursor of the previous page.
    before: Option<String>,
}

/// Jobs the caller may see, newest first, a page at a time: the operator (admin
/// token) sees every job, a client (its API key) its own, anyone else the public
/// ones. Counts by state are over every job (numbers only).
async fn list_jobs(
    State(s): State<Arc<Pool>>,
    headers: axum::http::HeaderMap,
    Query(page): Query<JobPage>,
) -> Api<Json<Value>> {
    let scope = if admin(&s, &headers).is_ok() {
        crate::store::JobScope::All
    } else {
        match crate::ledger_api::client_from_key(&s, &headers).await? {
            Some(c) => crate::store::JobScope::Client(c.id),
            None => crate::store::JobScope::Public,
        }
    };
    let limit = page.limit.unwrap_or(50).clamp(1, 200);
    let (jobs, next) = s
        .store()
        .jobs_page(&scope, page.before.as_deref(), limit)
        .await
        .map_err(unavailable)?;
    let mut list = Vec::with_capacity(jobs.len());
    for j in &jobs {
        list.push(view(&s, j).await?);
    }
    Ok(Json(json!({
        "counts": s.store().job_counts().await.map_err(unavailable)?,
        "scope": match scope {
            crate::store::JobScope::All => "all".to_owned(),
            crate::store::JobScope::Client(c) => format!("client {c}"),
            crate::store::JobScope::Public => "public".to_owned(),
        },
        "jobs": list,
        "next": next,
    })))
}

/// The HTTP API's OpenAPI 3 document, served at `/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

pub fn router(state: Arc<Pool>) -> Router {
    let timeout = std::time::Duration::from_secs(state.config().limits.http_request_timeout_secs);
    let mut router = Router::new();
    for (_, path, handler) in routes() {
        router = router.route(path, handler);
    }
    router
        .fallback(|| async {
            ApiError(
                StatusCode::NOT_FOUND,
                "no such endpoint; GET /v1/openapi.json lists them".into(),
            )
        })
        .layer(DefaultBodyLimit::max(SMALL_BODY))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            per_address,
        ))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .with_state(state)
}

/// Every request counts against its address's rate (`limits.http_requests_per_second`).
async fn per_address(
    State(s): State<Arc<Pool>>,
    Peer(ip): Peer,
    req: Request,
    next: Next,
) -> Response {
    if let Err(e) = s.limits().request(ip) {
        return ApiError::from(e).into_response();
    }
    next.run(req).await
}

/// Serves the API until shutdown: HTTPS when `http.tls_cert` is set. Our own
/// accept loop (axum's has no timeouts or caps): at most
/// `limits.http_connections` connections, `http_connections_per_ip` from one
/// address (more are closed at once), a request's headers within
/// `http_header_timeout_secs` (a kept-alive idle connection too), a whole request
/// within `http_request_timeout_secs`.
pub async fn serve(state: Arc<Pool>, listener: TcpListener) {
    use hyper_util::{
        rt::{TokioExecutor, TokioIo, TokioTimer},
        server::{conn::auto::Builder, graceful::GracefulShutdown},
        service::TowerToHyperService,
    };
    use tower::ServiceExt;
    let token = state.shutdown().clone();
    let tls = state.http_tls().cloned();
    let limits = state.config().limits.clone();
    let app = router(state.clone());
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.http_connections));
    let per_ip = crate::limits::PerAddress::default();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(std::time::Duration::from_secs(
            limits.http_header_timeout_secs,
        ));
    let graceful = GracefulShutdown::new();
    let write_timeout = std::time::Duration::from_secs(limits.http_write_timeout_secs);
    loop {
        let (stream, peer) = tokio::select! {
            _ = token.cancelled() => break,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    // Usually EMFILE: back off briefly instead of spinning.
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "HTTP connection refused: at limits.http_connections");
            continue;
        };
        let Some(slot) = per_ip.take(peer.ip(), limits.http_connections_per_ip) else {
            tracing::debug!(%peer, "HTTP connection refused: at limits.http_connections_per_ip");
            continue;
        };
        let svc = app
            .clone()
            .map_request(move |mut r: Request<hyper::body::Incoming>| {
                r.extensions_mut().insert(ConnectInfo(peer));
                r.map(Body::new)
            });
        let svc = TowerToHyperService::new(svc);
        let stream = WriteDeadline::new(stream, write_timeout);
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _held = (permit, slot);
            match tls {
                None => {
                    let conn = builder.serve_connection(TokioIo::new(stream), svc);
                    let _ = watcher.watch(conn).await;
                }
                Some(acceptor) => {
                    // The handshake has its own deadline, so a slow one holds only
                    // its own place.
                    match tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(tls)) => {
                            let conn = builder.serve_connection(TokioIo::new(tls), svc);
                            let _ = watcher.watch(conn).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(std::time::Duration::from_secs(5), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("HTTP connections still open after 5 s of shutdown; closing them");
    }
}

async fn status(State(s): State<Arc<Pool>>) -> Api<Json<Value>> {
    let lifetime = s.ledger().lifetime().await?;
    let (rates, history) = s.metrics().rates.pool_json(crate::circuits::now_ms());
    let (sessions, tasks, parked) = s
        .dispatch()
        .read(|sched| (sched.sessions(), sched.live_tasks(), sched.parked()));
    let cluster = match s.cluster() {
        Some(c) => {
            let nodes = c.nodes().await.map_err(unavailable)?;
            json!({
                "node": c.node(),
                "leader": c.is_leader(),
                "sessions": nodes.iter().map(|n| n.sessions).sum::<u64>(),
                "workers_online": nodes.iter().map(|n| n.workers).sum::<u64>(),
                "nodes": nodes,
            })
        }
        None => Value::Null,
    };
    Ok(Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "receipt_public_key": s.signer().public_hex(),
        "payouts": {
            "scheme": s.config().payouts.scheme,
            "fee_bps": s.config().payouts.fee_bps,
            "threshold": s.config().payouts.threshold,
            "unit": s.config().payouts.unit,
            "decimals": s.config().payouts.decimals,
        },
        // What a miner needs to join (the dashboard's "how to connect" box).
        "connect": connect(&s),
        "protocol": stratum::PROTOCOL_VERSION,
        "aggregation": crate::aggregation::Aggregation::describe(s.aggregation()),
        // Several pool processes on one PostgreSQL: which one this is, and every
        // live one with its sessions (their sums are the pool's).
        "cluster": cluster,
        "sessions": sessions,
        "sessions_parked": parked,
        "tasks_leased": tasks,
        "jobs_running": s.jobs().running(),
        "workers_online": s.dispatch().workers_online(),
        // Lifetime figures come from the books (they survive restarts); what
        // this process counted is under `since_start`, labelled as such.
        "shares_accepted": lifetime.shares,
        "proofs_credited": lifetime.proofs,
        "work_credited": lifetime.work,
        "rates": rates,
        "rate_history": history,
        "since_start": {
            "started_ms": s.metrics().started_ms(),
            "shares_accepted": s.metrics().shares_accepted(),
            "shares_rejected": s.metrics().shares_rejected(),
            "proofs_credited": s.metrics().proofs_credited.get(),
            "work_credited": s.metrics().work_credited.get(),
        },
        "verifier": {
            "batches": s.metrics().verify_batches.get(),
            "submits": s.metrics().verify_submits.get(),
            "proofs": s.metrics().verify_proofs.get(),
            "queued": s.verifier().queued(),
        },
    })))
}

/// How to point a rig at this pool: the stratum URL, the terms, and the
/// `zkminer` command line (ADDR.RIG stands for the miner's own account and rig).
fn connect(s: &Pool) -> Value {
    let p = &s.config().payouts;
    json!({
        "stratum_url": s.stratum_url(),
        "fee_bps": p.fee_bps,
        "fee_percent": crate::config::format_amount(u64::from(p.fee_bps), 2),
        "scheme": p.scheme,
        "payout_threshold": p.threshold,
        "unit": p.unit,
        "decimals": p.decimals,
        "worker_token_required": s.config().stratum.require_worker_token,
        "command": format!("zkminer --pool {} --worker ADDR.RIG", s.stratum_url()),
    })
}

/// Prometheus text format; current-state gauges are read now. Amounts of money
/// (the books by account) are only in a scrape that carries the admin token.
async fn metrics(State(s): State<Arc<Pool>>, headers: axum::http::HeaderMap) -> Response {
    let m = s.metrics();
    s.dispatch().read(|sched| {
        m.sessions.set(sched.sessions() as i64);
        m.tasks_leased.set(sched.live_tasks() as i64);
        m.statements_pending.set(sched.pending_statements() as i64);
    });
    m.workers_online.set(s.dispatch().workers_online() as i64);
    m.jobs_running.set(s.jobs().running() as i64);
    m.bans_active.set(s.bans().active().len() as i64);
    if let Some(commits) = s.ledger().commits() {
        m.ledger_commits
            .inc_by(commits.saturating_sub(m.ledger_commits.get()));
    }
    m.cluster_leader
        .set(s.cluster().is_some_and(|c| c.is_leader()) as i64);
    s.verifier().queued();
    let with_amounts = admin(&s, &headers).is_ok();
    if let Err(e) = m
        .observe_ledger(s.ledger(), crate::circuits::now_ms())
        .await
    {
        error!(error = %e, "cannot read the books for /metrics");
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics().encode(with_amounts),
    )
        .into_response()
}

/// Operator endpoints need `Authorization: Bearer <http.admin_token>`; without a
/// configured token they are disabled.
pub(crate) fn admin(s: &Pool, headers: &axum::http::HeaderMap) -> Api<()> {
    let Some(token) = s.config().http.admin_token.as_deref() else {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "operator endpoints are disabled: set http.admin_token in the pool's config".into(),
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Compare in constant time, so the token cannot be guessed byte by byte.
    let same = given.is_some_and(|g| {
        g.len() == token.len()
            && g.bytes()
                .zip(token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    });
    if same {
        Ok(())
    } else {
        Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "operator endpoint: send Authorization: Bearer <http.admin_token>".into(),
        ))
    }
}

async fn get_bans(State(s): State<Arc<Pool>>, headers: axum::http::HeaderMap) -> Api<Json<Value>> {
    admin(&s, &headers)?;
    Ok(Json(json!({ "bans": s.bans().active() })))
}

async fn delete_ban(
    State(s): State<Arc<Pool>>,
    headers: axum::http::HeaderMap,
    Path(target): Path<String>,
) -> Api<Json<Value>> {
    admin(&s, &headers)?;
    let t = crate::bans::Target::parse(&target).ok_or_else(|| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("{target:?} is not a ban target: use worker:ADDR.RIG or ip:ADDRESS"),
        )
    })?;
    if s.bans().lift(&t) {
        tracing::info!(target = %target, "ban lifted by the operator");
        Ok(Json(json!({ "lifted": target })))
    } else {
        Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no active ban on {target}"),
        ))
    }
}

/// What `GET /v1/jobs/{id}` shows.
#[derive(Serialize)]
pub struct JobView {
    pub id: JobId,
    pub state: JobState,
    pub client: String,
    pub circuit_id: CircuitId,
    pub circuit: String,
    pub mode: zk::result::JobMode,
    pub statements: u64,
    pub verified: u64,
    pub leased: u64,
    pub work_per_proof: u64,
    pub total_work: u64,
    pub reward: u64,
    pub created_ms: u64,
    pub deadline_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain: Option<zk::result::ChainClaim>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// Why the job failed (state `failed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

async fn view(s: &Pool, j: &JobRecord) -> Api<JobView> {
    let total = j.statements.len() as u64;
    let progress = s.dispatch().read(|sched| sched.progress(&j.id));
    let (verified, leased) = match (progress, j.state) {
        (Some(p), _) => (p.done, p.leased),
        // Ended early: what was verified before; with several pool processes,
        // a running job this one does not hold (not taken yet, or its result
        // being assembled): what is stored.
        (None, JobState::Expired | JobState::Cancelled | JobState::Failed) => {
            (s.store().proof_count(&j.id).await.map_err(unavailable)?, 0)
        }
        (None, JobState::Running) if s.cluster().is_some() => {
            (s.store().proof_count(&j.id).await.map_err(unavailable)?, 0)
        }
        // Completed, or every statement verified and the result being assembled.
        (None, _) => (total, 0),
    };
    Ok(JobView {
        id: j.id.clone(),
        state: j.state,
        client: j.client.clone(),
        circuit_id: j.circuit_id.clone(),
        circuit: j.circuit_name.clone(),
        mode: j.mode,
        statements: total,
        verified,
        leased,
        work_per_proof: j.work_per_proof,
        total_work: j.total_work(),
        reward: j.reward,
        created_ms: j.created_ms,
        deadline_ms: j.deadline_ms,
        completed_ms: j.completed_ms,
        chain: j.chain.clone(),
        result: (j.state == JobState::Completed).then(|| format!("/v1/jobs/{}/result", j.id)),
        failure: j.failure.clone(),
    })
}

/// Refuses (413) a request whose declared length is over `limit`, before any of
/// its body is read.
fn declared_within(headers: &axum::http::HeaderMap, limit: usize, what: &str) -> Api<()> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > limit as u64 => Err(ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{what} is {n} bytes, more than this pool takes ({limit} bytes)"),
        )),
        _ => Ok(()),
    }
}

/// Reads a request body of at most `limit` bytes, refusing a larger one with 413.
async fn read_body(body: Body, limit: usize, what: &str) -> Api<Bytes> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            || e.to_string().contains("length limit");
        if too_large {
            ApiError(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("{what} is larger than this pool takes ({limit} bytes)"),
            )
        } else {
            ApiError(StatusCode::BAD_REQUEST, format!("{what}: {e}"))
        }
    })
}

/// The address a request came from (our accept loop records it on every request;
/// `0.0.0.0` for a router served some other way, as in a unit test).
pub struct Peer(pub std::net::IpAddr);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |c| {
                    c.0.ip()
                }),
        ))
    }
}

async fn post_job(
    State(s): State<Arc<Pool>>,
    Peer(ip): Peer,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Api<(StatusCode, Json<JobView>)> {
    let client = crate::ledger_api::client_from_key(&s, &headers)
        .await?
        .map(|c| c.id);
    declared_within(&headers, s.config().http.max_body_bytes, "the job request")?;
    let body = read_body(body, s.config().http.max_body_bytes, "the job request").await?;
    let req: JobRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("invalid job request: {e} (see deploy/examples/*-job.json)"),
        )
    })?;
    let job = lifecycle::submit(&s, req, client, ip).await?;
    Ok((StatusCode::CREATED, Json(view(&s, &job).await?)))
}

/// A job as stored (the store is always current; the in-memory copy is only for dispatch).
async fn stored_job(s: &Pool, id: &str) -> Api<JobRecord> {
    s.store()
        .job(id)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no job {id:?}")))
}

/// A job the caller may see: a public one, or with its client's API key or the
/// admin token. A private job is answered like a missing one, so its id leaks
/// nothing either.
async fn visible_job(s: &Pool, headers: &axum::http::HeaderMap, id: &str) -> Api<JobRecord> {
    let hidden = || {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("no job {id:?} (a job that is not public is shown only with its client's API key: Authorization: Bearer KEY)"),
        )
    };
    let job = s
        .store()
        .job(id)
        .await
        .map_err(unavailable)?
        .ok_or_else(hidden)?;
    if job.is_public() || admin(s, headers).is_ok() {
        return Ok(job);
    }
    match crate::ledger_api::client_from_key(s, headers).await? {
        Some(c) if c.id == job.client => Ok(job),
        _ => Err(hidden()),
    }
}

async fn get_job(
    State(s): State<Arc<Pool>>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
) -> Api<Json<JobView>> {
    let job = visible_job(&s, &headers, &id).await?;
    Ok(Json(view(&s, &job).await?))
}

/// Cancels a running job: its client (with its API key) or the operator. The
/// verified work is paid its share of the reward; the rest is refunded.
async fn cancel_job(
    State(s): State<Arc<Pool>>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
) -> Api<Json<Value>> {
    let job = visible_job(&s, &headers, &id).await?;
    if admin(&s, &headers).is_err() {
        match crate::ledger_api::client_from_key(&s, &headers).await? {
            Some(c) if c.id == job.client => {}
            Some(c) => {
                return Err(ApiError(
                    StatusCode::FORBIDDEN,
                    format!("job {id} belongs to client {:?}, not {:?}", job.client, c.id),
                ))
            }
            None => {
                return Err(ApiError(
                    StatusCode::UNAUTHORIZED,
                    "cancelling a job needs its client's API key (Authorization: Bearer) or the admin token".into(),
                ))
            }
        }
    }
    let id = JobId::from(id);
    // Its own task: a client that hangs up mid-request does not leave the job
    // half ended (out of the scheduler, not stored as ended or not settled).
    let ending = {
        let (s, id) = (s.clone(), id.clone());
        tokio::spawn(async move { lifecycle::end(&s, &id, JobState::Cancelled, None).await })
    };
    let ended = ending.await.map_err(|e| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cancelling job {id} failed: {e}; ask again"),
        )
    })?;
    match ended.map_err(unavailable)? {
        Some(job) => Ok(Json(json!({
            "job": view(&s, &job).await?,
            "settlement": s.ledger().settlement(&id).await.map_err(unavailable)?,
        }))),
        None => Err(ApiError(
            StatusCode::CONFLICT,
            format!(
                "job {id} is not running (it is {}): only a running job can be cancelled",
                serde_json::to_value(stored_job(&s, &id).await?.state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            ),
        )),
    }
}

/// A completed job's aggregate alone (`zk::result::AggregateFile`): its public
/// inputs and SnarkPack proofs, without the Groth16 proofs.
async fn get_aggregate(
    state: State<Arc<Pool>>,
    headers: axum::http::HeaderMap,
    id: Path<String>,
) -> Api<Json<zk::result::AggregateFile>> {
    let Json(result) = get_result(state, headers, id).await?;
    result
        .aggregate_file()
        .map(Json)
        .map_err(|e| ApiError(StatusCode::NOT_FOUND, format!("job {}: {e}", result.job_id)))
}

async fn get_result(
    State(s): State<Arc<Pool>>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
) -> Api<Json<zk::JobResult>> {
    let job = visible_job(&s, &headers, &id).await?;
    match (
        s.store().result(&id).await.map_err(unavailable)?,
        job.state,
    ) {
        (Some(r), _) => Ok(Json(r)),
        (None, state @ (JobState::Expired | JobState::Cancelled | JobState::Failed)) => {
            let verified = s
                .store()
                .job_proofs(&id)
                .await
                .map_err(unavailable)?
                .len();
            let how = match state {
                JobState::Expired => "expired at its deadline".to_owned(),
                JobState::Failed => format!(
                    "failed ({})",
                    job.failure.as_deref().unwrap_or("a statement used up its attempts")
                ),
                _ => "was cancelled".to_owned(),
            };
            Err(ApiError(
                StatusCode::GONE,
                format!(
                    "job {id} {how} with {verified} of {} statements verified; it has no result",
                    job.statements.len()
                ),
            ))
        }
        (None, _) => Err(ApiError(
            StatusCode::CONFLICT,
            format!("job {id} is running, not completed; poll GET /v1/jobs/{id} until its state is \"completed\""),
        )),
    }
}

async fn list_circuits(State(s): State<Arc<Pool>>) -> Json<Vec<CircuitRecord>> {
    Json(
        s.circuits()
            .all()
            .iter()
            .map(|c| c.record.clone())
            .collect(),
    )
}

/// `POST /v1/circuits`: a circom circuit's files, base64-encoded, and a sample
/// statement's circom input (proven at registration); or, for a verify-only
/// circuit, a snarkjs `verification_key.json`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CircuitUpload {
    name: String,
    r1cs: Option<String>,
    wasm: Option<String>,
    zkey: Option<String>,
    sample: Option<Value>,
    verification_key: Option<Value>,
}

/// Registers a circom circuit: the operator, or a client with its API key (or
/// anyone, when the pool does not require client keys). 201 with the circuit;
/// 200 with the existing one when the same zkey was registered before.
async fn post_circuit(
    State(s): State<Arc<Pool>>,
    Peer(ip): Peer,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Api<(StatusCode, Json<CircuitRecord>)> {
    use crate::{
        circuits::{Registered, Registrant, Registry, RegistryError},
        limits::Caller,
    };
    declared_within(
        &headers,
        s.config().limits.circuit_upload_bytes,
        "the circuit upload",
    )?;
    // Who, and whether they may, before a byte of the body is read: an upload is
    // up to `limits.circuit_upload_bytes`, and only `limits.preparing` of them
    // are read and checked at once.
    let by = if admin(&s, &headers).is_ok() {
        Registrant::Operator
    } else {
        match crate::ledger_api::client_from_key(&s, &headers).await? {
            Some(c) => Registrant::Client(c.id),
            None if s.config().payouts.require_client_key => {
                return Err(ApiError(
                    StatusCode::UNAUTHORIZED,
                    "registering a circuit needs a client API key (Authorization: Bearer KEY) or the admin token".into(),
                ))
            }
            None => Registrant::Client(crate::jobs::ANONYMOUS.into()),
        }
    };
    let caller = match &by {
        Registrant::Client(c) if c != crate::jobs::ANONYMOUS => Caller::Client(c.clone()),
        _ => Caller::Address(ip),
    };
    // The operator is not rate-limited (its token can do anything anyway); its
    // uploads still wait their turn to be read and checked.
    if by != Registrant::Operator {
        s.limits().circuit(&caller)?;
    }
    let preparing = s
        .limits()
        .prepare(&caller, std::time::Duration::from_secs(30))
        .await?;
    let body = read_body(
        body,
        s.config().limits.circuit_upload_bytes,
        "the circuit upload",
    )
    .await?;
    let up: CircuitUpload = serde_json::from_slice(&body).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("invalid circuit upload: {e}. Send {{\"name\", \"r1cs\", \"wasm\", \"zkey\", \"sample\"}} with each file base64-encoded and a sample statement's circom input, or {{\"name\", \"verification_key\"}} (zkpool circuits add does this)"),
        )
    })?;
    drop(body);
    if !crate::circuits::valid_name(&up.name) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            RegistryError::BadName(up.name.clone()).to_string(),
        ));
    }
    let name = up.name.clone();
    let prepared = match (up.r1cs, up.wasm, up.zkey, up.sample, up.verification_key) {
        (None, None, None, None, Some(vk)) => {
            let key = zk::snarkjs::vk_from_json(&vk).map_err(|e| {
                ApiError(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("verification_key: {e}"),
                )
            })?;
            Ok(Ok(Registry::prepare_vk(&name, &by, key)))
        }
        (Some(r1cs), Some(wasm), Some(zkey), Some(sample), None) => {
            let files = decode_upload(&r1cs, &wasm, &zkey)?;
            tokio::task::spawn_blocking(move || {
                let (r1cs, wasm, zkey) = files;
                Registry::prepare_circom(
                    &name,
                    &by,
                    crate::circuits::CircomFiles {
                        r1cs: &r1cs,
                        wasm: &wasm,
                        zkey: &zkey,
                        sample: &sample,
                    },
                )
            })
            .await
        }
        (Some(_), Some(_), Some(_), None, None) => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                "missing \"sample\": a circom circuit is registered with one statement's circom input (for example your input.json), which the pool proves with your zkey to check its keys (zkpool circuits add --input FILE)".into(),
            ))
        }
        _ => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                "give either all of \"r1cs\", \"wasm\", \"zkey\" and \"sample\" (a circom circuit) or \"verification_key\" alone (a verify-only circuit)".into(),
            ))
        }
    }
    .map_err(|e| internal(format!("circuit registration: {e}")))?;
    let registered = match prepared {
        Ok(p) => s.circuits().register(s.store(), p).await,
        Err(e) => Err(e),
    };
    drop(preparing);
    match registered {
        Ok(Registered::New(r)) => {
            tracing::info!(circuit = %r.id, name = %r.name, constraints = r.constraints, public = r.public_inputs, owner = ?r.owner, "circuit registered");
            Ok((StatusCode::CREATED, Json(r)))
        }
        Ok(Registered::Existing(r)) => Ok((StatusCode::OK, Json(r))),
        Err(e @ (RegistryError::Circom(_) | RegistryError::Untrusted(_))) => {
            Err(ApiError(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))
        }
        Err(e @ (RegistryError::NameTaken(_) | RegistryError::AlreadyRegistered { .. })) => {
            Err(ApiError(StatusCode::CONFLICT, e.to_string()))
        }
        Err(e @ RegistryError::BadName(_)) => Err(ApiError(StatusCode::BAD_REQUEST, e.to_string())),
        Err(e @ RegistryError::Store(_)) => Err(unavailable(e)),
        Err(e) => Err(internal(e)),
    }
}

type Files = (Vec<u8>, Vec<u8>, Vec<u8>);

fn decode_upload(r1cs: &str, wasm: &str, zkey: &str) -> Api<Files> {
    use base64::Engine as _;
    let decode = |what: &str, v: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(v.trim())
            .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("{what}: not base64 ({e})")))
    };
    Ok((
        decode("r1cs", r1cs)?,
        decode("wasm", wasm)?,
        decode("zkey", zkey)?,
    ))
}

/// `POST /v1/circuits/{id}/verify`: checks a snarkjs `proof.json` against the
/// circuit's verifying key and the given public signals (`public.json`).
async fn post_verify(
    State(s): State<Arc<Pool>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Api<Json<Value>> {
    let c = s.circuit(&id).ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            format!("no circuit {id:?}; GET /v1/circuits lists them"),
        )
    })?;
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct VerifyRequest {
        proof: Value,
        public: Value,
    }
    let req: VerifyRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("invalid verify request: {e}. Send {{\"proof\": <snarkjs proof.json>, \"public\": <public.json>}}"),
        )
    })?;
    let bad = |e: zk::snarkjs::SnarkjsError, what: &str| {
        ApiError(StatusCode::BAD_REQUEST, format!("{what}: {e}"))
    };
    let proof = zk::snarkjs::proof_from_json(&req.proof).map_err(|e| bad(e, "proof"))?;
    let public = zk::snarkjs::public_from_json(&req.public).map_err(|e| bad(e, "public"))?;
    let key = c.verifier.clone();
    let verdict = tokio::task::spawn_blocking(move || key.verify(&public, &proof))
        .await
        .map_err(internal)?;
    match verdict {
        Ok(()) => Ok(Json(json!({"valid": true, "circuit": c.record.id}))),
        Err(e) => Err(ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("the proof does not hold: {e}"),
        )),
    }
}

async fn get_circuit(
    State(s): State<Arc<Pool>>,
    Path(id): Path<String>,
) -> Api<Json<CircuitRecord>> {
    s.circuit(&id)
        .map(|c| Json(c.record.clone()))
        .ok_or_else(|| {
            ApiError(
                StatusCode::NOT_FOUND,
                format!("no circuit {id:?}; GET /v1/circuits lists them"),
            )
        })
}

/// The proving key, streamed from its file: a download holds a small buffer, not
/// the key (a slow reader of a large key costs the pool nothing but its socket).
async fn get_proving_key(State(s): State<Arc<Pool>>, Path(id): Path<String>) -> Api<Response> {
    let c = s
        .circuit(&id)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no circuit {id:?}")))?;
    if c.record.proving_key_hash.is_empty() {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!(
                "circuit {} is verify-only: it has no proving key",
                c.record.id
            ),
        ));
    }
    let path = s.circuits().key_path(&c.record.proving_key_hash);
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| internal(format!("proving key {}: {e}", path.display())))?;
    let len = file
        .metadata()
        .await
        .map_err(|e| internal(format!("proving key {}: {e}", path.display())))?
        .len();
    let stream = tokio_util::io::ReaderStream::with_capacity(file, 64 << 10);
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, len.to_string()),
            (
                header::HeaderName::from_static("x-zkpool-key-hash"),
                c.record.proving_key_hash.clone(),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

async fn get_worker(State(s): State<Arc<Pool>>, Path(name): Path<String>) -> Api<Json<Value>> {
    let valid = if name.contains('.') {
        stratum::Worker::parse(&name).is_ok()
    } else {
        stratum::Worker::parse(&format!("{name}.x")).is_ok()
    };
    if !valid {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("{name:?} is neither an account (ADDR) nor a worker (ADDR.RIG)"),
        ));
    }
    let ledger = s.ledger();
    let (sum, rigs) = ledger.totals(&name).await.map_err(unavailable)?;
    let funds = ledger
        .miner_funds(payouts::worker_addr(&name))
        .await
        .map_err(unavailable)?;
    let rejected = s.shares().rejected(&name);
    let online = s.dispatch().online(&name);
    // A name the pool has never seen is most often a typo: say so instead of a
    // page of zeros. A rig is known when it is online now, was ever credited, or
    // had a submit rejected since start; an account also when it has money on
    // the books (credited, pending or paid) or a worker token.
    let mut known = !online.is_empty() || sum.shares > 0 || !rigs.is_empty() || rejected > 0;
    if !known && !name.contains('.') {
        known = funds.balance > 0
            || funds.pending > 0
            || funds.paid > 0
            || s.store()
                .check_worker_token(&name, None)
                .await
                .map_err(unavailable)?
                .is_some();
    }
    if !known {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!(
                "no worker or account {name:?}: the pool has never seen it. Check the spelling (ADDR, or ADDR.RIG as the rig passes to zkminer --worker); a worker appears once its rig first connects"
            ),
        ));
    }
    let recent: Vec<Value> = ledger
        .recent_shares(&name, 50, 20_000)
        .await
        .map_err(unavailable)?
        .into_iter()
        .map(|(c, paid)| share_json(&c, paid))
        .collect();
    let addr = payouts::worker_addr(&name).to_owned();
    let payouts: Vec<Value> = ledger
        .batches()
        .await
        .map_err(unavailable)?
        .into_iter()
        .filter_map(|b| {
            let amount = b.amount_for(&addr);
            (amount > 0).then(|| json!({"batch": b.id, "amount": amount, "state": b.state, "planned_ms": b.planned_ms}))
        })
        .collect();
    Ok(Json(json!({
        "worker": name,
        "work": sum.work,
        "proofs": sum.proofs,
        "shares": sum.shares,
        "last_share_ms": sum.last_share_ms,
        "rigs": rigs,
        "online": online,
        "account": payouts::worker_addr(&name),
        "balance": funds.balance,
        "pending": funds.pending,
        "paid": funds.paid,
        "recent_shares": recent,
        "rejected": rejected,
        "rates": s.metrics().rates.json_for(crate::circuits::now_ms(), &name),
        "payouts": payouts,
    })))
}

/// A connection whose writes must make progress: a write or flush that cannot go
/// on for `limit` (the peer reads nothing) fails, and the connection ends. Without
/// it a client that stops reading a response holds its connection forever.
struct WriteDeadline<S> {
    inner: S,
    limit: std::time::Duration,
    stalled: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteDeadline<S> {
    fn new(inner: S, limit: std::time::Duration) -> Self {
        WriteDeadline {
            inner,
            limit,
            stalled: None,
        }
    }

    /// The inner write is pending: fail once it has been for `limit`.
    fn stalled<T>(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<T>> {
        use std::future::Future;
        let limit = self.limit;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match sleep.as_mut().poll(cx) {
            std::task::Poll::Ready(()) => std::task::Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the client read nothing for {} s", limit.as_secs()),
            ))),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for WriteDeadline<S> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        match std::pin::Pin::new(&mut this.inner).poll_write(cx, buf) {
            std::task::Poll::Pending => this.stalled(cx),
            done => {
                this.stalled = None;
                done
            }
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        match std::pin::Pin::new(&mut this.inner).poll_flush(cx) {
            std::task::Poll::Pending => this.stalled(cx),
            done => {
                this.stalled = None;
                done
            }
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
