//! Settings: API keys (made here, shown once, revoked here) and how much of each limit is used.
//! Everything goes through the REST routes with the session cookie, after the WASM loads.

use super::{copy::CopyButton, when};
use crate::types::{ApiKeyInfo, CreatedApiKey, Limit, QuotaReport};
use leptos::prelude::*;

#[component]
pub fn SettingsPage() -> impl IntoView {
    view! {
        <super::AccessCheck/>
        <div class="page settings">
            <h2>"Settings"</h2>
            <ApiKeys/>
            <Password/>
            <Quota/>
        </div>
    }
}

/// Change one's password: the current one is asked for; every other session ends.
#[component]
fn Password() -> impl IntoView {
    let current = RwSignal::new(String::new());
    let new = RwSignal::new(String::new());
    let done = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let change = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        #[cfg(feature = "hydrate")]
        leptos::task::spawn_local(async move {
            let body = crate::types::PasswordChange {
                current_password: Some(current.get_untracked()),
                new_password: Some(new.get_untracked()),
            };
            match crate::browser::send("POST", "/account/password", &body).await {
                Ok(()) => {
                    current.set(String::new());
                    new.set(String::new());
                    error.set(None);
                    done.set(true);
                }
                Err(e) => {
                    done.set(false);
                    error.set(Some(e));
                }
            }
        });
    };
    view! {
        <section class="panel" aria-labelledby="password-heading">
            <h3 id="password-heading">"Password"</h3>
            <form class="row" on:submit=change>
                <label>"Current password "
                    <input type="password" required autocomplete="current-password" prop:value=move || current.get()
                        on:input=move |ev| current.set(event_target_value(&ev))/>
                </label>
                <label>"New password "
                    <input type="password" required minlength="8" maxlength="256" autocomplete="new-password"
                        prop:value=move || new.get() on:input=move |ev| new.set(event_target_value(&ev))/>
                </label>
                <button class="button primary" type="submit">"Change password"</button>
            </form>
            <Show when=move || done.get()>
                <p role="status" data-testid="password-changed">
                    "Password changed. Every other session of this account is logged out."
                </p>
            </Show>
            {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
        </section>
    }
}

#[component]
fn ApiKeys() -> impl IntoView {
    let keys = RwSignal::new(None::<Vec<ApiKeyInfo>>);
    let created = RwSignal::new(None::<CreatedApiKey>);
    let name = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let reload = move || {
        #[cfg(feature = "hydrate")]
        leptos::task::spawn_local(async move {
            match crate::browser::get_json::<Vec<ApiKeyInfo>>("/account/keys").await {
                Ok(list) => keys.set(Some(list)),
                Err(e) => error.set(Some(e)),
            }
        });
    };
    Effect::new(move |_| reload());
    let create = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        #[cfg(feature = "hydrate")]
        leptos::task::spawn_local(async move {
            let body = crate::types::NewApiKey { name: Some(name.get_untracked()) };
            match crate::browser::send_json::<CreatedApiKey>("POST", "/account/keys", &body).await {
                Ok(key) => {
                    created.set(Some(key));
                    name.set(String::new());
                    error.set(None);
                    reload();
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };
    let revoke = move |id: String| {
        #[cfg(feature = "hydrate")]
        leptos::task::spawn_local(async move {
            match crate::browser::delete(&format!("/account/keys/{id}")).await {
                Ok(()) => reload(),
                Err(e) => error.set(Some(e)),
            }
        });
        #[cfg(not(feature = "hydrate"))]
        let _ = id;
    };
    view! {
        <section class="panel" aria-labelledby="keys-heading">
            <h3 id="keys-heading">"API keys"</h3>
            <p class="muted">
                "For the REST API and OpenAI-compatible clients: send " <code>"Authorization: Bearer <key>"</code> "."
            </p>
            <form class="row" on:submit=create>
                <label>"Key name "
                    <input type="text" required maxlength="100" placeholder="e.g. laptop script" prop:value=move || name.get()
                        on:input=move |ev| name.set(event_target_value(&ev))/>
                </label>
                <button class="button primary" type="submit">"Create key"</button>
            </form>
            {move || created.get().map(|key| view! {
                <div class="new-key" role="status">
                    <p>"Your new key. It is shown only now: copy it somewhere safe."</p>
                    <code data-testid="new-key">{key.key.clone()}</code>
                    <CopyButton text=key.key.clone() class="button"/>
                </div>
            })}
            {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
            {move || match keys.get() {
                None => view! { <p class="muted">"Loading keys…"</p> }.into_any(),
                Some(list) if list.is_empty() => view! { <p class="muted">"No keys yet."</p> }.into_any(),
                Some(list) => view! {
                    <table class="keys" data-testid="api-keys">
                        <thead><tr><th>"Name"</th><th>"Key"</th><th>"Made"</th><th>"Last used"</th><th></th></tr></thead>
                        <tbody>
                            {list.into_iter().map(|k| {
                                let id = k.id.clone();
                                view! {
                                    <tr class:revoked=k.revoked_at.is_some()>
                                        <td>{k.name.clone()}</td>
                                        <td><code>{format!("{}…", k.prefix)}</code></td>
                                        <td>{when(k.created_at)}</td>
                                        <td>{k.last_used_at.map(when).unwrap_or_else(|| "never".into())}</td>
                                        <td>{if k.revoked_at.is_some() {
                                            view! { <span class="muted">"revoked"</span> }.into_any()
                                        } else {
                                            view! {
                                                <button class="link-button" type="button"
                                                    aria-label=format!("Revoke {}", k.name)
                                                    on:click=move |_| revoke(id.clone())>"Revoke"</button>
                                            }.into_any()
                                        }}</td>
                                    </tr>
                                }
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any(),
            }}
        </section>
    }
}

fn limit_row(label: &'static str, l: Limit) -> impl IntoView {
    let share = l.limit.filter(|&n| n > 0).map(|n| (l.used as f64 / n as f64).min(1.0));
    view! {
        <tr>
            <td>{label}</td>
            <td>{l.used}</td>
            <td>{l.limit.map_or("no limit".to_string(), |n| n.to_string())}</td>
            <td>{share.map(|s| view! { <meter min="0" max="1" value=s aria-label=label></meter> })}</td>
        </tr>
    }
}

#[component]
fn Quota() -> impl IntoView {
    let report = RwSignal::new(None::<Result<QuotaReport, String>>);
    Effect::new(move |_| {
        #[cfg(feature = "hydrate")]
        leptos::task::spawn_local(async move { report.set(Some(crate::browser::get_json("/quota").await)) });
    });
    view! {
        <section class="panel" aria-labelledby="quota-heading">
            <h3 id="quota-heading">"Usage and limits"</h3>
            {move || match report.get() {
                None => view! { <p class="muted">"Loading…"</p> }.into_any(),
                Some(Err(e)) => view! { <p class="error">{e}</p> }.into_any(),
                Some(Ok(q)) => view! {
                    <table class="quota" data-testid="quota">
                        <thead><tr><th>"Limit"</th><th>"Used"</th><th>"Allowed"</th><th></th></tr></thead>
                        <tbody>
                            {limit_row("Requests in the last minute", q.account.requests_per_minute)}
                            {limit_row("Generations running now", q.account.concurrent_generations)}
                            {limit_row("Images today", q.account.images_per_day)}
                            {limit_row("Tokens today", q.account.tokens_per_day)}
                        </tbody>
                    </table>
                    <p class="muted">{format!("Daily counts start again at {}.", when(q.day_resets_at))}</p>
                }.into_any(),
            }}
        </section>
    }
}
