//! The pages' door into the service layer: `app::ssr::Backend` over `AppState`, so a server
//! function runs the same code, checks and errors as the matching REST route.

use super::error::ApiError;
use crate::{
    auth::{self, Caller},
    service::AppState,
    service::{accounts, error::ServiceError, gallery, health, history},
};
use app::{
    ssr::{Answer, Backend, BackendError, BoxFuture, Session},
    types::{
        AccountInfo, ChatData, ChatSettings, ConversationList, ConversationSummary, ConversationUpdate, Credentials,
        GalleryFilterForm, GalleryPage, HealthReport, SearchResults,
    },
};
use std::{future::Future, net::IpAddr};

/// The status and message the REST API would answer (server faults logged, not shown).
fn failure(e: ServiceError) -> BackendError {
    let error = ApiError::from(e);
    error.log_if_internal();
    BackendError { status: error.status_code().as_u16(), message: error.detail().0.message }
}

impl AppState {
    /// Run `work` as the session's caller.
    async fn as_caller<'a, T, F, Fut>(&'a self, session: Session, work: F) -> Result<T, BackendError>
    where
        F: FnOnce(Caller) -> Fut,
        Fut: Future<Output = Result<T, ServiceError>> + 'a,
    {
        let caller = super::middleware::admit(self, &Default::default(), Some(session)).await.map_err(failure)?;
        work(caller).await.map_err(failure)
    }
}

impl Backend for AppState {
    fn health(&self, session: Session) -> BoxFuture<'_, HealthReport> {
        Box::pin(async move {
            let caller = super::middleware::identify(self, &Default::default(), Some(session)).await.ok().flatten();
            health::report(self, health::Audience::of(self, caller.as_ref())).await
        })
    }

    fn login(&self, session: Session, client: Option<IpAddr>, credentials: Credentials) -> Answer<'_, AccountInfo> {
        Box::pin(async move {
            let account = accounts::check_login(self, client, credentials).await.map_err(failure)?;
            auth::sessions::start(&session, &account.id).await.map_err(|e| failure(e.into()))?;
            Ok(account)
        })
    }

    fn register(&self, session: Session, client: Option<IpAddr>, credentials: Credentials) -> Answer<'_, AccountInfo> {
        Box::pin(async move {
            let account = accounts::register(self, client, credentials).await.map_err(failure)?;
            auth::sessions::start(&session, &account.id).await.map_err(|e| failure(e.into()))?;
            Ok(account)
        })
    }

    fn logout(&self, session: Session) -> Answer<'_, ()> {
        Box::pin(async move { auth::sessions::end(&session).await.map_err(|e| failure(e.into())) })
    }

    fn whoami(&self, session: Session) -> BoxFuture<'_, Option<AccountInfo>> {
        Box::pin(async move {
            let caller = super::middleware::identify(self, &Default::default(), Some(session)).await.ok()??;
            accounts::me(self, &caller).await.ok()
        })
    }

    fn chat_data(&self, session: Session, id: Option<String>) -> Answer<'_, ChatData> {
        Box::pin(self.as_caller(session, move |caller| async move {
            let conversation = match id {
                Some(id) => Some(history::detail(self, &caller, &id).await?),
                None => None,
            };
            Ok(ChatData { user_id: caller.username, conversation, defaults: history::chat_defaults(self) })
        }))
    }

    fn conversations(&self, session: Session, offset: Option<u32>) -> Answer<'_, ConversationList> {
        Box::pin(
            self.as_caller(
                session,
                move |caller| async move { history::list(self, &caller, None, None, offset).await },
            ),
        )
    }

    fn rename_conversation(&self, session: Session, id: String, title: String) -> Answer<'_, ConversationSummary> {
        Box::pin(self.as_caller(session, move |caller| async move {
            history::update(self, &caller, &id, ConversationUpdate { title: Some(title), settings: None }).await
        }))
    }

    fn chat_settings(&self, session: Session, id: String, settings: ChatSettings) -> Answer<'_, ConversationSummary> {
        Box::pin(self.as_caller(session, move |caller| async move {
            history::update(self, &caller, &id, ConversationUpdate { title: None, settings: Some(settings) }).await
        }))
    }

    fn delete_conversation(&self, session: Session, id: String) -> Answer<'_, ()> {
        Box::pin(self.as_caller(session, move |caller| async move { history::delete(self, &caller, &id).await }))
    }

    fn search_conversations(&self, session: Session, query: String) -> Answer<'_, SearchResults> {
        Box::pin(self.as_caller(session, move |caller| async move {
            history::search(self, &caller, Some(query), None, None).await
        }))
    }

    fn gallery(&self, session: Session, filter: GalleryFilterForm) -> Answer<'_, GalleryPage> {
        Box::pin(self.as_caller(session, move |caller| async move {
            let query = gallery::GalleryQuery {
                q: filter.q.filter(|q| !q.trim().is_empty()),
                user_id: None,
                from: day_start("from", filter.from.as_deref(), 0)?,
                // The last day counts whole: up to the start of the next.
                to: day_start("to", filter.to.as_deref(), 1)?,
                limit: Some(GALLERY_PAGE),
                offset: filter.offset,
            };
            gallery::list(self, &caller, query).await
        }))
    }
}

/// Images per gallery page in the browser.
const GALLERY_PAGE: u32 = 48;

/// Unix ms of midnight UTC `days_after` the day `YYYY-MM-DD`; blank is none.
fn day_start(field: &str, day: Option<&str>, days_after: i64) -> Result<Option<i64>, ServiceError> {
    let Some(day) = day.map(str::trim).filter(|d| !d.is_empty()) else { return Ok(None) };
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(day, &format)
        .map_err(|_| ServiceError::invalid(field, format!("must be a date as YYYY-MM-DD, got {day:?}")))?;
    let midnight = date.midnight().assume_utc().unix_timestamp() + days_after * 86_400;
    Ok(Some(midnight * 1000))
}

#[cfg(test)]
mod tests {
    #[test]
    fn days_are_utc_midnights_and_bad_ones_name_their_field() {
        assert_eq!(super::day_start("from", Some("2026-11-23"), 0).unwrap(), Some(1_795_392_000_000));
        assert_eq!(super::day_start("to", Some("2026-11-23"), 1).unwrap(), Some(1_795_478_400_000));
        assert_eq!(super::day_start("from", Some(" "), 0).unwrap(), None);
        let err = super::day_start("to", Some("23/11/2026"), 0).unwrap_err();
        assert!(err.to_string().starts_with("to: must be a date"), "{err}");
    }
}
