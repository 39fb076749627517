//! Binary codes of a sqlite-vec shard's vectors (`--quantization binary`): a compact first pass
//! for searches that must not read every vector, re-ranked with the full-precision vectors so
//! the reported scores are exact for the returned ids.
//!
//! Each vector `x` of a shard is kept as one bit per dimension, `s = sign(x - mean)` (the
//! shard's mean; for cosine, of the unit vectors), and a scale `alpha = mean |x - mean|`, the
//! least-squares factor of `x - mean ~ alpha * s`. A query `q` then estimates
//! `q.x ~ q.mean + alpha * (s.q)`, where `s.q` costs one table lookup per byte of code
//! ([`Codes::nearest`]). On the Debian set (384-d MiniLM, 8 shards) the best 4k estimates hold
//! 97-98% of the exact top k (docs/benchmarks.md), at 1/30 of the vectors' bytes.
//!
//! The codes live in their own file beside `shard.db` (`shard.codes`, [`FILE_NAME`]), fetched
//! whole when a shard is opened for a search: a few hundred KB instead of the shard. So that a
//! range reader can re-rank the candidates without walking SQLite's B-trees (each step a
//! dependent round trip), the file also maps every vector to where its bytes sit in `shard.db`:
//! the `vec0` vector chunk that holds it, and that chunk's blob as the leaf cell's local part
//! plus runs of overflow pages ([`BlobLocation`]). Pages read through that map are checked by
//! the shard's page checksums, and each overflow page's next pointer must agree with the map.
//!
//! The shard itself is unchanged: readers that know nothing of the codes (shardyfusion's, a
//! plain `MATCH`) search it exactly. The file's size and xxh3-128 are recorded in the shard
//! row's `writer_info` ([`FILE_KEY`], [`BYTES_KEY`], [`HASH_KEY`]); the file also ends with an
//! xxh3-64 of its own bytes, so a truncated or damaged file is refused even where the manifest
//! row is not at hand.

use crate::error::{Error, Result};
use crate::manifest::{ShardEntry, VectorBackend, VectorSpec};
use crate::vector::{AnnParams, Metric};

/// Name of the codes file in a shard's folder.
pub const FILE_NAME: &str = "shard.codes";

/// `writer_info` key naming the codes file (relative to the shard folder).
pub const FILE_KEY: &str = "codes_file";
/// `writer_info` key holding the codes file's size in bytes.
pub const BYTES_KEY: &str = "codes_bytes";
/// `writer_info` key holding the codes file's xxh3-128, 32 lowercase hex digits.
pub const HASH_KEY: &str = "codes_xxh3_128";

/// `index_params.codes` of a snapshot whose shards carry binary codes.
pub const KIND_BINARY: &str = "binary";

/// Candidates re-ranked per result by default (`index_params.refine_factor`): the best `4k`
/// estimates over all searched shards held recall@10 0.973 on the Debian set (`2k`: 0.92,
/// `6k`: 0.987), each candidate costing one or two pages of a range reader's final round.
pub const DEFAULT_REFINE_FACTOR: usize = 4;

const MAGIC: &[u8; 4] = b"ESBC";
const VERSION: u8 = 1;
const HEADER_LEN: usize = 40;
const FLAG_DENSE_ROWIDS: u8 = 1;

fn corrupt(why: impl Into<String>) -> Error {
    Error::InvalidArgument(format!("invalid codes file: {}", why.into()))
}

fn metric_code(metric: Metric) -> u8 {
    match metric {
        Metric::Cosine => 0,
        Metric::L2 => 1,
        Metric::DotProduct => 2,
    }
}

/// Where one `vec0` vector chunk's blob sits in `shard.db`: its leaf cell keeps the first
/// `local_len` bytes of the row's payload at `local_at` on page `leaf`; the rest follows in
/// overflow pages (each `[next page: u32][usable - 4 bytes]`), listed as runs of consecutive
/// page numbers. The vectors start `blob_at` bytes into the payload (after the record header
/// and the chunk id column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobLocation {
    /// The table leaf page holding the row.
    pub leaf: u32,
    /// Offset of the payload's first byte on the leaf page.
    pub local_at: u32,
    /// Payload bytes kept on the leaf page.
    pub local_len: u32,
    /// Offset of the vectors within the payload.
    pub blob_at: u32,
    /// Overflow pages in chain order, as `(first page, count)` runs.
    pub runs: Vec<(u32, u32)>,
}

impl BlobLocation {
    /// The overflow pages in chain order.
    fn overflow_pages(&self) -> impl Iterator<Item = u32> + '_ {
        self.runs
            .iter()
            .flat_map(|&(first, count)| (0..count).map(move |i| first + i))
    }
}

/// One `vec0` chunk: the vectors of ordinals `first..first + count` sit in its slots
/// `0..count`, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkLayout {
    /// Ordinal (position in the codes file) of the chunk's first vector.
    pub first: u32,
    /// Vectors in the chunk.
    pub count: u32,
    /// Where the chunk's vector blob sits in `shard.db`.
    pub location: BlobLocation,
}

/// A piece of a stored vector in `shard.db`: `len` bytes at `offset` on page `page`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// 1-based page number.
    pub page: u32,
    /// Byte offset on the page.
    pub offset: usize,
    /// Bytes.
    pub len: usize,
    /// For an overflow page: the page its next pointer must name (0: the chain's last page).
    pub next: Option<u32>,
}

/// A shard's binary codes, parsed and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Codes {
    metric: Metric,
    dim: usize,
    stored_dim: usize,
    page_size: u32,
    usable_size: u32,
    rowids: Rowids,
    mean: Vec<f32>,
    alpha: Vec<f32>,
    norm2: Option<Vec<f32>>,
    code_bytes: usize,
    codes: Vec<u8>,
    chunks: Vec<ChunkLayout>,
}

#[derive(Debug, Clone, PartialEq)]
enum Rowids {
    Dense { first: i64, count: usize },
    Listed(Vec<i64>),
}

impl Rowids {
    fn len(&self) -> usize {
        match self {
            Self::Dense { count, .. } => *count,
            Self::Listed(list) => list.len(),
        }
    }

    fn get(&self, ordinal: usize) -> i64 {
        match self {
            Self::Dense { first, .. } => first + ordinal as i64,
            Self::Listed(list) => list[ordinal],
        }
    }
}

/// What the builder hands [`Codes::encode`]: the shard's vectors in the order of their `vec0`
/// slots (chunk by chunk), with their rowids.
pub struct CodesInput<'a> {
    /// The snapshot metric.
    pub metric: Metric,
    /// `(rowid, vector)` in slot order; `vector` as given by the user (dot_product: not the L2
    /// reduction, which `stored_dim` accounts for).
    pub vectors: Vec<(i64, &'a [f32])>,
    /// Dimension `vec0` stores (`dim + 1` for dot_product).
    pub stored_dim: usize,
    /// Page size of `shard.db`.
    pub page_size: u32,
    /// Page size less the reserved bytes of every page.
    pub usable_size: u32,
    /// The chunks, in slot order, covering `vectors` exactly.
    pub chunks: Vec<ChunkLayout>,
}

/// Unit vector (cosine codes are taken in the space the distance lives in).
fn unit(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    match norm > 0.0 {
        true => v.iter().map(|x| x / norm).collect(),
        false => v.to_vec(),
    }
}

/// bfloat16 (the upper half of an f32): the scale needs 8 bits of precision, not 24.
fn to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    // Round to nearest even on the dropped half.
    let rounded = bits.wrapping_add(0x7fff + ((bits >> 16) & 1));
    (rounded >> 16) as u16
}

fn from_bf16(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// Little-endian reader over the file with a bound check on every read.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| corrupt(format!("truncated in {what}")))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn f32s(&mut self, n: usize, what: &str) -> Result<Vec<f32>> {
        let len = n
            .checked_mul(4)
            .ok_or_else(|| corrupt(format!("{what} too long")))?;
        Ok(self
            .take(len, what)?
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }
}

impl Codes {
    /// The file for `input` (the builder's side of [`Codes::parse`]).
    pub fn encode(input: &CodesInput<'_>) -> Result<Vec<u8>> {
        let count = input.vectors.len();
        let Some(dim) = input.vectors.first().map(|(_, v)| v.len()) else {
            return Err(Error::InvalidArgument("binary codes need vectors".into()));
        };
        if input.vectors.iter().any(|(_, v)| v.len() != dim) {
            return Err(Error::InvalidArgument(
                "binary codes: vectors of different dimensions".into(),
            ));
        }
        let covered: usize = input.chunks.iter().map(|c| c.count as usize).sum();
        let contiguous = input
            .chunks
            .iter()
            .scan(0u32, |next, c| {
                let ok = c.first == *next;
                *next = c.first.saturating_add(c.count);
                Some(ok)
            })
            .all(|ok| ok);
        if covered != count || !contiguous {
            return Err(Error::InvalidArgument(format!(
                "binary codes: the chunk map covers {covered} vectors, not the {count} given"
            )));
        }
        let space: Vec<Vec<f32>> = input
            .vectors
            .iter()
            .map(|(_, v)| match input.metric {
                Metric::Cosine => unit(v),
                _ => v.to_vec(),
            })
            .collect();
        let mut mean = vec![0f64; dim];
        for v in &space {
            for (m, x) in mean.iter_mut().zip(v) {
                *m += f64::from(*x);
            }
        }
        let mean: Vec<f32> = mean.iter().map(|m| (m / count as f64) as f32).collect();
        let code_bytes = dim.div_ceil(8);
        let dense = input
            .vectors
            .iter()
            .enumerate()
            .all(|(i, (rowid, _))| *rowid == input.vectors[0].0 + i as i64);

        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.push(metric_code(input.metric));
        out.push(if dense { FLAG_DENSE_ROWIDS } else { 0 });
        out.push(0);
        for n in [
            dim as u32,
            input.stored_dim as u32,
            count as u32,
            input.page_size,
            input.usable_size,
            input.chunks.len() as u32,
        ] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        out.extend_from_slice(&input.vectors[0].0.to_le_bytes());
        for m in &mean {
            out.extend_from_slice(&m.to_le_bytes());
        }
        if !dense {
            for (rowid, _) in &input.vectors {
                out.extend_from_slice(&rowid.to_le_bytes());
            }
        }
        let mut codes = vec![0u8; count * code_bytes];
        for (i, v) in space.iter().enumerate() {
            let mut spread = 0f64;
            for (d, (x, m)) in v.iter().zip(&mean).enumerate() {
                let centred = x - m;
                spread += f64::from(centred.abs());
                if centred > 0.0 {
                    codes[i * code_bytes + d / 8] |= 1 << (d % 8);
                }
            }
            out.extend_from_slice(&to_bf16((spread / dim as f64) as f32).to_le_bytes());
        }
        if input.metric == Metric::L2 {
            for v in &space {
                let norm2: f32 = v.iter().map(|x| x * x).sum();
                out.extend_from_slice(&norm2.to_le_bytes());
            }
        }
        out.extend_from_slice(&codes);
        for chunk in &input.chunks {
            let l = &chunk.location;
            for n in [
                chunk.first,
                chunk.count,
                l.leaf,
                l.local_at,
                l.local_len,
                l.blob_at,
                l.runs.len() as u32,
            ] {
                out.extend_from_slice(&n.to_le_bytes());
            }
            for (first, run) in &l.runs {
                out.extend_from_slice(&first.to_le_bytes());
                out.extend_from_slice(&run.to_le_bytes());
            }
        }
        let check = xxhash_rust::xxh3::xxh3_64(&out);
        out.extend_from_slice(&check.to_le_bytes());
        Ok(out)
    }

    /// Parses and fully checks a codes file: the trailing checksum, every length, and that the
    /// chunk map covers every vector once with pages inside a file of `page_count` pages.
    pub fn parse(bytes: &[u8], page_count: Option<u32>) -> Result<Self> {
        if bytes.len() < HEADER_LEN + 8 {
            return Err(corrupt(format!("{} bytes is too short", bytes.len())));
        }
        let (body, check) = bytes.split_at(bytes.len() - 8);
        let mut expected = [0u8; 8];
        expected.copy_from_slice(check);
        if xxhash_rust::xxh3::xxh3_64(body) != u64::from_le_bytes(expected) {
            return Err(corrupt("its checksum does not match its bytes"));
        }
        if &body[..4] != MAGIC {
            return Err(corrupt("not a codes file (bad magic)"));
        }
        if body[4] != VERSION {
            return Err(corrupt(format!("version {} is not {VERSION}", body[4])));
        }
        let metric = match body[5] {
            0 => Metric::Cosine,
            1 => Metric::L2,
            2 => Metric::DotProduct,
            other => return Err(corrupt(format!("unknown metric code {other}"))),
        };
        let dense = body[6] & FLAG_DENSE_ROWIDS != 0;
        let mut c = Cursor { bytes: body, at: 8 };
        let dim = c.u32("header")? as usize;
        let stored_dim = c.u32("header")? as usize;
        let count = c.u32("header")? as usize;
        let page_size = c.u32("header")?;
        let usable_size = c.u32("header")?;
        let chunk_count = c.u32("header")? as usize;
        let first = c.take(8, "header")?;
        let first_rowid = i64::from_le_bytes(first.try_into().map_err(|_| corrupt("header"))?);
        if dim == 0 || stored_dim < dim || !(480..=page_size).contains(&usable_size) {
            return Err(corrupt(format!(
                "dimension {dim} (stored {stored_dim}), usable page size {usable_size} of \
                 {page_size}"
            )));
        }
        let mean = c.f32s(dim, "the mean")?;
        let rowids = match dense {
            true => Rowids::Dense {
                first: first_rowid,
                count,
            },
            false => Rowids::Listed(
                c.take(count.saturating_mul(8), "the rowids")?
                    .chunks_exact(8)
                    .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
                    .collect(),
            ),
        };
        let alpha = c
            .take(count.saturating_mul(2), "the scales")?
            .chunks_exact(2)
            .map(|b| from_bf16(u16::from_le_bytes([b[0], b[1]])))
            .collect();
        let norm2 = match metric {
            Metric::L2 => Some(c.f32s(count, "the norms")?),
            _ => None,
        };
        let code_bytes = dim.div_ceil(8);
        let codes = c
            .take(count.saturating_mul(code_bytes), "the codes")?
            .to_vec();
        let mut chunks = Vec::with_capacity(chunk_count.min(count + 1));
        let mut next_first = 0u32;
        for at in 0..chunk_count {
            let what = format!("chunk {at}");
            let first = c.u32(&what)?;
            let n = c.u32(&what)?;
            let leaf = c.u32(&what)?;
            let local_at = c.u32(&what)?;
            let local_len = c.u32(&what)?;
            let blob_at = c.u32(&what)?;
            let run_count = c.u32(&what)? as usize;
            let mut runs = Vec::with_capacity(run_count.min(1 << 16));
            for _ in 0..run_count {
                runs.push((c.u32(&what)?, c.u32(&what)?));
            }
            let pages_ok = |p: u32| p >= 1 && page_count.is_none_or(|n| p <= n);
            let runs_ok = runs
                .iter()
                .all(|&(p, n)| n > 0 && pages_ok(p) && p.checked_add(n - 1).is_some_and(pages_ok));
            if first != next_first
                || !pages_ok(leaf)
                || !runs_ok
                || local_at as u64 + local_len as u64 > page_size as u64
            {
                return Err(corrupt(format!(
                    "chunk {at} is out of place or out of bounds"
                )));
            }
            next_first = first.saturating_add(n);
            chunks.push(ChunkLayout {
                first,
                count: n,
                location: BlobLocation {
                    leaf,
                    local_at,
                    local_len,
                    blob_at,
                    runs,
                },
            });
        }
        if next_first as usize != count || c.at != body.len() {
            return Err(corrupt(format!(
                "the chunk map covers {next_first} of {count} vectors, or bytes are left over"
            )));
        }
        let codes = Self {
            metric,
            dim,
            stored_dim,
            page_size,
            usable_size,
            rowids,
            mean,
            alpha,
            norm2,
            code_bytes,
            codes,
            chunks,
        };
        // Every vector's bytes must lie inside its chunk's blob: a chunk's vectors lie in order,
        // so checking its last one checks them all.
        for chunk in codes.chunks.iter().filter(|c| c.count > 0) {
            codes.segments(chunk.first as usize + chunk.count as usize - 1)?;
        }
        Ok(codes)
    }

    /// Vectors in the file.
    pub fn len(&self) -> usize {
        self.rowids.len()
    }

    /// Whether the file holds no vectors.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The metric the codes were made for.
    pub fn metric(&self) -> Metric {
        self.metric
    }

    /// Dimension of the codes (the snapshot's `dim`).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The `vec0` rowid of the vector at `ordinal`.
    pub fn rowid(&self, ordinal: usize) -> i64 {
        self.rowids.get(ordinal)
    }

    /// The ordinal of the vector with `rowid`, if the shard has one.
    pub fn ordinal_of(&self, rowid: i64) -> Option<usize> {
        match &self.rowids {
            Rowids::Dense { first, count } => {
                let at = usize::try_from(rowid.checked_sub(*first)?).ok()?;
                (at < *count).then_some(at)
            }
            Rowids::Listed(list) => list.iter().position(|r| *r == rowid),
        }
    }

    /// The `n` best estimates for `query` (as the user gave it), best first (lower is better;
    /// ties by ordinal), as `(estimate, ordinal)`. Estimates of one query are comparable across
    /// shards: [`select_candidates`] takes the best of all of them.
    pub fn nearest(&self, query: &[f32], n: usize) -> Vec<(f32, u32)> {
        let q = match self.metric {
            Metric::Cosine => unit(query),
            _ => query.to_vec(),
        };
        // tables[j][v]: the sum of q over the dimensions whose bits are set in byte value v at
        // code byte j, built incrementally (v's sum = its lower bits' sum + one more). A table
        // of exactly 256 entries indexed by a byte needs no bounds check in the scan below.
        let mut tables = vec![[0f32; 256]; self.code_bytes];
        for (j, table) in tables.iter_mut().enumerate() {
            for v in 1..256usize {
                let bit = v.trailing_zeros() as usize;
                let d = j * 8 + bit;
                table[v] = table[v & (v - 1)] + q.get(d).copied().unwrap_or(0.0);
            }
        }
        let q_sum: f32 = q.iter().sum();
        let mut scored: Vec<(f32, u32)> = self
            .codes
            .chunks_exact(self.code_bytes)
            .enumerate()
            .map(|(i, code)| {
                // Four independent sums, so the additions overlap.
                let mut sums = [0f32; 4];
                let mut quads = code.chunks_exact(4).zip(tables.chunks_exact(4));
                for (bytes, four) in &mut quads {
                    for lane in 0..4 {
                        sums[lane] += four[lane][bytes[lane] as usize];
                    }
                }
                let tail = code.len() / 4 * 4;
                let rest: f32 = code[tail..]
                    .iter()
                    .zip(&tables[tail..])
                    .map(|(b, t)| t[*b as usize])
                    .sum();
                let set = sums[0] + sums[1] + sums[2] + sums[3] + rest;
                // s.q with s in {-1, +1}: the set bits once, minus the clear ones.
                let s_dot_q = 2.0 * set - q_sum;
                let dot = self.alpha[i] * s_dot_q;
                let estimate = match &self.norm2 {
                    Some(norm2) => norm2[i] - 2.0 * dot,
                    None => -dot,
                };
                (estimate, i as u32)
            })
            .collect();
        let by = |a: &(f32, u32), b: &(f32, u32)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
        if scored.len() > n && n > 0 {
            scored.select_nth_unstable_by(n - 1, by);
        }
        scored.truncate(n);
        scored.sort_by(by);
        scored
    }

    /// Where the stored vector at `ordinal` (`stored_dim` little-endian f32) sits in `shard.db`.
    pub fn segments(&self, ordinal: usize) -> Result<Vec<Segment>> {
        let at = self
            .chunks
            .partition_point(|c| (c.first as usize + c.count as usize) <= ordinal);
        let chunk = self
            .chunks
            .get(at)
            .filter(|c| (c.first as usize) <= ordinal)
            .ok_or_else(|| corrupt(format!("no chunk holds vector {ordinal}")))?;
        let width = self.stored_dim * 4;
        let loc = &chunk.location;
        let start = loc.blob_at as usize + (ordinal - chunk.first as usize) * width;
        let end = start + width;
        let mut out = Vec::new();
        let local = loc.local_len as usize;
        if start < local {
            let stop = end.min(local);
            out.push(Segment {
                page: loc.leaf,
                offset: loc.local_at as usize + start,
                len: stop - start,
                next: None,
            });
        }
        let per_page = self.usable_size as usize - 4;
        let pages: Vec<u32> = loc.overflow_pages().collect();
        let mut from = start.max(local);
        while from < end {
            let index = (from - local) / per_page;
            let within = (from - local) % per_page;
            let page = *pages.get(index).ok_or_else(|| {
                corrupt(format!(
                    "vector {ordinal} runs past the overflow pages of its chunk"
                ))
            })?;
            let len = (per_page - within).min(end - from);
            out.push(Segment {
                page,
                offset: 4 + within,
                len,
                next: Some(pages.get(index + 1).copied().unwrap_or(0)),
            });
            from += len;
        }
        Ok(out)
    }

    /// The stored vector at `ordinal` (little-endian f32 bytes) from the pages of `shard.db`,
    /// `page(n)` giving page n (already checked against the shard's page checksums). Each
    /// overflow page's next pointer must be the one the map expects: a map that does not
    /// describe this file is an error, never another vector's bytes.
    pub fn read_vector<P: AsRef<[u8]>>(
        &self,
        ordinal: usize,
        mut page: impl FnMut(u32) -> Option<P>,
    ) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.stored_dim * 4);
        for s in self.segments(ordinal)? {
            let bytes = page(s.page).ok_or_else(|| {
                Error::InvalidArgument(format!("page {} of vector {ordinal} was not read", s.page))
            })?;
            let bytes = bytes.as_ref();
            if let Some(next) = s.next {
                let head = bytes
                    .get(..4)
                    .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                if head != Some(next) {
                    return Err(corrupt(format!(
                        "overflow page {} of vector {ordinal} links to {head:?}, the map says \
                         {next}",
                        s.page
                    )));
                }
            }
            let piece = bytes.get(s.offset..s.offset + s.len).ok_or_else(|| {
                corrupt(format!(
                    "vector {ordinal} runs past the end of page {}",
                    s.page
                ))
            })?;
            out.extend_from_slice(piece);
        }
        Ok(out)
    }

    /// The pages [`Self::read_vector`] needs for `ordinal`.
    pub fn pages_of(&self, ordinal: usize) -> Result<Vec<u32>> {
        Ok(self.segments(ordinal)?.iter().map(|s| s.page).collect())
    }
}

/// The best `n` candidates of one search over all its shards (`per_shard[i]`: shard i's
/// [`Codes::nearest`]), by estimate, ties by shard then ordinal: per shard, the ordinals to
/// re-rank. The same choice in every reader.
pub fn select_candidates(per_shard: &[Vec<(f32, u32)>], n: usize) -> Vec<Vec<u32>> {
    let mut all: Vec<(f32, usize, u32)> = per_shard
        .iter()
        .enumerate()
        .flat_map(|(shard, list)| list.iter().map(move |(e, o)| (*e, shard, *o)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    all.truncate(n);
    let mut out = vec![Vec::new(); per_shard.len()];
    for (_, shard, ordinal) in all {
        out[shard].push(ordinal);
    }
    for list in &mut out {
        list.sort_unstable();
    }
    out
}

/// Whether a search uses the shards' binary codes: the snapshot records them
/// (`index_params.codes`), the search is not exact, and has no filter (a filtered search needs
/// every candidate's payload; it scans the full vectors instead).
pub fn in_use(spec: &VectorSpec, ann: &AnnParams, filtered: bool) -> bool {
    let recorded = spec
        .index_params
        .as_ref()
        .and_then(|p| p.get("codes"))
        .and_then(|c| c.as_str())
        == Some(KIND_BINARY);
    recorded && spec.backend != Some(VectorBackend::LanceDb) && !ann.exact && !filtered
}

/// The exact score of a re-ranked candidate from its stored vector (`stored_dim` little-endian
/// f32 as `vec0` keeps it), in the reported convention and through the same kernels as an
/// exact scan ([`crate::ivf::scan_chunks`]), so a re-ranked hit has exactly the score an exact
/// search gives it. `query` is the user's; `stored_query` the index's (`[q, 0]` for
/// dot_product).
pub fn exact_score(
    metric: Metric,
    query: &[f32],
    stored_query: &[f32],
    stored: &[u8],
) -> std::result::Result<f64, String> {
    if stored.len() != stored_query.len() * 4 {
        return Err(format!(
            "{} bytes is not a {}-d stored vector",
            stored.len(),
            stored_query.len()
        ));
    }
    match metric {
        Metric::DotProduct => crate::query::dot_score(query, Some(stored), query.len()),
        _ => {
            let mut out = Vec::with_capacity(1);
            crate::kernels::distances(stored_query, metric == Metric::Cosine, stored, &mut out);
            out.first()
                .map(|d| f64::from(*d))
                .ok_or_else(|| "no distance".to_string())
        }
    }
}

/// The codes file a shard's manifest row names: only [`FILE_NAME`] is accepted, so a manifest
/// never makes a reader open another path.
pub fn file_of(entry: &ShardEntry) -> std::result::Result<&'static str, String> {
    match entry.writer_info.get(FILE_KEY).and_then(|v| v.as_str()) {
        Some(FILE_NAME) => Ok(FILE_NAME),
        other => Err(format!(
            "the snapshot has binary codes but this shard's manifest row names {other:?} as its \
             codes file (writer_info.{FILE_KEY}), not {FILE_NAME:?}"
        )),
    }
}

/// A fetched codes file checked against its manifest row (size and xxh3-128: a damaged file,
/// or another shard's or build's, is refused) and the snapshot's vectors, then parsed. The
/// error text names what disagrees; the reader adds where.
pub fn load(
    entry: &ShardEntry,
    spec: &VectorSpec,
    bytes: &[u8],
) -> std::result::Result<Codes, String> {
    let want_len = entry.writer_info.get(BYTES_KEY).and_then(|v| v.as_u64());
    if want_len != Some(bytes.len() as u64) {
        return Err(format!(
            "{} bytes, the manifest says {want_len:?}",
            bytes.len()
        ));
    }
    let want_hash = entry.writer_info.get(HASH_KEY).and_then(|v| v.as_str());
    let hash = crate::integrity::content_hash(bytes);
    if want_hash != Some(hash.as_str()) {
        return Err(format!(
            "content hash {hash} is not the manifest's {want_hash:?} (a damaged file, or \
             another shard's or build's)"
        ));
    }
    let codes = Codes::parse(bytes, None).map_err(|e| e.detail().to_string())?;
    if codes.dim() != spec.dim || codes.metric() != spec.metric {
        return Err(format!(
            "codes of {}-d {} vectors in a snapshot of {}-d {}",
            codes.dim(),
            codes.metric().as_str(),
            spec.dim,
            spec.metric.as_str()
        ));
    }
    Ok(codes)
}

/// Candidates to re-rank for `k` results: `k x refine_factor`.
pub fn candidates_for(k: usize, refine_factor: Option<u32>) -> usize {
    let factor = refine_factor.map_or(DEFAULT_REFINE_FACTOR, |f| f.max(1) as usize);
    k.saturating_mul(factor)
}

/// Where the rows of a table B-tree (`vec0`'s `<table>_vector_chunks00`) keep their payloads in
/// a database image: `(rowid, location)` of every row, `blob_at` pointing past the record
/// header and the first `columns_before_blob` columns. For the builder, which writes the map.
pub fn locate_rows(
    db: &[u8],
    root: u32,
    page_size: u32,
    usable_size: u32,
    columns_before_blob: usize,
) -> Result<Vec<(i64, BlobLocation)>> {
    use crate::btree;
    let page = |n: u32| -> Result<&[u8]> {
        let start = (n as usize - 1) * page_size as usize;
        db.get(start..start + page_size as usize)
            .ok_or_else(|| corrupt(format!("page {n} is past the end of the database")))
    };
    let mut rows = Vec::new();
    let mut stack = vec![root];
    let mut seen = std::collections::BTreeSet::new();
    while let Some(number) = stack.pop() {
        if number == 0 || !seen.insert(number) {
            return Err(corrupt(format!(
                "the B-tree at page {root} loops or names page 0"
            )));
        }
        let bytes = page(number)?;
        if btree::is_interior(number, bytes) {
            // Children in reverse, so the stack pops them in key order.
            stack.extend(btree::children(number, bytes).into_iter().rev());
            continue;
        }
        for cell in btree::table_leaf_cells(number, bytes, usable_size)
            .ok_or_else(|| corrupt(format!("page {number} is not a table leaf")))?
        {
            let mut runs: Vec<(u32, u32)> = Vec::new();
            let mut next = cell.overflow;
            let mut guard = 0usize;
            while next != 0 {
                guard += 1;
                if guard > db.len() / page_size as usize {
                    return Err(corrupt(format!(
                        "the overflow chain of row {} loops",
                        cell.rowid
                    )));
                }
                match runs.last_mut() {
                    Some((first, count)) if *first + *count == next => *count += 1,
                    _ => runs.push((next, 1)),
                }
                let overflow = page(next)?;
                next = u32::from_be_bytes([overflow[0], overflow[1], overflow[2], overflow[3]]);
            }
            let local = &bytes[cell.local_at..cell.local_at + cell.local_len];
            let blob_at =
                btree::record_column_offset(local, columns_before_blob).ok_or_else(|| {
                    corrupt(format!("row {} has no readable record header", cell.rowid))
                })?;
            rows.push((
                cell.rowid,
                BlobLocation {
                    leaf: number,
                    local_at: cell.local_at as u32,
                    local_len: cell.local_len as u32,
                    blob_at: blob_at as u32,
                    runs,
                },
            ));
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                (0..dim)
                    .map(|_| {
                        state = state
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
                    })
                    .collect()
            })
            .collect()
    }

    /// One chunk whose blob is the whole payload kept locally (enough for parse checks).
    fn layout(count: usize) -> Vec<ChunkLayout> {
        vec![ChunkLayout {
            first: 0,
            count: count as u32,
            location: BlobLocation {
                leaf: 2,
                local_at: 0,
                local_len: 4,
                blob_at: 4,
                runs: vec![(3, 400)],
            },
        }]
    }

    fn encode(metric: Metric, vectors: &[Vec<f32>]) -> Vec<u8> {
        Codes::encode(&CodesInput {
            metric,
            vectors: vectors
                .iter()
                .enumerate()
                .map(|(i, v)| (i as i64 + 1, v.as_slice()))
                .collect(),
            stored_dim: vectors[0].len(),
            page_size: 4096,
            usable_size: 4088,
            chunks: layout(vectors.len()),
        })
        .unwrap()
    }

    fn exact(metric: Metric, q: &[f32], v: &[f32]) -> f64 {
        metric.score(q, v)
    }

    #[test]
    fn estimates_find_most_of_the_exact_neighbours() {
        for metric in [Metric::Cosine, Metric::L2, Metric::DotProduct] {
            let vectors = sample(2_000, 64, 7);
            let codes = Codes::parse(&encode(metric, &vectors), None).unwrap();
            assert_eq!(codes.len(), 2_000);
            assert_eq!(codes.rowid(0), 1);
            assert_eq!(codes.ordinal_of(2_000), Some(1_999));
            assert_eq!(codes.ordinal_of(2_001), None);
            assert_eq!(codes.ordinal_of(0), None);
            let mut found = 0;
            for q in sample(20, 64, 99) {
                let mut truth: Vec<(f64, usize)> = vectors
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (exact(metric, &q, v), i))
                    .collect();
                truth.sort_by(|a, b| a.0.total_cmp(&b.0));
                let candidates: Vec<u32> =
                    codes.nearest(&q, 100).into_iter().map(|(_, o)| o).collect();
                found += truth[..10]
                    .iter()
                    .filter(|(_, i)| candidates.contains(&(*i as u32)))
                    .count();
            }
            // Random 64-d data is the hard case for sign codes; the estimate must still beat
            // chance (100 of 2,000 = 5%) by far.
            assert!(
                found >= 120,
                "{metric:?}: {found} of 200 exact neighbours found"
            );
        }
    }

    /// The table scan computes exactly `alpha * (s.q)` (plus the l2 norm term), for code
    /// lengths that are not a multiple of the scan's four lanes too.
    #[test]
    fn estimates_are_the_sign_code_dot_product() {
        for (metric, dim) in [
            (Metric::L2, 44),
            (Metric::Cosine, 20),
            (Metric::DotProduct, 9),
        ] {
            let vectors = sample(30, dim, 17);
            let codes = Codes::parse(&encode(metric, &vectors), None).unwrap();
            let q = sample(1, dim, 18).remove(0);
            let scanned = codes.nearest(&q, 30);
            assert_eq!(scanned.len(), 30);
            let unit_q = match metric {
                Metric::Cosine => unit(&q),
                _ => q.clone(),
            };
            for (estimate, ordinal) in scanned {
                let i = ordinal as usize;
                let code = &codes.codes[i * codes.code_bytes..(i + 1) * codes.code_bytes];
                let s_dot_q: f32 = (0..dim)
                    .map(|d| match code[d / 8] >> (d % 8) & 1 {
                        1 => unit_q[d],
                        _ => -unit_q[d],
                    })
                    .sum();
                let dot = codes.alpha[i] * s_dot_q;
                let want = match &codes.norm2 {
                    Some(norm2) => norm2[i] - 2.0 * dot,
                    None => -dot,
                };
                assert!(
                    (estimate - want).abs() < 1e-4,
                    "{metric:?} {i}: {estimate} vs {want}"
                );
            }
        }
    }

    #[test]
    fn damage_is_refused() {
        let vectors = sample(50, 16, 3);
        let file = encode(Metric::Cosine, &vectors);
        assert!(Codes::parse(&file, None).is_ok());
        for at in [0, 5, 20, file.len() / 2, file.len() - 1] {
            let mut bad = file.clone();
            bad[at] ^= 0x10;
            assert!(
                Codes::parse(&bad, None).is_err(),
                "flipped byte {at} accepted"
            );
        }
        assert!(Codes::parse(&file[..file.len() - 9], None).is_err());
        // Pages past the end of the shard are refused.
        assert!(Codes::parse(&file, Some(100)).is_err());
        assert!(Codes::parse(&file, Some(1_000)).is_ok());
    }

    #[test]
    fn segments_cross_overflow_pages_and_check_their_links() {
        let vectors = sample(3, 1_000, 5);
        let file = Codes::encode(&CodesInput {
            metric: Metric::L2,
            vectors: vectors
                .iter()
                .map(|v| (10, v.as_slice()))
                .collect::<Vec<_>>()
                .into_iter()
                .enumerate()
                .map(|(i, (r, v))| (r + 2 * i as i64, v))
                .collect(),
            stored_dim: 1_000,
            page_size: 1024,
            usable_size: 1016,
            chunks: vec![ChunkLayout {
                first: 0,
                count: 3,
                location: BlobLocation {
                    leaf: 2,
                    local_at: 900,
                    local_len: 100,
                    blob_at: 3,
                    runs: vec![(5, 6), (20, 6)],
                },
            }],
        })
        .unwrap();
        let codes = Codes::parse(&file, None).unwrap();
        // Rowids 10, 12, 14: not dense, listed.
        assert_eq!(codes.rowid(2), 14);
        assert_eq!(codes.ordinal_of(12), Some(1));
        assert_eq!(codes.ordinal_of(11), None);
        let s = codes.segments(0).unwrap();
        assert_eq!(
            s[0],
            Segment {
                page: 2,
                offset: 903,
                len: 97,
                next: None
            }
        );
        assert_eq!(s[1].page, 5);
        assert_eq!(s[1].offset, 4);
        assert_eq!(s.iter().map(|s| s.len).sum::<usize>(), 4_000);
        // The third vector ends in the second run.
        let last = codes.segments(2).unwrap();
        assert!(last.iter().any(|s| s.page >= 20));
        // Pages whose links agree give the bytes back in order; a wrong link is refused.
        let page = |n: u32, next: u32| {
            let mut p = vec![n as u8; 1024];
            p[..4].copy_from_slice(&next.to_be_bytes());
            p
        };
        let chain: Vec<u32> = (5..11).chain(20..26).collect();
        let good = |n: u32| -> Option<Vec<u8>> {
            if n == 2 {
                return Some(vec![2; 1024]);
            }
            let at = chain.iter().position(|p| *p == n)?;
            Some(page(n, chain.get(at + 1).copied().unwrap_or(0)))
        };
        let bytes = codes.read_vector(1, good).unwrap();
        assert_eq!(bytes.len(), 4_000);
        let bad = |n: u32| -> Option<Vec<u8>> { Some(page(n, 77)) };
        assert!(codes.read_vector(1, bad).is_err());
    }

    #[test]
    fn candidates_are_the_best_over_all_shards() {
        let per_shard = vec![vec![(0.1, 4), (0.5, 1)], vec![(0.2, 0), (0.3, 9), (0.9, 2)]];
        assert_eq!(select_candidates(&per_shard, 3), vec![vec![4], vec![0, 9]]);
        assert_eq!(candidates_for(10, None), 40);
        assert_eq!(candidates_for(10, Some(2)), 20);
    }

    #[test]
    fn bf16_keeps_eight_bits() {
        for x in [0.0f32, 1.0, 0.012_345, 3.75e-3, 100.5] {
            let back = from_bf16(to_bf16(x));
            assert!((back - x).abs() <= x.abs() / 128.0, "{x} -> {back}");
        }
    }
}
