//! Open WebSockets per account (`ACCOUNT_WEBSOCKETS`), counted in this process: a socket holds
//! its place until it closes.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

#[derive(Clone, Default)]
pub struct OpenSockets {
    counts: Arc<Mutex<HashMap<String, u32>>>,
}

/// One open socket's place; closing the socket (dropping this) frees it.
pub struct SocketPlace {
    account: String,
    counts: Arc<Mutex<HashMap<String, u32>>>,
}

impl OpenSockets {
    /// A place for one more socket of `account`, unless it already has `limit` open (0: no limit).
    pub fn open(&self, account: &str, limit: u32) -> Option<SocketPlace> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let open = counts.entry(account.to_string()).or_default();
        if limit > 0 && *open >= limit {
            return None;
        }
        *open += 1;
        Some(SocketPlace { account: account.to_string(), counts: self.counts.clone() })
    }

    pub fn open_for(&self, account: &str) -> u32 {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).get(account).copied().unwrap_or(0)
    }

    /// Every account's, together.
    pub fn total(&self) -> u64 {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).values().map(|&n| u64::from(n)).sum()
    }
}

impl Drop for SocketPlace {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(open) = counts.get_mut(&self.account) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                counts.remove(&self.account);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_per_account_and_come_back_on_close() {
        let sockets = OpenSockets::default();
        let a1 = sockets.open("a", 2).unwrap();
        let _a2 = sockets.open("a", 2).unwrap();
        assert!(sockets.open("a", 2).is_none(), "a third for the same account");
        let _b = sockets.open("b", 2).expect("another account has its own");
        assert_eq!(sockets.total(), 3);
        drop(a1);
        assert_eq!(sockets.open_for("a"), 1);
        assert!(sockets.open("a", 2).is_some());
        assert!(sockets.open("c", 0).is_some() && sockets.open("c", 0).is_some(), "0 is no limit");
    }
}
