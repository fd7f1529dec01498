//! Requests on the adapter's request channel (JSON, or msgpack for a broadcast with acks), as
//! Node servers and the emitter send them, and the answers built from them.
//!
//! Checked: a broadcast with acks carries an event whose placeholders name each of its
//! attachments exactly once; answers echo the request id and are valid JSON / msgpack.

#![no_main]

use libfuzzer_sys::fuzz_target;
use relay::msgpack;
use relay::wire::{
    broadcast_ack_response, client_count_response, decode_request, json_response, RequestKind,
};
use socketio::packet::{event_parts, PacketType};
use socket_gateway_fuzz::placeholders_name_each_attachment_once;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = decode_request(data) else {
        return;
    };
    if let RequestKind::BroadcastWithAck { packet, .. } = &request.kind {
        assert_eq!(
            packet.kind == PacketType::BinaryEvent,
            !packet.attachments.is_empty()
        );
        let payload = packet.data.clone().expect("a broadcast has data");
        assert!(
            placeholders_name_each_attachment_once(&payload, packet.attachments.len()),
            "placeholders of {payload} do not name each of {} attachments once",
            packet.attachments.len()
        );
        let _ = event_parts(payload);
    }
    if let Some(id) = &request.request_id {
        let body = json_response(id, serde_json::json!({"rooms": ["a"]}));
        let parsed: serde_json::Value = serde_json::from_slice(&body).expect("JSON answer");
        assert_eq!(parsed.get("requestId"), Some(id));
        let count: serde_json::Value =
            serde_json::from_slice(&client_count_response(id, 3)).expect("JSON answer");
        assert_eq!(count.get("clientCount"), Some(&serde_json::json!(3)));
        if let Ok(ack) = broadcast_ack_response(id, Some(&serde_json::json!("ok")), &[]) {
            msgpack::decode(&ack).expect("msgpack answer");
        }
    }
});
