//! What Valkey sends the relay's classic Pub/Sub connection, read in chunks as the network
//! cuts it.
//!
//! Checked: no panic; however the bytes are cut, the pushes read and whether the stream is
//! malformed are those of reading them whole (a push is never lost or repeated at a cut).

#![no_main]

use libfuzzer_sys::fuzz_target;
use relay::valkey::pubsub::{Push, Replies};

/// Every push read, and whether the reading ended in an error.
fn read_all<'a>(chunks: impl Iterator<Item = &'a [u8]>) -> (Vec<String>, bool) {
    let mut replies = Replies::default();
    let mut seen = Vec::new();
    for chunk in chunks {
        replies.extend(chunk);
        let drained = replies.drain(u64::MAX, |push| {
            seen.push(match push {
                Push::Message { channel, payload } => format!("m {channel:?} {payload:?}"),
                Push::Confirmed { count } => format!("c {count}"),
                Push::Pong => "p".to_owned(),
            })
        });
        if drained.is_err() {
            return (seen, true);
        }
    }
    (seen, false)
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, bytes)) = data.split_first() else {
        return;
    };
    let whole = read_all(std::iter::once(bytes));
    let chunked = read_all(bytes.chunks(usize::from(cut).max(1)));
    assert_eq!(whole, chunked);
});
