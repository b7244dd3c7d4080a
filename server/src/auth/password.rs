//! Password hashing: Argon2id at OWASP's recommended minimum (19 MiB memory, 2 passes, 1 lane),
//! stored in the PHC string format so the parameters can be raised later without breaking old
//! hashes.

use argon2::{
    password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
    Algorithm, Argon2, Params, Version,
};

const MEMORY_KIB: u32 = 19 * 1024;
const PASSES: u32 = 2;
const LANES: u32 = 1;

/// Longest a log-in or sign-up waits for a hashing slot before it is told to come back (503).
const WAIT_FOR_SLOT: std::time::Duration = std::time::Duration::from_secs(2);

/// Password hashing off the async threads, a bounded number at once: each hash holds 19 MiB, so a
/// few hundred log-ins at once would otherwise exhaust memory. Excess callers wait briefly, then
/// get `Busy` (503 with `Retry-After`).
#[derive(Clone)]
pub struct Hashing {
    slots: std::sync::Arc<tokio::sync::Semaphore>,
}

impl Hashing {
    /// Twice the cores (at least 4): enough that honest log-ins never queue for long.
    pub fn new() -> Hashing {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Hashing::with_slots((2 * cores).max(4))
    }

    pub fn with_slots(slots: usize) -> Hashing {
        Hashing { slots: std::sync::Arc::new(tokio::sync::Semaphore::new(slots)) }
    }

    /// Run `work` (a hash or a verification) on the blocking pool in a slot.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, super::AuthError> {
        use super::AuthError;
        let busy = || AuthError::Busy {
            message: "too many log-ins and sign-ups at once; try again in a moment".into(),
            retry_after_s: 1,
        };
        let slot = tokio::time::timeout(WAIT_FOR_SLOT, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| busy())?
            .map_err(|_| busy())?;
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            work()
        })
        .await
        .map_err(|e| AuthError::Internal(format!("password hashing task: {e}")))
    }
}

impl Default for Hashing {
    fn default() -> Self {
        Hashing::new()
    }
}

fn argon2() -> Argon2<'static> {
    let params = Params::new(MEMORY_KIB, PASSES, LANES, None).expect("valid Argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hash a password with a fresh random salt (slow on purpose: call it off the async threads).
pub fn hash(password: &str) -> String {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).expect("the OS random source works");
    let salt = SaltString::encode_b64(&salt).expect("16 bytes is a valid salt");
    argon2().hash_password(password.as_bytes(), &salt).expect("Argon2 hashing with valid parameters").to_string()
}

/// Whether `password` matches a stored hash (its own parameters are used, whatever they were).
pub fn verify(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(parsed) => argon2().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// A hash of nothing anyone knows, checked when the username does not exist so that a login
/// takes as long for unknown names as for wrong passwords.
pub fn decoy() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash("decoy password nobody has"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hashing_beyond_its_slots_is_refused_as_busy() {
        let hashing = Hashing::with_slots(1);
        let (started, wait) = tokio::sync::oneshot::channel();
        let (release, held) = std::sync::mpsc::channel::<()>();
        let first = tokio::spawn({
            let hashing = hashing.clone();
            async move {
                hashing
                    .run(move || {
                        started.send(()).unwrap();
                        held.recv().ok();
                    })
                    .await
            }
        });
        wait.await.unwrap();
        let second = hashing.run(|| ()).await.unwrap_err();
        assert!(matches!(second, super::super::AuthError::Busy { retry_after_s: 1, .. }), "{second:?}");
        release.send(()).unwrap();
        first.await.unwrap().unwrap();
        hashing.run(|| ()).await.unwrap();
    }

    #[test]
    fn hashes_are_argon2id_at_owasp_parameters_and_salted() {
        let a = hash("correct horse");
        let b = hash("correct horse");
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "each hash has its own salt");
        assert!(verify("correct horse", &a) && verify("correct horse", &b));
        assert!(!verify("correct horsE", &a));
        assert!(!verify("anything", "not a hash"));
    }
}
