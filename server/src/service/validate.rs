//! Requests checked before any work starts (TGI's validate-then-run). Each rule names the field
//! as the caller wrote it (a JSON path) and what it accepts.

use super::{error::ServiceError, sanitize::PromptPolicy};
use crate::inference::{
    diffusion::{request::random_seed, ImageRequest, SchedulerKind},
    llm::{GenerationParams, SamplingOverrides},
};
use app::types::{ChatRequest, ChatSettings, ImageGenerationRequest};

pub const MAX_USER_ID_CHARS: usize = 200;
pub const MAX_MESSAGE_CHARS: usize = 32_000;
/// Messages one OpenAI-style request may send (OpenAI's own limit).
pub const MAX_MESSAGES: usize = 2048;
/// Characters all the messages of one request may hold together: several times what fits the
/// chat model's window (16k tokens), so clients that send whole histories work, while the worst
/// request costs the engine thread only a bounded moment to fit (README, "Limits").
pub const MAX_CONVERSATION_CHARS: usize = 1_000_000;
pub const MAX_TOKENS: u32 = 8192;
pub const MAX_STOP_STRINGS: usize = 4;
pub const MAX_STOP_CHARS: usize = 100;
pub const MAX_TEMPERATURE: f64 = 2.0;
pub const MAX_SYSTEM_PROMPT_CHARS: usize = 4000;
pub const MAX_REPETITION_PENALTY: f64 = 2.0;
pub const MAX_STEPS: u32 = 100;
pub const MAX_GUIDANCE: f64 = 30.0;
/// Image sides: multiples of `SIDE_STEP` from `MIN_SIDE` to `MAX_SIDE`.
pub const MIN_SIDE: u32 = 256;
pub const MAX_SIDE: u32 = 1024;
pub const SIDE_STEP: u32 = 8;
pub const MAX_IMAGE_PROMPT_CHARS: usize = super::image_prompt::MAX_IMAGE_PROMPT_CHARS;
const IMAGINE: &str = "/imagine";

type Checked<T> = Result<T, ServiceError>;

fn bad<T>(field: impl Into<String>, message: impl Into<String>) -> Checked<T> {
    Err(ServiceError::invalid(field, message))
}

/// A chat request that passed every check.
#[derive(Clone, Debug)]
pub struct ValidChat {
    pub user_id: String,
    pub message: String,
    pub conversation_id: Option<String>,
    /// Drop this user message and what follows before storing the new one.
    pub replace_from: Option<String>,
    pub stream: bool,
    pub params: GenerationParams,
    /// `/imagine PROMPT`: a picture of PROMPT, no chat reply.
    pub imagine: Option<String>,
    /// The caller asked for a picture with this turn (settings checked, prompt maybe absent).
    pub image: Option<ImageGenerationRequest>,
    /// Chat settings to keep with the conversation from this turn on.
    pub settings: Option<ChatSettings>,
    /// `max_tokens` was sent (else the conversation's setting, then the server's default, holds).
    pub max_tokens_given: bool,
}

pub fn chat(request: ChatRequest, default_max_tokens: u32, prompts: &PromptPolicy) -> Checked<ValidChat> {
    let user_id = required_text("user_id", request.user_id, MAX_USER_ID_CHARS)?;
    let message = required_text("message", request.message, MAX_MESSAGE_CHARS)?;
    let conversation_id = match request.conversation_id {
        Some(id) if !is_uuid(&id) => {
            return bad("conversation_id", "must be the conversation_id of an earlier reply (a UUID)")
        }
        other => other,
    };
    let replace_from = match (request.replace_from, &conversation_id) {
        (None, _) => None,
        (Some(_), None) => {
            return bad("replace_from", "needs conversation_id: it names a message of that conversation")
        }
        (Some(id), Some(_)) if !is_uuid(&id) => {
            return bad("replace_from", "must be the id of a user message of this conversation (a UUID)")
        }
        (Some(id), Some(_)) => Some(id),
    };
    let max_tokens = request.max_tokens.unwrap_or(default_max_tokens);
    if !(1..=MAX_TOKENS).contains(&max_tokens) {
        return bad("max_tokens", format!("must be an integer from 1 to {MAX_TOKENS}, got {max_tokens}"));
    }
    let sampling = sampling(request.temperature, request.top_p, request.top_k, request.repetition_penalty)?;
    let stop = stop_strings(request.stop)?;
    let imagine = match imagine_prompt(&message)? {
        Some(typed) => Some(sanitized("message", &typed, prompts)?),
        None => None,
    };
    if let Some(options) = &request.image {
        // Check the settings now, so a bad one fails before the model runs; the prompt may come later.
        let probe = options.prompt.is_none().then_some("probe");
        image(options, probe, SchedulerKind::Pndm, "image.", prompts)?;
    }
    Ok(ValidChat {
        user_id,
        message,
        conversation_id,
        replace_from,
        stream: request.stream,
        params: GenerationParams {
            sampling: SamplingOverrides { seed: request.seed, ..sampling },
            max_new_tokens: max_tokens as usize,
            stop,
            ignore_eos: false,
        },
        imagine,
        image: request.image,
        settings: request.settings.map(chat_settings).transpose()?,
        max_tokens_given: request.max_tokens.is_some(),
    })
}

/// Chat settings to keep with a conversation: each in the range of its per-turn twin; a blank
/// system prompt is none, and one with control characters (other than line breaks and tabs) is
/// refused.
pub fn chat_settings(settings: ChatSettings) -> Checked<ChatSettings> {
    // Counted as sent, as the OpenAPI document states it; stored trimmed.
    if let Some(prompt) = &settings.system_prompt {
        let chars = prompt.chars().count();
        if chars > MAX_SYSTEM_PROMPT_CHARS {
            return bad(
                "settings.system_prompt",
                format!("must be at most {MAX_SYSTEM_PROMPT_CHARS} characters, got {chars}"),
            );
        }
        if prompt.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
            return bad("settings.system_prompt", "must not hold control characters other than line breaks and tabs");
        }
    }
    let system_prompt = settings.system_prompt.map(|p| p.trim().to_string()).filter(|p| !p.is_empty());
    temperature_and_top_p("settings.", settings.temperature, settings.top_p)?;
    if let Some(n) = settings.max_tokens.filter(|n| !(1..=MAX_TOKENS).contains(n)) {
        return bad("settings.max_tokens", format!("must be an integer from 1 to {MAX_TOKENS}, got {n}"));
    }
    Ok(ChatSettings { system_prompt, ..settings })
}

/// An image prompt through the sanitizer: refused by the block-list, or empty once markup and
/// control characters are gone, is the caller's error.
fn sanitized(field: &str, prompt: &str, prompts: &PromptPolicy) -> Checked<String> {
    match prompts.check(prompt) {
        Err(blocked) => bad(field, blocked.to_string()),
        Ok(clean) if clean.is_empty() => bad(field, "must not be empty (markup and control characters do not count)"),
        Ok(clean) => Ok(clean),
    }
}

/// An id in the one form the API documents: 36 characters, hyphenated (`8-4-4-4-12`).
pub fn is_uuid(id: &str) -> bool {
    id.len() == 36 && id.as_bytes()[8] == b'-' && uuid::Uuid::try_parse(id).is_ok()
}

/// An optional end-user id: absent, or 1 to 200 characters.
pub fn user_id(field: &str, value: Option<String>) -> Checked<Option<String>> {
    value.map(|v| required_text(field, Some(v), MAX_USER_ID_CHARS)).transpose()
}

fn required_text(field: &str, value: Option<String>, max_chars: usize) -> Checked<String> {
    let Some(value) = value else { return bad(field, "is required") };
    if value.trim().is_empty() {
        return bad(field, "must not be empty");
    }
    let chars = value.chars().count();
    if chars > max_chars {
        return bad(field, format!("must be at most {max_chars} characters, got {chars}"));
    }
    Ok(value)
}

/// Checked on the values as sent (f64), so a value just past a bound is refused, not rounded
/// into it.
pub fn sampling(
    temperature: Option<f64>,
    top_p: Option<f64>,
    top_k: Option<u32>,
    repetition_penalty: Option<f64>,
) -> Checked<SamplingOverrides> {
    temperature_and_top_p("", temperature, top_p)?;
    if let Some(r) = repetition_penalty.filter(|r| !(r.is_finite() && *r > 0.0 && *r <= MAX_REPETITION_PENALTY)) {
        return bad("repetition_penalty", format!("must be a number above 0 and at most 2 (1: off), got {r}"));
    }
    let narrow = |v: Option<f64>| v.map(|v| v as f32);
    Ok(SamplingOverrides {
        temperature: narrow(temperature),
        top_p: narrow(top_p),
        top_k: top_k.map(|k| k as usize),
        repetition_penalty: narrow(repetition_penalty),
        seed: None,
    })
}

/// The sampling ranges a turn and a conversation's settings share; `prefix` places the fields.
fn temperature_and_top_p(prefix: &str, temperature: Option<f64>, top_p: Option<f64>) -> Checked<()> {
    if let Some(t) = temperature.filter(|t| !(t.is_finite() && (0.0..=MAX_TEMPERATURE).contains(t))) {
        return bad(format!("{prefix}temperature"), format!("must be a number from 0 (greedy) to 2, got {t}"));
    }
    if let Some(p) = top_p.filter(|p| !(p.is_finite() && *p > 0.0 && *p <= 1.0)) {
        return bad(format!("{prefix}top_p"), format!("must be a number above 0 and at most 1, got {p}"));
    }
    Ok(())
}

pub fn stop_strings(stop: Option<Vec<String>>) -> Checked<Vec<String>> {
    let stop = stop.unwrap_or_default();
    if stop.len() > MAX_STOP_STRINGS {
        return bad("stop", format!("at most {MAX_STOP_STRINGS} strings, got {}", stop.len()));
    }
    for (i, s) in stop.iter().enumerate() {
        if s.is_empty() || s.chars().count() > MAX_STOP_CHARS {
            return bad(format!("stop[{i}]"), format!("must be 1 to {MAX_STOP_CHARS} characters"));
        }
    }
    Ok(stop)
}

/// `/imagine a red fox` → `Some("a red fox")`; other messages → `None`.
fn imagine_prompt(message: &str) -> Checked<Option<String>> {
    let trimmed = message.trim_start();
    let Some(rest) = trimmed.strip_prefix(IMAGINE) else { return Ok(None) };
    if !rest.is_empty() && !rest.starts_with(char::is_whitespace) {
        return Ok(None); // e.g. "/imagined": not the command
    }
    let prompt = rest.trim();
    if prompt.is_empty() {
        return bad("message", "/imagine needs a description of the picture, e.g. \"/imagine a red fox in snow\"");
    }
    if prompt.chars().count() > MAX_IMAGE_PROMPT_CHARS {
        return bad("message", format!("an /imagine prompt must be at most {MAX_IMAGE_PROMPT_CHARS} characters"));
    }
    Ok(Some(prompt.to_string()))
}

/// Turn image options into a complete recipe. `prompt` (when given) replaces the options' own;
/// `prefix` goes before field names (`image.` inside a chat request).
pub fn image(
    options: &ImageGenerationRequest,
    prompt: Option<&str>,
    default_scheduler: SchedulerKind,
    prefix: &str,
    prompts: &PromptPolicy,
) -> Checked<ImageRequest> {
    let field = |name: &str| format!("{prefix}{name}");
    let Some(prompt) = prompt.or(options.prompt.as_deref()) else { return bad(field("prompt"), "is required") };
    // Lengths as sent (what the API document states), then the text trimmed.
    for (name, text) in [("prompt", prompt), ("negative_prompt", options.negative_prompt.as_deref().unwrap_or(""))] {
        let chars = text.chars().count();
        if chars > MAX_IMAGE_PROMPT_CHARS {
            return bad(field(name), format!("must be at most {MAX_IMAGE_PROMPT_CHARS} characters, got {chars}"));
        }
    }
    let prompt = sanitized(&field("prompt"), prompt, prompts)?;
    let steps = options.num_inference_steps.unwrap_or(20);
    if !(1..=MAX_STEPS).contains(&steps) {
        return bad(field("num_inference_steps"), format!("must be an integer from 1 to {MAX_STEPS}, got {steps}"));
    }
    let guidance_scale = options.guidance_scale.unwrap_or(7.5);
    if !(guidance_scale.is_finite() && (0.0..=MAX_GUIDANCE).contains(&guidance_scale)) {
        return bad(
            field("guidance_scale"),
            format!("must be a number from 0 to 30 (1 or less turns guidance off), got {guidance_scale}"),
        );
    }
    let mut sides = [0; 2];
    for (i, (name, value)) in [("width", options.width), ("height", options.height)].into_iter().enumerate() {
        let side = value.unwrap_or(512);
        if !(MIN_SIDE..=MAX_SIDE).contains(&side) || side % SIDE_STEP != 0 {
            return bad(
                field(name),
                format!("must be a multiple of {SIDE_STEP} from {MIN_SIDE} to {MAX_SIDE}, got {side}"),
            );
        }
        sides[i] = side;
    }
    let scheduler = match options.scheduler.as_deref() {
        None => default_scheduler,
        Some(name) => SchedulerKind::parse(name).ok_or_else(|| {
            ServiceError::invalid(
                field("scheduler"),
                format!("unknown {name:?}; choose one of {}", SchedulerKind::names()),
            )
        })?,
    };
    let request = ImageRequest {
        prompt,
        negative_prompt: prompts.negative(options.negative_prompt.as_deref()),
        steps,
        guidance_scale: guidance_scale as f32,
        width: sides[0],
        height: sides[1],
        seed: options.seed.unwrap_or_else(random_seed),
        scheduler,
    };
    // The engine's own checks, as a backstop: the rules above are at least as strict.
    request.validate().map_err(|e| ServiceError::invalid(field(e.field), e.message))?;
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The rules without a block-list; `prompts_pass_the_sanitizer` tries one.
    fn chat(request: ChatRequest, default_max_tokens: u32) -> Checked<ValidChat> {
        super::chat(request, default_max_tokens, &PromptPolicy::default())
    }

    fn image(
        o: &ImageGenerationRequest,
        prompt: Option<&str>,
        s: SchedulerKind,
        prefix: &str,
    ) -> Checked<ImageRequest> {
        super::image(o, prompt, s, prefix, &PromptPolicy::default())
    }

    #[test]
    fn prompts_pass_the_sanitizer() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("blocklist.txt");
        std::fs::write(&list, "# not here\ngore\n").unwrap();
        let policy = PromptPolicy::load(Some(&list), "blurry").unwrap();
        let request = |prompt: &str| ImageGenerationRequest { prompt: Some(prompt.into()), ..Default::default() };
        let made = super::image(&request("<b>a red</b>\u{0} fox"), None, SchedulerKind::Pndm, "", &policy).unwrap();
        assert_eq!((made.prompt.as_str(), made.negative_prompt.as_str()), ("a red fox", "blurry"));
        let refused = super::image(&request("a GORE scene"), None, SchedulerKind::Pndm, "", &policy).unwrap_err();
        match refused {
            ServiceError::Invalid { field, message } => {
                assert_eq!(field, "prompt");
                assert!(message.contains("IMAGE_PROMPT_BLOCKLIST line 2: gore"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let empty = super::image(&request("<p></p>\u{200B}"), None, SchedulerKind::Pndm, "", &policy);
        assert_eq!(field_of(empty), "prompt");
        let typed = |message: &str| super::chat(chat_req(message), 10, &policy);
        assert_eq!(field_of(typed("/imagine a gore scene")), "message");
        assert_eq!(typed("/imagine a <i>red</i> fox").unwrap().imagine.as_deref(), Some("a red fox"));
        let with_options = ChatRequest { image: Some(request("gore")), ..chat_req("draw it") };
        assert_eq!(field_of(super::chat(with_options, 10, &policy)), "image.prompt");
    }

    fn field_of<T: std::fmt::Debug>(r: Checked<T>) -> String {
        match r {
            Err(ServiceError::Invalid { field, .. }) => field,
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    fn chat_req(message: &str) -> ChatRequest {
        ChatRequest { user_id: Some("alice".into()), message: Some(message.into()), ..Default::default() }
    }

    #[test]
    fn user_id_and_message_are_required_and_bounded() {
        assert_eq!(field_of(chat(ChatRequest { user_id: None, ..chat_req("hi") }, 100)), "user_id");
        assert_eq!(field_of(chat(ChatRequest { user_id: Some(" ".into()), ..chat_req("hi") }, 100)), "user_id");
        assert_eq!(field_of(chat(ChatRequest { user_id: Some("u".repeat(201)), ..chat_req("hi") }, 100)), "user_id");
        assert_eq!(field_of(chat(ChatRequest { message: None, ..chat_req("") }, 100)), "message");
        assert_eq!(field_of(chat(chat_req("\n\t"), 100)), "message");
        assert_eq!(field_of(chat(chat_req(&"x".repeat(MAX_MESSAGE_CHARS + 1)), 100)), "message");
        let ok = chat(chat_req("hello"), 100).unwrap();
        assert_eq!((ok.user_id.as_str(), ok.message.as_str(), ok.params.max_new_tokens), ("alice", "hello", 100));
    }

    #[test]
    fn sampling_options_have_ranges() {
        let with = |f: fn(&mut ChatRequest)| {
            let mut r = chat_req("hi");
            f(&mut r);
            chat(r, 100)
        };
        assert_eq!(field_of(with(|r| r.max_tokens = Some(0))), "max_tokens");
        assert_eq!(field_of(with(|r| r.max_tokens = Some(MAX_TOKENS + 1))), "max_tokens");
        assert_eq!(field_of(with(|r| r.temperature = Some(-0.1))), "temperature");
        assert_eq!(field_of(with(|r| r.temperature = Some(f64::NAN))), "temperature");
        // Just past a bound is refused, not rounded into it (as f32 it would be exactly 2).
        assert_eq!(field_of(with(|r| r.temperature = Some(2.000_000_000_1))), "temperature");
        assert_eq!(field_of(with(|r| r.top_p = Some(0.0))), "top_p");
        assert_eq!(field_of(with(|r| r.repetition_penalty = Some(2.5))), "repetition_penalty");
        assert_eq!(field_of(with(|r| r.stop = Some(vec!["a".into(); 5]))), "stop");
        assert_eq!(field_of(with(|r| r.stop = Some(vec!["ok".into(), String::new()]))), "stop[1]");
        assert_eq!(field_of(with(|r| r.conversation_id = Some("../etc".into()))), "conversation_id");
        assert_eq!(field_of(with(|r| r.replace_from = Some(uuid::Uuid::new_v4().to_string()))), "replace_from");
        assert_eq!(
            field_of(with(|r| {
                r.conversation_id = Some(uuid::Uuid::new_v4().to_string());
                r.replace_from = Some("1".into());
            })),
            "replace_from"
        );
        let ok = with(|r| {
            r.temperature = Some(0.6);
            r.seed = Some(9);
            r.top_k = Some(20);
        })
        .unwrap();
        assert_eq!(ok.params.sampling.temperature, Some(0.6));
        assert_eq!(ok.params.sampling.seed, Some(9));
        assert_eq!(ok.params.sampling.top_k, Some(20));
    }

    #[test]
    fn imagine_takes_the_rest_of_the_message() {
        assert_eq!(chat(chat_req("/imagine  a red fox "), 1).unwrap().imagine.as_deref(), Some("a red fox"));
        assert_eq!(chat(chat_req("/imagined things"), 1).unwrap().imagine, None);
        assert_eq!(chat(chat_req("tell me about /imagine"), 1).unwrap().imagine, None);
        assert_eq!(field_of(chat(chat_req("/imagine   "), 1)), "message");
    }

    #[test]
    fn image_options_inside_chat_are_checked_up_front() {
        let mut r = chat_req("draw");
        r.image = Some(ImageGenerationRequest { width: Some(500), ..Default::default() });
        assert_eq!(field_of(chat(r, 1)), "image.width");
        let mut r = chat_req("draw");
        r.image = Some(ImageGenerationRequest { scheduler: Some("bogus".into()), ..Default::default() });
        assert_eq!(field_of(chat(r, 1)), "image.scheduler");
    }

    #[test]
    fn image_rules() {
        let opts = |f: fn(&mut ImageGenerationRequest)| {
            let mut o = ImageGenerationRequest { prompt: Some("a fox".into()), ..Default::default() };
            f(&mut o);
            image(&o, None, SchedulerKind::Pndm, "")
        };
        assert_eq!(field_of(opts(|o| o.prompt = None)), "prompt");
        assert_eq!(field_of(opts(|o| o.prompt = Some("  ".into()))), "prompt");
        assert_eq!(field_of(opts(|o| o.prompt = Some("p".repeat(1001)))), "prompt");
        assert_eq!(field_of(opts(|o| o.negative_prompt = Some("n".repeat(1001)))), "negative_prompt");
        assert_eq!(field_of(opts(|o| o.num_inference_steps = Some(0))), "num_inference_steps");
        assert_eq!(field_of(opts(|o| o.num_inference_steps = Some(101))), "num_inference_steps");
        assert_eq!(field_of(opts(|o| o.guidance_scale = Some(30.5))), "guidance_scale");
        assert_eq!(field_of(opts(|o| o.width = Some(248))), "width");
        assert_eq!(field_of(opts(|o| o.height = Some(1032))), "height");
        assert_eq!(field_of(opts(|o| o.height = Some(260))), "height");
        assert_eq!(field_of(opts(|o| o.scheduler = Some("k_lms".into()))), "scheduler");
        let r = opts(|o| {
            o.seed = Some(u32::MAX);
            o.scheduler = Some("euler_a".into());
            o.width = Some(768);
        })
        .unwrap();
        assert_eq!((r.seed, r.scheduler, r.width, r.height, r.steps), (u32::MAX, SchedulerKind::EulerA, 768, 512, 20));
        assert_eq!(r.guidance_scale, 7.5);
        // The chat's prompt wins over the options' own.
        let o = ImageGenerationRequest { prompt: Some("ignored".into()), ..Default::default() };
        assert_eq!(image(&o, Some("from chat"), SchedulerKind::Ddim, "").unwrap().prompt, "from chat");
    }
}
