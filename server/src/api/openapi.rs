//! The OpenAPI document of every REST route (utoipa, from the handlers' annotations and the
//! shared types), at `/api/openapi.json`, and a plain page rendering it at `/api/docs` (served by
//! us, no CDN: Duet works offline).

use axum::{response::Html, Json};
use serde_json::Value;
use std::fmt::Write;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "Duet", description = "Local chat and images: DeepSeek-R1-Distill-Qwen and Stable Diffusion on OpenVINO"),
    security(("api_key" = []), ("session" = [])),
    components(schemas(app::types::ClientFrame, app::types::ServerFrame)),
    tags(
        (name = "accounts", description = "Register, log in, API keys, quotas; admins manage accounts"),
        (name = "history", description = "Stored conversations: list, read, rename, delete, export, search"),
        (name = "templates", description = "Saved prompt snippets"),
        (name = "gallery", description = "Stored images: search, download, zip, delete, share links"),
        (name = "chat", description = "Conversations with the chat model, pictures from the chat"),
        (name = "images", description = "Image jobs: queue, progress, cancel, files"),
        (name = "openai", description = "OpenAI-compatible routes for existing clients"),
        (name = "service", description = "Health"),
    )
)]
pub struct ApiDoc;

/// The two ways to authenticate (an API key as a bearer token, or the browser's session cookie),
/// and the answers every route shares: 401 and 429 on each route that needs credentials, and
/// 400/415/422 on each that reads a JSON body.
struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{security::SecurityRequirement, ContentBuilder, Ref, ResponseBuilder};
        let error = |description: &str| {
            let body = ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build();
            ResponseBuilder::new().description(description).content("application/json", body).build()
        };
        let shared = [
            ("401", "No credentials, or an API key that is not valid", false),
            ("429", "Over a rate limit or quota: `error.param` names it; `Retry-After` says when to try again", false),
            ("400", "Malformed JSON or an empty body", true),
            ("415", "The body is not JSON (send Content-Type: application/json)", true),
            (
                "422",
                "A field is invalid; `error.param` names it (a JSON path) and the message says what is allowed",
                true,
            ),
        ];
        for item in doc.paths.paths.values_mut() {
            for op in
                [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete].into_iter().flatten()
            {
                let public = op.security.as_ref().is_some_and(|s| s.contains(&SecurityRequirement::default()));
                let has_body = op.request_body.is_some();
                let has_query = op
                    .parameters
                    .as_ref()
                    .is_some_and(|ps| ps.iter().any(|p| p.parameter_in == utoipa::openapi::path::ParameterIn::Query));
                for (status, description, for_input) in shared {
                    let applies = if for_input { has_body || (status == "422" && has_query) } else { !public };
                    if applies {
                        op.responses.responses.entry(status.into()).or_insert_with(|| error(description).into());
                    }
                }
            }
        }
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key from POST /account/keys"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(crate::auth::sessions::COOKIE))),
        );
    }
}

/// The document: utoipa's, from the paths `api::routes` serves, with every request's real
/// constraints (`openapi_rules`). Built once.
pub fn document() -> &'static Value {
    static DOC: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    DOC.get_or_init(|| {
        let super::Routes { public, protected } = super::routes();
        let mut doc = ApiDoc::openapi().merge_from(public.into_openapi()).merge_from(protected.into_openapi());
        // After the paths are in: it adds the answers every route shares to each of them.
        utoipa::Modify::modify(&Security, &mut doc);
        let mut doc = serde_json::to_value(doc).expect("the OpenAPI document serializes");
        super::openapi_rules::apply(&mut doc);
        super::openapi_rules::public_answers(&mut doc);
        doc
    })
}

/// `GET /api/openapi.json`
pub async fn openapi_json() -> Json<Value> {
    Json(document().clone())
}

/// `GET /api/docs`: every route with its request body, answers and errors.
pub async fn docs_page() -> Html<String> {
    Html(render(document()))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// `#/components/schemas/ChatRequest` → `ChatRequest`.
fn schema_name(schema: &Value) -> String {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => r.rsplit('/').next().unwrap_or(r).to_string(),
        None => schema.get("type").and_then(Value::as_str).unwrap_or("object").to_string(),
    }
}

fn render(doc: &Value) -> String {
    let mut html = String::from(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Duet API</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <style>body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}\
         code,pre{font:13px ui-monospace,monospace}pre{background:#8881;padding:.75rem;overflow:auto}\
         h2{margin-top:2.5rem;border-top:1px solid #8884;padding-top:1rem}td{padding:.2rem .6rem;vertical-align:top}\
         .method{font-weight:bold;text-transform:uppercase}</style></head><body>",
    );
    let title = doc["info"]["title"].as_str().unwrap_or("API");
    let _ = write!(
        html,
        "<h1>{} API</h1><p>{}</p><p>Machine-readable: <a href=\"/api/openapi.json\">/api/openapi.json</a>. \
         Every error has the body <code>{{\"error\": {{\"message\", \"type\", \"param\", \"code\"}}}}</code>.</p>",
        escape(title),
        escape(doc["info"]["description"].as_str().unwrap_or_default())
    );
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for (method, op) in item.as_object().into_iter().flatten() {
            let _ = write!(
                html,
                "<h2 id=\"{m}-{p}\"><span class=\"method\">{m}</span> <code>{p}</code></h2>",
                m = escape(method),
                p = escape(path)
            );
            if let Some(body) = op["requestBody"]["content"].as_object().and_then(|c| c.values().next()) {
                let _ = write!(html, "<p>Request body: <code>{}</code></p>", escape(&schema_name(&body["schema"])));
            }
            for p in op["parameters"].as_array().into_iter().flatten() {
                let _ = write!(
                    html,
                    "<p>Parameter <code>{}</code> ({}): {}</p>",
                    escape(p["name"].as_str().unwrap_or_default()),
                    escape(p["in"].as_str().unwrap_or_default()),
                    escape(p["description"].as_str().unwrap_or_default())
                );
            }
            html.push_str("<table>");
            for (status, response) in op["responses"].as_object().into_iter().flatten() {
                let kinds: Vec<String> = response["content"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(mime, c)| format!("{} ({mime})", schema_name(&c["schema"])))
                    .collect();
                let _ = write!(
                    html,
                    "<tr><td><b>{}</b></td><td>{}</td><td><code>{}</code></td></tr>",
                    escape(status),
                    escape(response["description"].as_str().unwrap_or_default()),
                    escape(&kinds.join(", "))
                );
            }
            html.push_str("</table>");
        }
    }
    html.push_str("<h2>Schemas</h2>");
    for (name, schema) in doc["components"]["schemas"].as_object().into_iter().flatten() {
        let pretty = serde_json::to_string_pretty(schema).unwrap_or_default();
        let _ = write!(html, "<h3 id=\"{n}\">{n}</h3><pre>{}</pre>", escape(&pretty), n = escape(name));
    }
    html.push_str("</body></html>");
    html
}
