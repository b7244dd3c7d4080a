//! Log-in and sign-up pages, and the account menu in the header. The forms are plain HTML forms
//! posting to server functions, so they work before (or without) the WASM.

use crate::api::{Login, Logout, Register};
use leptos::prelude::*;
use leptos_router::hooks::{use_location, use_query_map};

/// The message of a failed server function, without the framework's prefix.
fn message(err: &ServerFnError) -> String {
    match err {
        ServerFnError::ServerError(msg) => msg.clone(),
        other => other.to_string(),
    }
}

#[component]
fn FormError(#[prop(into)] error: Signal<Option<String>>) -> impl IntoView {
    move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })
}

#[component]
pub fn LoginPage() -> impl IntoView {
    let login = ServerAction::<Login>::new();
    let next = move || use_query_map().with(|q| q.get("next").unwrap_or_default());
    let error = Signal::derive(move || login.value().get().and_then(|r| r.err()).map(|e| message(&e)));
    view! {
        <section class="panel auth" aria-labelledby="login-heading">
            <h2 id="login-heading">"Log in"</h2>
            <ActionForm action=login attr:class="form">
                <label>"Username" <input type="text" name="username" autocomplete="username" required/></label>
                <label>
                    "Password" <input type="password" name="password" autocomplete="current-password" required/>
                </label>
                <input type="hidden" name="next" prop:value=next/>
                <button class="button primary" type="submit">"Log in"</button>
            </ActionForm>
            <FormError error/>
            <p class="muted">"No account yet? " <a href="/register">"Sign up"</a></p>
        </section>
    }
}

#[component]
pub fn RegisterPage() -> impl IntoView {
    let register = ServerAction::<Register>::new();
    let error = Signal::derive(move || register.value().get().and_then(|r| r.err()).map(|e| message(&e)));
    view! {
        <section class="panel auth" aria-labelledby="register-heading">
            <h2 id="register-heading">"Sign up"</h2>
            <p class="muted">"The first account on a server becomes its admin."</p>
            <ActionForm action=register attr:class="form">
                <label>
                    "Username" <input type="text" name="username" autocomplete="username" minlength="3" maxlength="32"
                        required/>
                </label>
                <label>
                    "Password" <input type="password" name="password" autocomplete="new-password" minlength="8" required/>
                </label>
                <button class="button primary" type="submit">"Create account"</button>
            </ActionForm>
            <FormError error/>
            <p class="muted">"Have an account? " <a href="/login">"Log in"</a></p>
        </section>
    }
}

/// Who is logged in (asked again after every navigation: logging in or out ends with one).
pub type Me = Resource<Result<Option<crate::types::AccountInfo>, ServerFnError>>;

pub fn who_is_logged_in() -> Me {
    let path = move || use_location().pathname.get();
    Resource::new(path, |_| crate::api::whoami())
}

/// Who is logged in, with a log-out button; or a log-in link.
#[component]
pub fn AccountMenu(me: Me) -> impl IntoView {
    let logout = ServerAction::<Logout>::new();
    view! {
        <nav class="account" aria-label="Account">
            <Transition fallback=|| ()>
                {move || {
                    me.get()
                        .map(|who| match who.ok().flatten() {
                            Some(account) => {
                                view! {
                                    <span class="who" data-testid="signed-in-as">{account.username}</span>
                                    <ActionForm action=logout attr:class="inline">
                                        <button class="button" type="submit">"Log out"</button>
                                    </ActionForm>
                                }
                                    .into_any()
                            }
                            None => view! { <a class="button" href="/login">"Log in"</a> }.into_any(),
                        })
                }}
            </Transition>
        </nav>
    }
}
