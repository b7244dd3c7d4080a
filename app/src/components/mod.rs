pub mod account;
pub mod chat;
pub mod copy;
pub mod gallery;
pub mod home;
pub mod settings;
pub mod status;
pub mod studio;
pub mod templates;

use leptos::prelude::RwSignal;

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
