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

/// Runs a tool's `main` on a multi-threaded runtime; an error is printed and exits with 1.
pub fn run_main(main: impl std::future::Future<Output = Result<()>>) -> std::process::ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(main) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
