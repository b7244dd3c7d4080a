//! Duet's user interface: Leptos components rendered on the server and hydrated in the browser,
//! the server functions they call, and the types both sides share.

pub mod api;
mod components;
pub mod types;

#[cfg(feature = "ssr")]
pub mod ssr;

use components::{
    account::{AccountMenu, LoginPage, RegisterPage},
    home::HomePage,
};
use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::{
    components::{Route, Router, Routes},
    SsrMode, StaticSegment,
};

/// The HTML document around the app; rendered once per request on the server.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <meta name="color-scheme" content="light dark"/>
                <link rel="icon" type="image/svg+xml" href="/favicon.svg"/>
                <AutoReload options=options.clone()/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// The app frame (header, main area) around the routed pages.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    let (hydrated, set_hydrated) = signal(false);
    // Effects run only in the browser: this marks that the WASM has taken over the page.
    Effect::new(move |_| set_hydrated.set(true));
    view! {
        <Stylesheet id="leptos" href="/pkg/duet.css"/>
        <Title text="Duet"/>
        <Router>
            <div class="app" data-hydrated=move || hydrated.get().to_string()>
                <header class="topbar">
                    <h1 class="brand">"Duet"</h1>
                    <p class="tagline">"Chat and pictures, on your own CPU."</p>
                    <AccountMenu/>
                </header>
                <main class="content">
                    <Routes fallback=|| view! { <p class="not-found">"Page not found."</p> }>
                        // Async: the whole page, header included, is rendered before it is sent, so
                        // it reads right before (or without) the WASM.
                        // Async: the whole page, header included, is rendered before it is sent, so
                        // it reads right before (or without) the WASM.
                        <Route path=StaticSegment("") view=HomePage ssr=SsrMode::Async/>
                        <Route path=StaticSegment("login") view=LoginPage ssr=SsrMode::Async/>
                        <Route path=StaticSegment("register") view=RegisterPage ssr=SsrMode::Async/>
                    </Routes>
                </main>
            </div>
        </Router>
    }
}
