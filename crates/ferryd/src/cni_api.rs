//! The CNI door on Ferry's API socket, for the `ferry-overlay` plugin:
//! `POST /cni/add`, `/cni/del`, `/cni/check` and `/cni/gc`. A failure
//! answers `{"error": MESSAGE, "code": CNI_CODE}`: ferryd knows what went
//! wrong, so it picks the CNI error code the plugin prints (11, try again
//! later, when the cluster store is unavailable).

use crate::log::Failure;
use axum::body::Bytes;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use ferry_cnm::cni::{CniGc, CniRequest};
use ferry_cnm::{CnmError, Controller};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::state::Shared;

/// CNI's well-known codes (the plugin's side has them as `ferry_cni::code`).
const INVALID_NETWORK_CONFIG: u32 = 7;
const DECODING_FAILURE: u32 = 6;
const TRY_AGAIN_LATER: u32 = 11;
const INTERNAL: u32 = 100;

/// The HTTP status and CNI code of a controller error.
fn codes(e: &CnmError) -> (StatusCode, u32) {
    match e {
        CnmError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, TRY_AGAIN_LATER),
        CnmError::NotFound { .. } => (StatusCode::NOT_FOUND, INVALID_NETWORK_CONFIG),
        CnmError::Driver(_) | CnmError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, INTERNAL),
        CnmError::Unsupported(_) => (StatusCode::BAD_REQUEST, INTERNAL),
        _ => (StatusCode::BAD_REQUEST, INVALID_NETWORK_CONFIG),
    }
}

fn answer(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn failure(
    status: StatusCode,
    code: u32,
    err: Box<dyn std::error::Error + Send + Sync>,
) -> Response {
    let mut r = answer(status, json!({"error": err.to_string(), "code": code}));
    r.extensions_mut().insert(Failure(err.into()));
    r
}

type Handler = fn(&mut Controller, Value) -> Result<Value, CnmError>;

/// One request on the blocking pool: decode, run against the controller.
async fn run(ctl: Shared, body: Bytes, f: Handler) -> Response {
    let done = tokio::task::spawn_blocking(move || {
        let req: Value = serde_json::from_slice(&body).map_err(|e| {
            (
                StatusCode::BAD_REQUEST,
                DECODING_FAILURE,
                format!("malformed request: {e}").into(),
            )
        })?;
        let mut c = ctl.lock().map_err(|_| {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                INTERNAL,
                "controller poisoned".into(),
            )
        })?;
        f(&mut c, req).map_err(|e| {
            let (status, code) = codes(&e);
            (status, code, e.into())
        })
    })
    .await;
    match done {
        Ok(Ok(v)) => answer(StatusCode::OK, v),
        Ok(Err((status, code, e))) => failure(status, code, e),
        Err(e) => failure(StatusCode::INTERNAL_SERVER_ERROR, INTERNAL, e.into()),
    }
}

/// The routes, merged into Ferry's API router.
pub fn router(ctl: Shared) -> Router {
    let route = |f: Handler| {
        let ctl = ctl.clone();
        post(move |body: Bytes| run(ctl, body, f))
    };
    Router::new()
        .route(
            "/cni/add",
            route(|c, r| c.cni_add(&decode::<CniRequest>(r)?).map(|a| json!(a))),
        )
        .route(
            "/cni/del",
            route(|c, r| c.cni_del(&decode::<CniRequest>(r)?).map(|_| json!({}))),
        )
        .route(
            "/cni/check",
            route(|c, r| c.cni_check(&decode::<CniRequest>(r)?).map(|a| json!(a))),
        )
        .route(
            "/cni/gc",
            route(|c, r| {
                c.cni_gc(&decode::<CniGc>(r)?)
                    .map(|n| json!({ "removed": n }))
            }),
        )
}

fn decode<T: DeserializeOwned>(v: Value) -> Result<T, CnmError> {
    serde_json::from_value(v).map_err(|e| CnmError::Invalid(format!("malformed request: {e}")))
}
