//! `POST /image`, the job routes and the image files.

use super::{
    error::{ApiError, Result},
    json::{ApiJson, ApiQuery},
};
use crate::{auth::Caller, service::images, service::AppState};
use app::types::{ErrorBody, ImageGenerationRequest, ImageGenerationResponse, JobInfo, JobList};
use axum::{
    extract::{Path, RawQuery, State},
    http::{header, StatusCode},
    response::{
        sse::{Event, KeepAlive, Sse},
        IntoResponse, Response,
    },
    Json,
};
use std::{convert::Infallible, time::Duration};
use tokio_stream::wrappers::ReceiverStream;

/// `POST /image[?wait=true]`: 202 with the queued job; with `wait`, 200 once it has ended.
#[utoipa::path(post, path = "/image", tag = "images", request_body = ImageGenerationRequest,
    params(("wait" = Option<bool>, Query, description = "Answer once the image is done (up to IMAGE_WAIT_TIMEOUT_SECS)")),
    responses(
        (status = 202, description = "Queued", body = ImageGenerationResponse),
        (status = 200, description = "With `wait=true`: the job has ended (done, failed or cancelled)", body = ImageGenerationResponse),
        (status = 400, description = "Malformed JSON or an empty body", body = ErrorBody), (status = 415, description = "The body is not JSON (send Content-Type: application/json)", body = ErrorBody), (status = 422, description = "A field is invalid; `error.param` names it (a JSON path) and the message says what is allowed", body = ErrorBody), (status = 503, description = "A queue is full, or the model is missing, loading or failed; `Retry-After` says when to try again when waiting helps", body = ErrorBody, headers(("Retry-After" = u64, description = "seconds"))), (status = 504, description = "Not finished within the configured timeout", body = ErrorBody)))]
#[tracing::instrument(skip_all)]
pub async fn post_image(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
    ApiJson(request): ApiJson<ImageGenerationRequest>,
) -> Result<Response> {
    let wait = wait_flag(query.as_deref())?;
    let info = images::submit(&state, &caller, request).await?;
    if !wait {
        return Ok((StatusCode::ACCEPTED, Json(images::response(&state, info))).into_response());
    }
    let timeout = Duration::from_secs(state.config.images.wait_timeout_secs);
    let done = images::wait(&state, &caller, &info.job_id, timeout).await?;
    Ok(Json(images::response(&state, done)).into_response())
}

fn wait_flag(query: Option<&str>) -> Result<bool> {
    let mut wait = false;
    for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, "true"));
        if key == "wait" {
            wait = match value {
                "true" | "1" => true,
                "false" | "0" => false,
                other => {
                    return Err(ApiError::BadRequest {
                        status: StatusCode::UNPROCESSABLE_ENTITY,
                        param: Some("wait".into()),
                        code: "invalid_field",
                        message: format!("wait: must be true or false, got {other:?}"),
                    })
                }
            };
        }
    }
    Ok(wait)
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobsQuery {
    /// Only this end user's jobs.
    pub user_id: Option<String>,
}

/// `GET /jobs[?user_id=…]`: the caller's image jobs still queued or being drawn (on any process
/// sharing the database), oldest first, so a page opened meanwhile can follow them.
#[utoipa::path(get, path = "/jobs", tag = "images", params(JobsQuery),
    responses((status = 200, description = "Jobs queued or being drawn, with their places and progress", body = JobList), (status = 422, description = "`user_id` is invalid", body = ErrorBody)))]
pub async fn list_jobs(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<JobsQuery>,
) -> Result<Json<JobList>> {
    Ok(Json(JobList { jobs: images::unfinished(&state, &caller, query.user_id).await? }))
}

/// `GET /jobs/{id}`: queued (position, ETA), running (step/total), done, failed or cancelled.
#[utoipa::path(get, path = "/jobs/{id}", tag = "images", params(("id" = String, Path, description = "job id")),
    responses((status = 200, description = "The job now", body = JobInfo), (status = 404, description = "No such id, or not the caller's", body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(job = %id))]
pub async fn get_job(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Json<JobInfo>> {
    Ok(Json(images::job(&state, &caller, &id).await?))
}

/// `DELETE /jobs/{id}`: 200 when the job has ended (now or before), 202 while a running one stops.
#[utoipa::path(delete, path = "/jobs/{id}", tag = "images", params(("id" = String, Path, description = "job id")),
    responses(
        (status = 200, description = "The job has ended (cancelled now, or finished before)", body = JobInfo),
        (status = 202, description = "Running: it stops before its next step", body = JobInfo),
        (status = 404, description = "No such id, or not the caller's", body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(job = %id))]
pub async fn delete_job(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Response> {
    let info = match images::cancel(&state, &caller, &id).await {
        Ok(info) => info,
        // Finished long ago (only in the database): nothing to cancel.
        Err(_) => images::job(&state, &caller, &id).await?,
    };
    let status = if info.status.is_final() { StatusCode::OK } else { StatusCode::ACCEPTED };
    Ok((status, Json(info)).into_response())
}

/// `GET /jobs/{id}/events`: the job's state now, then every change, as `job` events, until it ends.
#[utoipa::path(get, path = "/jobs/{id}/events", tag = "images", params(("id" = String, Path, description = "job id")),
    responses((status = 200, description = "Server-sent `job` events, each a JobInfo, until the job ends", content((JobInfo = "text/event-stream"))), (status = 404, description = "No such id, or not the caller's", body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(job = %id))]
pub async fn job_events(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Response> {
    let (tx, rx) = tokio::sync::mpsc::channel::<JobInfo>(16);
    match images::watch(&state, &caller, &id).await? {
        (now, Some(mut updates)) => {
            tokio::spawn(async move {
                let mut last = now;
                if tx.send(last.clone()).await.is_err() {
                    return;
                }
                while !last.status.is_final() {
                    let Some(info) = crate::jobs::next_update(&mut updates).await else { return };
                    last = info;
                    if tx.send(last.clone()).await.is_err() {
                        return;
                    }
                }
            });
        }
        (done, None) => {
            let _ = tx.send(done).await;
        }
    }
    let events = tokio_stream::StreamExt::map(ReceiverStream::new(rx), |info| {
        Ok::<_, Infallible>(Event::default().event("job").json_data(&info).unwrap_or_default())
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()).into_response())
}

/// `GET /images/{id}.png`: a finished image (never changes, so caches may keep it).
#[utoipa::path(get, path = "/images/{file}", tag = "images", params(("file" = String, Path, description = "`{id}.png`")),
    responses((status = 200, description = "The PNG; its `parameters` (A1111) and `duet` (JSON recipe) chunks remake it", content_type = "image/png"), (status = 404, description = "No such id, or not the caller's", body = ErrorBody)))]
#[tracing::instrument(skip_all, fields(file = %file))]
pub async fn get_image(State(state): State<AppState>, caller: Caller, Path(file): Path<String>) -> Result<Response> {
    let id = file.strip_suffix(".png").unwrap_or("");
    let picture = images::file(&state, &caller, id).await?;
    png(&state, &picture, "private, max-age=31536000, immutable", None).await
}

/// A stored picture as the answer, streamed from the store; `download` names the file for saving
/// instead of showing.
pub async fn png(state: &AppState, picture: &str, cache: &'static str, download: Option<&str>) -> Result<Response> {
    let found = state.pictures.stream(picture).await.map_err(crate::service::error::ServiceError::from)?;
    let Some(found) = found else {
        tracing::error!(picture, store = state.pictures.place(), "an image's picture is missing from the store");
        return Err(crate::service::error::ServiceError::NotFound("image").into());
    };
    let headers = [
        (header::CONTENT_TYPE, "image/png".to_string()),
        (header::CACHE_CONTROL, cache.to_string()),
        (header::CONTENT_LENGTH, found.size.to_string()),
    ];
    let mut response = (headers, axum::body::Body::from_stream(found.bytes)).into_response();
    if let Some(name) = download {
        let value = format!("attachment; filename=\"{name}\"");
        if let Ok(value) = axum::http::HeaderValue::from_str(&value) {
            response.headers_mut().insert(header::CONTENT_DISPOSITION, value);
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_takes_booleans_only() {
        assert!(!wait_flag(None).unwrap());
        assert!(wait_flag(Some("wait=true")).unwrap());
        assert!(wait_flag(Some("x=1&wait")).unwrap());
        assert!(!wait_flag(Some("wait=0")).unwrap());
        let err = wait_flag(Some("wait=soon")).unwrap_err();
        assert_eq!(err.detail().0.param.as_deref(), Some("wait"));
    }
}
