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
    use proptest::test_runner::TestCaseError;

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

    /// What `decode::<N>(kind, cursor)` must answer, computed from the
    /// layout alone: the positions when `bytes` (the cursor's base64
    /// payload) are exactly version, kind and `N` big-endian u64s.
    fn expected<const N: usize>(kind: u8, bytes: &[u8]) -> Option<[u64; N]> {
        let (header, body) = bytes.split_at_checked(2)?;
        if header != [VERSION, kind] || body.len() != N * 8 {
            return None;
        }
        let mut positions = [0u64; N];
        for (position, chunk) in positions.iter_mut().zip(body.chunks(8)) {
            *position = chunk
                .iter()
                .fold(0, |value, byte| value << 8 | u64::from(*byte));
        }
        Some(positions)
    }

    /// Bytes that are often a cursor's layout, or one mutation away from it:
    /// the right version and a kind from a small set, and a length near
    /// `2 + 8 * N` for the `N`s services use.
    fn payload() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..100),
            (
                prop_oneof![Just(VERSION), any::<u8>()],
                0u8..4,
                prop_oneof![
                    prop::collection::vec(any::<u8>(), 0..40),
                    (0usize..4).prop_flat_map(|n| prop::collection::vec(any::<u8>(), n * 8)),
                ],
            )
                .prop_map(|(version, kind, rest)| [&[version, kind][..], &rest].concat()),
        ]
    }

    /// Every decoder the services instantiate (`N` = 1, 2, 3), and `N` = 0.
    fn check_all_arities(kind: u8, cursor: &str) -> Result<(), TestCaseError> {
        fn check<const N: usize>(kind: u8, cursor: &str) -> Result<(), TestCaseError> {
            match decode::<N>(kind, cursor) {
                Ok(None) => prop_assert!(cursor.is_empty()),
                // Accepted means canonical: the one encoding of those
                // positions, so a client cannot mint a second cursor for
                // the same place (or smuggle bytes through one).
                Ok(Some(positions)) => prop_assert_eq!(encode(kind, &positions), cursor),
                Err(InvalidCursor) => prop_assert!(!cursor.is_empty()),
            }
            Ok(())
        }
        check::<0>(kind, cursor)?;
        check::<1>(kind, cursor)?;
        check::<2>(kind, cursor)?;
        check::<3>(kind, cursor)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any payload, base64-encoded as a cursor is: accepted exactly when
        /// it has the layout, with the positions it holds.
        #[test]
        fn decodes_exactly_the_layout(kind in 0u8..4, bytes in payload()) {
            let cursor = URL_SAFE_NO_PAD.encode(&bytes);
            prop_assert_eq!(decode::<1>(kind, &cursor).ok().flatten(), expected::<1>(kind, &bytes));
            prop_assert_eq!(decode::<2>(kind, &cursor).ok().flatten(), expected::<2>(kind, &bytes));
            prop_assert_eq!(decode::<3>(kind, &cursor).ok().flatten(), expected::<3>(kind, &bytes));
            check_all_arities(kind, &cursor)?;
        }

        /// Strings from the cursor alphabet (so most pass base64 decoding
        /// and reach the layout checks), non-canonical tails and padding
        /// included, and strings around the length bound.
        #[test]
        fn base64_alphabet_strings_are_canonical_or_rejected(
            kind in 0u8..4,
            cursor in "[A-Za-z0-9_-]{0,140}={0,2}|[A-Za-z0-9+/_=-]{0,40}",
        ) {
            check_all_arities(kind, &cursor)?;
        }

        /// Arbitrary Unicode (controls and format characters included) and
        /// arbitrary bytes read leniently, far past the length bound.
        #[test]
        fn arbitrary_text_never_panics(
            kind in any::<u8>(),
            text in "(?s).{0,300}",
            bytes in prop::collection::vec(any::<u8>(), 0..300),
        ) {
            check_all_arities(kind, &text)?;
            check_all_arities(kind, &String::from_utf8_lossy(&bytes))?;
        }

        /// Every arity round-trips, and a cursor is refused by another
        /// list's kind and by a decoder expecting another arity.
        #[test]
        fn round_trips_only_for_its_own_kind_and_arity(
            kind in any::<u8>(),
            other_kind in any::<u8>(),
            positions in any::<[u64; 3]>(),
        ) {
            prop_assume!(kind != other_kind);
            let one = encode(kind, &positions[..1]);
            let three = encode(kind, &positions);
            prop_assert_eq!(decode::<1>(kind, &one), Ok(Some([positions[0]])));
            prop_assert_eq!(decode::<3>(kind, &three), Ok(Some(positions)));
            prop_assert_eq!(decode::<0>(kind, &encode(kind, &[])), Ok(Some([])));
            prop_assert_eq!(decode::<1>(other_kind, &one), Err(InvalidCursor));
            prop_assert_eq!(decode::<3>(other_kind, &three), Err(InvalidCursor));
            prop_assert_eq!(decode::<2>(kind, &one), Err(InvalidCursor));
            prop_assert_eq!(decode::<2>(kind, &three), Err(InvalidCursor));
        }

        /// Changing one character of a real cursor yields another valid
        /// cursor (a different position, same list) or an error; never the
        /// same positions, never a panic.
        #[test]
        fn one_character_edits_never_alias(
            positions in any::<[u64; 3]>(),
            index in any::<prop::sample::Index>(),
            replacement in "[A-Za-z0-9_-]|(?s).",
        ) {
            let cursor = encode(7, &positions);
            let at = index.index(cursor.len());
            let mut edited = cursor.clone();
            edited.replace_range(at..at + 1, &replacement);
            prop_assume!(edited != cursor);
            match decode::<3>(7, &edited) {
                Ok(Some(decoded)) => {
                    prop_assert_ne!(decoded, positions);
                    prop_assert_eq!(encode(7, &decoded), edited);
                }
                Ok(None) => prop_assert!(false, "a non-empty cursor decoded as the first page"),
                Err(InvalidCursor) => {}
            }
            // The last character carries padding bits too: only its
            // canonical form may decode (a lenient decoder would accept
            // three aliases of every cursor).
            let (head, _) = cursor.split_at(cursor.len() - 1);
            let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            for last in alphabet.chars() {
                let variant = format!("{head}{last}");
                if variant != cursor {
                    prop_assert_ne!(decode::<3>(7, &variant).ok().flatten(), Some(positions));
                }
            }
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
