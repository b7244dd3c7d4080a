//! The few browser calls the pages make directly: a streaming POST (the chat's server-sent
//! events come over `fetch`, since `EventSource` cannot POST), its abort, and the clipboard.
//! Only built into the WASM; the server never runs these.

use js_sys::{Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortController, Headers, ReadableStreamDefaultReader, RequestCredentials, RequestInit, Response};

fn text_of(err: JsValue) -> String {
    err.as_string()
        .or_else(|| Reflect::get(&err, &"message".into()).ok().and_then(|m| m.as_string()))
        .unwrap_or_else(|| "the request failed".into())
}

/// The message of the REST API's error body, else the status line.
async fn error_message(response: &Response) -> String {
    let fallback = format!("the server answered {} {}", response.status(), response.status_text());
    let Ok(promise) = response.text() else { return fallback };
    let Ok(text) = JsFuture::from(promise).await else { return fallback };
    let body: Option<serde_json::Value> = text.as_string().and_then(|t| serde_json::from_str(&t).ok());
    body.and_then(|b| b["error"]["message"].as_str().map(str::to_string)).unwrap_or(fallback)
}

/// Send the request (a JSON `body` when given) and hand each chunk of the answer to `on_bytes`
/// as it arrives. Ends when the server closes the stream, or with the error (the API's message
/// for a non-2xx answer). `abort` stops it: the connection closes, and the server stops
/// generating.
pub async fn stream(
    method: &str,
    url: &str,
    body: Option<&str>,
    abort: &AbortController,
    mut on_bytes: impl FnMut(&[u8]),
) -> Result<(), String> {
    let response = request(method, url, body, Some(abort)).await?;
    let stream = response.body().ok_or("the answer has no body")?;
    let reader: ReadableStreamDefaultReader = stream.get_reader().unchecked_into();
    loop {
        let chunk = JsFuture::from(reader.read()).await.map_err(text_of)?;
        if Reflect::get(&chunk, &"done".into()).ok().and_then(|d| d.as_bool()).unwrap_or(true) {
            return Ok(());
        }
        let value = Reflect::get(&chunk, &"value".into()).map_err(text_of)?;
        on_bytes(&Uint8Array::new(&value).to_vec());
    }
}

pub fn new_abort() -> Option<AbortController> {
    AbortController::new().ok()
}

/// Put text on the clipboard (`navigator.clipboard.writeText`); false when the browser refused.
pub async fn copy(text: &str) -> bool {
    let Some(window) = web_sys::window() else { return false };
    let clipboard = Reflect::get(&window.navigator(), &"clipboard".into()).ok();
    let write = clipboard.as_ref().and_then(|c| Reflect::get(c, &"writeText".into()).ok());
    match (clipboard, write.and_then(|w| w.dyn_into::<js_sys::Function>().ok())) {
        (Some(clipboard), Some(write)) => match write.call1(&clipboard, &JsValue::from_str(text)) {
            Ok(promise) => JsFuture::from(js_sys::Promise::from(promise)).await.is_ok(),
            Err(_) => false,
        },
        _ => false,
    }
}

/// The `data-theme` of the page's root element (what the server rendered from the cookie).
pub fn theme_attribute() -> Option<String> {
    web_sys::window()?.document()?.document_element()?.get_attribute("data-theme")
}

/// Show the page in `theme` now and remember it for a year in a cookie the server reads when it
/// renders the next page (so the page never flashes in the other colours). `None`: follow the
/// system setting.
pub fn set_theme(theme: Option<&str>) {
    use wasm_bindgen::JsCast;
    let Some(document) = web_sys::window().and_then(|w| w.document()) else { return };
    if let Some(root) = document.document_element() {
        let _ = match theme {
            Some(t) => root.set_attribute("data-theme", t),
            None => root.remove_attribute("data-theme"),
        };
    }
    if let Ok(html) = document.dyn_into::<web_sys::HtmlDocument>() {
        let cookie = match theme {
            Some(t) => format!("{}={t}; Path=/; Max-Age=31536000; SameSite=Lax", crate::ui::theme::COOKIE),
            None => format!("{}=; Path=/; Max-Age=0; SameSite=Lax", crate::ui::theme::COOKIE),
        };
        let _ = html.set_cookie(&cookie);
    }
}

/// Milliseconds since the page loaded, for how long the model thought.
pub fn now_ms() -> f64 {
    web_sys::window().and_then(|w| w.performance()).map(|p| p.now()).unwrap_or_default()
}

/// One REST call (same-origin, with the session cookie; `abort` can cut it off): the response when
/// it is 2xx, else the API's error message.
async fn request(
    method: &str,
    url: &str,
    body: Option<&str>,
    abort: Option<&AbortController>,
) -> Result<Response, String> {
    let window = web_sys::window().ok_or("no window")?;
    let init = RequestInit::new();
    init.set_method(method);
    init.set_credentials(RequestCredentials::SameOrigin);
    if let Some(abort) = abort {
        init.set_signal(Some(&abort.signal()));
    }
    if let Some(body) = body {
        let headers = Headers::new().map_err(text_of)?;
        headers.set("content-type", "application/json").map_err(text_of)?;
        init.set_headers(&headers);
        init.set_body(&JsValue::from_str(body));
    }
    let response: Response =
        JsFuture::from(window.fetch_with_str_and_init(url, &init)).await.map_err(text_of)?.unchecked_into();
    if response.ok() {
        Ok(response)
    } else {
        Err(error_message(&response).await)
    }
}

async fn json_of<T: serde::de::DeserializeOwned>(response: Response) -> Result<T, String> {
    let text = JsFuture::from(response.text().map_err(text_of)?).await.map_err(text_of)?;
    serde_json::from_str(&text.as_string().unwrap_or_default()).map_err(|e| e.to_string())
}

/// GET a JSON document of the REST API.
pub async fn get_json<T: serde::de::DeserializeOwned>(url: &str) -> Result<T, String> {
    json_of(request("GET", url, None, None).await?).await
}

/// POST (or PATCH…) a JSON body and read the JSON answer.
pub async fn send_json<T: serde::de::DeserializeOwned>(
    method: &str,
    url: &str,
    body: &impl serde::Serialize,
) -> Result<T, String> {
    let body = serde_json::to_string(body).map_err(|e| e.to_string())?;
    json_of(request(method, url, Some(&body), None).await?).await
}

/// POST a JSON body to a route that answers with no body (204).
pub async fn send(method: &str, url: &str, body: &impl serde::Serialize) -> Result<(), String> {
    let body = serde_json::to_string(body).map_err(|e| e.to_string())?;
    request(method, url, Some(&body), None).await.map(drop)
}

/// DELETE something; the answer's body does not matter.
pub async fn delete(url: &str) -> Result<(), String> {
    request("DELETE", url, None, None).await.map(drop)
}

/// POST a JSON body and save the answer as a file the browser downloads (a zip, say).
pub async fn download_post(url: &str, body: &impl serde::Serialize, file_name: &str) -> Result<(), String> {
    let body = serde_json::to_string(body).map_err(|e| e.to_string())?;
    let response = request("POST", url, Some(&body), None).await?;
    let blob: web_sys::Blob =
        JsFuture::from(response.blob().map_err(text_of)?).await.map_err(text_of)?.unchecked_into();
    let href = web_sys::Url::create_object_url_with_blob(&blob).map_err(text_of)?;
    let document = web_sys::window().and_then(|w| w.document()).ok_or("no document")?;
    let link: web_sys::HtmlAnchorElement = document.create_element("a").map_err(text_of)?.unchecked_into();
    link.set_href(&href);
    link.set_download(file_name);
    link.click();
    let _ = web_sys::Url::revoke_object_url(&href);
    Ok(())
}

/// This page's origin (`http://host:port`), to make a relative link whole for copying.
pub fn origin() -> String {
    web_sys::window().and_then(|w| w.location().origin().ok()).unwrap_or_default()
}
