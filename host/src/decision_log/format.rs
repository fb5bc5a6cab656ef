//! The decision log's bytes: the header, frames, records and their checksum. Pure functions
//! over byte slices; the file handling lives in the other modules.
//!
//! The layout is specified in the module docs of [`super`] ("File format").

use std::collections::BTreeSet;

use crate::gid::Gid;

const MAGIC: &[u8; 8] = b"WTXDLOG\0";
pub(super) const FORMAT_VERSION: u32 = 1;
pub(super) const HEADER_LEN: u64 = 12;
pub(super) const FRAME_HEADER_LEN: usize = 8;
/// The smallest payload: one record with a one-byte gid.
const MIN_FRAME_PAYLOAD: usize = 3;
/// Larger lengths are damage, not data: batches and compaction frames stay far below.
const MAX_FRAME_PAYLOAD: usize = 1 << 20;
pub(super) const KIND_COMMIT: u8 = 1;
pub(super) const KIND_DONE: u8 = 2;

/// The header of a version-1 log.
pub(super) fn header_bytes() -> [u8; HEADER_LEN as usize] {
    let mut header = [0; HEADER_LEN as usize];
    header[..8].copy_from_slice(MAGIC);
    header[8..].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header
}

/// What the first bytes of a file say about it.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Header {
    /// A version-1 header.
    Valid,
    /// Shorter than a header, and what is there starts one: a new file, or one whose creation
    /// a crash interrupted. The header is to be written.
    Missing,
    /// Not a decision log.
    Foreign,
    /// A decision log of another format version.
    Version(u32),
}

/// Reads the first `min(file length, HEADER_LEN)` bytes of a file.
pub(super) fn read_header(found: &[u8]) -> Header {
    let header = header_bytes();
    if found.len() < header.len() {
        if header.starts_with(found) {
            Header::Missing
        } else {
            Header::Foreign
        }
    } else if found[..8] != MAGIC[..] {
        Header::Foreign
    } else {
        let version = u32::from_le_bytes(found[8..12].try_into().expect("4 bytes"));
        if version == FORMAT_VERSION {
            Header::Valid
        } else {
            Header::Version(version)
        }
    }
}

fn frame_crc(len: [u8; 4], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len);
    hasher.update(payload);
    hasher.finalize()
}

/// Appends one frame holding `records` (kind, gid) to `out`.
pub(super) fn encode_frame<'a>(out: &mut Vec<u8>, records: impl Iterator<Item = (u8, &'a Gid)>) {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER_LEN]);
    for (kind, gid) in records {
        let gid = gid.as_str().as_bytes();
        out.push(kind);
        out.push(u8::try_from(gid.len()).expect("a validated gid is at most 47 bytes"));
        out.extend_from_slice(gid);
    }
    let payload_len = out.len() - start - FRAME_HEADER_LEN;
    debug_assert!((MIN_FRAME_PAYLOAD..=MAX_FRAME_PAYLOAD).contains(&payload_len));
    let len = u32::try_from(payload_len)
        .expect("frames are small")
        .to_le_bytes();
    let crc = frame_crc(len, &out[start + FRAME_HEADER_LEN..]);
    out[start..start + 4].copy_from_slice(&len);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// The size of `gid`'s record in a payload.
pub(super) fn record_len(gid: &Gid) -> usize {
    2 + gid.as_str().len()
}

/// Applies one record to the set of pending COMMITs.
pub(super) fn apply(pending: &mut BTreeSet<Gid>, kind: u8, gid: Gid) {
    if kind == KIND_COMMIT {
        pending.insert(gid);
    } else {
        pending.remove(&gid);
    }
}

/// A frame that passes its checksum: its payload and its size in the file.
fn checked_frame(buf: &[u8]) -> Result<(&[u8], usize), &'static str> {
    if buf.len() < FRAME_HEADER_LEN {
        return Err("incomplete frame header");
    }
    let len: [u8; 4] = buf[..4].try_into().expect("4 bytes");
    let payload_len = u32::from_le_bytes(len) as usize;
    if !(MIN_FRAME_PAYLOAD..=MAX_FRAME_PAYLOAD).contains(&payload_len) {
        return Err("impossible frame length");
    }
    let Some(payload) = buf.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + payload_len) else {
        return Err("incomplete frame");
    };
    let crc = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
    if crc != frame_crc(len, payload) {
        return Err("checksum mismatch");
    }
    Ok((payload, FRAME_HEADER_LEN + payload_len))
}

/// Whether an intact frame starts at `buf[0]`, for the search past a bad frame. Every frame
/// this format writes starts with a COMMIT or DONE record: checking that first skips almost
/// every offset before the checksum, keeping the search linear in practice.
fn intact_frame_at(buf: &[u8]) -> bool {
    matches!(buf.get(FRAME_HEADER_LEN), Some(&(KIND_COMMIT | KIND_DONE)))
        && checked_frame(buf).is_ok()
}

fn parse_records(mut payload: &[u8]) -> Result<Vec<(u8, Gid)>, String> {
    let mut records = Vec::new();
    while !payload.is_empty() {
        let [kind, len, rest @ ..] = payload else {
            return Err("a record is cut short inside an intact frame".into());
        };
        if *kind != KIND_COMMIT && *kind != KIND_DONE {
            return Err(format!(
                "unknown record kind {kind} in an intact frame (written by a newer wasmtx?)"
            ));
        }
        let Some(gid) = rest.get(..*len as usize) else {
            return Err("a record is cut short inside an intact frame".into());
        };
        let gid = std::str::from_utf8(gid)
            .ok()
            .and_then(|text| Gid::parse(text).ok())
            .ok_or_else(|| {
                format!(
                    "an intact frame holds an invalid gid {:?}",
                    String::from_utf8_lossy(gid)
                )
            })?;
        records.push((*kind, gid));
        payload = &rest[*len as usize..];
    }
    Ok(records)
}

/// The frames read from the start of a buffer.
#[derive(Debug)]
pub(super) struct Scan {
    pub(super) records: Vec<(u8, Gid)>,
    /// Bytes of intact frames from the start of the buffer.
    pub(super) intact_len: usize,
    /// Whether bytes follow the intact frames (a torn tail).
    pub(super) torn: bool,
}

/// A bad frame with an intact frame after it, or an intact frame with unreadable records.
#[derive(Debug)]
pub(super) struct Damage {
    /// Offset of the bad frame in the buffer.
    pub(super) at: usize,
    pub(super) detail: String,
}

/// Reads frames until the end or a bad frame. A bad frame with no intact frame anywhere
/// after it is a torn tail; with one, it is damage.
pub(super) fn scan_frames(buf: &[u8]) -> Result<Scan, Damage> {
    let mut records = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        match checked_frame(&buf[at..]) {
            Ok((payload, size)) => {
                records.extend(parse_records(payload).map_err(|detail| Damage { at, detail })?);
                at += size;
            }
            Err(why) => {
                if let Some(next) = (at + 1..buf.len()).find(|&next| intact_frame_at(&buf[next..]))
                {
                    let detail = format!(
                        "{why}; an intact frame follows at byte offset +{}",
                        next - at
                    );
                    return Err(Damage { at, detail });
                }
                return Ok(Scan {
                    records,
                    intact_len: at,
                    torn: true,
                });
            }
        }
    }
    Ok(Scan {
        records,
        intact_len: at,
        torn: false,
    })
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision_log::test_support::{gid, later};

    fn frame(records: &[(u8, &Gid)]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(&mut out, records.iter().copied());
        out
    }

    #[test]
    fn frames_decode_to_the_records_encoded() {
        let (a, b) = (gid(), gid());
        let mut buf = frame(&[(KIND_COMMIT, &a), (KIND_COMMIT, &b)]);
        buf.extend(frame(&[(KIND_DONE, &a)]));
        let scan = scan_frames(&buf).unwrap();
        assert_eq!(
            scan.records,
            vec![(KIND_COMMIT, a.clone()), (KIND_COMMIT, b), (KIND_DONE, a)]
        );
        assert_eq!(scan.intact_len, buf.len());
        assert!(!scan.torn);
        assert_eq!(
            frame(&[(KIND_COMMIT, &gid())]).len(),
            FRAME_HEADER_LEN + record_len(&gid())
        );
    }

    #[test]
    fn a_torn_last_frame_is_left_unread_whatever_is_cut() {
        let (a, b) = (gid(), gid());
        let first = frame(&[(KIND_COMMIT, &a)]);
        let second = frame(&[(KIND_COMMIT, &b)]);
        for cut in 1..second.len() {
            let mut buf = first.clone();
            buf.extend_from_slice(&second[..cut]);
            let scan = scan_frames(&buf).unwrap();
            assert_eq!(scan.records, vec![(KIND_COMMIT, a.clone())], "cut at {cut}");
            assert_eq!(scan.intact_len, first.len());
            assert!(scan.torn);
        }
    }

    #[test]
    fn a_flipped_bit_in_the_last_frame_is_a_torn_tail() {
        let a = gid();
        let first = frame(&[(KIND_COMMIT, &a)]);
        let second = frame(&[(KIND_COMMIT, &gid())]);
        for byte in 0..second.len() {
            let mut buf = first.clone();
            buf.extend_from_slice(&second);
            buf[first.len() + byte] ^= 0x04;
            let scan = scan_frames(&buf).unwrap();
            assert_eq!(scan.records, vec![(KIND_COMMIT, a.clone())], "byte {byte}");
            assert!(scan.torn);
        }
    }

    #[test]
    fn damage_followed_by_an_intact_frame_is_refused_with_its_offset() {
        let first = frame(&[(KIND_COMMIT, &gid())]);
        let middle = frame(&[(KIND_COMMIT, &gid())]);
        let last = frame(&[(KIND_DONE, &gid())]);
        let mut buf = [first.clone(), middle, last].concat();
        buf[first.len() + FRAME_HEADER_LEN + 5] ^= 0x40;
        let damage = scan_frames(&buf).unwrap_err();
        assert_eq!(damage.at, first.len());
        assert!(damage.detail.contains("checksum"), "{}", damage.detail);
    }

    #[test]
    fn an_intact_frame_with_an_unknown_record_kind_is_damage() {
        let buf = frame(&[(7, &gid())]);
        let damage = scan_frames(&buf).unwrap_err();
        assert_eq!(damage.at, 0);
        assert!(
            damage.detail.contains("unknown record kind 7"),
            "{}",
            damage.detail
        );
    }

    #[test]
    fn headers_are_told_apart() {
        let header = header_bytes();
        assert_eq!(read_header(&header), Header::Valid);
        assert_eq!(read_header(&header[..5]), Header::Missing);
        assert_eq!(read_header(&[]), Header::Missing);
        assert_eq!(read_header(b"hello, this "), Header::Foreign);
        assert_eq!(read_header(b"hello"), Header::Foreign);
        let mut newer = header;
        newer[8] = 2;
        assert_eq!(read_header(&newer), Header::Version(2));
    }

    #[test]
    fn apply_adds_commits_and_removes_them_on_done() {
        let (a, b) = (gid(), gid());
        let mut pending = BTreeSet::new();
        apply(&mut pending, KIND_COMMIT, a.clone());
        apply(&mut pending, KIND_COMMIT, b.clone());
        apply(&mut pending, KIND_DONE, a);
        apply(
            &mut pending,
            KIND_DONE,
            Gid::new(&crate::gid::NodeId::new("x").unwrap(), later()),
        );
        assert_eq!(pending, BTreeSet::from([b]));
    }
}
