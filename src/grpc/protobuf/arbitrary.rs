//! Protobuf bytes for the differential tests of the request readers (`ext_authz::wire`'s hand
//! reader, `verify::wire`'s trimmed prost message): messages of a given shape with everything
//! protobuf allows and forbids mixed in — fields repeated and out of order, strings that are not
//! UTF-8, unknown fields of every wire type (groups, nested groups, numbers up to 2²⁹−1),
//! non-minimal varints and lengths, known fields with the wrong wire type, and cut-off bodies. Each
//! reader must accept exactly what prost accepts and read what prost decodes.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// What a field of a message holds.
pub(crate) enum Kind {
    Str,
    Bytes,
    Varint,
    Message(&'static [(u32, Kind)]),
}

/// A message of `shape`, made from `seed`.
pub(crate) fn message(shape: &'static [(u32, Kind)], seed: u64) -> Vec<u8> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut out = Vec::new();
    fields(&mut rng, shape, 0, &mut out);
    if rng.random_ratio(1, 20) && !out.is_empty() {
        let cut = rng.random_range(0..out.len());
        out.truncate(cut);
    }
    out
}

/// `bytes` mutated a few times: a byte changed, inserted, removed, or the end cut off.
pub(crate) fn mutated(mut bytes: Vec<u8>, seed: u64) -> Vec<u8> {
    let mut rng = SmallRng::seed_from_u64(seed);
    for _ in 0..rng.random_range(1..4) {
        let at = rng.random_range(0..=bytes.len());
        match rng.random_range(0..4) {
            0 if at < bytes.len() => bytes[at] = rng.random(),
            1 => bytes.insert(at, rng.random()),
            2 if at < bytes.len() => {
                bytes.remove(at);
            }
            _ => bytes.truncate(at),
        }
    }
    bytes
}

fn fields(rng: &mut SmallRng, shape: &'static [(u32, Kind)], depth: u32, out: &mut Vec<u8>) {
    // A nested message the shape names has at least one field, so deep fields are reached.
    let least = u32::from(depth > 0 && !shape.is_empty());
    for _ in 0..rng.random_range(least..5) {
        match rng.random_range(0..100) {
            0..80 if !shape.is_empty() => {
                // Messages twice as often as scalars, so deep fields are reached.
                let messages: Vec<_> = (shape.iter())
                    .filter(|(_, kind)| matches!(kind, Kind::Message(_)))
                    .collect();
                let (number, kind) = if !messages.is_empty() && rng.random_bool(0.5) {
                    messages[rng.random_range(0..messages.len())]
                } else {
                    &shape[rng.random_range(0..shape.len())]
                };
                known(rng, *number, kind, depth, out);
            }
            0..98 => unknown(rng, shape, depth, out),
            _ => out.push(rng.random()),
        }
    }
}

fn known(rng: &mut SmallRng, number: u32, kind: &'static Kind, depth: u32, out: &mut Vec<u8>) {
    if rng.random_ratio(1, 40) {
        // The wrong wire type for the field.
        let wire = match kind {
            Kind::Varint => 2,
            _ => 0,
        };
        key(rng, number, wire, out);
        if wire == 0 {
            let value = rng.random_range(0..300);
            varint(rng, value, out);
        } else {
            let text = text(rng);
            length_delimited(rng, &text, out);
        }
        return;
    }
    match kind {
        Kind::Str => {
            key(rng, number, 2, out);
            let text = text(rng);
            length_delimited(rng, &text, out);
        }
        Kind::Bytes => {
            key(rng, number, 2, out);
            let bytes: Vec<u8> = (0..rng.random_range(0..8)).map(|_| rng.random()).collect();
            length_delimited(rng, &bytes, out);
        }
        Kind::Varint => {
            key(rng, number, 0, out);
            let value = match rng.random_range(0..4) {
                0 => rng.random(),
                1 => rng.random_range(0..1 << 32),
                _ => rng.random_range(0..4),
            };
            varint(rng, value, out);
        }
        Kind::Message(shape) => {
            let mut inner = Vec::new();
            if depth < 5 {
                fields(rng, shape, depth + 1, &mut inner);
            }
            key(rng, number, 2, out);
            length_delimited(rng, &inner, out);
        }
    }
}

/// A field the shape does not name, of any wire type.
fn unknown(rng: &mut SmallRng, shape: &'static [(u32, Kind)], depth: u32, out: &mut Vec<u8>) {
    let number = loop {
        let number = match rng.random_range(0..3) {
            0 => rng.random_range(1..20),
            1 => rng.random_range(1..(1 << 29)),
            _ => (1 << 29) - 1,
        };
        if shape.iter().all(|(known, _)| *known != number) {
            break number;
        }
    };
    match rng.random_range(0..5) {
        0 => {
            key(rng, number, 0, out);
            let value = rng.random();
            varint(rng, value, out);
        }
        1 => {
            key(rng, number, 1, out);
            out.extend_from_slice(&rng.random::<u64>().to_le_bytes());
        }
        2 => {
            key(rng, number, 5, out);
            out.extend_from_slice(&rng.random::<u32>().to_le_bytes());
        }
        3 => {
            key(rng, number, 2, out);
            let text = text(rng);
            length_delimited(rng, &text, out);
        }
        _ => {
            // A group: unknown fields (nested groups among them) up to its end.
            key(rng, number, 3, out);
            if depth < 4 {
                fields(rng, &[], depth + 1, out);
            }
            let end = if rng.random_ratio(1, 40) {
                number % ((1 << 29) - 1) + 1
            } else {
                number
            };
            key(rng, end, 4, out);
        }
    }
}

/// A string's bytes: mostly text (ASCII and wider characters), sometimes not UTF-8.
fn text(rng: &mut SmallRng) -> Vec<u8> {
    let len = rng.random_range(0..12);
    match rng.random_range(0..30) {
        0 => (0..len).map(|_| rng.random()).collect(),
        1 => {
            let mut bytes: Vec<u8> = "Bearer é€".into();
            bytes.insert(rng.random_range(0..=bytes.len()), 0xff);
            bytes
        }
        2 => "kw_live_✓ key".into(),
        _ => (0..len).map(|_| rng.random_range(b' '..=b'~')).collect(),
    }
}

fn key(rng: &mut SmallRng, number: u32, wire: u8, out: &mut Vec<u8>) {
    varint(rng, u64::from(number) << 3 | u64::from(wire), out);
}

fn length_delimited(rng: &mut SmallRng, bytes: &[u8], out: &mut Vec<u8>) {
    varint(rng, bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// A varint, sometimes padded with continuation bytes up to 10 bytes (protobuf accepts
/// non-minimal varints), rarely an 11-byte or overflowing one (refused).
fn varint(rng: &mut SmallRng, mut value: u64, out: &mut Vec<u8>) {
    let mut bytes = Vec::with_capacity(11);
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            bytes.push(byte);
            break;
        }
        bytes.push(byte | 0x80);
    }
    if rng.random_ratio(1, 24) {
        let pad = rng.random_range(0..=10 - bytes.len().min(10));
        let last = bytes.len() - 1;
        bytes[last] |= 0x80;
        bytes.extend(std::iter::repeat_n(0x80, pad));
        bytes.push(if rng.random_ratio(1, 10) { 0x7f } else { 0 });
    }
    out.extend_from_slice(&bytes);
}
