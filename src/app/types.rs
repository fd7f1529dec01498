//! Shapes of the app's answers (see the contract). Unknown fields are ignored; only what the
//! gateway uses is kept, and never the session token.

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct UserInfo {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
}

/// A valid session: only the user is kept (the body also carries the bearer token).
#[derive(Debug, Clone, PartialEq)]
pub struct SessionInfo {
    pub user: UserInfo,
}

#[derive(Debug, Deserialize)]
pub(crate) struct SessionBody {
    pub user: UserInfo,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Scoped {
    pub id: String,
    #[serde(default, rename = "workspaceId")]
    pub workspace_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Memberships {
    #[serde(rename = "userId")]
    pub user_id: String,
    #[serde(default)]
    pub workspaces: Vec<String>,
    #[serde(default)]
    pub channels: Vec<Scoped>,
    #[serde(default)]
    pub conversations: Vec<Scoped>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Authorization {
    pub allowed: bool,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct EmitInstruction {
    pub room: String,
    pub event: String,
    #[serde(default)]
    pub data: Value,
}

/// The app's answer to a forwarded event.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
pub struct EventReply {
    #[serde(default)]
    pub ack: Option<Value>,
    #[serde(default)]
    pub emit: Vec<EmitInstruction>,
}
