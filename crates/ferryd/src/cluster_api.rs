//! Ferry's API for the cluster: `GET /hosts` (the cluster's hosts, their
//! VTEPs and lease ages) and `GET /networks/{name}/cluster` (an overlay
//! network's VNI, hosts, blocks and endpoints, from the cluster store).
//!
//! The store is read on the blocking pool without the controller's lock:
//! a store that is down answers within its deadline (3 s), with 503 and
//! "cluster store unavailable, try again later", and holds nothing up.

use crate::log::Failure;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use ferry_cnm::overlay::Cluster;
use ferry_cnm::CnmError;
use serde_json::{json, Value};
use std::sync::Arc;

/// Merged into `plugin_api::ferry_router` (its logging layer covers these routes).
pub fn router(ctl: crate::state::Shared) -> Router {
    let hosts = ctl.clone();
    Router::new()
        .route(
            "/hosts",
            get(move || read(hosts, |c| c.host_views().map(|h| json!(h)))),
        )
        .route(
            "/networks/{name}/cluster",
            get(move |Path(name): Path<String>| {
                read(ctl, move |c| c.network_view(&name).map(|n| json!(n)))
            }),
        )
}

/// Runs `f` against this host's cluster, off the controller's lock.
async fn read<F>(ctl: crate::state::Shared, f: F) -> Response
where
    F: FnOnce(&Cluster) -> Result<Value, CnmError> + Send + 'static,
{
    let cluster = match ctl.lock() {
        Ok(c) => c.cluster().cloned(),
        Err(_) => return failed(CnmError::Store("controller poisoned".into())),
    };
    let Some(cluster) = cluster else {
        return failed(CnmError::Unsupported(
            "this ferryd is in no cluster: it has no underlay address (--advertise-address)".into(),
        ));
    };
    match tokio::task::spawn_blocking(move || f(&cluster)).await {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e)) => failed(e),
        Err(e) => failed(CnmError::Store(format!("handler failed: {e}"))),
    }
}

/// `{"error": ...}` with the error's status, the error attached for the log.
fn failed(e: CnmError) -> Response {
    let status = match &e {
        CnmError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        CnmError::NotFound { .. } => StatusCode::NOT_FOUND,
        CnmError::Unsupported(_) | CnmError::Invalid(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let mut r = (status, Json(json!({ "error": e.to_string() }))).into_response();
    r.extensions_mut().insert(Failure(Arc::new(e)));
    r
}
