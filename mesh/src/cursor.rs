//! Opaque page cursors.
//!
//! A cursor is a version byte, a one-byte list kind and a few big-endian u64
//! positions, encoded as URL-safe base64 without padding. Clients must treat
//! it as opaque; the kind byte stops a cursor from one list being replayed
//! against another, and the version byte lets the layout change later.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

const VERSION: u8 = 1;
/// Longest cursor accepted, so garbage input is rejected before decoding.
const MAX_ENCODED_LEN: usize = 128;

/// Why a cursor string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cursor is malformed or belongs to another list")]
pub struct InvalidCursor;

/// Encodes `positions` as a cursor for lists of `kind`.
pub fn encode(kind: u8, positions: &[u64]) -> String {
    let mut bytes = Vec::with_capacity(2 + positions.len() * 8);
    bytes.push(VERSION);
    bytes.push(kind);
    for position in positions {
        bytes.extend_from_slice(&position.to_be_bytes());
    }
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes a cursor issued by [`encode`] with the same `kind` and `N` positions.
/// An empty string means "first page" and yields `None`.
pub fn decode<const N: usize>(kind: u8, cursor: &str) -> Result<Option<[u64; N]>, InvalidCursor> {
    if cursor.is_empty() {
        return Ok(None);
    }
    if cursor.len() > MAX_ENCODED_LEN {
        return Err(InvalidCursor);
    }
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| InvalidCursor)?;
    if bytes.len() != 2 + N * 8 || bytes[0] != VERSION || bytes[1] != kind {
        return Err(InvalidCursor);
    }
    let mut positions = [0u64; N];
    for (position, chunk) in positions.iter_mut().zip(bytes[2..].chunks_exact(8)) {
        *position = u64::from_be_bytes(chunk.try_into().map_err(|_| InvalidCursor)?);
    }
    Ok(Some(positions))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips(kind in any::<u8>(), a in any::<u64>(), b in any::<u64>()) {
            let cursor = encode(kind, &[a, b]);
            prop_assert_eq!(decode::<2>(kind, &cursor), Ok(Some([a, b])));
        }

        #[test]
        fn never_panics_on_garbage(input in ".{0,200}") {
            let _ = decode::<2>(1, &input);
        }
    }

    #[test]
    fn rejects_other_kinds_lengths_and_garbage() {
        let cursor = encode(1, &[5]);
        assert_eq!(decode::<1>(2, &cursor), Err(InvalidCursor));
        assert_eq!(decode::<2>(1, &cursor), Err(InvalidCursor));
        assert_eq!(decode::<1>(1, "%%%"), Err(InvalidCursor));
        assert_eq!(decode::<1>(1, ""), Ok(None));
    }
}
