pub mod account;
pub mod admin;
pub mod chat;
pub mod copy;
pub mod gallery;
pub mod home;
pub mod settings;
pub mod status;
pub mod studio;
pub mod templates;
pub mod topbar;

use leptos::prelude::*;

/// Says why a page cannot be used (logged out: on to the log-in page and back; an error), found
/// out on the server before the page is sent.
#[component]
pub fn AccessCheck() -> impl IntoView {
    let access = Resource::new(|| (), |_| crate::api::require_access());
    view! {
        <Suspense fallback=|| ()>
            {move || Suspend::new(async move {
                access.await.err().map(|e| view! { <p class="error" role="alert">{e.to_string()}</p> })
            })}
        </Suspense>
    }
}

/// A Unix-milliseconds time in the browser's own words and time zone (the raw number when
/// rendered on the server, which does not know the reader's zone).
pub fn when(ms: i64) -> String {
    #[cfg(feature = "hydrate")]
    {
        let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ms as f64));
        String::from(date.to_locale_string("default", &wasm_bindgen::JsValue::UNDEFINED))
    }
    #[cfg(not(feature = "hydrate"))]
    format!("{ms}")
}

/// Stores what a `Suspend` just loaded in a page signal.
///
/// In the browser the page's views hear of it as usual. On the server nothing rendered later
/// needs telling (it reads the signal when it renders), and telling is harmful: every
/// `<Suspense>`/`<Transition>` that already read the signal re-runs on a worker thread, and such
/// a re-run can land after the page's owner is gone and panic on a disposed signal, leaving the
/// response unfinished (seen: about 1 in 40 server renders of `/c/{id}`).
pub fn load_into<T: 'static + Send + Sync>(signal: RwSignal<T>, value: T) {
    #[cfg(feature = "hydrate")]
    {
        use leptos::prelude::Set;
        signal.set(value);
    }
    #[cfg(not(feature = "hydrate"))]
    {
        use leptos::prelude::UpdateUntracked;
        signal.update_untracked(|v| *v = value);
    }
}
