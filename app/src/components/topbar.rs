//! The header: the brand, the pages (behind a Menu button on a phone, so the header stays one
//! line), the theme button, and the account.

use super::account::{who_is_logged_in, AccountMenu};
use crate::ui::theme::Theme;
use leptos::prelude::*;
use leptos_router::{components::A, hooks::use_location};

/// The theme the page was rendered in: from the cookie on the server, from the root element's
/// attribute (which the server wrote) in the browser.
fn rendered_theme() -> Theme {
    #[cfg(feature = "ssr")]
    if let Some(parts) = use_context::<http::request::Parts>() {
        let header = parts.headers.get(http::header::COOKIE).and_then(|v| v.to_str().ok()).unwrap_or_default();
        return Theme::from_cookie_header(header);
    }
    #[cfg(feature = "hydrate")]
    let attribute = crate::browser::theme_attribute();
    #[cfg(not(feature = "hydrate"))]
    let attribute: Option<String> = None;
    Theme::parse(attribute.as_deref())
}

/// The `data-theme` of the page's `<html>` element, for the shell.
pub fn theme_attribute() -> Option<&'static str> {
    rendered_theme().attribute()
}

#[component]
fn ThemeButton() -> impl IntoView {
    let theme = RwSignal::new(rendered_theme());
    let cycle = move |_| {
        let next = theme.get_untracked().next();
        theme.set(next);
        #[cfg(feature = "hydrate")]
        crate::browser::set_theme(next.attribute());
    };
    view! {
        <button class="button theme-button" type="button" data-testid="theme"
            aria-label=move || format!("Colour theme: {} (change)", theme.get().name())
            title=move || format!("Colour theme: {}; click for {}", theme.get().name(), theme.get().next().name())
            on:click=cycle>
            <span aria-hidden="true">"◐"</span>
            <span class="theme-name">{move || theme.get().name()}</span>
        </button>
    }
}

#[component]
pub fn TopBar() -> impl IntoView {
    let me = who_is_logged_in();
    let menu_open = RwSignal::new(false);
    let location = use_location();
    // Moving to a page closes the menu.
    Effect::new(move |_| {
        location.pathname.track();
        menu_open.set(false);
    });
    let is_admin = move || me.get().and_then(|r| r.ok().flatten()).is_some_and(|a| a.role == "admin");
    view! {
        <header class="topbar">
            <h1 class="brand"><a href="/">"Duet"</a></h1>
            <button class="button menu-button" type="button" aria-controls="pages"
                aria-expanded=move || menu_open.get().to_string()
                on:click=move |_| menu_open.update(|o| *o = !*o)>"Menu"</button>
            <nav class="nav" id="pages" class:open=move || menu_open.get() aria-label="Pages">
                <A href="/" exact=true>"Chat"</A>
                <A href="/studio">"Studio"</A>
                <A href="/pictures">"Gallery"</A>
                <A href="/models">"Models"</A>
                <A href="/settings">"Settings"</A>
                <Transition fallback=|| ()>
                    {move || is_admin().then(|| view! { <A href="/admin">"Admin"</A> })}
                </Transition>
            </nav>
            <ThemeButton/>
            <AccountMenu me/>
        </header>
    }
}
