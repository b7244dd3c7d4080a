//! Duet's user interface: Leptos components rendered on the server and hydrated in the browser,
//! the server functions they call, and the types both sides share.

// Deeply nested views are deeply nested types; the default limit (128) is too small for them.
#![recursion_limit = "256"]

pub mod api;
#[cfg(feature = "hydrate")]
mod browser;
mod components;
pub mod types;
pub mod ui;

#[cfg(feature = "ssr")]
pub mod ssr;

use components::{
    account::{LoginPage, RegisterPage},
    admin::AdminPage,
    chat::ChatPage,
    gallery::GalleryPage,
    home::ModelsPage,
    settings::SettingsPage,
    status::{Activity, HealthFeed, StatusFooter},
    studio::StudioPage,
    topbar::TopBar,
};
use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::{
    components::{ParentRoute, Route, Router, Routes},
    ParamSegment, SsrMode, StaticSegment,
};

/// The HTML document around the app; rendered once per request on the server.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    #[cfg(feature = "ssr")]
    ssr::set_page_policy();
    view! {
        <!DOCTYPE html>
        <html lang="en" data-theme=components::topbar::theme_attribute()>
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
    provide_context(Activity::default());
    HealthFeed::provide();
    view! {
        <Stylesheet id="leptos" href="/pkg/duet.css"/>
        <Title text="Duet"/>
        <Router>
            <div class="app" data-hydrated=move || hydrated.get().to_string()>
                <a class="skip-link" href="#main">"Skip to content"</a>
                <TopBar/>
                <main class="content" id="main">
                    <Routes fallback=|| view! { <p class="not-found">"Page not found."</p> }>
                        // Async: the whole page, header included, is rendered before it is sent, so
                        // it reads right before (or without) the WASM.
                        // One parent for `/` and `/c/{id}`: moving between conversations keeps the
                        // chat page (and a streaming reply) in place.
                        <ParentRoute path=StaticSegment("") view=ChatPage ssr=SsrMode::Async>
                            <Route path=StaticSegment("") view=|| ()/>
                            <Route path=(StaticSegment("c"), ParamSegment("id")) view=|| ()/>
                        </ParentRoute>
                        <Route path=StaticSegment("studio") view=StudioPage ssr=SsrMode::Async/>
                        // `/gallery` is the REST list; the page has its own address.
                        <Route path=StaticSegment("pictures") view=GalleryPage ssr=SsrMode::Async/>
                        <Route path=StaticSegment("models") view=ModelsPage ssr=SsrMode::Async/>
                        <Route path=StaticSegment("settings") view=SettingsPage ssr=SsrMode::Async/>
                        <Route path=StaticSegment("admin") view=AdminPage ssr=SsrMode::Async/>
                        <Route path=StaticSegment("login") view=LoginPage ssr=SsrMode::Async/>
                        <Route path=StaticSegment("register") view=RegisterPage ssr=SsrMode::Async/>
                    </Routes>
                </main>
                <StatusFooter/>
            </div>
        </Router>
    }
}
