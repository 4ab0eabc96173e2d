//! Cancellation that flows through the executors: the CLI cancels on
//! SIGINT, SIGTERM or SIGHUP, and apply stops between effects, rolling back
//! the one in progress (a partial archive, an open multipart upload).
use std::sync::{Arc, OnceLock};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Default)]
pub struct Cancel {
    token: CancellationToken,
    why: Arc<OnceLock<String>>,
}

impl Cancel {
    /// Cancels, remembering the first reason (e.g. `SIGTERM`).
    pub fn cancel(&self, why: &str) {
        let _ = self.why.set(why.to_string());
        self.token.cancel();
    }

    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    pub async fn cancelled(&self) {
        self.token.cancelled().await
    }

    /// Why it was cancelled, once it is.
    pub fn why(&self) -> String {
        self.why
            .get()
            .cloned()
            .unwrap_or_else(|| "cancellation".into())
    }
}
