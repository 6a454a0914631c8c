//! The `Range` request header (RFC 9110 §14.1-14.2) as the media route
//! honours it: one byte range, resolved against the file's length once
//! media-svc has named it.
//!
//! A header that does not parse, names another unit than `bytes`, or asks
//! for several ranges is answered with the whole file, as RFC 9110 allows
//! (a server may ignore `Range`, and may answer a multi-range request
//! whole), so a client never gets an error for a header it got wrong.

/// One byte range, as the client wrote it (positions are zero-based and
/// inclusive; numbers too large for a `u64` saturate, which only ever
/// means "beyond the end").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=first-last`: `first` to `last` (clamped to the end).
    Bounded {
        /// First byte.
        first: u64,
        /// Last byte, at least `first`.
        last: u64,
    },
    /// `bytes=first-`: from `first` to the end.
    From {
        /// First byte.
        first: u64,
    },
    /// `bytes=-length`: the last `length` bytes (the whole file when it is
    /// shorter).
    Suffix {
        /// How many bytes from the end.
        length: u64,
    },
}

/// What a `Range` header asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// The whole file: no header, another unit, a header that does not
    /// parse, or more than one range.
    Whole,
    /// One range: 206 when it overlaps the file, 416 when it does not.
    One(ByteRange),
}

/// Reads a `Range` header's value (`None` when the request has none).
pub fn parse(header: Option<&[u8]>) -> RangeRequest {
    header
        .and_then(|value| std::str::from_utf8(value).ok())
        .and_then(parse_str)
        .map_or(RangeRequest::Whole, RangeRequest::One)
}

fn parse_str(value: &str) -> Option<ByteRange> {
    let (unit, set) = value.trim().split_once('=')?;
    // The unit is case-insensitive; no whitespace around `=`.
    if !unit.eq_ignore_ascii_case("bytes") {
        return None;
    }
    // Empty list elements (`bytes=0-1,`) are allowed and ignored.
    let mut ranges = set
        .split(',')
        .map(str::trim)
        .filter(|range| !range.is_empty());
    let range = ranges.next()?;
    if ranges.next().is_some() {
        return None;
    }
    let (first, last) = range.split_once('-')?;
    match (first, last) {
        ("", length) => Some(ByteRange::Suffix {
            length: position(length)?,
        }),
        (first, "") => Some(ByteRange::From {
            first: position(first)?,
        }),
        (first, last) => {
            let (first, last) = (position(first)?, position(last)?);
            (first <= last).then_some(ByteRange::Bounded { first, last })
        }
    }
}

/// `1*DIGIT`, saturating at `u64::MAX`.
fn position(digits: &str) -> Option<u64> {
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    Some(digits.bytes().fold(0u64, |value, digit| {
        value
            .saturating_mul(10)
            .saturating_add(u64::from(digit - b'0'))
    }))
}

impl ByteRange {
    /// The `(offset, length)` this range selects in a file of `total`
    /// bytes (`length` at least 1), or `None` when it selects nothing (416).
    pub fn resolve(self, total: u64) -> Option<(u64, u64)> {
        match self {
            Self::Bounded { first, last } if first < total => {
                Some((first, last.min(total - 1) - first + 1))
            }
            Self::From { first } if first < total => Some((first, total - first)),
            Self::Suffix { length } if length > 0 && total > 0 => {
                let length = length.min(total);
                Some((total - length, length))
            }
            _ => None,
        }
    }
}

/// The `Content-Range` of `length` bytes at `offset` of `total` (`length`
/// at least 1).
pub fn content_range(offset: u64, length: u64, total: u64) -> String {
    let last = offset.saturating_add(length.max(1) - 1);
    format!("bytes {offset}-{last}/{total}")
}

/// The `Content-Range` of a 416: the file's length.
pub fn unsatisfied_range(total: u64) -> String {
    format!("bytes */{total}")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn one(header: &str) -> RangeRequest {
        parse(Some(header.as_bytes()))
    }

    #[test]
    fn the_three_forms_of_one_range() {
        assert_eq!(
            one("bytes=0-499"),
            RangeRequest::One(ByteRange::Bounded {
                first: 0,
                last: 499
            })
        );
        assert_eq!(
            one("bytes=9500-"),
            RangeRequest::One(ByteRange::From { first: 9500 })
        );
        assert_eq!(
            one("bytes=-500"),
            RangeRequest::One(ByteRange::Suffix { length: 500 })
        );
        // Case-insensitive unit, whitespace around the value and the range,
        // empty list elements.
        assert_eq!(
            one(" Bytes= 5-5 , "),
            RangeRequest::One(ByteRange::Bounded { first: 5, last: 5 })
        );
    }

    #[test]
    fn what_is_answered_with_the_whole_file() {
        assert_eq!(parse(None), RangeRequest::Whole);
        for header in [
            "",
            "bytes",
            "bytes=",
            "bytes=,",
            "bytes=-",
            "bytes=5",
            "bytes=5-3",
            "bytes=a-b",
            "bytes=1-2-3",
            "bytes=+1-2",
            "bytes=- 5",
            "bytes=0x10-",
            "bytes =0-1",
            "items=0-1",
            "0-1",
            "bytes=0-1,5-6",
            "bytes=-1,-2",
            "bytes=１-２",
        ] {
            assert_eq!(one(header), RangeRequest::Whole, "{header:?}");
        }
        assert_eq!(parse(Some(b"bytes=\xff-1")), RangeRequest::Whole);
    }

    #[test]
    fn numbers_too_large_saturate() {
        assert_eq!(
            one("bytes=0-99999999999999999999999"),
            RangeRequest::One(ByteRange::Bounded {
                first: 0,
                last: u64::MAX
            })
        );
        let RangeRequest::One(range) = one("bytes=99999999999999999999999-") else {
            panic!("one range");
        };
        assert_eq!(range.resolve(u64::MAX), None);
    }

    #[test]
    fn ranges_resolve_against_the_length() {
        let bounded = |first, last| ByteRange::Bounded { first, last };
        assert_eq!(bounded(0, 499).resolve(10_000), Some((0, 500)));
        assert_eq!(bounded(9_990, 20_000).resolve(10_000), Some((9_990, 10)));
        assert_eq!(bounded(0, u64::MAX).resolve(10), Some((0, 10)));
        assert_eq!(bounded(10, 20).resolve(10), None);
        assert_eq!(ByteRange::From { first: 9 }.resolve(10), Some((9, 1)));
        assert_eq!(ByteRange::From { first: 10 }.resolve(10), None);
        assert_eq!(ByteRange::Suffix { length: 3 }.resolve(10), Some((7, 3)));
        assert_eq!(ByteRange::Suffix { length: 30 }.resolve(10), Some((0, 10)));
        assert_eq!(ByteRange::Suffix { length: 0 }.resolve(10), None);
        assert_eq!(ByteRange::Suffix { length: 3 }.resolve(0), None);
        assert_eq!(ByteRange::From { first: 0 }.resolve(0), None);
    }

    #[test]
    fn content_ranges() {
        assert_eq!(content_range(0, 500, 10_000), "bytes 0-499/10000");
        assert_eq!(content_range(9_999, 1, 10_000), "bytes 9999-9999/10000");
        assert_eq!(unsatisfied_range(10_000), "bytes */10000");
    }

    fn byte_range() -> impl Strategy<Value = ByteRange> {
        prop_oneof![
            (any::<u64>(), any::<u64>()).prop_map(|(a, b)| ByteRange::Bounded {
                first: a.min(b),
                last: a.max(b)
            }),
            any::<u64>().prop_map(|first| ByteRange::From { first }),
            any::<u64>().prop_map(|length| ByteRange::Suffix { length }),
        ]
    }

    proptest! {
        #[test]
        fn any_header_parses_without_a_panic(header in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse(Some(&header));
        }

        #[test]
        fn any_header_shaped_like_a_range_parses_without_a_panic(
            header in "[bB][yY][tT][eE][sS] ?=[ ,0-9-]{0,40}",
            total in any::<u64>(),
        ) {
            if let RangeRequest::One(range) = one(&header) {
                let _ = range.resolve(total);
            }
        }

        #[test]
        fn a_written_range_reads_back(range in byte_range()) {
            let header = match range {
                ByteRange::Bounded { first, last } => format!("bytes={first}-{last}"),
                ByteRange::From { first } => format!("bytes={first}-"),
                ByteRange::Suffix { length } => format!("bytes=-{length}"),
            };
            prop_assert_eq!(one(&header), RangeRequest::One(range));
        }

        #[test]
        fn a_resolved_range_lies_inside_the_file(range in byte_range(), total in any::<u64>()) {
            match range.resolve(total) {
                Some((offset, length)) => {
                    prop_assert!(length >= 1);
                    prop_assert!(offset < total);
                    prop_assert!(length <= total - offset);
                    // The header names the same bytes.
                    let last = offset + (length - 1);
                    prop_assert_eq!(
                        content_range(offset, length, total),
                        format!("bytes {offset}-{last}/{total}")
                    );
                }
                None => {
                    let selects_nothing = match range {
                        ByteRange::Bounded { first, .. } | ByteRange::From { first } => first >= total,
                        ByteRange::Suffix { length } => length == 0 || total == 0,
                    };
                    prop_assert!(selects_nothing, "{range:?} of {total}");
                }
            }
        }

        #[test]
        fn small_files_resolve_to_exactly_the_asked_bytes(
            range in byte_range(),
            total in 0u64..64,
        ) {
            // Brute force: the bytes the range names, one by one.
            let wanted: Vec<u64> = (0..total)
                .filter(|&byte| match range {
                    ByteRange::Bounded { first, last } => first <= byte && byte <= last,
                    ByteRange::From { first } => first <= byte,
                    ByteRange::Suffix { length } => total - byte <= length,
                })
                .collect();
            let resolved: Vec<u64> = range
                .resolve(total)
                .map(|(offset, length)| (offset..offset + length).collect())
                .unwrap_or_default();
            prop_assert_eq!(resolved, wanted);
        }
    }
}
