//! Unified request/response types (OpenAI chat-completions shape) and the error taxonomy.

use serde::{Deserialize, Serialize};

/// Liveness answer shared by the server's `/healthz` and the console's connection check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    pub version: String,
}
