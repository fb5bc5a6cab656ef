//! Properties of the decision log's frame parser over damaged files: it never panics, and it
//! never misreads — every record it returns was written, in order, from intact frames at the
//! start of the file. Damage is a torn tail only when no intact frame follows it, and is
//! reported otherwise; a file as written reads back whole.

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;
use crate::gid::Gid;

fn arbitrary_gid() -> impl Strategy<Value = Gid> {
    let node = prop::sample::select(&["a", "test", "node-1", "ABCDEFGHIJKLMNOP"][..]);
    (node, any::<u128>()).prop_map(|(node, bits)| {
        Gid::parse(&format!("wtx.{node}.{}", ulid::Ulid(bits))).expect("a valid gid")
    })
}

/// Frames of 1 to 4 records each.
fn arbitrary_frames() -> impl Strategy<Value = Vec<Vec<(u8, Gid)>>> {
    let record = (
        prop::sample::select(&[KIND_COMMIT, KIND_DONE][..]),
        arbitrary_gid(),
    );
    prop::collection::vec(prop::collection::vec(record, 1..5), 1..6)
}

/// A log as written: the header, then the frames.
struct Written {
    file: Vec<u8>,
    /// Offset in the file where each frame starts, then the file's length.
    boundaries: Vec<usize>,
    frames: Vec<Vec<(u8, Gid)>>,
}

impl Written {
    fn new(frames: Vec<Vec<(u8, Gid)>>) -> Self {
        let mut file = header_bytes().to_vec();
        let mut boundaries = Vec::new();
        for frame in &frames {
            boundaries.push(file.len());
            encode_frame(&mut file, frame.iter().map(|(kind, gid)| (*kind, gid)));
        }
        boundaries.push(file.len());
        Written {
            file,
            boundaries,
            frames,
        }
    }

    /// The records of the first `count` frames.
    fn records_of_first(&self, count: usize) -> Vec<(u8, Gid)> {
        self.frames[..count].concat()
    }

    /// The index of the frame holding file byte `offset`.
    fn frame_at(&self, offset: usize) -> usize {
        self.boundaries
            .iter()
            .rposition(|&start| start <= offset)
            .expect("after the header")
    }
}

const HEADER: usize = HEADER_LEN as usize;

proptest! {
    #![proptest_config(crate::fuzzing::config(2_000))]

    #[test]
    fn random_bytes_are_read_without_a_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = read_header(&bytes[..bytes.len().min(HEADER)]);
        let _ = scan_frames(&bytes);
    }

    #[test]
    fn random_bytes_after_intact_frames_never_change_them(
        frames in arbitrary_frames(),
        tail in prop::collection::vec(any::<u8>(), 1..64),
    ) {
        let written = Written::new(frames);
        let mut file = written.file.clone();
        file.extend_from_slice(&tail);
        if let Ok(scan) = scan_frames(&file[HEADER..]) {
            let all = written.records_of_first(written.frames.len());
            prop_assert_eq!(&scan.records[..all.len().min(scan.records.len())], &all[..]);
            prop_assert!(scan.records.len() >= all.len());
        }
    }

    #[test]
    fn a_log_as_written_reads_back_whole(frames in arbitrary_frames()) {
        let written = Written::new(frames);
        prop_assert_eq!(read_header(&written.file[..HEADER]), Header::Valid);
        let scan = scan_frames(&written.file[HEADER..]).expect("an intact log");
        prop_assert_eq!(&scan.records, &written.records_of_first(written.frames.len()));
        prop_assert_eq!(scan.intact_len, written.file.len() - HEADER);
        prop_assert!(!scan.torn);
    }

    #[test]
    fn a_log_cut_anywhere_reads_its_whole_frames(frames in arbitrary_frames()) {
        let written = Written::new(frames);
        for cut in 0..=written.file.len() {
            let file = &written.file[..cut];
            if cut < HEADER {
                prop_assert_eq!(read_header(file), Header::Missing, "cut at {}", cut);
                continue;
            }
            prop_assert_eq!(read_header(&file[..HEADER]), Header::Valid);
            let whole = written.boundaries.iter().filter(|&&end| end <= cut).count() - 1;
            let scan = scan_frames(&file[HEADER..]).expect("a cut is a torn tail, not damage");
            prop_assert_eq!(&scan.records, &written.records_of_first(whole), "cut at {}", cut);
            prop_assert_eq!(scan.intact_len, written.boundaries[whole] - HEADER);
            prop_assert_eq!(scan.torn, cut != written.boundaries[whole]);
        }
    }

    #[test]
    fn flipped_bits_are_a_torn_tail_or_damage_never_a_misread(
        frames in arbitrary_frames(),
        flips in prop::collection::vec(any::<prop::sample::Index>(), 1..4),
        bits in prop::collection::vec(0u8..8, 3),
    ) {
        let written = Written::new(frames);
        let frames_len = written.file.len() - HEADER;
        let mut positions: Vec<usize> =
            flips.iter().map(|index| HEADER + index.index(frames_len)).collect();
        positions.sort_unstable();
        positions.dedup();
        let mut file = written.file.clone();
        for (position, bit) in positions.iter().zip(&bits) {
            file[*position] ^= 1 << bit;
        }
        let damaged: BTreeSet<usize> = positions.iter().map(|&p| written.frame_at(p)).collect();
        let first_damaged = *damaged.first().expect("at least one flip");
        let intact_after = (first_damaged + 1..written.frames.len()).any(|i| !damaged.contains(&i));
        match scan_frames(&file[HEADER..]) {
            Ok(scan) => {
                prop_assert!(!intact_after, "damage before an intact frame was read as a torn tail");
                prop_assert_eq!(&scan.records, &written.records_of_first(first_damaged));
                prop_assert!(scan.torn);
            }
            Err(damage) => {
                prop_assert!(intact_after, "a damaged last frame was not taken as a torn tail");
                prop_assert_eq!(damage.at, written.boundaries[first_damaged] - HEADER);
            }
        }
    }
}
