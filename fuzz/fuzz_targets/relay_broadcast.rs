//! Broadcasts from Valkey (`@socket.io/redis-adapter` / `redis-emitter` msgpack, as any peer
//! with access to Valkey can publish them, and as the recovery log replays them).
//!
//! Checked: an accepted broadcast is an event whose placeholders name each of its attachments
//! exactly once (its clients' parsers would fail on a placeholder out of range, on every
//! replay; an attachment no placeholder names is sent for nothing); it re-encodes for the
//! other servers, and that decodes to the same broadcast; an offset that reads as a client's
//! offset prints back the same.

#![no_main]

use libfuzzer_sys::fuzz_target;
use relay::wire::{decode_broadcast, encode_broadcast};
use socketio::recovery::{Frontier, Offset};
use socketio::packet::PacketType;
use socket_gateway_fuzz::placeholders_name_each_attachment_once;

fuzz_target!(|data: &[u8]| {
    let Ok(b) = decode_broadcast(data) else {
        return;
    };
    let packet = &b.packet;
    assert_eq!(
        packet.kind == PacketType::BinaryEvent,
        !packet.attachments.is_empty()
    );
    assert_eq!(packet.nsp, b.nsp);
    let payload = packet.data.as_ref().expect("a broadcast has data");
    assert!(
        placeholders_name_each_attachment_once(payload, packet.attachments.len()),
        "placeholders of {payload} do not name each of {} attachments once",
        packet.attachments.len()
    );
    if let Some(offset) = &b.offset {
        let _ = offset.parse::<Offset>();
        // Clients echo offsets back: one that reads prints back the same.
        if let Ok(f) = offset.parse::<Frontier>() {
            assert_eq!(f.to_string().parse::<Frontier>(), Ok(f));
        }
    }

    let again = encode_broadcast(&b.uid, &b.target, packet, false)
        .unwrap_or_else(|e| panic!("accepted but cannot be re-published: {e}"));
    let back =
        decode_broadcast(&again).unwrap_or_else(|e| panic!("re-encoded does not decode: {e}"));
    assert_eq!(back.uid, b.uid);
    assert_eq!(back.target, b.target);
    assert_eq!(back.packet, b.packet);
});
