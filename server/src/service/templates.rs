//! Prompt templates: an account's saved snippets.

use super::error::{Result, ServiceError};
use crate::{auth::Caller, service::AppState, storage::TemplateRow};
use app::types::{NewPromptTemplate, PromptTemplate};

pub const MAX_NAME_CHARS: usize = 100;
pub const MAX_BODY_CHARS: usize = 4000;
/// Templates per account: enough for any person, a bound for a script gone wrong.
pub const MAX_TEMPLATES: i64 = 200;

fn view(row: TemplateRow) -> PromptTemplate {
    PromptTemplate { id: row.id, name: row.name, body: row.body, created_at: row.created_at }
}

pub async fn list(state: &AppState, caller: &Caller) -> Result<Vec<PromptTemplate>> {
    Ok(state.db.templates(&caller.account_id).await?.into_iter().map(view).collect())
}

/// A field's text, trimmed at the ends for the name, kept as written for the body. Its length
/// counts as sent (what the API document states).
fn text(field: &str, value: Option<String>, max: usize, trim: bool) -> Result<String> {
    let value = value.unwrap_or_default();
    let sent = value.chars().count();
    let value = if trim { value.trim().to_string() } else { value };
    if value.trim().is_empty() || sent > max {
        return Err(ServiceError::invalid(field, format!("must be 1 to {max} characters")));
    }
    Ok(value)
}

pub async fn create(state: &AppState, caller: &Caller, new: NewPromptTemplate) -> Result<PromptTemplate> {
    let row = TemplateRow {
        // Time-ordered ids: two templates made in the same millisecond still list in order.
        id: uuid::Uuid::now_v7().to_string(),
        account_id: caller.account_id.clone(),
        name: text("name", new.name, MAX_NAME_CHARS, true)?,
        body: text("body", new.body, MAX_BODY_CHARS, false)?,
        created_at: crate::storage::now_ms(),
    };
    if !state.db.insert_template(&row, MAX_TEMPLATES).await? {
        return Err(ServiceError::Conflict(format!(
            "an account keeps at most {MAX_TEMPLATES} templates; delete one first"
        )));
    }
    Ok(view(row))
}

pub async fn delete(state: &AppState, caller: &Caller, id: &str) -> Result<()> {
    match state.db.delete_template(&caller.account_id, id).await? {
        true => Ok(()),
        false => Err(ServiceError::NotFound("template")),
    }
}
