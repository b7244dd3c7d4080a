//! The real constraints of every request, written into the OpenAPI document from the same
//! constants the validators use, so the two cannot drift: a client generated from the document
//! (or a fuzzer) sends what the server accepts, and what the document forbids is refused.
//! utoipa derives types and shapes; the ranges, lengths, patterns and enums are stated here, on
//! the JSON, where numbers keep their exact value (`u64::MAX` does not survive an `f64`).

use crate::{
    inference::diffusion::SchedulerKind,
    service::{accounts, gallery, history, templates, validate},
};
use serde_json::{json, Map, Value};

/// Non-blank text (not only whitespace) of `min..=max` characters as sent.
fn text(min: usize, max: usize) -> Value {
    json!({"type": "string", "minLength": min, "maxLength": max, "pattern": "\\S"})
}

fn int(min: impl Into<Value>, max: impl Into<Value>) -> Value {
    json!({"type": "integer", "minimum": min.into(), "maximum": max.into()})
}

/// Replace a property's schema, keeping it nullable when it was (an `Option` the server reads
/// `null` for as "not given").
fn set(doc: &mut Value, schema: &str, property: &str, rule: Value) {
    let Some(slot) = doc["components"]["schemas"][schema]["properties"].get_mut(property) else {
        panic!("the OpenAPI document has no {schema}.{property}: update api/openapi_rules.rs");
    };
    let nullable = slot["type"].as_array().is_some_and(|t| t.contains(&json!("null")))
        || slot["oneOf"].as_array().is_some_and(|o| o.contains(&json!({"type": "null"})));
    let description = slot.get("description").cloned();
    let mut rule = rule;
    if nullable {
        rule = match rule {
            Value::Object(mut o) if o.get("type").is_some_and(Value::is_string) => {
                o["type"] = json!([o["type"].clone(), "null"]);
                Value::Object(o)
            }
            other => json!({"oneOf": [{"type": "null"}, other]}),
        };
    }
    if let (Some(description), Some(o)) = (description, rule.as_object_mut()) {
        o.insert("description".into(), description);
    }
    *slot = rule;
}

/// Fields the server needs: listed as required, and not nullable.
fn require(doc: &mut Value, schema: &str, properties: &[&str]) {
    let object = &mut doc["components"]["schemas"][schema];
    for property in properties {
        let slot = &mut object["properties"][*property];
        if let Some(types) = slot["type"].as_array() {
            let kept: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
            slot["type"] = if kept.len() == 1 { kept[0].clone() } else { Value::Array(kept) };
        } else if let Some(options) = slot["oneOf"].as_array() {
            let kept: Vec<Value> = options.iter().filter(|o| **o != json!({"type": "null"})).cloned().collect();
            *slot = if kept.len() == 1 { kept[0].clone() } else { json!({"oneOf": kept}) };
        }
    }
    let required = object.as_object_mut().expect("a schema object").entry("required").or_insert_with(|| json!([]));
    for property in properties {
        if !required.as_array().unwrap().contains(&json!(property)) {
            required.as_array_mut().unwrap().push(json!(property));
        }
    }
}

/// A query parameter's schema, keeping its other fields.
fn param(doc: &mut Value, path: &str, method: &str, name: &str, rule: Value) {
    let params = doc["paths"][path][method]["parameters"].as_array_mut();
    let Some(p) = params.and_then(|ps| ps.iter_mut().find(|p| p["name"] == name)) else {
        panic!("the OpenAPI document has no parameter {name} on {method} {path}: update api/openapi_rules.rs");
    };
    p["schema"] = rule;
}

/// Every multiple of `SIDE_STEP` a side may be, as a regular expression alternative.
fn sides() -> String {
    let sides: Vec<String> = (validate::MIN_SIDE..=validate::MAX_SIDE)
        .step_by(validate::SIDE_STEP as usize)
        .map(|s| s.to_string())
        .collect();
    format!("({})", sides.join("|"))
}

fn schedulers() -> Value {
    let mut names: Vec<&str> = SchedulerKind::ALL.iter().flat_map(|k| [k.name(), k.a1111_name()]).collect();
    names.dedup();
    json!({"type": "string", "enum": names})
}

pub fn apply(doc: &mut Value) {
    let user_id = || text(1, validate::MAX_USER_ID_CHARS);
    let uuid = || json!({"type": "string", "format": "uuid", "pattern": "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"});
    let max_tokens = || int(1, validate::MAX_TOKENS);
    let stop_string = || json!({"type": "string", "minLength": 1, "maxLength": validate::MAX_STOP_CHARS});
    let stop_list = || json!({"type": "array", "maxItems": validate::MAX_STOP_STRINGS, "items": stop_string()});
    let sampling = |doc: &mut Value, schema: &str| {
        set(doc, schema, "temperature", json!({"type": "number", "minimum": 0, "maximum": validate::MAX_TEMPERATURE}));
        set(doc, schema, "top_p", json!({"type": "number", "exclusiveMinimum": 0, "maximum": 1}));
        set(doc, schema, "top_k", int(0, u32::MAX));
        let repetition = json!({"type": "number", "exclusiveMinimum": 0, "maximum": validate::MAX_REPETITION_PENALTY});
        set(doc, schema, "repetition_penalty", repetition);
        set(doc, schema, "seed", int(0, u64::MAX));
    };
    let image_options = |doc: &mut Value, schema: &str| {
        let prompt_chars = validate::MAX_IMAGE_PROMPT_CHARS;
        set(doc, schema, "negative_prompt", json!({"type": "string", "maxLength": prompt_chars}));
        set(doc, schema, "num_inference_steps", int(1, validate::MAX_STEPS));
        set(doc, schema, "guidance_scale", json!({"type": "number", "minimum": 0, "maximum": validate::MAX_GUIDANCE}));
        set(doc, schema, "seed", int(0, u32::MAX));
        set(doc, schema, "scheduler", schedulers());
    };

    // POST /chat
    set(doc, "ChatRequest", "user_id", user_id());
    set(doc, "ChatRequest", "message", text(1, validate::MAX_MESSAGE_CHARS));
    require(doc, "ChatRequest", &["user_id", "message"]);
    set(doc, "ChatRequest", "conversation_id", uuid());
    set(doc, "ChatRequest", "replace_from", uuid());
    doc["components"]["schemas"]["ChatRequest"]["dependentRequired"] = json!({"replace_from": ["conversation_id"]});
    set(doc, "ChatRequest", "max_tokens", max_tokens());
    sampling(doc, "ChatRequest");
    set(doc, "ChatRequest", "stop", stop_list());

    // POST /image, and `image` of POST /chat (where the prompt may come from the reply)
    set(doc, "ImageGenerationRequest", "prompt", text(1, validate::MAX_IMAGE_PROMPT_CHARS));
    image_options(doc, "ImageGenerationRequest");
    for side in ["width", "height"] {
        let rule = json!({"type": "integer", "minimum": validate::MIN_SIDE, "maximum": validate::MAX_SIDE, "multipleOf": validate::SIDE_STEP});
        set(doc, "ImageGenerationRequest", side, rule);
    }
    set(doc, "ImageGenerationRequest", "user_id", user_id());
    doc["paths"]["/image"]["post"]["requestBody"]["content"]["application/json"]["schema"] = json!({"allOf": [
        {"$ref": "#/components/schemas/ImageGenerationRequest"},
        {"required": ["prompt"], "properties": {"prompt": {"type": "string"}}},
    ]});

    // Accounts
    let name_chars = format!(
        "^[ \\t\\n\\r]*[A-Za-z0-9_.-]{{{},{}}}[ \\t\\n\\r]*$",
        accounts::USERNAME_CHARS.start(),
        accounts::USERNAME_CHARS.end()
    );
    set(doc, "Credentials", "username", json!({"type": "string", "pattern": name_chars}));
    let password = json!({"type": "string", "minLength": accounts::PASSWORD_CHARS.start(), "maxLength": accounts::PASSWORD_CHARS.end()});
    set(doc, "Credentials", "password", password.clone());
    require(doc, "Credentials", &["username", "password"]);
    set(doc, "PasswordChange", "new_password", password);
    require(doc, "PasswordChange", &["current_password", "new_password"]);
    set(doc, "NewApiKey", "name", text(1, accounts::KEY_NAME_CHARS));
    require(doc, "NewApiKey", &["name"]);

    // History, templates, gallery
    set(doc, "ConversationUpdate", "title", text(1, history::MAX_TITLE_CHARS));
    // A title, settings, or both.
    doc["components"]["schemas"]["ConversationUpdate"]["anyOf"] = json!([
        {"required": ["title"], "properties": {"title": {"type": "string"}}},
        {"required": ["settings"], "properties": {"settings": {"type": "object"}}},
    ]);
    // Chat settings: the ranges of their per-turn twins; no control characters but line breaks.
    let no_controls = "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F]*$";
    set(
        doc,
        "ChatSettings",
        "system_prompt",
        json!({"type": "string", "maxLength": validate::MAX_SYSTEM_PROMPT_CHARS, "pattern": no_controls}),
    );
    set(
        doc,
        "ChatSettings",
        "temperature",
        json!({"type": "number", "minimum": 0, "maximum": validate::MAX_TEMPERATURE}),
    );
    set(doc, "ChatSettings", "top_p", json!({"type": "number", "exclusiveMinimum": 0, "maximum": 1}));
    set(doc, "ChatSettings", "max_tokens", int(1, validate::MAX_TOKENS));
    set(doc, "NewPromptTemplate", "name", text(1, templates::MAX_NAME_CHARS));
    set(doc, "NewPromptTemplate", "body", text(1, templates::MAX_BODY_CHARS));
    require(doc, "NewPromptTemplate", &["name", "body"]);
    set(doc, "NewShare", "expires_in_secs", int(*gallery::SHARE_SECS.start(), *gallery::SHARE_SECS.end()));
    let ids = json!({"type": "array", "minItems": 1, "maxItems": gallery::MAX_ZIP, "items": {"type": "string"}});
    set(doc, "ZipRequest", "ids", ids);
    require(doc, "ZipRequest", &["ids"]);

    // POST /v1/chat/completions
    let messages = json!({"type": "array", "minItems": 1, "maxItems": validate::MAX_MESSAGES, "items": {"$ref": "#/components/schemas/InMessage"}});
    set(doc, "ChatCompletionRequest", "messages", messages);
    require(doc, "ChatCompletionRequest", &["messages"]);
    set(doc, "ChatCompletionRequest", "max_tokens", max_tokens());
    set(doc, "ChatCompletionRequest", "max_completion_tokens", max_tokens());
    sampling(doc, "ChatCompletionRequest");
    set(doc, "ChatCompletionRequest", "stop", json!({"oneOf": [stop_string(), stop_list()]}));
    set(doc, "ChatCompletionRequest", "n", int(1, 1));
    let openai_user = json!({"type": "string", "maxLength": validate::MAX_USER_ID_CHARS, "pattern": "^$|\\S"});
    set(doc, "ChatCompletionRequest", "user", openai_user.clone());
    set(doc, "InMessage", "role", json!({"type": "string", "enum": ["system", "developer", "user", "assistant"]}));
    set(doc, "ContentPart", "type", json!({"type": "string", "enum": ["text"]}));
    set(doc, "ContentPart", "text", json!({"type": "string"}));
    require(doc, "ContentPart", &["text"]);

    // POST /v1/images/generations
    set(doc, "ImagesRequest", "prompt", text(1, validate::MAX_IMAGE_PROMPT_CHARS));
    require(doc, "ImagesRequest", &["prompt"]);
    set(doc, "ImagesRequest", "n", int(1, crate::api::openai::MAX_IMAGES));
    set(doc, "ImagesRequest", "size", json!({"type": "string", "pattern": format!("^{0}x{0}$", sides())}));
    set(doc, "ImagesRequest", "response_format", json!({"type": "string", "enum": ["url", "b64_json"]}));
    image_options(doc, "ImagesRequest");
    set(doc, "ImagesRequest", "user", openai_user);

    // Query parameters
    let limit = || int(1, history::MAX_PAGE);
    let offset = || int(0, history::MAX_OFFSET);
    let unix_ms = || int(i64::MIN, i64::MAX);
    for (path, names) in
        [("/conversations", &["user_id", "limit", "offset"][..]), ("/gallery", &["user_id", "limit", "offset"])]
    {
        for name in names {
            let rule = match *name {
                "user_id" => user_id(),
                "limit" => limit(),
                _ => offset(),
            };
            param(doc, path, "get", name, rule);
        }
    }
    param(doc, "/gallery", "get", "from", unix_ms());
    param(doc, "/gallery", "get", "to", unix_ms());
    param(doc, "/gallery", "get", "q", json!({"type": "string"}));
    let query = json!({"type": "string", "minLength": 1, "maxLength": history::MAX_QUERY_CHARS, "pattern": "[0-9A-Za-z]|[^\\x00-\\x7F]"});
    param(doc, "/search", "get", "q", query);
    set_required_param(doc, "/search", "get", "q");
    param(doc, "/search", "get", "user_id", user_id());
    param(doc, "/search", "get", "limit", limit());
    param(doc, "/quota", "get", "user_id", user_id());
    param(
        doc,
        "/conversations/{id}/export",
        "get",
        "format",
        json!({"type": "string", "enum": ["json", "markdown", "md"]}),
    );

    // Server-sent events: each event is `{event, data}`, its data the JSON of a schema.
    let chat_events = ["start", "reasoning", "answer", "reply", "image_job", "done", "error"];
    events(doc, "/chat", "post", &chat_events, json_data(schema("ChatEvent")));
    events(doc, "/jobs/{id}/events", "get", &["job"], json_data(schema("JobInfo")));
    // OpenAI's events are unnamed (`message`): chunks or an error, then the text `[DONE]`.
    let chunk = json_data(json!({"oneOf": [schema("ChatCompletionChunk"), schema("ErrorBody")]}));
    let data = json!({"type": "string", "if": {"const": "[DONE]"}, "then": true, "else": chunk});
    events(doc, "/v1/chat/completions", "post", &["message"], data);
}

/// An event's `data`: the JSON text of a value of `schema`.
fn json_data(schema: Value) -> Value {
    json!({"type": "string", "contentMediaType": "application/json", "contentSchema": schema})
}

fn schema(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// A `text/event-stream` answer described as OpenAPI 3.2 describes one: the schema of each event,
/// with `data` as given.
fn events(doc: &mut Value, path: &str, method: &str, names: &[&str], data: Value) {
    let content = &mut doc["paths"][path][method]["responses"]["200"]["content"]["text/event-stream"];
    assert!(content.is_object(), "{method} {path} documents no text/event-stream answer: update api/openapi_rules.rs");
    content["schema"] = json!({
        "type": "object",
        "required": ["data"],
        "properties": {
            "event": {"type": "string", "enum": names},
            "data": data,
            "id": {"type": "string"},
            "retry": {"type": "integer"},
        },
    });
}

fn set_required_param(doc: &mut Value, path: &str, method: &str, name: &str) {
    if let Some(p) =
        doc["paths"][path][method]["parameters"].as_array_mut().and_then(|ps| ps.iter_mut().find(|p| p["name"] == name))
    {
        p["required"] = json!(true);
    }
}

/// Answers a public route gives besides its own (accounts' routes are public, so the shared
/// 429 of authenticated routes is not added to them by default).
pub fn public_answers(doc: &mut Value) {
    let error = |description: &str| {
        let mut response = Map::new();
        response.insert("description".into(), json!(description));
        response.insert(
            "content".into(),
            json!({"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}),
        );
        response.insert(
            "headers".into(),
            json!({"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}),
        );
        Value::Object(response)
    };
    for path in ["/auth/login", "/auth/register"] {
        let responses = &mut doc["paths"][path]["post"]["responses"];
        responses["429"] = error("Too many log-in or sign-up attempts from this address, or for this name from it: `error.param` names the limit; `Retry-After` says when to try again");
        responses["503"] = error("Too many passwords are being checked at once; `Retry-After` says when to try again");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_are_every_allowed_multiple() {
        let re = sides();
        assert!(re.starts_with("(256|264|") && re.ends_with("|1016|1024)"), "{re}");
        assert_eq!(re.matches('|').count(), 96);
    }

    #[test]
    fn nullable_fields_stay_nullable_and_required_ones_do_not() {
        let mut doc = json!({"components": {"schemas": {"S": {"properties": {
            "a": {"type": ["integer", "null"], "description": "kept"},
            "b": {"type": ["string", "null"]},
            "c": {"oneOf": [{"type": "null"}, {"type": "string"}]},
        }}}}});
        set(&mut doc, "S", "a", int(1, 5));
        assert_eq!(
            doc["components"]["schemas"]["S"]["properties"]["a"],
            json!({"type": ["integer", "null"], "minimum": 1, "maximum": 5, "description": "kept"})
        );
        set(&mut doc, "S", "b", text(1, 3));
        require(&mut doc, "S", &["b"]);
        assert_eq!(doc["components"]["schemas"]["S"]["properties"]["b"]["type"], "string");
        assert_eq!(doc["components"]["schemas"]["S"]["required"], json!(["b"]));
        set(&mut doc, "S", "c", json!({"oneOf": [{"type": "string"}, {"type": "array"}]}));
        assert_eq!(doc["components"]["schemas"]["S"]["properties"]["c"]["oneOf"][0], json!({"type": "null"}));
        assert_eq!(int(0, u64::MAX)["maximum"].to_string(), "18446744073709551615", "exact, not rounded");
    }
}
