//! The gallery: `/gallery`, share links, `/s/{token}`.

use super::ImageParameters;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct GalleryImage {
    pub id: String,
    /// The end user it was made for (empty when none was named).
    pub user_id: String,
    /// Everything needed to make it again.
    pub parameters: ImageParameters,
    /// The conversation and message it came from, when it came from a chat.
    pub conversation_id: Option<String>,
    pub message_id: Option<String>,
    /// Unix milliseconds.
    pub created_at: i64,
    /// `/images/{id}.png` (needs the owner's credentials).
    pub image_url: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct GalleryPage {
    pub images: Vec<GalleryImage>,
    /// The `offset` of the next page, when there may be one.
    pub next_offset: Option<u32>,
}

/// `POST /gallery/zip`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ZipRequest {
    /// 1 to 100 image ids, all the caller's.
    #[serde(default)]
    pub ids: Option<Vec<String>>,
}

/// How long a share link may work, in seconds: a minute to a year.
pub const SHARE_SECS: std::ops::RangeInclusive<u64> = 60..=365 * 86_400;
/// A share link's lifetime when the request names none: a week.
pub const DEFAULT_SHARE_SECS: u64 = 7 * 86_400;

/// `POST /gallery/{id}/shares`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct NewShare {
    /// How long the link works: 60 s to 365 days (default 7 days).
    #[serde(default)]
    pub expires_in_secs: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
pub struct ShareInfo {
    pub id: String,
    pub image_id: String,
    /// `/s/{token}`: opens the picture without logging in, until it expires or is revoked.
    pub url: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

/// The gallery page's filter, as its address carries it (`/pictures?q=&from=&to=`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GalleryFilterForm {
    /// Words of the prompt.
    pub q: Option<String>,
    /// First day, `YYYY-MM-DD` (UTC).
    pub from: Option<String>,
    /// Last day, `YYYY-MM-DD` (UTC), included.
    pub to: Option<String>,
    pub offset: Option<u32>,
}
