//! Chat settings for the conversation on screen: a system prompt added to Duet's, temperature,
//! top-p and reply length, each empty for the model's default (shown as the placeholder). Saved
//! with an open conversation at once; for a new one they go with its first message.

use super::Chat;
use crate::{api::save_chat_settings, types::ChatSettings};
use leptos::prelude::*;

/// A field's text → its value; empty is "the default", anything else must parse.
fn parse<T: std::str::FromStr>(text: &str, field: &str) -> Result<Option<T>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| format!("{field}: {text:?} is not a number"))
}

fn show<T: ToString>(value: Option<T>) -> String {
    value.map(|v| v.to_string()).unwrap_or_default()
}

/// One number, empty for the default: `range` is (min, max, step), which the browser enforces.
#[component]
fn NumberField(
    label: &'static str,
    name: &'static str,
    range: (&'static str, &'static str, &'static str),
    value: RwSignal<String>,
    placeholder: Signal<String>,
) -> impl IntoView {
    let (min, max, step) = range;
    view! {
        <label>
            {label}
            <input name=name type="number" min=min max=max step=step inputmode="decimal" placeholder=placeholder
                prop:value=move || value.get() on:input=move |ev| value.set(event_target_value(&ev))/>
        </label>
    }
}

#[component]
pub fn ChatSettingsPanel(chat: Chat) -> impl IntoView {
    let system = RwSignal::new(String::new());
    let temperature = RwSignal::new(String::new());
    let top_p = RwSignal::new(String::new());
    let max_tokens = RwSignal::new(String::new());
    let status = RwSignal::new(None::<Result<String, String>>);
    // What empty fields come to, once in the browser: the page's signals are filled by the
    // conversation's loader, which on the server may run on another thread while this renders.
    let defaults = RwSignal::new(None::<crate::types::ChatDefaults>);
    Effect::new(move |_| defaults.set(Some(chat.defaults.get())));
    // The fields follow the conversation on screen.
    Effect::new(move |_| {
        let s = chat.settings.get();
        system.set(s.system_prompt.unwrap_or_default());
        temperature.set(show(s.temperature));
        top_p.set(show(s.top_p));
        max_tokens.set(show(s.max_tokens));
    });
    let placeholder = move |value: Option<String>| match value {
        Some(v) => format!("model default: {v}"),
        None => "model default".to_string(),
    };
    let save = move |settings: ChatSettings| {
        status.set(None);
        match chat.conversation.get_untracked() {
            None => {
                chat.settings.set(settings);
                status.set(Some(Ok("Kept for this conversation's first message.".into())));
            }
            Some(id) => leptos::task::spawn_local(async move {
                match save_chat_settings(id, settings).await {
                    Ok(summary) => {
                        chat.settings.set(summary.settings);
                        status.set(Some(Ok("Saved.".into())));
                    }
                    Err(e) => status.set(Some(Err(e.to_string()))),
                }
            }),
        }
    };
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let read = || -> Result<ChatSettings, String> {
            Ok(ChatSettings {
                system_prompt: Some(system.get_untracked()).filter(|s| !s.trim().is_empty()),
                temperature: parse(&temperature.get_untracked(), "Temperature")?,
                top_p: parse(&top_p.get_untracked(), "Top-p")?,
                max_tokens: parse(&max_tokens.get_untracked(), "Maximum tokens")?,
            })
        };
        match read() {
            Ok(settings) => save(settings),
            Err(e) => status.set(Some(Err(e))),
        }
    };
    view! {
        <details class="chat-settings" data-testid="chat-settings">
            <summary>"Chat settings"</summary>
            <form class="chat-settings-form" on:submit=submit>
                <label>
                    "System prompt"
                    <textarea name="system_prompt" rows="3" maxlength="4000"
                        placeholder="Instructions for this conversation (added to Duet's own)"
                        prop:value=move || system.get() on:input=move |ev| system.set(event_target_value(&ev))></textarea>
                </label>
                <div class="chat-settings-numbers">
                    <NumberField label="Temperature" name="temperature" range=("0", "2", "0.05") value=temperature
                        placeholder=Signal::derive(move || placeholder(defaults.get().and_then(|d| d.temperature).map(|t| t.to_string())))/>
                    <NumberField label="Top-p" name="top_p" range=("0.01", "1", "0.01") value=top_p
                        placeholder=Signal::derive(move || placeholder(defaults.get().and_then(|d| d.top_p).map(|p| p.to_string())))/>
                    <NumberField label="Maximum tokens" name="max_tokens" range=("1", "8192", "1") value=max_tokens
                        placeholder=Signal::derive(move || placeholder(defaults.get().map(|d| d.max_tokens.to_string())))/>
                </div>
                <div class="chat-settings-actions">
                    <button class="button primary" type="submit">"Save"</button>
                    <button class="button" type="button" on:click=move |_| save(ChatSettings::default())>
                        "Reset to defaults"
                    </button>
                    {move || status.get().map(|s| match s {
                        Ok(text) => view! { <span class="muted" role="status">{text}</span> }.into_any(),
                        Err(text) => view! { <span class="error" role="alert">{text}</span> }.into_any(),
                    })}
                </div>
            </form>
        </details>
    }
}
