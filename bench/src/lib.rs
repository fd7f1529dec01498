//! Shared pieces of the benchmark tools (`bench-loadgen`, `bench-raw-server`): a lean WebSocket
//! client, a minimal RESP (Valkey) client, the `@socket.io/redis-emitter` wire format, a latency
//! histogram, `/proc` readings and a tiny command-line parser. See BENCHMARKS.md.

pub mod args;
pub mod clock;
pub mod emitter;
pub mod hist;
pub mod http;
pub mod procstat;
pub mod resp;
pub mod ws;

/// The error type of the tools: a message for the operator.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T, E = Error> = std::result::Result<T, E>;
