//! The HTTP API (axum). Every error is JSON `{"error": "..."}` with a status that
//! says whose fault it is and a message that says what to change.

use std::sync::Arc;

use axum::{
    body::Bytes,
    extract::{DefaultBodyLimit, Path, State},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, MethodRouter},
    Json, Router,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tracing::error;

use crate::{
    circuits::CircuitRecord,
    jobs::{JobError, JobRecord, JobRequest, JobState},
    server::PoolState,
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
            JobError::Internal(_) => ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }
}

pub(crate) fn internal(e: impl std::fmt::Display) -> ApiError {
    error!(error = %e, "internal error answering an HTTP request");
    ApiError(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("internal error: {e}"),
    )
}

pub(crate) type Api<T> = Result<T, ApiError>;

/// Every route of the API: (method, path, handler). The router is built from this
/// table and only from it, so a test can compare it with the OpenAPI document.
pub fn routes() -> Vec<(&'static str, &'static str, MethodRouter<Arc<PoolState>>)> {
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
        ("post", "/v1/jobs", axum::routing::post(post_job)),
        ("get", "/v1/jobs", get(list_jobs)),
        ("get", "/v1/shares/recent", get(recent_shares)),
        ("get", "/v1/jobs/{id}", get(get_job)),
        ("delete", "/v1/jobs/{id}", axum::routing::delete(cancel_job)),
        ("get", "/v1/jobs/{id}/result", get(get_result)),
        ("get", "/v1/circuits", get(list_circuits)),
        (
            "post",
            "/v1/circuits",
            axum::routing::post(post_circuit).layer(DefaultBodyLimit::max(MAX_CIRCUIT_UPLOAD)),
        ),
        ("get", "/v1/circuits/{id}", get(get_circuit)),
        (
            "post",
            "/v1/circuits/{id}/verify",
            axum::routing::post(post_verify),
        ),
        ("get", "/v1/circuits/{id}/proving-key", get(get_proving_key)),
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
async fn recent_shares(State(s): State<Arc<PoolState>>) -> Api<Json<Value>> {
    let shares: Vec<Value> = s
        .ledger
        .recent_shares("", 20, 5_000)
        .map_err(internal)?
        .iter()
        .map(|(c, p)| share_json(c, *p))
        .collect();
    Ok(Json(json!({ "shares": shares })))
}

/// Jobs, newest first (at most 100), with counts by state over all jobs.
async fn list_jobs(State(s): State<Arc<PoolState>>) -> Api<Json<Value>> {
    let mut jobs = s.store.jobs().map_err(internal)?;
    jobs.sort_by_key(|j| std::cmp::Reverse(j.created_ms));
    let mut counts = std::collections::BTreeMap::<String, u64>::new();
    for j in &jobs {
        let state = serde_json::to_value(j.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        *counts.entry(state).or_default() += 1;
    }
    let list: Vec<JobView> = jobs.iter().take(100).map(|j| view(&s, j)).collect();
    Ok(Json(json!({ "counts": counts, "jobs": list })))
}

/// The HTTP API's OpenAPI 3 document, served at `/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

pub fn router(state: Arc<PoolState>) -> Router {
    let limit = state.config.http.max_body_bytes;
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
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Serves the API until shutdown: HTTPS when `http.tls_cert` is set.
pub async fn serve(state: Arc<PoolState>, listener: TcpListener) {
    let token = state.shutdown.clone();
    let tls = state.http_tls.clone();
    let app = router(state);
    let stop = {
        let token = token.clone();
        async move { token.cancelled().await }
    };
    let served = match tls {
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
        }
        Some(acceptor) => {
            let listener = TlsListener::start(listener, acceptor, token);
            axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
        }
    };
    if let Err(e) = served {
        error!(error = %e, "HTTP server failed");
    }
}

/// HTTPS: TCP connections are accepted and their TLS handshakes run in their own
/// tasks (bounded by a timeout, so a slow handshake holds up nobody); finished
/// ones are handed to axum.
struct TlsListener {
    ready: tokio::sync::mpsc::Receiver<(
        stratum::tls::ServerTlsStream<tokio::net::TcpStream>,
        std::net::SocketAddr,
    )>,
    addr: std::net::SocketAddr,
}

impl TlsListener {
    fn start(
        tcp: TcpListener,
        acceptor: stratum::tls::TlsAcceptor,
        stop: tokio_util::sync::CancellationToken,
    ) -> Self {
        let addr = tcp.local_addr().expect("a bound listener has an address");
        let (tx, ready) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    _ = stop.cancelled() => return,
                    a = tcp.accept() => match a {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!(error = %e, "HTTPS accept failed");
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        TlsListener { ready, addr }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = stratum::tls::ServerTlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accept task stopped (shutdown): park until axum's graceful
            // shutdown, which is already under way, ends the server.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

async fn status(State(s): State<Arc<PoolState>>) -> Json<Value> {
    let (sessions, tasks, parked) = {
        let sched = s
            .scheduler
            .lock()
            .expect("scheduler lock is never poisoned");
        (sched.sessions(), sched.live_tasks(), sched.parked())
    };
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "receipt_public_key": s.signer.public_hex(),
        "payouts": {
            "scheme": s.config.payouts.scheme,
            "fee_bps": s.config.payouts.fee_bps,
            "threshold": s.config.payouts.threshold,
        },
        "protocol": stratum::PROTOCOL_VERSION,
        "sessions": sessions,
        "sessions_parked": parked,
        "tasks_leased": tasks,
        "jobs_running": s.jobs.len(),
        "workers_online": s.workers_online(),
        "shares_accepted": s.metrics.shares_accepted(),
        "shares_rejected": s.metrics.shares_rejected(),
        "proofs_credited": s.metrics.proofs_credited.get(),
        "work_credited": s.metrics.work_credited.get(),
        "verifier": {
            "batches": s.metrics.verify_batches.get(),
            "submits": s.metrics.verify_submits.get(),
            "proofs": s.metrics.verify_proofs.get(),
            "queued": s.verifier.queued(),
        },
    }))
}

/// Prometheus text format; current-state gauges are read now.
async fn metrics(State(s): State<Arc<PoolState>>) -> Response {
    {
        let sched = s
            .scheduler
            .lock()
            .expect("scheduler lock is never poisoned");
        s.metrics.sessions.set(sched.sessions() as i64);
        s.metrics.tasks_leased.set(sched.live_tasks() as i64);
        s.metrics
            .statements_pending
            .set(sched.pending_statements() as i64);
    }
    s.metrics.workers_online.set(s.workers_online() as i64);
    s.metrics.jobs_running.set(s.jobs.len() as i64);
    let active = s
        .bans
        .lock()
        .expect("ban lock is never poisoned")
        .active(std::time::Instant::now())
        .len();
    s.metrics.bans_active.set(active as i64);
    s.verifier.queued();
    s.metrics
        .observe_ledger(&s.ledger, crate::circuits::now_ms());
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.encode(),
    )
        .into_response()
}

/// Operator endpoints need `Authorization: Bearer <http.admin_token>`; without a
/// configured token they are disabled.
pub(crate) fn admin(s: &PoolState, headers: &axum::http::HeaderMap) -> Api<()> {
    let Some(token) = s.config.http.admin_token.as_deref() else {
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

async fn get_bans(
    State(s): State<Arc<PoolState>>,
    headers: axum::http::HeaderMap,
) -> Api<Json<Value>> {
    admin(&s, &headers)?;
    let bans = s
        .bans
        .lock()
        .expect("ban lock is never poisoned")
        .active(std::time::Instant::now());
    Ok(Json(json!({ "bans": bans })))
}

async fn delete_ban(
    State(s): State<Arc<PoolState>>,
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
    if s.bans
        .lock()
        .expect("ban lock is never poisoned")
        .lift(&t, std::time::Instant::now())
    {
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
    pub id: String,
    pub state: JobState,
    pub client: String,
    pub circuit_id: String,
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

fn view(s: &PoolState, j: &JobRecord) -> JobView {
    let total = j.statements.len() as u64;
    let progress = s
        .scheduler
        .lock()
        .expect("scheduler lock is never poisoned")
        .progress(&j.id);
    let (verified, leased) = match (progress, j.state) {
        (Some(p), _) => (p.done, p.leased),
        // Expired: what was verified before the deadline.
        (None, JobState::Expired | JobState::Cancelled | JobState::Failed) => (
            s.store
                .job_proofs(&j.id)
                .map(|p| p.len() as u64)
                .unwrap_or(0),
            0,
        ),
        // Completed, or every statement verified and the result being assembled.
        (None, _) => (total, 0),
    };
    JobView {
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
    }
}

async fn post_job(
    State(s): State<Arc<PoolState>>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Api<(StatusCode, Json<JobView>)> {
    let client = crate::ledger_api::client_from_key(&s, &headers)?.map(|c| c.id);
    let req: JobRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("invalid job request: {e} (see deploy/examples/*-job.json)"),
        )
    })?;
    let job = s.submit_job(req, client).await?;
    Ok((StatusCode::CREATED, Json(view(&s, &job))))
}

/// A job as stored (the store is always current; the in-memory copy is only for dispatch).
fn stored_job(s: &PoolState, id: &str) -> Api<JobRecord> {
    s.store
        .job(id)
        .map_err(internal)?
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no job {id:?}")))
}

async fn get_job(State(s): State<Arc<PoolState>>, Path(id): Path<String>) -> Api<Json<JobView>> {
    let job = stored_job(&s, &id)?;
    Ok(Json(view(&s, &job)))
}

/// Cancels a running job: its client (with its API key) or the operator. The
/// verified work is paid its share of the reward; the rest is refunded.
async fn cancel_job(
    State(s): State<Arc<PoolState>>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
) -> Api<Json<Value>> {
    let job = stored_job(&s, &id)?;
    if admin(&s, &headers).is_err() {
        match crate::ledger_api::client_from_key(&s, &headers)? {
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
    match s
        .end_job(&id, JobState::Cancelled)
        .await
        .map_err(internal)?
    {
        Some(job) => Ok(Json(json!({
            "job": view(&s, &job),
            "settlement": s.ledger.settlement(&id).map_err(internal)?,
        }))),
        None => Err(ApiError(
            StatusCode::CONFLICT,
            format!(
                "job {id} is not running (it is {}): only a running job can be cancelled",
                serde_json::to_value(stored_job(&s, &id)?.state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            ),
        )),
    }
}

async fn get_result(
    State(s): State<Arc<PoolState>>,
    Path(id): Path<String>,
) -> Api<Json<zk::JobResult>> {
    let job = stored_job(&s, &id)?;
    match (s.store.result(&id).map_err(internal)?, job.state) {
        (Some(r), _) => Ok(Json(r)),
        (None, state @ (JobState::Expired | JobState::Cancelled | JobState::Failed)) => {
            let verified = s.store.job_proofs(&id).map_err(internal)?.len();
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

async fn list_circuits(State(s): State<Arc<PoolState>>) -> Json<Vec<CircuitRecord>> {
    Json(s.registry.all().iter().map(|c| c.record.clone()).collect())
}

/// The largest `POST /v1/circuits` body: the three files, base64-encoded.
pub const MAX_CIRCUIT_UPLOAD: usize = 256 << 20;

/// `POST /v1/circuits`: a circom circuit's files, base64-encoded; or, for a
/// verify-only circuit, a snarkjs `verification_key.json`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CircuitUpload {
    name: String,
    r1cs: Option<String>,
    wasm: Option<String>,
    zkey: Option<String>,
    verification_key: Option<Value>,
}

/// Registers a circom circuit: the operator, or a client with its API key (or
/// anyone, when the pool does not require client keys). 201 with the circuit;
/// 200 with the existing one when the same zkey was registered before.
async fn post_circuit(
    State(s): State<Arc<PoolState>>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Api<(StatusCode, Json<CircuitRecord>)> {
    if admin(&s, &headers).is_err() {
        let client = crate::ledger_api::client_from_key(&s, &headers)?;
        if client.is_none() && s.config.payouts.require_client_key {
            return Err(ApiError(
                StatusCode::UNAUTHORIZED,
                "registering a circuit needs a client API key (Authorization: Bearer KEY) or the admin token".into(),
            ));
        }
    }
    let up: CircuitUpload = serde_json::from_slice(&body).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("invalid circuit upload: {e}. Send {{\"name\", \"r1cs\", \"wasm\", \"zkey\"}} with each file base64-encoded, or {{\"name\", \"verification_key\"}} (zkpool circuits add does this)"),
        )
    })?;
    if up.name.is_empty()
        || up.name.len() > 64
        || !up
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!(
                "circuit name {:?}: use 1-64 letters, digits, '-', '_' or '.'",
                up.name
            ),
        ));
    }
    let state = s.clone();
    let name = up.name.clone();
    let registered = match (up.r1cs, up.wasm, up.zkey, up.verification_key) {
        (None, None, None, Some(vk)) => {
            let key = zk::snarkjs::vk_from_json(&vk).map_err(|e| {
                ApiError(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("verification_key: {e}"),
                )
            })?;
            tokio::task::spawn_blocking(move || {
                state.registry.register_vk(&state.store, &name, key)
            })
            .await
        }
        (Some(r1cs), Some(wasm), Some(zkey), None) => {
            let files = decode_upload(&r1cs, &wasm, &zkey)?;
            tokio::task::spawn_blocking(move || {
                let (r1cs, wasm, zkey) = files;
                state
                    .registry
                    .register_circom(&state.store, &name, &r1cs, &wasm, &zkey)
            })
            .await
        }
        _ => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                "give either all of \"r1cs\", \"wasm\" and \"zkey\" (a circom circuit) or \"verification_key\" alone (a verify-only circuit)".into(),
            ))
        }
    }
    .map_err(|e| internal(format!("circuit registration: {e}")))?;
    use crate::circuits::{Registered, RegistryError};
    match registered {
        Ok(Registered::New(r)) => {
            tracing::info!(circuit = %r.id, name = %r.name, constraints = r.constraints, public = r.public_inputs, "circuit registered");
            Ok((StatusCode::CREATED, Json(r)))
        }
        Ok(Registered::Existing(r)) => Ok((StatusCode::OK, Json(r))),
        Err(e @ (RegistryError::Circom(_) | RegistryError::NameTaken(_))) => {
            let status = if matches!(e, RegistryError::NameTaken(_)) {
                StatusCode::CONFLICT
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            Err(ApiError(status, e.to_string()))
        }
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
    State(s): State<Arc<PoolState>>,
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
    State(s): State<Arc<PoolState>>,
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

async fn get_proving_key(State(s): State<Arc<PoolState>>, Path(id): Path<String>) -> Api<Response> {
    let c = s
        .circuit(&id)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no circuit {id:?}")))?;
    let path = s.registry.key_path(&c.record.proving_key_hash);
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|e| internal(format!("proving key {}: {e}", path.display())))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (
                header::HeaderName::from_static("x-zkpool-key-hash"),
                c.record.proving_key_hash.clone(),
            ),
        ],
        bytes,
    )
        .into_response())
}

async fn get_worker(State(s): State<Arc<PoolState>>, Path(name): Path<String>) -> Api<Json<Value>> {
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
    let (sum, rigs) = s.ledger.totals(&name).map_err(internal)?;
    let funds = s.ledger.miner_funds(payouts::worker_addr(&name));
    let recent: Vec<Value> = s
        .ledger
        .recent_shares(&name, 50, 20_000)
        .map_err(internal)?
        .into_iter()
        .map(|(c, paid)| share_json(&c, paid))
        .collect();
    let addr = payouts::worker_addr(&name).to_owned();
    let payouts: Vec<Value> = s
        .ledger
        .batches()
        .into_iter()
        .filter_map(|b| {
            let amount = b.amount_for(&addr);
            (amount > 0).then(|| json!({"batch": b.id, "amount": amount, "state": b.state, "planned_ms": b.planned_ms}))
        })
        .collect();
    let rejected: u64 = s
        .rejected
        .iter()
        .filter(|e| e.key() == &name || payouts::worker_addr(e.key()) == name)
        .map(|e| *e.value())
        .sum();
    let online: Vec<String> = s
        .sessions
        .iter()
        .filter(|e| e.worker == name || e.worker.split_once('.').is_some_and(|(a, _)| a == name))
        .map(|e| e.worker.clone())
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
        "payouts": payouts,
    })))
}
