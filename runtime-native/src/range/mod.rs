//! Range mode: SQLite shards read page by page from wherever they live, instead of whole.
//!
//! A [`RangeShard`] is a shard's pages (`edgeshard_shared::pages`: the sidecar's pinned pages, an
//! LRU page cache, miss recording) over a [`RangeSource`], with a SQLite connection through the
//! shared read-only VFS (`edgeshard_shared::sqlite_vfs`), the same page code the wasm reader
//! uses. A statement never waits on I/O inside SQLite: a read of a page that is not there fails
//! and is recorded, then [`RangeShard::run`] fetches every recorded page in one round (the rest
//! of an overflow chain and the read-ahead included) and runs the statement again. So a lookup
//! costs one round per level it misses, and a cold search three: the shard's open, the leaves
//! of its vector tables (known from the sidecar's pinned interior pages), their overflow chains
//! ([`RangeShard::plan_vector_reads`]).

use crate::error::{Error, Result};
use edgeshard_shared::codes::Codes;
use edgeshard_shared::integrity::PageVerifier;
use edgeshard_shared::key_index::{KeyIndex, Lookup};
use edgeshard_shared::pages::{
    header_page_size, PageCache, PageStats, ShardOpening, ShardPages, HEADER_BLOCK, MAX_ROUNDS,
};
use edgeshard_shared::search_plan::sql::{
    CELL_CHUNKS, IVF_TABLE_ROOTS, VECTOR_CHUNKS_ROOT, VECTOR_TABLE_ROOTS,
};
use edgeshard_shared::sidecar::SidecarContent;
use edgeshard_shared::sqlite_vfs;
use edgeshard_shared::ErrorKind;
use rusqlite::Connection;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// What range reads cost, for one snapshot (shared with the wasm reader).
pub type RangeStats = PageStats;
/// A point-in-time copy of [`RangeStats`]; subtract two for one call.
pub use edgeshard_shared::pages::StatsSnapshot;

/// Ranged reads of one immutable object (a shard.db).
pub trait RangeSource: Send + Sync {
    /// Size of the object in bytes.
    fn size(&self) -> u64;
    /// Reads several `(offset, length)` ranges; implementations may issue them concurrently.
    /// One call is one *round*: callers batch what they need together.
    fn read_ranges(&self, ranges: &[(u64, u64)]) -> Result<Vec<Vec<u8>>>;
    /// Where the object lives, for error messages.
    fn location(&self) -> String;
}

/// A local file read with positioned reads; the range reader's baseline and test double for
/// remote stores (it counts exactly like them).
pub struct FileSource {
    path: PathBuf,
    file: std::fs::File,
    len: u64,
}

impl FileSource {
    pub fn open(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let file = std::fs::File::open(&path).map_err(|source| Error::Io {
            location: path.display().to_string(),
            source,
        })?;
        let len = file
            .metadata()
            .map_err(|source| Error::Io {
                location: path.display().to_string(),
                source,
            })?
            .len();
        Ok(Self { path, file, len })
    }
}

impl RangeSource for FileSource {
    fn size(&self) -> u64 {
        self.len
    }

    fn read_ranges(&self, ranges: &[(u64, u64)]) -> Result<Vec<Vec<u8>>> {
        use std::os::unix::fs::FileExt;
        ranges
            .iter()
            .map(|(offset, length)| {
                let mut buf = vec![0u8; *length as usize];
                self.file
                    .read_exact_at(&mut buf, *offset)
                    .map_err(|source| Error::Io {
                        location: self.location(),
                        source,
                    })?;
                Ok(buf)
            })
            .collect()
    }

    fn location(&self) -> String {
        self.path.display().to_string()
    }
}

/// One shard database read by ranges: its pages, where they come from, and a connection over
/// them.
pub struct RangeShard {
    db_id: u32,
    /// Whether a sidecar's interior pages are pinned (then a search's reads can be planned).
    has_sidecar: bool,
    source: Box<dyn RangeSource>,
    pages: Arc<ShardPages>,
    cache: Arc<Mutex<PageCache>>,
    stats: Arc<RangeStats>,
    conn: Connection,
    /// Whether a search already fetched this shard's vector tables.
    vectors_planned: bool,
    /// The shard's key index when it was opened through one (then without its sidecar): a
    /// lookup reads the one page the index names ([`RangeShard::lookup`]).
    key_index: Option<Arc<KeyIndex>>,
}

impl RangeShard {
    /// Opens shard `db_id` from `source`, pinning the sidecar's pages when one is given (the
    /// caller has checked that its tag matches the object's live ETag). Without a sidecar, the
    /// first block is fetched for the header (page 1 and the page size). `cache_pages` bounds
    /// the shard's LRU page cache. With a `verifier`, every page (the sidecar's included) is
    /// checked before it is used.
    pub fn open(
        db_id: u32,
        source: Box<dyn RangeSource>,
        sidecar: Option<SidecarContent>,
        cache_pages: usize,
        stats: Arc<RangeStats>,
        verifier: Option<PageVerifier>,
    ) -> Result<Self> {
        Self::open_with(db_id, source, sidecar, None, cache_pages, stats, verifier)
    }

    /// Opens shard `db_id` for key lookups through its key index (already checked to be bound
    /// to this object): no read at all, page 1 comes from the index. Lookups then read one page
    /// each ([`RangeShard::lookup`]); other statements run without pinned interior pages.
    pub fn open_with_key_index(
        db_id: u32,
        source: Box<dyn RangeSource>,
        key_index: Arc<KeyIndex>,
        cache_pages: usize,
        stats: Arc<RangeStats>,
        verifier: Option<PageVerifier>,
    ) -> Result<Self> {
        let index = Some(key_index);
        Self::open_with(db_id, source, None, index, cache_pages, stats, verifier)
    }

    fn open_with(
        db_id: u32,
        source: Box<dyn RangeSource>,
        sidecar: Option<SidecarContent>,
        key_index: Option<Arc<KeyIndex>>,
        cache_pages: usize,
        stats: Arc<RangeStats>,
        verifier: Option<PageVerifier>,
    ) -> Result<Self> {
        let len = source.size();
        let corrupt = |detail: String| Error::CorruptShard {
            db_id,
            location: source.location(),
            detail,
        };
        let first_block = match (&sidecar, &key_index) {
            (Some(_), _) => Vec::new(),
            (None, Some(index)) => index.page1.clone(),
            (None, None) => fetch_checked(&*source, &stats, &[(0, HEADER_BLOCK.min(len))])?
                .pop()
                .unwrap_or_default(),
        };
        let page_size = match &sidecar {
            Some(sidecar) => sidecar.page_size,
            None => header_page_size(&first_block)
                .ok_or_else(|| corrupt("not a SQLite database (bad header)".into()))?,
        };
        let cache = Arc::new(Mutex::new(PageCache::new(
            cache_pages.max(16).saturating_mul(page_size as usize),
        )));
        let open = |first_block: &[u8], sidecar: Option<SidecarContent>| {
            ShardPages::open(
                ShardOpening {
                    slot: db_id,
                    len,
                    verifier,
                    sidecar,
                    first_block,
                },
                cache.clone(),
                stats.clone(),
            )
        };
        let pages = match open(&first_block, sidecar.clone()) {
            Ok(pages) => pages,
            // Page 1 damaged in transit: read once more.
            Err(_) if sidecar.is_none() => {
                PageStats::bump(&stats.retries);
                let again = fetch_checked(&*source, &stats, &[(0, HEADER_BLOCK.min(len))])?
                    .pop()
                    .unwrap_or_default();
                open(&again, None).map_err(|e| corrupt(e.to_string()))?
            }
            Err(e) => return Err(corrupt(e.to_string())),
        };
        let pages = Arc::new(pages);
        if !pages.has_page(1) {
            pages.want([1]);
        }
        // Chains hanging off pinned interior pages are read on every descent, and SQLite reads
        // page 1 while opening: pin them now.
        if pages.has_missing() {
            fetch_round(db_id, &pages, &*source, &stats, true)?;
        }
        let conn =
            sqlite_vfs::open_connection(pages.clone()).map_err(|e| corrupt(e.to_string()))?;
        Ok(Self {
            db_id,
            has_sidecar: sidecar.is_some(),
            source,
            pages,
            cache,
            stats,
            conn,
            vectors_planned: false,
            key_index,
        })
    }

    /// The shard's smallest key, when its key index gives it (no read needed).
    pub fn first_key_from_index(&self) -> Option<&[u8]> {
        self.key_index
            .as_deref()
            .map(|index| index.first_key.as_slice())
    }

    /// Whether the shard was opened through its key index, without its sidecar.
    pub fn opened_by_key_index(&self) -> bool {
        self.key_index.is_some()
    }

    /// Looks `keys` up through the shard's key index: each key's page (all keys' pages in one
    /// round), then the rest of any overflowing value (usually one more round). `None` when the
    /// shard has no key index; per key, `None` when the index cannot answer for it (the caller
    /// asks SQLite), else the answer. A page that does not hold what the index says is an error
    /// naming the shard.
    pub fn lookup(&self, keys: &[&[u8]]) -> Result<Option<Vec<Option<Lookup>>>> {
        let Some(index) = &self.key_index else {
            return Ok(None);
        };
        if let Ok(mut cache) = self.cache.lock() {
            cache.begin_call();
        }
        let corrupt = |e: edgeshard_shared::Error| self.corrupt(e.detail().to_string());
        let mut answers: Vec<Option<Lookup>> = vec![None; keys.len()];
        for _ in 0..MAX_ROUNDS {
            let mut wanted = Vec::new();
            for (key, answer) in keys.iter().zip(answers.iter_mut()) {
                if answer.is_some() {
                    continue;
                }
                let step = index
                    .lookup(key, self.pages.usable_size, |p| self.pages.peek_page(p))
                    .map_err(corrupt)?;
                match step {
                    Lookup::Need(pages) => wanted.extend(pages),
                    done => {
                        PageStats::bump(&self.stats.key_index_lookups);
                        *answer = Some(done);
                    }
                }
            }
            if wanted.is_empty() {
                let answers = answers
                    .into_iter()
                    .map(|a| a.filter(|a| *a != Lookup::Unsupported))
                    .collect();
                return Ok(Some(answers));
            }
            self.pages.want(wanted);
            self.fetch_round(false)?;
        }
        Err(self.corrupt(format!(
            "a lookup through the key index still missed pages after {MAX_ROUNDS} rounds"
        )))
    }

    /// Size of the object in bytes.
    pub fn len(&self) -> u64 {
        self.pages.len
    }

    pub fn is_empty(&self) -> bool {
        self.pages.len == 0
    }

    pub fn page_size(&self) -> u32 {
        self.pages.page_size
    }

    /// Runs `statement` on the shard's connection until it no longer misses pages: after each
    /// miss, one round fetches everything it recorded (and the overflow chains of index pages
    /// just fetched), and the statement runs again from the start, so it must have no effect
    /// outside what it returns. Its errors are answered only from a run that missed nothing.
    pub fn run<T>(&self, mut statement: impl FnMut(&Connection) -> Result<T>) -> Result<T> {
        if let Ok(mut cache) = self.cache.lock() {
            cache.begin_call();
        }
        self.pages.reset_read_ahead();
        let mut rounds = 0u32;
        loop {
            let before = self.pages.miss_count();
            let outcome = statement(&self.conn);
            if self.pages.miss_count() == before {
                return outcome;
            }
            rounds += 1;
            if rounds > MAX_ROUNDS {
                return Err(self.corrupt(format!(
                    "a statement still missed pages after {MAX_ROUNDS} rounds of reads"
                )));
            }
            let fetched = self.fetch_round(false)?;
            if self.pages.want_index_overflow_chains(&fetched) {
                self.fetch_round(false)?;
            }
        }
    }

    /// Before a cold search: with the sidecar's interior pages pinned, the leaves of the vector
    /// tables are known without I/O, so they are fetched in one round, their overflow chains
    /// (the vector chunks) in the next; the search then runs on cached pages. Without a
    /// sidecar the leaves are not known: [`RangeShard::run`] reads ahead instead. On an IVF
    /// shard (`ivf`) only the tables that lead to the cells are fetched this way; the probed
    /// cells' vectors are read by the search itself.
    pub fn plan_vector_reads(&mut self, ivf: bool) -> Result<()> {
        if self.vectors_planned || !self.has_sidecar {
            return Ok(());
        }
        // A flat shard's search reads every vector: all leaves of its vector tables. An IVF
        // shard's reads the small tables that lead to the probed cells, and then those cells.
        let roots = match ivf {
            true => IVF_TABLE_ROOTS,
            false => VECTOR_TABLE_ROOTS,
        };
        let tables: Vec<(String, u32)> = self.run(|conn| {
            let mut stmt = conn
                .prepare(roots)
                .map_err(|e| self.corrupt(e.to_string()))?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(|e| self.corrupt(e.to_string()))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .map_err(|e| self.corrupt(e.to_string()))
        })?;
        self.pages.want_vector_table_leaves(&tables);
        let leaves = self.fetch_round(false)?;
        if self.pages.want_overflow_chains(&leaves) {
            self.fetch_round(false)?;
        }
        self.vectors_planned = true;
        Ok(())
    }

    /// Before an IVF search reads `cells`: their chunk ids (from the chunk list fetched by
    /// [`Self::plan_vector_reads`]), the leaves of the vector-chunk table holding them (found
    /// through the pinned interior pages) in one round, those chunks' overflow chains in the
    /// next; the search then runs on cached pages. Without a sidecar nothing is planned.
    pub fn plan_cell_reads(&mut self, cells: &[usize]) -> Result<()> {
        if !self.has_sidecar || cells.is_empty() {
            return Ok(());
        }
        let (root, chunks): (u32, Vec<i64>) = self.run(|conn| {
            let corrupt = |e: rusqlite::Error| self.corrupt(e.to_string());
            let root: u32 = conn
                .query_row(VECTOR_CHUNKS_ROOT, [], |r| r.get(0))
                .map_err(corrupt)?;
            let mut stmt = conn.prepare_cached(CELL_CHUNKS).map_err(corrupt)?;
            let mut chunks = Vec::new();
            for cell in cells {
                let ids = stmt
                    .query_map([*cell as i64], |r| r.get::<_, i64>(0))
                    .map_err(corrupt)?;
                for id in ids {
                    chunks.push(id.map_err(corrupt)?);
                }
            }
            Ok((root, chunks))
        })?;
        let leaves = self.pages.want_table_rows(root, &chunks);
        self.fetch_round(false)?;
        let wanted: std::collections::BTreeSet<i64> = chunks.into_iter().collect();
        if self.pages.want_row_overflow_chains(&leaves, &wanted) {
            self.fetch_round(false)?;
        }
        Ok(())
    }

    /// The stored vectors at `ordinals` of the shard's binary codes: the pages the codes' map
    /// names, all in one round (each checked like any other page), then cut out of them.
    pub fn read_vectors(&self, codes: &Codes, ordinals: &[u32]) -> Result<Vec<Vec<u8>>> {
        let corrupt = |e: edgeshard_shared::Error| self.corrupt(e.detail().to_string());
        for ordinal in ordinals {
            let wanted: Vec<u32> = codes
                .pages_of(*ordinal as usize)
                .map_err(corrupt)?
                .into_iter()
                .filter(|p| !self.pages.has_page(*p))
                .collect();
            self.pages.want(wanted);
        }
        if self.pages.has_missing() {
            self.fetch_round(false)?;
        }
        ordinals
            .iter()
            .map(|o| {
                codes
                    .read_vector(*o as usize, |p| self.pages.peek_page(p))
                    .map_err(corrupt)
            })
            .collect()
    }

    /// Before looking up a search's hits (`vec_id_map` and `vec_payloads` by rowid): with the
    /// sidecar's interior pages pinned, the leaves holding `rowids` are known without I/O, so
    /// they are fetched in one round, not one round per statement that misses.
    pub fn plan_hit_lookups(&self, rowids: &[i64]) -> Result<()> {
        if !self.has_sidecar || rowids.is_empty() {
            return Ok(());
        }
        let roots: Vec<u32> = self.run(|conn| {
            let corrupt = |e: rusqlite::Error| self.corrupt(e.to_string());
            let mut stmt = conn
                .prepare(
                    "SELECT rootpage FROM sqlite_master \
                     WHERE name IN ('vec_id_map', 'vec_payloads')",
                )
                .map_err(corrupt)?;
            let rows = stmt.query_map([], |r| r.get(0)).map_err(corrupt)?;
            rows.collect::<rusqlite::Result<Vec<u32>>>()
                .map_err(corrupt)
        })?;
        for root in roots {
            self.pages.want_table_rows(root, rowids);
        }
        if self.pages.has_missing() {
            self.fetch_round(false)?;
        }
        Ok(())
    }

    fn fetch_round(&self, pin: bool) -> Result<Vec<u32>> {
        fetch_round(self.db_id, &self.pages, &*self.source, &self.stats, pin)
    }

    fn corrupt(&self, detail: String) -> Error {
        Error::CorruptShard {
            db_id: self.db_id,
            location: self.source.location(),
            detail,
        }
    }
}

/// One round: every page recorded missing on `pages`, as coalesced ranges read together, each
/// block checked before it is stored. A block that fails its checksums is read once more (a
/// network that flipped a bit rarely does it twice); failing again, it is an error naming the
/// shard and the page. Returns the pages fetched.
fn fetch_round(
    db_id: u32,
    pages: &ShardPages,
    source: &dyn RangeSource,
    stats: &RangeStats,
    pin: bool,
) -> Result<Vec<u32>> {
    let fetch = pages.take_fetch();
    if fetch.is_empty() {
        return Ok(fetch.pages);
    }
    let blocks = fetch_checked(source, stats, &fetch.ranges)?;
    for (&(offset, length), block) in fetch.ranges.iter().zip(blocks) {
        if pages.store(offset, &block, pin).is_ok() {
            continue;
        }
        PageStats::bump(&stats.retries);
        let again = fetch_checked(source, stats, &[(offset, length)])?
            .pop()
            .unwrap_or_default();
        pages
            .store(offset, &again, pin)
            .map_err(|e| Error::CorruptShard {
                db_id,
                location: source.location(),
                detail: e.to_string(),
            })?;
    }
    Ok(fetch.pages)
}

/// One round of reads: the ranges, read together, each body exactly as long as asked.
fn fetch_checked(
    source: &dyn RangeSource,
    stats: &RangeStats,
    ranges: &[(u64, u64)],
) -> Result<Vec<Vec<u8>>> {
    PageStats::bump(&stats.rounds);
    PageStats::add(&stats.requests, ranges.len() as u64);
    let blocks = source.read_ranges(ranges)?;
    let bytes: u64 = blocks.iter().map(|b| b.len() as u64).sum();
    PageStats::add(&stats.bytes, bytes);
    // A body shorter (or longer) than the range asked for would otherwise be padded into
    // pages of zeros and read as data: keys "not found", wrong values.
    if blocks.len() != ranges.len() {
        return Err(Error::Remote {
            location: source.location(),
            detail: format!(
                "asked for {} ranges, got {} bodies",
                ranges.len(),
                blocks.len()
            ),
            kind: ErrorKind::Unavailable,
        });
    }
    for (&(offset, length), block) in ranges.iter().zip(&blocks) {
        if block.len() as u64 != length {
            return Err(Error::Remote {
                location: source.location(),
                detail: format!(
                    "asked for {length} bytes at offset {offset}, the body has {} \
                     (a truncated response; retrying may help)",
                    block.len()
                ),
                // A cut stream: the next request usually comes whole.
                kind: ErrorKind::Unavailable,
            });
        }
    }
    Ok(blocks)
}
