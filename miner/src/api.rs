//! `zkminer --http ADDR`: a small read-only JSON API for rig managers
//! (HiveOS-style agents, dashboards, a `curl` in a cron job).
//!
//! - `GET /v1/summary`: who this rig is, what it is doing, its proving rate over
//!   10 s / 60 s / 15 min, its shares, the pool's latency and the last error.
//! - `GET /v1/health`: 200 while connected to a pool (idle or proving), 503 with
//!   the state otherwise, for a watchdog that restarts the rig.
//!
//! It has no authentication and changes nothing: the binary binds it to loopback
//! unless told otherwise, and [`serve`] takes a bound listener, so tests bind
//! `127.0.0.1:0`.

use std::{
    sync::Arc,
    time::{Instant, SystemTime},
};

use axum::{extract::State, http::StatusCode, response::IntoResponse, routing::get, Json, Router};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::{status::Summary, Stats};

/// What the rig is, fixed at start.
#[derive(Debug, Clone, Serialize)]
pub struct RigInfo {
    pub version: String,
    pub worker: String,
    /// The pools in order of preference.
    pub pools: Vec<String>,
    pub threads: usize,
}

/// `GET /v1/summary`'s body.
#[derive(Debug, Serialize)]
struct SummaryBody<'a> {
    #[serde(flatten)]
    rig: &'a RigInfo,
    #[serde(flatten)]
    now: Summary,
}

struct Shared {
    rig: RigInfo,
    stats: Arc<Stats>,
}

impl Shared {
    fn summary(&self) -> Summary {
        self.stats
            .monitor
            .lock()
            .expect("the monitor lock is never poisoned")
            .summary(Instant::now(), SystemTime::now())
    }
}

/// Serves the API on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    rig: RigInfo,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/v1/summary", get(summary))
        .route("/v1/health", get(health))
        .fallback(not_found)
        .with_state(Arc::new(Shared { rig, stats }));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

async fn summary(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    let now = s.summary();
    Json(serde_json::to_value(SummaryBody { rig: &s.rig, now }).expect("the summary serializes"))
}

async fn health(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    let now = s.summary();
    let connected = matches!(now.state, "idle" | "proving");
    let code = if connected {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(serde_json::json!({
            "ok": connected,
            "state": now.state,
            "state_detail": now.state_detail,
            "last_error": now.last_error,
        })),
    )
}

async fn not_found() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({"error": "no such endpoint: GET /v1/summary or /v1/health"})),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The API through a real socket: the summary carries the rig and the
    /// monitor's figures, health follows the state, other paths are 404.
    #[tokio::test]
    async fn summary_and_health_answer_from_the_monitor() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(Stats::default());
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve(
            listener,
            RigInfo {
                version: "9.9.9".into(),
                worker: "alice.rig1".into(),
                pools: vec!["stratum+tcp://127.0.0.1:3333".into()],
                threads: 4,
            },
            stats.clone(),
            stop.clone(),
        ));
        let get = |path: &'static str| async move {
            let r = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
            (
                r.status().as_u16(),
                r.json::<serde_json::Value>().await.unwrap(),
            )
        };
        let (code, v) = get("/v1/summary").await;
        assert_eq!(code, 200);
        assert_eq!(
            (&v["version"], &v["worker"], &v["threads"], &v["state"]),
            (
                &"9.9.9".into(),
                &"alice.rig1".into(),
                &4.into(),
                &"connecting".into()
            )
        );
        assert!(
            v["last_submit_secs_ago"].is_null() && v["latency_ms"].is_null(),
            "{v}"
        );
        assert_eq!(v["proofs_per_s"]["10s"], 0.0);
        let (code, v) = get("/v1/health").await;
        assert_eq!((code, &v["ok"]), (503, &false.into()), "{v}");
        stats.note(|m| m.connected("stratum+tcp://127.0.0.1:3333"));
        let (code, v) = get("/v1/health").await;
        assert_eq!((code, &v["state"]), (200, &"idle".into()), "{v}");
        let (code, v) = get("/v1/nothing").await;
        assert_eq!(code, 404);
        assert!(v["error"].as_str().unwrap().contains("/v1/summary"));
        stop.cancel();
        server.await.unwrap().unwrap();
    }
}
