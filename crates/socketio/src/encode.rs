//! Turns a Socket.IO packet into Engine.IO frames: one text frame and one binary frame per
//! attachment. Done once per packet, whatever the number of recipients.

use engineio::Frame;

use super::packet::Packet;

pub fn encode(packet: &Packet) -> Vec<Frame> {
    let mut text = String::with_capacity(64);
    text.push('4');
    packet.encode_into(&mut text);
    let mut frames = Vec::with_capacity(1 + packet.attachments.len());
    frames.push(Frame::message(text));
    frames.extend(packet.attachments.iter().cloned().map(Frame::binary));
    frames
}
