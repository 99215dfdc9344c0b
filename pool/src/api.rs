//! A client of the pool's HTTP API: what the `zkpool` client and operator commands,
//! the demo and the end-to-end tests talk to a pool with. It speaks the API that
//! [`crate::http`] serves and knows nothing of the command line; its errors keep
//! the pool's own `{"error": ...}` message, because that message says what to do.
//!
//! Most answers are returned as [`serde_json::Value`] (the API has many shapes and
//! callers print them as they are); the job endpoints, which every client uses,
//! also have typed helpers ([`Client::submit_job`], [`Client::job`],
//! [`Client::result`]).

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;

use crate::jobs::JobState;

/// Why a request to the pool did not give the answer asked for.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No answer at all: the connection, the TLS handshake (an untrusted
    /// certificate) or sending the request failed.
    #[error("cannot reach the pool at {url}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The pool answered with an error status; `message` is its `{"error": ...}`
    /// ("no message" when the body has none).
    #[error("{method} {path}: HTTP {status}: {message}")]
    Http {
        method: Method,
        path: String,
        status: StatusCode,
        message: String,
    },
    /// A successful answer's body could not be read to its end.
    #[error("{method} {path}: the answer could not be read")]
    Body {
        method: Method,
        path: String,
        #[source]
        source: reqwest::Error,
    },
    /// A successful answer is not what the endpoint promises (a job, a result file).
    #[error("{method} {path}: the answer is not {expected}")]
    Unexpected {
        method: Method,
        path: String,
        expected: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// The job did not complete within the time [`Client::wait`] was given.
    #[error("job {id} did not complete within {secs}s: {verified}/{statements} verified")]
    NotCompleted {
        id: String,
        secs: u64,
        verified: u64,
        statements: u64,
    },
    /// The CA file cannot be read or holds no PEM certificate.
    #[error(transparent)]
    Ca(#[from] stratum::tls::TlsError),
    /// reqwest refused a CA certificate, or could not build a client trusting it.
    #[error(transparent)]
    Tls(reqwest::Error),
}

impl Error {
    /// The HTTP status the pool answered with, for an [`Error::Http`].
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Error::Http { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// What `GET /v1/jobs/{id}` (and `POST /v1/jobs`) answer, as a client reads it:
/// the fields a client acts on. The pool sends more (`mode`, `chain`, times, ...),
/// which [`Client::get`] returns whole.
#[derive(Debug, Clone, Deserialize)]
pub struct Job {
    pub id: String,
    pub state: JobState,
    /// The client account the job belongs to.
    pub client: String,
    /// The circuit's id: what its result must be verified against.
    pub circuit_id: String,
    /// The circuit's name.
    pub circuit: String,
    pub statements: u64,
    /// Statements with a verified proof.
    pub verified: u64,
    /// Statements leased to a rig now.
    pub leased: u64,
    /// Work credited for the whole job (constraints of every proof, or as weighed).
    pub total_work: u64,
    /// The reward escrowed for it (smallest units).
    pub reward: u64,
    /// Why the job failed (state `failed`).
    #[serde(default)]
    pub failure: Option<String>,
}

/// A pool's HTTP API at one base URL, optionally with a bearer token (the
/// operator's admin token or a client's API key).
#[derive(Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
}

impl Client {
    /// The API at `base` (e.g. `http://127.0.0.1:8080`). For an HTTPS pool with a
    /// private CA or a self-signed certificate, `ZKPOOL_TLS_CA` names the PEM file
    /// to trust (see also [`Client::with_ca`]); a file that cannot be used is
    /// reported on standard error and not trusted, so the request then fails
    /// saying the pool cannot be reached rather than silently trusting less.
    pub fn new(base: &str) -> Self {
        let plain = Client::plain(base);
        match std::env::var_os("ZKPOOL_TLS_CA") {
            Some(ca) => match Client::plain(base).with_ca(&PathBuf::from(ca)) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!(
                        "zkpool: ZKPOOL_TLS_CA: {}; not trusting it",
                        DisplayChain(&e)
                    );
                    plain
                }
            },
            None => plain,
        }
    }

    /// The API at `base`, trusting only the built-in roots.
    fn plain(base: &str) -> Self {
        Client {
            base: base.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            token: None,
        }
    }

    /// The base URL, e.g. `http://127.0.0.1:8080`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The same API, also trusting the CA certificates in the PEM file `ca`.
    pub fn with_ca(mut self, ca: &Path) -> Result<Self, Error> {
        let mut b = reqwest::Client::builder();
        for der in stratum::tls::certificates(ca)? {
            b = b.add_root_certificate(reqwest::Certificate::from_der(&der).map_err(Error::Tls)?);
        }
        self.http = b.build().map_err(Error::Tls)?;
        Ok(self)
    }

    /// The same API, sending `Authorization: Bearer <token>` (an admin token or a
    /// client API key).
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    /// `GET path`, its JSON answer.
    pub async fn get(&self, path: &str) -> Result<Value, Error> {
        self.json(Method::GET, path, None).await
    }

    /// `POST path` with a JSON body, its JSON answer.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, Error> {
        self.json(Method::POST, path, Some(body)).await
    }

    /// `DELETE path`, its JSON answer.
    pub async fn delete(&self, path: &str) -> Result<Value, Error> {
        self.json(Method::DELETE, path, None).await
    }

    /// `GET path` returning the body as text (CSV exports).
    pub async fn get_text(&self, path: &str) -> Result<String, Error> {
        let r = self.send(Method::GET, path, None).await?;
        if !r.status().is_success() {
            return Err(refusal(Method::GET, path, r).await);
        }
        r.text().await.map_err(|source| Error::Body {
            method: Method::GET,
            path: path.to_owned(),
            source,
        })
    }

    /// Submits a job (`POST /v1/jobs`): the job as accepted.
    pub async fn submit_job(&self, job: &Value) -> Result<Job, Error> {
        let path = "/v1/jobs";
        typed(Method::POST, path, self.post(path, job).await?, "a job")
    }

    /// A job's state and progress (`GET /v1/jobs/{id}`).
    pub async fn job(&self, id: &str) -> Result<Job, Error> {
        let path = format!("/v1/jobs/{id}");
        typed(Method::GET, &path, self.get(&path).await?, "a job")
    }

    /// A completed job's result file (`GET /v1/jobs/{id}/result`), parsed, not
    /// verified: the caller verifies it against the circuit it expects.
    pub async fn result(&self, id: &str) -> Result<zk::JobResult, Error> {
        let path = format!("/v1/jobs/{id}/result");
        typed(
            Method::GET,
            &path,
            self.get(&path).await?,
            "a zkpool result",
        )
    }

    /// A completed job's aggregate alone (`GET /v1/jobs/{id}/aggregate`), parsed,
    /// not verified.
    pub async fn aggregate(&self, id: &str) -> Result<zk::result::AggregateFile, Error> {
        let path = format!("/v1/jobs/{id}/aggregate");
        typed(
            Method::GET,
            &path,
            self.get(&path).await?,
            "a zkpool aggregate",
        )
    }

    /// Polls a job until it completes; calls `each` with its view every poll.
    /// Returns the completed job's view, whole.
    pub async fn wait(
        &self,
        id: &str,
        timeout: Duration,
        mut each: impl FnMut(&Value),
    ) -> Result<Value, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.get(&format!("/v1/jobs/{id}")).await?;
            each(&v);
            if v["state"] == "completed" {
                return Ok(v);
            }
            if Instant::now() > deadline {
                return Err(Error::NotCompleted {
                    id: id.to_owned(),
                    secs: timeout.as_secs(),
                    verified: v["verified"].as_u64().unwrap_or(0),
                    statements: v["statements"].as_u64().unwrap_or(0),
                });
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Sends a request; any answer, error statuses included, is `Ok`.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<reqwest::Response, Error> {
        let url = format!("{}{path}", self.base);
        let mut r = self.http.request(method, &url);
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r.json(b);
        }
        r.send()
            .await
            .map_err(|source| Error::Unreachable { url, source })
    }

    /// A request whose answer is JSON. A successful answer without a JSON body
    /// (none is expected of this API) reads as `null`.
    async fn json(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Value, Error> {
        let r = self.send(method.clone(), path, body).await?;
        if !r.status().is_success() {
            return Err(refusal(method, path, r).await);
        }
        Ok(r.json().await.unwrap_or(Value::Null))
    }
}

/// An error answer as an [`Error::Http`] carrying the pool's message.
async fn refusal(method: Method, path: &str, r: reqwest::Response) -> Error {
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    let message = body
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or("no message")
        .to_owned();
    Error::Http {
        method,
        path: path.to_owned(),
        status,
        message,
    }
}

fn typed<T: serde::de::DeserializeOwned>(
    method: Method,
    path: &str,
    v: Value,
    expected: &'static str,
) -> Result<T, Error> {
    serde_json::from_value(v).map_err(|source| Error::Unexpected {
        method,
        path: path.to_owned(),
        expected,
        source,
    })
}

/// An error and its sources, joined with ": ", as `{:#}` shows an `anyhow` error.
struct DisplayChain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for DisplayChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message tests and users read: method, path, status and the pool's words.
    #[test]
    fn an_http_error_says_the_request_the_status_and_the_pools_message() {
        let e = Error::Http {
            method: Method::POST,
            path: "/v1/jobs".into(),
            status: StatusCode::UNPROCESSABLE_ENTITY,
            message: "too many statements".into(),
        };
        assert_eq!(
            e.to_string(),
            "POST /v1/jobs: HTTP 422 Unprocessable Entity: too many statements"
        );
        assert_eq!(e.status(), Some(StatusCode::UNPROCESSABLE_ENTITY));
    }

    /// A pool that is not there is named by its URL.
    #[tokio::test]
    async fn an_unreachable_pool_is_named() {
        // A port just bound and released: nothing listens there.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("loopback binds");
        let e = Client::plain(&format!("http://{addr}/"))
            .get("/v1/status")
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("cannot reach the pool at http://{addr}/v1/status")),
            "{e}"
        );
        assert_eq!(e.status(), None);
    }

    /// A CA file that is not there is refused with its path, not ignored.
    #[test]
    fn a_missing_ca_file_is_refused_with_its_path() {
        let e = Client::plain("https://127.0.0.1:1")
            .with_ca(Path::new("/nonexistent/ca.pem"))
            .err()
            .expect("no such file");
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    }
}
