//! The IVF index inside a sqlite-vec shard (`--vector-index ivf`): each shard's vectors are
//! split into k-means *cells*; `vec_index` carries each vector's cell in a `cell integer
//! partition key` column, so sqlite-vec keeps the vectors of one cell together in their own
//! chunks, and a search that names its cells (`AND cell = ?`) reads those chunks only. The
//! centroids are a table of the shard (`vec_ivf_centroids`, see [`crate::shard_schema`]).
//!
//! A reader that knows nothing of the index (shardyfusion's, or a plain `MATCH ? AND k = ?`)
//! still searches the shard exactly: without a cell constraint sqlite-vec reads every chunk.
//!
//! Cells live in the space the index stores: unit vectors for cosine, the vectors for l2, the
//! L2 reduction (`dim + 1`) for dot_product, so training, assignment and probing all use the
//! index's own distance ([`stored_metric`]).

use crate::error::{Error, Result};
use crate::npy::Matrix;
use crate::vector::Metric;
use crate::vector_routing::{self as vrouting};

/// `index_type` of a sqlite-vec snapshot whose shards carry this index.
pub const INDEX_TYPE: &str = "ivf";

/// Cells per shard: about `sqrt(rows)` (the usual IVF rule: the centroid pass and the cell
/// scan then cost about the same), at least 1, at most [`MAX_CELLS`].
pub fn cells_for_rows(rows: usize) -> usize {
    ((rows as f64).sqrt().round() as usize).clamp(1, MAX_CELLS)
}

/// `--vector-index auto` on sqlite-vec gives shards the IVF index when the largest shard holds
/// at least this many vectors, else none (exact). Measured on the Debian set (docs/benchmarks.md):
/// at ~1,960 vectors per shard the index already searched 3x faster than the exact scan but its
/// default recall@10 was 0.951, a thin margin; at ~7,830 it was 0.959 at 4x the speed. Below a
/// few thousand vectors an exact scan costs a millisecond or two per shard, so exactness wins.
pub const AUTO_MIN_ROWS: usize = 5_000;

/// The most cells a shard gets (and a reader accepts).
pub const MAX_CELLS: usize = 65_536;

/// `chunk_size` of the partitioned `vec0` table: sqlite-vec allocates whole chunks per cell,
/// so a cell wastes half a chunk on average; a quarter of the mean cell, rounded to a multiple
/// of 8 (sqlite-vec's validity bitmap), between 8 and 1,024 (its default), keeps that near 12%
/// while a cell still spans only a few chunks (each one row of a table to read).
pub fn chunk_size_for(rows: usize, cells: usize) -> usize {
    let quarter = rows / cells.max(1) / 4;
    (quarter.div_ceil(8) * 8).clamp(8, 1024)
}

/// Cells probed by default, recorded at build in `index_params.nprobes`: a fifth of the cells.
/// On the Debian set (8 shards of ~7,800 vectors, 89 cells each) recall@10 was 0.925 at 9
/// cells, 0.952 at 16 and 0.972 at 24 (docs/benchmarks.md); a fifth (18) clears 0.95.
pub fn default_nprobes(cells: usize) -> usize {
    (cells as f64 * DEFAULT_PROBE_FRACTION).ceil().max(1.0) as usize
}

/// The share of a shard's cells [`default_nprobes`] probes.
pub const DEFAULT_PROBE_FRACTION: f64 = 0.2;

/// Training vectors per cell k-means looks at (a seeded sample of the shard): enough to place
/// the centroids well, few enough that training costs about one pass over the shard.
pub const TRAIN_PER_CELL: usize = 32;

/// Lloyd iterations of the training.
pub const TRAIN_ITERATIONS: usize = 10;

/// The metric cells are formed and probed with: the index's own (cosine stays cosine; l2 and
/// dot_product's L2 reduction are l2).
pub fn stored_metric(metric: Metric) -> Metric {
    match metric {
        Metric::Cosine => Metric::Cosine,
        Metric::L2 | Metric::DotProduct => Metric::L2,
    }
}

/// A shard's centroids, ready to assign vectors (builder) and to choose cells (readers).
#[derive(Debug, Clone, PartialEq)]
pub struct Cells {
    centroids: Matrix,
    metric: Metric,
}

impl Cells {
    /// Trains [`cells_for_rows`] cells on a seeded sample of `vectors` (as stored: augmented
    /// for dot_product) under the snapshot `metric`: seeds drawn from the sample, then up to
    /// [`TRAIN_ITERATIONS`] Lloyd steps (spherical for cosine), every distance through the f32
    /// kernels below (the build must stay close to the flat build's time).
    pub fn train(vectors: &[&[f32]], metric: Metric, seed: u64) -> Result<Self> {
        if vectors.is_empty() {
            return Err(Error::InvalidArgument(
                "an IVF index needs at least one vector".into(),
            ));
        }
        let metric = stored_metric(metric);
        let dim = vectors[0].len();
        let cells = cells_for_rows(vectors.len()).min(vectors.len());
        let sample: Vec<Vec<f32>> = vrouting::sample_indices(
            vectors.len(),
            (cells * TRAIN_PER_CELL).min(vectors.len()),
            seed,
        )
        .into_iter()
        .map(|i| prepare(vectors[i], metric))
        .collect();
        // Seeds: `cells` distinct sample vectors, seeded.
        let seeds = vrouting::sample_indices(sample.len(), cells, seed ^ 0x9e37_79b9);
        let mut centroids = Matrix {
            rows: cells,
            cols: dim,
            data: seeds
                .iter()
                .flat_map(|&i| sample[i].iter().copied())
                .collect(),
        };
        let mut assignment = vec![usize::MAX; sample.len()];
        for _ in 0..TRAIN_ITERATIONS {
            let index = Self {
                centroids: centroids.clone(),
                metric,
            };
            let norms = index.half_norms();
            let mut changed = false;
            for (slot, v) in assignment.iter_mut().zip(&sample) {
                let cell = index.nearest(v, &norms);
                changed |= *slot != cell;
                *slot = cell;
            }
            if !changed {
                break;
            }
            let mut sums = vec![0f64; cells * dim];
            let mut counts = vec![0usize; cells];
            for (&cell, v) in assignment.iter().zip(&sample) {
                counts[cell] += 1;
                for (s, x) in sums[cell * dim..(cell + 1) * dim].iter_mut().zip(v) {
                    *s += f64::from(*x);
                }
            }
            for (cell, count) in counts.iter().enumerate() {
                // An empty cell keeps its centroid.
                if *count == 0 {
                    continue;
                }
                let sum = &sums[cell * dim..(cell + 1) * dim];
                let scale = match metric {
                    // Spherical: the mean direction.
                    Metric::Cosine => sum.iter().map(|x| x * x).sum::<f64>().sqrt(),
                    _ => *count as f64,
                };
                if scale > 0.0 {
                    for (c, s) in centroids.data[cell * dim..(cell + 1) * dim]
                        .iter_mut()
                        .zip(sum)
                    {
                        *c = (s / scale) as f32;
                    }
                }
            }
        }
        Ok(Self { centroids, metric })
    }

    /// Per centroid, half its squared norm (l2: `|v - c|^2 = |v|^2 - 2 (v.c - |c|^2 / 2)`).
    fn half_norms(&self) -> Vec<f32> {
        (0..self.centroids.rows)
            .map(|i| match self.metric {
                Metric::Cosine => 0.0,
                _ => dot(self.centroids.row(i), self.centroids.row(i)) / 2.0,
            })
            .collect()
    }

    /// The nearest centroid to a prepared vector (unit length for cosine): the largest
    /// `v.c - |c|^2 / 2` (cosine: `v.c` over unit centroids), ties to the lower cell.
    fn nearest(&self, v: &[f32], half_norms: &[f32]) -> usize {
        let mut best = (0usize, f32::NEG_INFINITY);
        for (i, half) in half_norms.iter().enumerate() {
            let score = dot(v, self.centroids.row(i)) - half;
            if score > best.1 {
                best = (i, score);
            }
        }
        best.0
    }

    /// The cells of a shard from its `vec_ivf_centroids` rows `(cell, centroid bytes)` in
    /// cell order, checked: cells numbered 0.., each centroid `stored_dim` finite
    /// little-endian f32 (a wrong width or a NaN would send every query to the wrong cells
    /// instead of failing). `metric` is the snapshot's.
    pub fn from_rows(
        rows: impl IntoIterator<Item = (i64, Vec<u8>)>,
        stored_dim: usize,
        metric: Metric,
    ) -> Result<Self> {
        let mut data = Vec::new();
        let mut count = 0usize;
        for (cell, bytes) in rows {
            if cell != count as i64 {
                return Err(Error::InvalidArgument(format!(
                    "vec_ivf_centroids: cell {cell} where cell {count} was due (cells are \
                     numbered 0.. without gaps)"
                )));
            }
            if count >= MAX_CELLS {
                return Err(Error::InvalidArgument(format!(
                    "vec_ivf_centroids: more than {MAX_CELLS} cells"
                )));
            }
            let centroid = crate::vector::from_le_bytes(&bytes)
                .ok()
                .filter(|c| c.len() == stored_dim)
                .ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "vec_ivf_centroids: cell {cell} is {} bytes, not {stored_dim} \
                         little-endian f32",
                        bytes.len()
                    ))
                })?;
            if let Some(bad) = centroid.iter().find(|x| !x.is_finite()) {
                return Err(Error::InvalidArgument(format!(
                    "vec_ivf_centroids: cell {cell} has a non-finite value ({bad})"
                )));
            }
            data.extend_from_slice(&centroid);
            count += 1;
        }
        if count == 0 {
            return Err(Error::InvalidArgument(
                "vec_ivf_centroids is empty: an IVF shard has at least one cell".into(),
            ));
        }
        Ok(Self {
            centroids: Matrix {
                rows: count,
                cols: stored_dim,
                data,
            },
            metric: stored_metric(metric),
        })
    }

    /// How many cells.
    pub fn len(&self) -> usize {
        self.centroids.rows
    }

    /// Never true: a shard's index has at least one cell.
    pub fn is_empty(&self) -> bool {
        self.centroids.rows == 0
    }

    /// Centroid `cell` (little-endian f32 bytes, as the table stores it).
    pub fn centroid_bytes(&self, cell: usize) -> Vec<u8> {
        crate::vector::to_le_bytes(self.centroids.row(cell))
    }

    /// The cell a stored vector belongs to (its nearest centroid).
    pub fn assign(&self, stored: &[f32]) -> usize {
        self.nearest(&prepare(stored, self.metric), &self.half_norms())
    }

    /// The `nprobes` cells nearest to a query (as stored: `[q, 0]` for dot_product), nearest
    /// first (ties to the lower cell); every cell when `nprobes` is at least their number.
    pub fn probe(&self, stored_query: &[f32], nprobes: usize) -> Vec<usize> {
        let q = prepare(stored_query, self.metric);
        let mut order: Vec<(usize, f32)> = self
            .half_norms()
            .iter()
            .enumerate()
            .map(|(i, half)| (i, dot(&q, self.centroids.row(i)) - half))
            .collect();
        order.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        order.into_iter().take(nprobes).map(|(i, _)| i).collect()
    }
}

/// One sqlite-vec chunk of a cell as a shard stores it (`vec_index_chunks.rowids` and
/// `.validity`, `vec_index_vector_chunks00.vectors`): slot `i` holds the vector of rowid
/// `rowids[8i..8i+8]` (i64, little-endian) at `vectors[4 dim i..]` (f32, little-endian) when bit
/// `i` of `validity` is set (least significant bit first).
#[derive(Debug, Clone, Copy)]
pub struct Chunk<'a> {
    /// `chunk_size` rowids, 8 bytes each.
    pub rowids: &'a [u8],
    /// `chunk_size` bits.
    pub validity: &'a [u8],
    /// `chunk_size` vectors of the stored dimension.
    pub vectors: &'a [u8],
}

/// A candidate of [`scan_chunks`]: rowid, distance (sqlite-vec's for the metric), the stored
/// vector's bytes.
pub type Candidate = (i64, f64, Vec<u8>);

/// The `n` nearest vectors to `stored_query` among `chunks`, nearest first (ties by rowid), by
/// the distance sqlite-vec's `vec0` reports for the index metric (cosine: `1 - cos`; l2 and
/// the dot reduction: Euclidean), computed with the f32 kernels below instead of one `MATCH`
/// per cell: the scan of a search's cells at memory speed, the same in every reader. A chunk
/// whose blobs disagree with its size is an error naming it.
pub fn scan_chunks<'a>(
    stored_query: &[f32],
    metric: Metric,
    chunks: impl IntoIterator<Item = Chunk<'a>>,
    n: usize,
) -> Result<Vec<Candidate>> {
    let dim = stored_query.len();
    let width = dim * 4;
    let cosine = stored_metric(metric) == Metric::Cosine;
    let mut scored: Vec<(f64, i64, &'a [u8])> = Vec::new();
    let mut distances = Vec::new();
    for (at, chunk) in chunks.into_iter().enumerate() {
        let slots = chunk.rowids.len() / 8;
        if chunk.rowids.len() % 8 != 0
            || chunk.vectors.len() != slots * width
            || chunk.validity.len() * 8 < slots
        {
            return Err(Error::InvalidArgument(format!(
                "sqlite-vec chunk {at} of the cells read: {} rowid bytes, {} validity bytes and \
                 {} vector bytes do not describe one chunk of {dim}-d vectors",
                chunk.rowids.len(),
                chunk.validity.len(),
                chunk.vectors.len()
            )));
        }
        distances.clear();
        crate::kernels::distances(stored_query, cosine, chunk.vectors, &mut distances);
        for (slot, distance) in distances.iter().enumerate() {
            if chunk.validity[slot / 8] >> (slot % 8) & 1 == 0 {
                continue;
            }
            let bytes = &chunk.vectors[slot * width..(slot + 1) * width];
            let rowid_bytes = &chunk.rowids[slot * 8..slot * 8 + 8];
            let mut le = [0u8; 8];
            le.copy_from_slice(rowid_bytes);
            scored.push((f64::from(*distance), i64::from_le_bytes(le), bytes));
        }
    }
    let by_distance =
        |a: &(f64, i64, &[u8]), b: &(f64, i64, &[u8])| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
    if scored.len() > n && n > 0 {
        scored.select_nth_unstable_by(n - 1, by_distance);
    }
    scored.truncate(n);
    scored.sort_by(by_distance);
    Ok(scored
        .into_iter()
        .map(|(distance, rowid, bytes)| (rowid, distance, bytes.to_vec()))
        .collect())
}

/// Why [`nearest_in_shard`] failed: SQLite (the reader's to report, with where it read), or a
/// chunk whose blobs do not describe its vectors (a damaged shard; the text names the chunk).
#[derive(Debug)]
pub enum ShardScanError {
    /// A statement failed.
    Sql(rusqlite::Error),
    /// A chunk is malformed.
    Corrupt(String),
}

/// The `fetch` nearest vectors of an open sqlite-vec shard by the index's own distance, nearest
/// first (ties by rowid): the vector chunks of the IVF `cells` (`None`: every chunk of the
/// shard) read with plain SQL and scanned by [`scan_chunks`]. One function for every reader, so
/// each reads and ranks the same rows; the reader's VFS decides where the pages come from.
pub fn nearest_in_shard(
    conn: &rusqlite::Connection,
    stored_query: &[f32],
    metric: Metric,
    fetch: usize,
    cells: Option<&[usize]>,
) -> std::result::Result<Vec<Candidate>, ShardScanError> {
    use crate::search_plan::sql;
    let (statement, groups): (_, Vec<Option<i64>>) = match cells {
        Some(cells) => (
            sql::CELL_CHUNK_DATA,
            cells.iter().map(|cell| Some(*cell as i64)).collect(),
        ),
        None => (sql::ALL_CHUNK_DATA, vec![None]),
    };
    let mut chunks = conn
        .prepare_cached(statement)
        .map_err(ShardScanError::Sql)?;
    let mut best: Vec<Candidate> = Vec::new();
    for group in groups {
        let mut rows = match group {
            Some(cell) => chunks.query([cell]),
            None => chunks.query([]),
        }
        .map_err(ShardScanError::Sql)?;
        while let Some(row) = rows.next().map_err(ShardScanError::Sql)? {
            let blob = |i: usize| row.get_ref(i).and_then(|v| Ok(v.as_blob()?));
            let chunk = Chunk {
                rowids: blob(0).map_err(ShardScanError::Sql)?,
                validity: blob(1).map_err(ShardScanError::Sql)?,
                vectors: blob(2).map_err(ShardScanError::Sql)?,
            };
            let found = scan_chunks(stored_query, metric, [chunk], fetch).map_err(|e| {
                ShardScanError::Corrupt(match group {
                    Some(cell) => format!("cell {cell}: {}", e.detail()),
                    None => e.detail().to_string(),
                })
            })?;
            best = merge_candidates(best, found, fetch);
        }
    }
    Ok(best)
}

/// The `n` best of two candidate lists (each nearest first), nearest first, ties by rowid.
pub fn merge_candidates(mut a: Vec<Candidate>, b: Vec<Candidate>, n: usize) -> Vec<Candidate> {
    a.extend(b);
    a.sort_by(|x, y| x.1.total_cmp(&y.1).then(x.0.cmp(&y.0)));
    a.truncate(n);
    a
}

/// `sum term(a_i, b_i)` in f32 over 8 independent lanes, a loop the compiler turns into SIMD:
/// the cost of training, probing and scanning is this function.
#[inline(always)]
fn lane_sum(a: &[f32], b: &[f32], term: impl Fn(f32, f32) -> f32) -> f32 {
    let mut lanes = [0f32; 8];
    let (a_chunks, b_chunks) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(x, y)| term(*x, *y))
        .sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for ((lane, x), y) in lanes.iter_mut().zip(x).zip(y) {
            *lane += term(*x, *y);
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// A vector as the kernels compare it: unit length for cosine (a zero vector stays zero, equally
/// near every cell), as is otherwise.
fn prepare(v: &[f32], metric: Metric) -> Vec<f32> {
    match metric {
        Metric::Cosine => {
            let norm = dot(v, v).sqrt();
            match norm > 0.0 && norm.is_finite() {
                true => v.iter().map(|x| x / norm).collect(),
                false => v.to_vec(),
            }
        }
        _ => v.to_vec(),
    }
}

/// `a.b` in f32 (see [`lane_sum`]).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    lane_sum(a, b, |x, y| x * y)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid() -> Vec<Vec<f32>> {
        // Four tight groups around the corners of a square.
        let mut out = Vec::new();
        for (cx, cy) in [(0.0, 0.0), (10.0, 0.0), (0.0, 10.0), (10.0, 10.0)] {
            for i in 0..25 {
                out.push(vec![cx + (i % 5) as f32 * 0.01, cy + (i / 5) as f32 * 0.01]);
            }
        }
        out
    }

    #[test]
    fn a_chunk_scan_ranks_valid_slots_by_the_index_distance() {
        // Slots: rowid 10 at [1, 0], rowid 11 (invalid) at [0, 1], rowid 12 at [0.6, 0.8].
        let rowids: Vec<u8> = [10i64, 11, 12]
            .iter()
            .flat_map(|r| r.to_le_bytes())
            .collect();
        let vectors = crate::vector::to_le_bytes(&[1.0, 0.0, 0.0, 1.0, 0.6, 0.8]);
        let chunk = Chunk {
            rowids: &rowids,
            validity: &[0b101],
            vectors: &vectors,
        };
        let got = scan_chunks(&[0.0, 2.0], Metric::Cosine, [chunk], 5).unwrap();
        let ranked: Vec<(i64, f64)> = got.iter().map(|(r, d, _)| (*r, *d)).collect();
        assert_eq!(ranked.len(), 2, "the invalid slot is skipped");
        assert_eq!(ranked[0].0, 12);
        assert!((ranked[0].1 - 0.2).abs() < 1e-6, "{ranked:?}");
        assert_eq!(ranked[1].0, 10);
        assert!((ranked[1].1 - 1.0).abs() < 1e-6);
        assert_eq!(got[0].2, crate::vector::to_le_bytes(&[0.6, 0.8]));
        let l2 = scan_chunks(&[0.0, 2.0], Metric::L2, [chunk], 1).unwrap();
        assert_eq!(l2.len(), 1);
        assert!((l2[0].1 - (0.36f64 + 1.44).sqrt()).abs() < 1e-6);
        let bad = Chunk {
            vectors: &vectors[..20],
            ..chunk
        };
        assert!(scan_chunks(&[0.0, 2.0], Metric::L2, [bad], 1).is_err());
    }

    #[test]
    fn sizes_follow_the_rules() {
        assert_eq!(cells_for_rows(0), 1);
        assert_eq!(cells_for_rows(7_833), 89);
        assert_eq!(cells_for_rows(1_000_000), 1_000);
        assert_eq!(chunk_size_for(7_833, 89), 24);
        assert_eq!(chunk_size_for(10, 10), 8);
        assert_eq!(chunk_size_for(10_000_000, 1), 1024);
        assert_eq!(default_nprobes(89), 18);
        assert_eq!(default_nprobes(1), 1);
    }

    #[test]
    fn cells_group_near_vectors_and_probe_nearest_first() {
        let vectors = grid();
        let refs: Vec<&[f32]> = vectors.iter().map(Vec::as_slice).collect();
        let cells = Cells::train(&refs, Metric::L2, 7).unwrap();
        assert_eq!(cells.len(), 10); // sqrt(100)
                                     // Every vector's cell is its nearest centroid, and vectors far apart never share one.
        let of = |v: &[f32]| cells.assign(v);
        assert_ne!(of(&[0.0, 0.0]), of(&[10.0, 10.0]));
        assert_ne!(of(&[10.0, 0.0]), of(&[0.0, 10.0]));
        let probes = cells.probe(&[0.02, 0.02], 3);
        assert_eq!(probes.len(), 3);
        assert_eq!(probes[0], of(&[0.02, 0.02]));
        assert_eq!(cells.probe(&[1.0, 1.0], 1_000).len(), 10);
    }

    #[test]
    fn stored_centroids_round_trip_and_bad_ones_are_refused() {
        let vectors = grid();
        let refs: Vec<&[f32]> = vectors.iter().map(Vec::as_slice).collect();
        let cells = Cells::train(&refs, Metric::L2, 7).unwrap();
        let rows = |c: &Cells| -> Vec<(i64, Vec<u8>)> {
            (0..c.len())
                .map(|i| (i as i64, c.centroid_bytes(i)))
                .collect()
        };
        assert_eq!(
            Cells::from_rows(rows(&cells), 2, Metric::L2).unwrap(),
            cells
        );
        // dot_product probes by L2 over the reduction.
        assert_eq!(
            Cells::from_rows(rows(&cells), 2, Metric::DotProduct).unwrap(),
            cells
        );
        let mut gap = rows(&cells);
        gap.remove(3);
        assert!(Cells::from_rows(gap, 2, Metric::L2).is_err());
        assert!(Cells::from_rows(rows(&cells), 3, Metric::L2).is_err());
        let mut nan = rows(&cells);
        nan[2].1 = crate::vector::to_le_bytes(&[f32::NAN, 0.0]);
        let err = Cells::from_rows(nan, 2, Metric::L2).unwrap_err();
        assert!(err.to_string().contains("cell 2"), "{err}");
        assert!(Cells::from_rows(Vec::new(), 2, Metric::L2).is_err());
    }
}
