//! The product's policy on top of Socket.IO: cookie authentication through the app at
//! connect, rooms from memberships, authorised joins, the chat events, typing, presence and
//! re-validation. [`Gateway`] (`handler.rs`) is the namespace's handler: it holds one small
//! service per concern and routes each socket callback to one of them.

pub mod auth;
pub mod client_ip;
pub mod credentials;
pub mod errors;
pub mod event_queue;
pub mod events;
mod handler;
pub mod presence;
pub mod revalidate;
pub mod room_names;
pub mod rooms;
pub mod state;
pub mod typing;
pub mod warn_throttle;

pub use handler::Gateway;
