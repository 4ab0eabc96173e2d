//! S3 ETags recomputed from bytes: `verify` checks archives with them, and
//! the export proves which part size reproduces a multipart ETag when more
//! than one common size could (a restore that used the wrong one would change
//! the ETag that manifests, IMS links and BOS boot sets quote).
use md5::{Digest, Md5};

use crate::archive::escaped;

/// Part sizes that S3 clients commonly use (aws-cli and boto3 default to
/// 8 MiB, S3's minimum is 5 MiB, ...), tried in this order when an index entry
/// records no part size, or one that does not reproduce its ETag.
const COMMON_PART_SIZES_MIB: [u64; 13] = [8, 5, 16, 15, 64, 10, 32, 100, 25, 50, 128, 6, 7];
/// Candidate part sizes hashed at once (each is one more MD5 pass).
const MAX_CANDIDATES: usize = 6;

/// Recomputes an S3 ETag from an object's bytes, when the ETag has the form
/// S3 gives unencrypted objects: `<md5>` (single PUT: the MD5 of the bytes)
/// or `<md5>-N` (multipart: the MD5 of the N parts' binary MD5s, which needs
/// the part size; each part size consistent with N is tried in one pass).
/// Other ETags cannot be checked.
pub enum EtagCheck {
    Single {
        want: String,
        md5: Md5,
    },
    Multipart {
        want: String,
        parts: Vec<PartHasher>,
    },
}

impl EtagCheck {
    pub fn new(raw: &str, size: u64, part_size: Option<u64>) -> Option<EtagCheck> {
        let want = raw.trim().trim_matches('"').to_ascii_lowercase();
        let (md5, count) = match want.split_once('-') {
            None => (want.as_str(), None),
            Some((md5, n)) => (md5, Some(n.parse::<u64>().ok().filter(|&n| n > 0)?)),
        };
        if md5.len() != 32 || !md5.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let Some(count) = count else {
            return Some(EtagCheck::Single {
                want,
                md5: Md5::new(),
            });
        };
        let sizes: Vec<u64> = if count == 1 {
            // Any part size from the object's size up gives the one part.
            vec![size]
        } else {
            let mut sizes = Vec::new();
            for p in part_size
                .into_iter()
                .chain(COMMON_PART_SIZES_MIB.iter().map(|m| m << 20))
            {
                if p > 0 && size.div_ceil(p) == count && !sizes.contains(&p) {
                    sizes.push(p);
                }
            }
            sizes.truncate(MAX_CANDIDATES);
            sizes
        };
        if size == 0 || sizes.is_empty() {
            return None;
        }
        Some(EtagCheck::Multipart {
            want,
            parts: sizes.into_iter().map(PartHasher::new).collect(),
        })
    }

    pub fn is_multipart(&self) -> bool {
        matches!(self, EtagCheck::Multipart { .. })
    }

    /// For a multipart ETag that exactly one candidate part size is
    /// consistent with (its size and part count): that size. Hashing cannot
    /// choose between candidates then, so the export records it without
    /// spending an MD5 pass (1.3 CPU s/GiB) on every byte; a restore that
    /// inferred the part size would take the same one.
    pub fn only_candidate(&self) -> Option<u64> {
        match self {
            EtagCheck::Multipart { parts, .. } if parts.len() == 1 => Some(parts[0].part_size),
            _ => None,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            EtagCheck::Single { md5, .. } => md5.update(data),
            EtagCheck::Multipart { parts, .. } => parts
                .iter_mut()
                .filter(|p| !p.elsewhere)
                .for_each(|p| p.update(data)),
        }
    }

    /// The part sizes a multipart ETag is checked with (none for a single one).
    pub fn part_sizes(&self) -> Vec<u64> {
        match self {
            EtagCheck::Single { .. } => Vec::new(),
            EtagCheck::Multipart { parts, .. } => parts.iter().map(|p| p.part_size).collect(),
        }
    }

    /// From now on the parts of `part_size` are hashed elsewhere (in parallel,
    /// by whoever holds their bytes) and handed over with `add_part_digests`;
    /// `update` skips them. Call it before the first `update`.
    pub fn hash_elsewhere(&mut self, part_size: u64) {
        if let EtagCheck::Multipart { parts, .. } = self {
            parts
                .iter_mut()
                .filter(|p| p.part_size == part_size)
                .for_each(|p| p.elsewhere = true);
        }
    }

    /// The next parts' MD5s, in order, for a part size hashed elsewhere.
    pub fn add_part_digests(&mut self, part_size: u64, digests: &[[u8; 16]]) {
        if let EtagCheck::Multipart { parts, .. } = self
            && let Some(p) = parts
                .iter_mut()
                .find(|p| p.part_size == part_size && p.elsewhere)
        {
            p.digests.extend_from_slice(digests);
        }
    }

    /// Whether the bytes reproduce the ETag (for a multipart one: the part
    /// size that does); if not, why.
    pub fn finish(self) -> Result<Option<u64>, String> {
        match self {
            EtagCheck::Single { want, md5 } => {
                let got = hex::encode(md5.finalize());
                if got == want {
                    Ok(None)
                } else {
                    Err(format!(
                        "its MD5 is {got}, but its ETag is {}",
                        escaped(&want)
                    ))
                }
            }
            EtagCheck::Multipart { want, parts } => {
                let tried: Vec<String> = parts
                    .iter()
                    .map(|p| crate::units::bytes(p.part_size))
                    .collect();
                if let Some(p) = parts.into_iter().find_map(|p| {
                    let size = p.part_size;
                    (p.finish() == want).then_some(size)
                }) {
                    Ok(Some(p))
                } else {
                    Err(format!(
                        "its bytes do not reproduce its multipart ETag {} with any part size tried ({})",
                        escaped(&want),
                        tried.join(", ")
                    ))
                }
            }
        }
    }
}

/// The MD5s of a byte stream's parts of one size, and from them its
/// multipart ETag. A stream may be cut at part boundaries and hashed in
/// pieces (`digests` of each, concatenated in order, make the whole's).
pub struct PartHasher {
    part_size: u64,
    /// Bytes of the current part hashed so far.
    filled: u64,
    part: Md5,
    digests: Vec<[u8; 16]>,
    /// Fed with digests hashed elsewhere, not with bytes (`EtagCheck::hash_elsewhere`).
    elsewhere: bool,
}

impl PartHasher {
    pub fn new(part_size: u64) -> PartHasher {
        PartHasher {
            part_size: part_size.max(1),
            filled: 0,
            part: Md5::new(),
            digests: Vec::new(),
            elsewhere: false,
        }
    }

    pub fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let room = self.part_size - self.filled;
            let n = usize::try_from(room).map_or(data.len(), |room| room.min(data.len()));
            self.part.update(&data[..n]);
            self.filled += n as u64;
            data = &data[n..];
            if self.filled == self.part_size {
                self.digests.push(self.part.finalize_reset().into());
                self.filled = 0;
            }
        }
    }

    /// The MD5 of each part, the last one short if the bytes ended inside it.
    pub fn digests(mut self) -> Vec<[u8; 16]> {
        if self.filled > 0 {
            self.digests.push(self.part.finalize().into());
        }
        self.digests
    }

    fn finish(mut self) -> String {
        if self.filled > 0 || self.digests.is_empty() {
            self.digests.push(self.part.finalize_reset().into());
            self.filled = 0;
        }
        let mut of_parts = Md5::new();
        for d in &self.digests {
            of_parts.update(d);
        }
        format!(
            "{}-{}",
            hex::encode(of_parts.finalize()),
            self.digests.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md5_hex(data: &[u8]) -> String {
        hex::encode(Md5::digest(data))
    }

    /// The multipart ETag of `data` in parts of `part` bytes, as S3 computes it.
    fn multipart_etag(data: &[u8], part: usize) -> String {
        let mut of_parts = Vec::new();
        for chunk in data.chunks(part) {
            of_parts.extend_from_slice(&Md5::digest(chunk));
        }
        format!("{}-{}", md5_hex(&of_parts), data.chunks(part).count())
    }

    fn check(
        etag: &str,
        data: &[u8],
        part_size: Option<u64>,
    ) -> Option<Result<Option<u64>, String>> {
        let mut c = EtagCheck::new(etag, data.len() as u64, part_size)?;
        // Uneven chunks: part boundaries fall inside updates.
        for chunk in data.chunks(333_333) {
            c.update(chunk);
        }
        Some(c.finish())
    }

    #[test]
    fn etags_are_recomputed_for_single_and_multipart_objects() {
        let data: Vec<u8> = (0..9_438_183u32).map(|i| (i % 251) as u8).collect();
        let quoted = format!("\"{}\"", md5_hex(&data));
        assert_eq!(check(&quoted, &data, None), Some(Ok(None)));
        // 5 MiB parts, as a real 9,438,183-byte rootfs whose part size was once
        // recorded as 8 MiB (the first candidate giving two parts): found without
        // a recorded part size, and despite a wrong one.
        let five = multipart_etag(&data, 5 << 20);
        assert!(five.ends_with("-2"));
        // The part size proven is 5 MiB, although 8 MiB also gives two parts.
        assert_eq!(check(&five, &data, None), Some(Ok(Some(5 << 20))));
        assert_eq!(check(&five, &data, Some(8 << 20)), Some(Ok(Some(5 << 20))));
        // An unusual part size is found when recorded.
        let three = multipart_etag(&data, 3 << 20);
        assert_eq!(check(&three, &data, Some(3 << 20)), Some(Ok(Some(3 << 20))));
        // Without it, no common size gives 4 parts: the ETag cannot be checked.
        assert_eq!(check(&three, &data, None), None);
        // Exact multiples end on a full part.
        let exact = &data[..4 << 20];
        assert_eq!(
            check(&multipart_etag(exact, 2 << 20), exact, Some(2 << 20)),
            Some(Ok(Some(2 << 20)))
        );
        assert_eq!(
            check(&multipart_etag(&data, data.len()), &data, None),
            Some(Ok(Some(data.len() as u64)))
        );

        let mut flipped = data.clone();
        flipped[7_000_000] ^= 1;
        let single = check(&quoted, &flipped, None).unwrap().unwrap_err();
        assert!(single.contains("its MD5 is"), "{single}");
        let multi = check(&five, &flipped, None).unwrap().unwrap_err();
        assert!(multi.contains("with any part size tried (8"), "{multi}");
    }

    #[test]
    fn parts_hashed_elsewhere_in_pieces_prove_the_same_part_size() {
        let data: Vec<u8> = (0..(23 << 20) + 5u32).map(|i| (i % 253) as u8).collect();
        let etag = multipart_etag(&data, 5 << 20);
        // Two candidates: the recorded 5.5 MiB, hashed here from the bytes,
        // and 5 MiB, whose parts two "fetchers" hash (cut at a part boundary).
        let mut check = EtagCheck::new(&etag, data.len() as u64, Some(5632 << 10)).unwrap();
        assert_eq!(check.part_sizes(), vec![5632 << 10, 5 << 20]);
        check.hash_elsewhere(5 << 20);
        for (start, end) in [(0, 15 << 20), (15 << 20, data.len())] {
            let mut piece = PartHasher::new(5 << 20);
            for chunk in data[start..end].chunks(1 << 20) {
                piece.update(chunk);
            }
            check.add_part_digests(5 << 20, &piece.digests());
        }
        for chunk in data.chunks(333_333) {
            check.update(chunk);
        }
        assert_eq!(check.finish(), Ok(Some(5 << 20)));
        // Digests that miss a part prove nothing.
        let mut check = EtagCheck::new(&etag, data.len() as u64, None).unwrap();
        check.hash_elsewhere(5 << 20);
        let mut piece = PartHasher::new(5 << 20);
        piece.update(&data[..15 << 20]);
        check.add_part_digests(5 << 20, &piece.digests());
        assert!(check.finish().is_err());
    }

    #[test]
    fn etags_that_are_not_md5s_cannot_be_checked() {
        for etag in [
            "x",
            "\"e\"",
            "abc-2",
            &format!("{}-0", "0".repeat(32)),
            &format!("{}-x", "0".repeat(32)),
        ] {
            assert!(check(etag, b"data", None).is_none(), "{etag}");
        }
        // No common part size gives 1000 parts of a small object.
        assert!(check(&format!("{}-1000", "0".repeat(32)), b"data", None).is_none());
    }
}
