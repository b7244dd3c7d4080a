//! A Copy button that says "Copied" for a moment when the browser took the text.

use leptos::prelude::*;

#[component]
pub fn CopyButton(
    #[prop(into)] text: Signal<String>,
    #[prop(default = "link-button")] class: &'static str,
) -> impl IntoView {
    let (copied, set_copied) = signal(false);
    let copy = move |_| {
        #[cfg(feature = "hydrate")]
        leptos::task::spawn_local(async move {
            let ok = crate::browser::copy(&text.get_untracked()).await;
            set_copied.set(ok);
            set_timeout(move || set_copied.set(false), std::time::Duration::from_secs(2));
        });
        #[cfg(not(feature = "hydrate"))]
        let _ = (text, set_copied);
    };
    view! {
        <button class=class type="button" on:click=copy>
            {move || if copied.get() { "Copied" } else { "Copy" }}
        </button>
    }
}
