//! Browser entry point: hydrate the page the server rendered.

// The app's pages are deeply nested view types; rendering them needs more than the default 128.
#![recursion_limit = "256"]

#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);
}
