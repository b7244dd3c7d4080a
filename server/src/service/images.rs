//! Images on request: queue a job, follow it, cancel it, and find its file.

use super::{
    error::{Result, ServiceError},
    validate,
};
use crate::{
    auth::Caller,
    jobs::Origin,
    service::AppState,
    storage::{ImageRow, JobRow},
};
use app::types::{ImageGenerationRequest, ImageGenerationResponse, ImageParameters, JobInfo, JobStatus};
use std::time::Duration;

/// Queue an image; returns the queued job.
pub async fn submit(state: &AppState, caller: &Caller, request: ImageGenerationRequest) -> Result<JobInfo> {
    let engine = state.image_engine()?;
    let recipe = validate::image(&request, None, engine.default_scheduler(), "", &state.prompts)?;
    let user = validate::user_id("user_id", request.user_id)?;
    if let Some(user) = &user {
        state.limits.user_request(&caller.account_id, user).await?;
    }
    let gate = state.limits.image_gate(&state.db, &caller.account_id, user.as_deref()).await?;
    let origin =
        Origin { account_id: caller.account_id.clone(), user_id: user.unwrap_or_default(), ..Origin::default() };
    state.jobs.submit(recipe, origin, |jobs| gate.check(jobs)).await
}

/// The `POST /image` answer for a job.
pub fn response(state: &AppState, info: JobInfo) -> ImageGenerationResponse {
    ImageGenerationResponse {
        job_id: info.job_id,
        status: info.status,
        image_url: info.image_url,
        status_url: info.status_url,
        provider: if state.config.models.use_mocks { "mock" } else { "openvino" }.into(),
        mock: state.config.models.use_mocks,
        parameters: info.parameters,
        created_at: info.created_at,
        error: info.error,
    }
}

/// The caller's jobs (of one end user, when named) still queued or drawing, on any process.
pub async fn unfinished(state: &AppState, caller: &Caller, user_id: Option<String>) -> Result<Vec<JobInfo>> {
    let user = validate::user_id("user_id", user_id)?;
    let mine = |row: &JobRow| row.account_id == caller.account_id && user.as_ref().is_none_or(|u| row.user_id == *u);
    Ok(state.jobs.unfinished(mine).await?.into_iter().map(|(_, info)| info).collect())
}

/// Wait until the job ends, at most `timeout`.
pub async fn wait(state: &AppState, caller: &Caller, id: &str, timeout: Duration) -> Result<JobInfo> {
    let Some((mut last, mut updates)) = state.jobs.watch(&caller.account_id, id).await? else {
        return job(state, caller, id).await;
    };
    let waited = tokio::time::timeout(timeout, async {
        while !last.status.is_final() {
            match crate::jobs::next_update(&mut updates).await {
                Some(info) => last = info,
                None => break,
            }
        }
        last
    })
    .await;
    waited.map_err(|_| {
        ServiceError::Timeout(format!(
            "the image was not ready within {} s; it is still being made: follow /jobs/{id}",
            timeout.as_secs()
        ))
    })
}

/// One of the caller's jobs as its row tells it (with its place in the shared queue), else (an
/// image made before jobs were rows) from the stored image.
pub async fn job(state: &AppState, caller: &Caller, id: &str) -> Result<JobInfo> {
    if uuid::Uuid::parse_str(id).is_ok() {
        if let Some(info) = state.jobs.get(&caller.account_id, id).await? {
            return Ok(info);
        }
    }
    let row = stored(state, caller, id).await?;
    Ok(finished_info(&row, state.config.models.use_mocks))
}

/// Follow one of the caller's jobs (drawn by any process): its state now and its later updates,
/// or, for an image made before jobs were rows, its stored state alone.
pub async fn watch(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<(JobInfo, Option<tokio::sync::broadcast::Receiver<JobInfo>>)> {
    let watched = match uuid::Uuid::parse_str(id) {
        Ok(_) => state.jobs.watch(&caller.account_id, id).await?,
        Err(_) => None,
    };
    match watched {
        Some((now, updates)) if !now.status.is_final() => Ok((now, Some(updates))),
        Some((now, _)) => Ok((now, None)),
        None => Ok((job(state, caller, id).await?, None)),
    }
}

/// Cancel one of the caller's jobs, whichever process draws it.
pub async fn cancel(state: &AppState, caller: &Caller, id: &str) -> Result<JobInfo> {
    if uuid::Uuid::parse_str(id).is_err() {
        return Err(ServiceError::NotFound("job"));
    }
    state.jobs.cancel(&caller.account_id, id).await?.ok_or(ServiceError::NotFound("job"))
}

/// The picture store's name for one of the caller's finished images.
pub async fn file(state: &AppState, caller: &Caller, id: &str) -> Result<String> {
    Ok(stored(state, caller, id).await?.file_name)
}

pub async fn stored(state: &AppState, caller: &Caller, id: &str) -> Result<ImageRow> {
    // Only ids the server made can name a file; anything else is simply not found.
    if uuid::Uuid::parse_str(id).is_err() {
        return Err(ServiceError::NotFound("image"));
    }
    state.db.image(&caller.account_id, id).await?.ok_or(ServiceError::NotFound("image"))
}

fn finished_info(row: &ImageRow, mock: bool) -> JobInfo {
    JobInfo {
        job_id: row.id.clone(),
        status: JobStatus::Done,
        position: None,
        eta_ms: None,
        step: row.steps as u32,
        total_steps: row.steps as u32,
        error: None,
        image_url: crate::jobs::image_url(&row.id),
        status_url: crate::jobs::status_url(&row.id),
        parameters: parameters(row),
        nsfw: None,
        mock,
        created_at: row.created_at,
        started_at: None,
        finished_at: Some(row.created_at),
        conversation_id: row.conversation_id.clone(),
    }
}

/// The recipe a stored image was made with.
pub fn parameters(row: &ImageRow) -> ImageParameters {
    ImageParameters {
        prompt: row.prompt.clone(),
        negative_prompt: row.negative_prompt.clone(),
        num_inference_steps: row.steps as u32,
        guidance_scale: row.guidance_scale as f32,
        seed: row.seed as u32,
        width: row.width as u32,
        height: row.height as u32,
        scheduler: row.scheduler.clone(),
        model: row.model.clone(),
    }
}
