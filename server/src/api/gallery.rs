//! The gallery over HTTP, and the public share-link route.

use super::{
    error::Result,
    images::png,
    json::{ApiJson, ApiQuery},
};
use crate::{
    auth::Caller,
    service::gallery::{self, GalleryQuery},
    service::AppState,
};
use app::types::{ErrorBody, GalleryImage, GalleryPage, NewShare, ShareInfo, ZipRequest};
use axum::{
    extract::{Path, State},
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    Json,
};

/// `GET /gallery`: the caller's images, newest first.
#[utoipa::path(get, path = "/gallery", tag = "gallery", params(GalleryQuery),
    responses((status = 200, body = GalleryPage), (status = 422, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<GalleryQuery>,
) -> Result<Json<GalleryPage>> {
    Ok(Json(gallery::list(&state, &caller, query).await?))
}

/// `GET /gallery/{id}`: one image's record.
#[utoipa::path(get, path = "/gallery/{id}", tag = "gallery", params(("id" = String, Path, description = "An image id (a job id of `POST /image`)")),
    responses((status = 200, body = GalleryImage), (status = 404, description = "No such id, or not the caller's", body = ErrorBody)))]
pub async fn get(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Json<GalleryImage>> {
    Ok(Json(gallery::get(&state, &caller, &id).await?))
}

/// `DELETE /gallery/{id}`: the image, its file and its share links.
#[utoipa::path(delete, path = "/gallery/{id}", tag = "gallery", params(("id" = String, Path, description = "An image id (a job id of `POST /image`)")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<StatusCode> {
    gallery::delete(&state, &caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /gallery/{id}/download`: the PNG as an attachment (`duet-<seed>-<id>.png`).
#[utoipa::path(get, path = "/gallery/{id}/download", tag = "gallery", params(("id" = String, Path, description = "An image id (a job id of `POST /image`)")),
    responses((status = 200, content_type = "image/png"), (status = 404, body = ErrorBody)))]
pub async fn download(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Response> {
    let (picture, name) = gallery::download(&state, &caller, &id).await?;
    png(&state, &picture, "private, max-age=31536000, immutable", Some(&name)).await
}

/// `POST /gallery/zip`: several PNGs in one zip.
#[utoipa::path(post, path = "/gallery/zip", tag = "gallery", request_body = ZipRequest,
    responses((status = 200, content_type = "application/zip", description = "The zip, streamed as it is written"), (status = 404, description = "An id is not the caller's", body = ErrorBody),
              (status = 503, description = "Too many zips are being made at once; `Retry-After` says when to try again", body = ErrorBody, headers(("Retry-After" = u64, description = "seconds")))))]
pub async fn zip(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(request): ApiJson<ZipRequest>,
) -> Result<Response> {
    let stream = gallery::zip(&state, &caller, request.ids).await?;
    let headers = [
        (header::CONTENT_TYPE, "application/zip"),
        (header::CONTENT_DISPOSITION, "attachment; filename=\"duet-images.zip\""),
    ];
    Ok((headers, axum::body::Body::from_stream(stream)).into_response())
}

/// `POST /gallery/{id}/shares`: a signed link that opens the picture without logging in.
#[utoipa::path(post, path = "/gallery/{id}/shares", tag = "gallery", request_body = NewShare, params(("id" = String, Path, description = "An image id (a job id of `POST /image`)")),
    responses((status = 201, body = ShareInfo), (status = 404, body = ErrorBody)))]
pub async fn create_share(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(request): ApiJson<NewShare>,
) -> Result<Response> {
    Ok((StatusCode::CREATED, Json(gallery::share(&state, &caller, &id, request).await?)).into_response())
}

/// `GET /gallery/{id}/shares`: the image's links, revoked and expired ones included.
#[utoipa::path(get, path = "/gallery/{id}/shares", tag = "gallery", params(("id" = String, Path, description = "An image id (a job id of `POST /image`)")),
    responses((status = 200, body = Vec<ShareInfo>), (status = 404, body = ErrorBody)))]
pub async fn list_shares(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<ShareInfo>>> {
    Ok(Json(gallery::shares(&state, &caller, &id).await?))
}

/// `DELETE /shares/{id}`: the link stops working at once.
#[utoipa::path(delete, path = "/shares/{id}", tag = "gallery", params(("id" = String, Path, description = "A share link's id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn revoke_share(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<StatusCode> {
    gallery::revoke_share(&state, &caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /s/{token}`: a shared picture, for anyone with the link while it is valid.
#[utoipa::path(get, path = "/s/{token}", tag = "gallery", security(()), params(("token" = String, Path, description = "The signed token of a share link's `url`")),
    responses((status = 200, content_type = "image/png"), (status = 404, description = "Unknown, expired or revoked link", body = ErrorBody)))]
pub async fn shared(State(state): State<AppState>, Path(token): Path<String>) -> Result<Response> {
    let picture = gallery::shared_file(&state, &token).await?;
    // Short caching: a revoked link should stop working soon in shared caches too.
    png(&state, &picture, "public, max-age=60", None).await
}
