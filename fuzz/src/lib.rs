//! Checks shared by the fuzz targets.

use serde_json::Value;

/// Whether every `{"_placeholder": true, ...}` object in `value` names an attachment that
/// exists: an integral `num` below `count`. socket.io-parser on the client reconstructs any
/// object whose `_placeholder` is `true`, so any other `num` would hand the client
/// `undefined` or fail its whole connection.
pub fn placeholders_in_range(value: &Value, count: usize) -> bool {
    match value {
        Value::Array(items) => items.iter().all(|v| placeholders_in_range(v, count)),
        Value::Object(obj) if obj.get("_placeholder") == Some(&Value::Bool(true)) => obj
            .get("num")
            .and_then(Value::as_f64)
            .is_some_and(|n| n.fract() == 0.0 && n >= 0.0 && n < count as f64),
        Value::Object(obj) => obj.values().all(|v| placeholders_in_range(v, count)),
        _ => true,
    }
}

/// Whether the placeholders of `value` name each of `count` attachments exactly once, as a
/// packet whose binaries were taken out of its data (by the relay's msgpack conversion) must.
pub fn placeholders_name_each_attachment_once(value: &Value, count: usize) -> bool {
    fn collect(value: &Value, nums: &mut Vec<u64>) {
        match value {
            Value::Array(items) => items.iter().for_each(|v| collect(v, nums)),
            Value::Object(obj) if obj.get("_placeholder") == Some(&Value::Bool(true)) => {
                nums.push(obj.get("num").and_then(Value::as_u64).unwrap_or(u64::MAX));
            }
            Value::Object(obj) => obj.values().for_each(|v| collect(v, nums)),
            _ => {}
        }
    }
    let mut nums = Vec::new();
    collect(value, &mut nums);
    nums.sort_unstable();
    nums.iter().copied().eq(0..count as u64)
}
