//! The admin page: every account of the server, making one for someone, disabling and enabling.
//! It speaks to the admin REST routes with the session cookie; for anyone else they answer 403,
//! which the page shows.

use super::when;
use crate::types::AccountInfo;
use leptos::prelude::*;

#[component]
pub fn AdminPage() -> impl IntoView {
    let accounts = RwSignal::new(None::<Result<Vec<AccountInfo>, String>>);
    let error = RwSignal::new(None::<String>);
    let created = RwSignal::new(None::<String>);
    let username = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let reload = move || {
        #[cfg(feature = "hydrate")]
        leptos::task::spawn_local(async move {
            accounts.set(Some(crate::browser::get_json::<Vec<AccountInfo>>("/admin/accounts").await));
        });
    };
    Effect::new(move |_| reload());
    let create = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        #[cfg(feature = "hydrate")]
        leptos::task::spawn_local(async move {
            let body = crate::types::Credentials {
                username: Some(username.get_untracked()),
                password: Some(password.get_untracked()),
            };
            match crate::browser::send_json::<AccountInfo>("POST", "/admin/accounts", &body).await {
                Ok(account) => {
                    created.set(Some(account.username));
                    username.set(String::new());
                    password.set(String::new());
                    error.set(None);
                    reload();
                }
                Err(e) => {
                    created.set(None);
                    error.set(Some(e));
                }
            }
        });
    };
    let set_disabled = move |id: String, disabled: bool| {
        #[cfg(feature = "hydrate")]
        leptos::task::spawn_local(async move {
            let body = crate::types::AccountUpdate { disabled: Some(disabled) };
            match crate::browser::send("PATCH", &format!("/admin/accounts/{id}"), &body).await {
                Ok(()) => {
                    error.set(None);
                    reload();
                }
                Err(e) => error.set(Some(e)),
            }
        });
        #[cfg(not(feature = "hydrate"))]
        let _ = (id, disabled);
    };
    view! {
        <super::AccessCheck/>
        <div class="page admin">
            <h2>"Accounts"</h2>
            <section class="panel" aria-labelledby="new-account-heading">
                <h3 id="new-account-heading">"New account"</h3>
                <p class="muted">"Make an account for someone; they log in with this name and password."</p>
                <form class="row" on:submit=create>
                    <label>"Username "
                        <input type="text" name="username" required minlength="3" maxlength="32" autocomplete="off"
                            prop:value=move || username.get() on:input=move |ev| username.set(event_target_value(&ev))/>
                    </label>
                    <label>"Password "
                        <input type="password" name="password" required minlength="8" maxlength="256"
                            autocomplete="new-password"
                            prop:value=move || password.get() on:input=move |ev| password.set(event_target_value(&ev))/>
                    </label>
                    <button class="button primary" type="submit">"Create account"</button>
                </form>
                {move || created.get().map(|name| view! {
                    <p role="status" data-testid="account-created">{format!("Account {name} created.")}</p>
                })}
                {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
            </section>
            <section class="panel" aria-labelledby="accounts-heading">
                <h3 id="accounts-heading">"Every account"</h3>
                {move || match accounts.get() {
                    None => view! { <p class="muted">"Loading accounts…"</p> }.into_any(),
                    Some(Err(e)) => view! { <p class="error" role="alert">{e}</p> }.into_any(),
                    Some(Ok(list)) => view! {
                        <div class="table-scroll">
                            <table class="accounts" data-testid="accounts">
                                <thead><tr><th>"Username"</th><th>"Role"</th><th>"Made"</th><th>"State"</th><th></th></tr></thead>
                                <tbody>
                                    {list.into_iter().map(|a| {
                                        let (id, disabled, name) = (a.id.clone(), a.disabled, a.username.clone());
                                        let action = if disabled { "Enable" } else { "Disable" };
                                        view! {
                                            <tr class:revoked=disabled>
                                                <td>{a.username.clone()}</td>
                                                <td>{a.role.clone()}</td>
                                                <td>{when(a.created_at)}</td>
                                                <td>{if disabled { "disabled" } else { "active" }}</td>
                                                <td>
                                                    <button class="link-button" type="button"
                                                        aria-label=format!("{action} {name}")
                                                        on:click=move |_| set_disabled(id.clone(), !disabled)>{action}</button>
                                                </td>
                                            </tr>
                                        }
                                    }).collect_view()}
                                </tbody>
                            </table>
                        </div>
                    }.into_any(),
                }}
            </section>
        </div>
    }
}
