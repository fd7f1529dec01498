//! One clock for all the load generator's processes: publishers stamp payloads with
//! CLOCK_MONOTONIC and receivers (in the same or a worker process on the same machine) subtract,
//! so latency needs no clock synchronisation.

/// Microseconds of CLOCK_MONOTONIC (the same clock in every process of the machine).
pub fn now_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec and CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000)
        .saturating_add(ts.tv_nsec as u64 / 1000)
}

/// Writes the timestamp marker `T~<micros>~` that receivers look for in any payload.
pub fn stamp(out: &mut String, us: u64) {
    use std::fmt::Write;
    let _ = write!(out, "T~{us}~");
}

/// Finds the first `T~<digits>~` in `payload` and returns the digits' value.
pub fn find_stamp(payload: &[u8]) -> Option<u64> {
    let mut i = 0;
    while i + 2 < payload.len() {
        if payload[i] == b'T' && payload[i + 1] == b'~' {
            let mut v: u64 = 0;
            let mut j = i + 2;
            while j < payload.len() && payload[j].is_ascii_digit() {
                v = v
                    .wrapping_mul(10)
                    .wrapping_add(u64::from(payload[j] - b'0'));
                j += 1;
            }
            if j > i + 2 && j < payload.len() && payload[j] == b'~' {
                return Some(v);
            }
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_roundtrip() {
        let mut s = String::from(r#"42["message:new",{"content":""#);
        stamp(&mut s, 1234567);
        s.push_str(r#" hello"}]"#);
        assert_eq!(find_stamp(s.as_bytes()), Some(1234567));
        assert_eq!(find_stamp(b"T~~ T~12"), None);
        assert_eq!(find_stamp(b"xxT~9~"), Some(9));
        let a = now_us();
        assert!(now_us() >= a);
    }
}
