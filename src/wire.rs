//! How arrays of numbers travel as JSON (isolation mode's messages): the
//! little-endian bytes in base64, so that every `f32` bit pattern (NaN
//! included) arrives exactly and a 576 x 1536 image costs 4.7 MB, not a
//! decimal rendering of each float.

use serde::{de::Error as _, Deserialize, Deserializer, Serializer};
use std::sync::Arc;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn value(c: u8) -> Option<u32> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    } as u32)
}

/// The bytes of standard padded base64; `None` for anything else.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let text = text.as_bytes();
    if text.len() % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    for (at, chunk) in text.chunks(4).enumerate() {
        let last = at + 1 == text.len() / 4;
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            n = n << 6 | value(c)?;
        }
        n <<= 6 * pad as u32;
        out.extend_from_slice(&n.to_be_bytes()[1..4 - pad]);
    }
    Some(out)
}

/// A number type sent as its little-endian bytes.
pub trait LeNumber: Copy {
    /// Its size in bytes.
    const SIZE: usize;
    /// Appends its little-endian bytes.
    fn put(self, out: &mut Vec<u8>);
    /// Reads it from exactly `SIZE` bytes.
    fn take(bytes: &[u8]) -> Self;
}

macro_rules! le_number {
    ($t:ty) => {
        impl LeNumber for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            fn put(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn take(bytes: &[u8]) -> Self {
                <$t>::from_le_bytes(bytes.try_into().expect("sized chunk"))
            }
        }
    };
}
le_number!(f32);
le_number!(i32);

/// The little-endian bytes of `values`.
pub fn to_bytes<T: LeNumber>(values: &[T]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(values.len() * T::SIZE);
    for &v in values {
        v.put(&mut bytes);
    }
    bytes
}

/// `serde(with = "crate::wire::numbers")` for `Arc<[T]>` and `Vec<T>` fields.
pub mod numbers {
    use super::*;

    /// Serializes as base64 of the little-endian bytes.
    pub fn serialize<S: Serializer, T: LeNumber>(values: &[T], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode(&to_bytes(values)))
    }

    /// The inverse of [`serialize`].
    pub fn deserialize<'de, D: Deserializer<'de>, T: LeNumber, C: From<Vec<T>>>(d: D) -> Result<C, D::Error> {
        let text = String::deserialize(d)?;
        let bytes = decode(&text).ok_or_else(|| D::Error::custom("a number array is not valid base64"))?;
        if bytes.len() % T::SIZE != 0 {
            return Err(D::Error::custom("a number array's bytes are not whole numbers"));
        }
        Ok(C::from(bytes.chunks_exact(T::SIZE).map(T::take).collect::<Vec<T>>()))
    }
}

/// `serde(with = "crate::wire::shared")`: [`numbers`] for `Arc<[T]>`.
pub mod shared {
    use super::*;

    /// As [`numbers::serialize`].
    pub fn serialize<S: Serializer, T: LeNumber>(values: &Arc<[T]>, s: S) -> Result<S::Ok, S::Error> {
        numbers::serialize(values, s)
    }

    /// As [`numbers::deserialize`].
    pub fn deserialize<'de, D: Deserializer<'de>, T: LeNumber>(d: D) -> Result<Arc<[T]>, D::Error> {
        numbers::deserialize::<D, T, Vec<T>>(d).map(Arc::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_every_length_and_refuses_garbage() {
        for len in 0..50usize {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(decode(&encode(&bytes)).as_deref(), Some(&bytes[..]), "length {len}");
        }
        assert_eq!(encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(encode(b"fo"), "Zm8=");
        for bad in ["Zm8", "Zm=8", "Z===", "Zm8=Zm8=", "Zm!v"] {
            assert!(decode(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn floats_keep_every_bit_pattern() {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct Holder(#[serde(with = "shared")] Arc<[f32]>);
        let values: Arc<[f32]> = vec![0.0, -0.0, 1.5, f32::NAN, f32::INFINITY, f32::MIN_POSITIVE / 2.0].into();
        let json = serde_json::to_string(&Holder(values.clone())).unwrap();
        let back: Holder = serde_json::from_str(&json).unwrap();
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&back.0), bits(&values));
        assert!(serde_json::from_str::<Holder>("\"AAA=\"").is_err(), "3 bytes are not a whole float");
    }
}
