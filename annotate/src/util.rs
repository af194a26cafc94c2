//! Small helpers: clocks, hashing, tokens. Calendar arithmetic is the `time` crate's.

use rand::RngCore;
use sha2::{Digest, Sha256};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    since_epoch.as_millis() as i64
}

/// `ms` since the epoch as an RFC 3339 UTC timestamp, `2026-11-24T09:18:21.123Z`. An
/// instant outside the years -9999..=9999 (which [`now_ms`] never writes) is printed as its
/// millisecond count, `@<ms>ms`, rather than as a wrong date.
pub fn rfc3339(ms: i64) -> String {
    let Ok(t) = time::UtcDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) else {
        return format!("@{ms}ms");
    };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Lower-case hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

pub use tiller_data::hex;

/// A fresh secret token: 32 random bytes, hex-encoded.
pub fn new_token() -> String {
    // ThreadRng is a CSPRNG (ChaCha) seeded from the OS and periodically reseeded.
    random_hex(32)
}

/// A short random identifier (used for pseudonyms), `bytes` random bytes as hex.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        // 2000-02-29 12:34:56.789 UTC, a leap day.
        assert_eq!(rfc3339(951_827_696_789), "2000-02-29T12:34:56.789Z");
        assert_eq!(rfc3339(1_795_000_000_000), "2026-11-18T11:06:40.000Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(rfc3339(i64::MAX), format!("@{}ms", i64::MAX));
    }

    #[test]
    fn sha256_of_abc() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
