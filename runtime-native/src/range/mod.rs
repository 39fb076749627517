//! Range mode: SQLite shards read page by page from wherever they live, instead of whole.
//!
//! A [`RangeFile`] serves SQLite's page reads from, in order: the sidecar's pinned pages (interior
//! B-tree pages and the schema, loaded at open), a bounded LRU page cache, and finally ranged
//! reads of the object through a [`RangeSource`]. When a page belongs to an overflow chain the
//! sidecar lists, the whole chain is fetched in one parallel round, so a large value or a
//! sqlite-vec vector chunk costs one round trip instead of one per page. Chains hanging off
//! pinned interior pages (large divider keys of WITHOUT ROWID tables) are fetched once, at open.
//!
//! [`vfs`] registers a read-only SQLite VFS over `RangeFile`s.

pub mod vfs;

use crate::error::{Error, Result};
use edgeshard_shared::integrity::PageVerifier;
use edgeshard_shared::sidecar::{index_overflow_heads, interior_chain_heads, SidecarContent};
use hashlink::LruCache;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

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

/// What range reads cost. Counters only grow; take two snapshots and subtract for one call.
#[derive(Debug, Default)]
pub struct RangeStats {
    /// Ranged reads issued (one per range).
    pub requests: AtomicU64,
    /// Rounds: calls to the source, each possibly several ranges in parallel.
    pub rounds: AtomicU64,
    pub bytes: AtomicU64,
    /// Pages served from the LRU cache.
    pub cache_hits: AtomicU64,
    /// Pages served from the sidecar's pinned pages.
    pub pinned_hits: AtomicU64,
}

/// A point-in-time copy of [`RangeStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StatsSnapshot {
    pub requests: u64,
    pub rounds: u64,
    pub bytes: u64,
    pub cache_hits: u64,
    pub pinned_hits: u64,
}

impl std::ops::Sub for StatsSnapshot {
    type Output = StatsSnapshot;
    fn sub(self, before: StatsSnapshot) -> StatsSnapshot {
        StatsSnapshot {
            requests: self.requests - before.requests,
            rounds: self.rounds - before.rounds,
            bytes: self.bytes - before.bytes,
            cache_hits: self.cache_hits - before.cache_hits,
            pinned_hits: self.pinned_hits - before.pinned_hits,
        }
    }
}

impl RangeStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            requests: self.requests.load(Ordering::Relaxed),
            rounds: self.rounds.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            cache_hits: self.cache_hits.load(Ordering::Relaxed),
            pinned_hits: self.pinned_hits.load(Ordering::Relaxed),
        }
    }
}

/// Size of the first read when there is no sidecar: enough for page 1 at any page size, so the
/// header (and the page size in it) comes with the first request.
const HEADER_BLOCK: u64 = 65536;

/// One shard database read by ranges.
pub struct RangeFile {
    source: Box<dyn RangeSource>,
    len: u64,
    page_size: u64,
    /// Page size less the bytes each page reserves: what cell-size arithmetic needs.
    usable_size: u32,
    /// Checks every page before it is pinned or cached, when the shard's pages carry checksums.
    verifier: Option<PageVerifier>,
    pinned: HashMap<u32, Arc<[u8]>>,
    /// Page -> the whole overflow chain it belongs to.
    chain_of: HashMap<u32, Arc<[u32]>>,
    cache: Mutex<LruCache<u32, Arc<[u8]>>>,
    /// Sequential-miss detection: (last page fetched, pages to fetch next time).
    read_ahead: Mutex<(u32, u32)>,
    pub stats: Arc<RangeStats>,
}

/// Read-ahead doubles on each sequential miss up to this many pages (256 KiB at 4 KiB pages):
/// a scan (a vector chunk without a sidecar, a table walk) then costs few round trips.
const MAX_READ_AHEAD_PAGES: u32 = 64;

impl RangeFile {
    /// Opens `source`, pinning the sidecar's pages when one is given (the caller has checked that
    /// its tag matches the object's live ETag). Without a sidecar, the first block is fetched to
    /// learn the page size. `cache_pages` bounds the LRU page cache.
    /// With a `verifier`, every page (the sidecar's included) is checked before it is used.
    pub fn open(
        source: Box<dyn RangeSource>,
        sidecar: Option<SidecarContent>,
        cache_pages: usize,
        verifier: Option<PageVerifier>,
    ) -> Result<Self> {
        Self::open_with_stats(
            source,
            sidecar,
            cache_pages,
            Arc::new(RangeStats::default()),
            verifier,
        )
    }

    /// As [`RangeFile::open`], counting into shared `stats` (one set per snapshot).
    pub fn open_with_stats(
        source: Box<dyn RangeSource>,
        sidecar: Option<SidecarContent>,
        cache_pages: usize,
        stats: Arc<RangeStats>,
        verifier: Option<PageVerifier>,
    ) -> Result<Self> {
        let len = source.size();
        let cache = Mutex::new(LruCache::new(cache_pages.max(16)));
        let Some(sidecar) = sidecar else {
            let first = HEADER_BLOCK.min(len);
            let fetch_header = || {
                Self::fetch(&*source, &stats, &[(0, first)])
                    .map(|mut blocks| blocks.pop().unwrap_or_default())
            };
            let mut block = fetch_header()?;
            // Page 1 must pass its checksum; damaged in transit, it is read once more.
            let page_one_fails = |block: &[u8]| {
                verifier.is_some_and(|v| match header_page_size(block) {
                    Some(size) => v
                        .check_page(1, &block[..(size as usize).min(block.len())])
                        .is_err(),
                    None => false,
                })
            };
            if page_one_fails(&block) {
                block = fetch_header()?;
            }
            // Without a verifier the shard's id is unknown here: the reader, which opened this
            // file for a shard, names it (`Snapshot::shard_error`).
            let page_size = header_page_size(&block).ok_or_else(|| Error::CorruptShard {
                db_id: verifier.map_or(0, |v| v.db_id()),
                location: source.location(),
                detail: "not a SQLite database (bad header)".into(),
            })?;
            if let Some(verifier) = &verifier {
                verifier
                    .check_header(&block)
                    .map_err(|e| page_error(&*source, verifier, e))?;
            }
            let file = Self {
                source,
                len,
                page_size,
                usable_size: page_size as u32 - block[20] as u32,
                verifier,
                pinned: HashMap::new(),
                chain_of: HashMap::new(),
                cache,
                read_ahead: Mutex::new((0, 1)),
                stats,
            };
            // Keep the pages of the header block: they were paid for. Page 1 is checked now
            // (it must hold), the others only kept when they pass.
            if let Ok(mut cache) = file.cache.lock() {
                for (i, page) in block.chunks(page_size as usize).enumerate() {
                    let number = i as u32 + 1;
                    if page.len() != page_size as usize {
                        continue;
                    }
                    if let Some(verifier) = &file.verifier {
                        match verifier.check_page(number, page) {
                            Ok(()) => {}
                            Err(e) if number == 1 => {
                                return Err(page_error(&*file.source, verifier, e));
                            }
                            Err(_) => continue,
                        }
                    }
                    cache.insert(number, Arc::from(page));
                }
            }
            return Ok(file);
        };
        if let Some(verifier) = &verifier {
            // The sidecar's pages stand for the file's: each must pass as the file's would.
            for (number, page) in &sidecar.pages {
                verifier
                    .check_page(*number, page)
                    .map_err(|e| page_error(&*source, verifier, e))?;
            }
        }
        let interior_heads = interior_chain_heads(&sidecar);
        let usable_size = sidecar.usable_size();
        let mut chain_of = HashMap::new();
        for chain in sidecar.chains {
            let chain: Arc<[u32]> = Arc::from(chain);
            for page in chain.iter() {
                chain_of.insert(*page, chain.clone());
            }
        }
        let mut file = Self {
            source,
            len,
            page_size: sidecar.page_size as u64,
            usable_size,
            verifier,
            pinned: sidecar
                .pages
                .into_iter()
                .map(|(n, p)| (n, Arc::from(p)))
                .collect(),
            chain_of,
            cache,
            read_ahead: Mutex::new((0, 1)),
            stats,
        };
        file.pin_chains(&interior_heads)?;
        Ok(file)
    }

    /// Fetches the given overflow chains in one round and pins them (see
    /// [`interior_chain_heads`]: large divider keys read on every descent).
    fn pin_chains(&mut self, heads: &[u32]) -> Result<()> {
        let mut pages: Vec<u32> = heads
            .iter()
            .filter_map(|h| self.chain_of.get(h))
            .flat_map(|chain| chain.iter().copied())
            .collect();
        if pages.is_empty() {
            return Ok(());
        }
        pages.sort_unstable();
        pages.dedup();
        let ranges = coalesce(&pages, self.page_size, self.len);
        let blocks = self.fetch_pages(&ranges)?;
        for ((offset, _), block) in ranges.iter().zip(blocks) {
            let first = (offset / self.page_size) as u32 + 1;
            for (i, chunk) in block.chunks(self.page_size as usize).enumerate() {
                let mut page = chunk.to_vec();
                page.resize(self.page_size as usize, 0);
                self.pinned.insert(first + i as u32, Arc::from(page));
            }
        }
        Ok(())
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn page_size(&self) -> u64 {
        self.page_size
    }

    /// Fills `buf` from `offset`. Returns the number of bytes available (short at end of file).
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let end = (offset + buf.len() as u64).min(self.len);
        if offset >= end {
            return Ok(0);
        }
        let first_page = (offset / self.page_size) as u32 + 1;
        let last_page = ((end - 1) / self.page_size) as u32 + 1;
        let pages = self.pages(first_page..=last_page)?;
        let mut written = 0usize;
        for (i, page) in pages.iter().enumerate() {
            let page_start = (first_page as u64 + i as u64 - 1) * self.page_size;
            let from = offset.max(page_start) - page_start;
            let to = end.min(page_start + self.page_size) - page_start;
            let n = (to - from) as usize;
            buf[written..written + n].copy_from_slice(&page[from as usize..to as usize]);
            written += n;
        }
        Ok(written)
    }

    /// The given pages, fetching every missing one (and the rest of its overflow chain) in one
    /// round.
    fn pages(&self, wanted: std::ops::RangeInclusive<u32>) -> Result<Vec<Arc<[u8]>>> {
        let mut found: Vec<Option<Arc<[u8]>>> = Vec::new();
        let mut missing: Vec<u32> = Vec::new();
        {
            let mut cache = self.cache.lock().map_err(|_| self.poisoned())?;
            for page in wanted.clone() {
                if let Some(p) = self.pinned.get(&page) {
                    self.stats.pinned_hits.fetch_add(1, Ordering::Relaxed);
                    found.push(Some(p.clone()));
                } else if let Some(p) = cache.get(&page) {
                    self.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
                    found.push(Some(p.clone()));
                } else {
                    found.push(None);
                    missing.push(page);
                    if let Some(chain) = self.chain_of.get(&page) {
                        missing.extend(chain.iter().filter(|p| !cache.contains_key(p)));
                    }
                }
            }
        }
        if !missing.is_empty() {
            missing.sort_unstable();
            missing.dedup();
            self.extend_sequential(&mut missing);
            let ranges = coalesce(&missing, self.page_size, self.len);
            let blocks = self.fetch_pages(&ranges)?;
            let mut cache = self.cache.lock().map_err(|_| self.poisoned())?;
            Self::insert_blocks(&mut cache, &ranges, blocks, self.page_size);
            for (slot, page) in found.iter_mut().zip(wanted) {
                if slot.is_none() {
                    *slot = cache.get(&page).cloned();
                }
            }
            // Index pages just fetched may hold overflowing cells that SQLite will compare
            // against, reading each whole payload: fetch all those chains now, in one round.
            let mut chain_pages: Vec<u32> = Vec::new();
            for page_number in &missing {
                if let Some(page) = cache.peek(page_number) {
                    for head in index_overflow_heads(*page_number, page, self.usable_size) {
                        if let Some(chain) = self.chain_of.get(&head) {
                            chain_pages.extend(chain.iter().filter(|p| !cache.contains_key(p)));
                        }
                    }
                }
            }
            if !chain_pages.is_empty() {
                chain_pages.sort_unstable();
                chain_pages.dedup();
                let ranges = coalesce(&chain_pages, self.page_size, self.len);
                let blocks = self.fetch_pages(&ranges)?;
                Self::insert_blocks(&mut cache, &ranges, blocks, self.page_size);
            }
        }
        found
            .into_iter()
            .map(|p| {
                p.ok_or_else(|| {
                    Error::Internal(format!(
                        "{}: page cache too small for one read",
                        self.source.location()
                    ))
                })
            })
            .collect()
    }

    /// When this miss continues the previous one (a scan), also fetch the pages after it,
    /// doubling the window each time; any other miss resets the window.
    fn extend_sequential(&self, missing: &mut Vec<u32>) {
        let Ok(mut state) = self.read_ahead.lock() else {
            return;
        };
        let (last, window) = *state;
        let first = missing[0];
        let next_window = if first == last + 1 {
            (window * 2).min(MAX_READ_AHEAD_PAGES)
        } else {
            1
        };
        let last_page = self.len.div_ceil(self.page_size) as u32;
        let end = missing
            .last()
            .copied()
            .unwrap_or(first)
            .max(first + next_window - 1)
            .min(last_page);
        let cache = self.cache.lock().ok();
        for page in first..=end {
            let cached = cache.as_ref().is_some_and(|c| c.contains_key(&page));
            if !cached && !self.pinned.contains_key(&page) && !missing.contains(&page) {
                missing.push(page);
            }
        }
        missing.sort_unstable();
        *state = (end, next_window);
    }

    /// Splits fetched blocks into pages and caches them.
    fn insert_blocks(
        cache: &mut LruCache<u32, Arc<[u8]>>,
        ranges: &[(u64, u64)],
        blocks: Vec<Vec<u8>>,
        page_size: u64,
    ) {
        for ((offset, _), block) in ranges.iter().zip(blocks) {
            let first = (offset / page_size) as u32 + 1;
            for (i, chunk) in block.chunks(page_size as usize).enumerate() {
                let mut page = chunk.to_vec();
                page.resize(page_size as usize, 0);
                cache.insert(first + i as u32, Arc::from(page));
            }
        }
    }

    /// Fetches page-aligned ranges in one round and checks their pages. A block that fails its
    /// checksums is fetched once more (a network that flipped a bit usually does not do so
    /// twice); failing again, it is an error naming the shard and the page.
    fn fetch_pages(&self, ranges: &[(u64, u64)]) -> Result<Vec<Vec<u8>>> {
        let mut blocks = Self::fetch(&*self.source, &self.stats, ranges)?;
        let Some(verifier) = &self.verifier else {
            return Ok(blocks);
        };
        let page_size = self.page_size as usize;
        for (&(offset, length), block) in ranges.iter().zip(blocks.iter_mut()) {
            let first = (offset / self.page_size) as u32 + 1;
            if verifier.check_block(first, block, page_size).is_ok() {
                continue;
            }
            let again = Self::fetch(&*self.source, &self.stats, &[(offset, length)])?
                .pop()
                .unwrap_or_default();
            verifier
                .check_block(first, &again, page_size)
                .map_err(|e| page_error(&*self.source, verifier, e))?;
            *block = again;
        }
        Ok(blocks)
    }

    fn fetch(
        source: &dyn RangeSource,
        stats: &RangeStats,
        ranges: &[(u64, u64)],
    ) -> Result<Vec<Vec<u8>>> {
        stats.rounds.fetch_add(1, Ordering::Relaxed);
        stats
            .requests
            .fetch_add(ranges.len() as u64, Ordering::Relaxed);
        let blocks = source.read_ranges(ranges)?;
        let bytes: u64 = blocks.iter().map(|b| b.len() as u64).sum();
        stats.bytes.fetch_add(bytes, Ordering::Relaxed);
        // A body shorter (or longer) than the range asked for would otherwise be padded into
        // pages of zeros and read as data: keys "not found", wrong values.
        if blocks.len() != ranges.len() {
            // A range source that breaks its contract: a bug.
            return Err(Error::Internal(format!(
                "{}: asked for {} ranges, got {} bodies",
                source.location(),
                ranges.len(),
                blocks.len()
            )));
        }
        for (&(offset, length), block) in ranges.iter().zip(&blocks) {
            if block.len() as u64 != length {
                return Err(Error::Remote {
                    location: source.location(),
                    // A cut stream passes: the same read again usually succeeds.
                    kind: edgeshard_shared::ErrorKind::Unavailable,
                    detail: format!(
                        "asked for {length} bytes at offset {offset}, the body has {} \
                         (a truncated response; retrying may help)",
                        block.len()
                    ),
                });
            }
        }
        Ok(blocks)
    }

    fn poisoned(&self) -> Error {
        Error::poisoned(&format!("{} page cache", self.source.location()))
    }
}

/// Contiguous runs of pages as `(offset, length)` byte ranges, clipped to the object size.
fn coalesce(pages: &[u32], page_size: u64, len: u64) -> Vec<(u64, u64)> {
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for page in pages {
        let start = (*page as u64 - 1) * page_size;
        match ranges.last_mut() {
            Some((s, l)) if *s + *l == start => *l += page_size,
            _ => ranges.push((start, page_size)),
        }
    }
    ranges
        .into_iter()
        .filter(|(s, _)| *s < len)
        .map(|(s, l)| (s, l.min(len - s)))
        .collect()
}

/// A page that failed its checksum, as an error naming the shard and where it lives.
fn page_error(
    source: &dyn RangeSource,
    verifier: &PageVerifier,
    error: edgeshard_shared::Error,
) -> Error {
    Error::CorruptShard {
        db_id: verifier.db_id(),
        location: source.location(),
        detail: error.to_string(),
    }
}

fn header_page_size(block: &[u8]) -> Option<u64> {
    if block.len() < 100 || &block[..16] != b"SQLite format 3\0" {
        return None;
    }
    match u16::from_be_bytes([block[16], block[17]]) {
        1 => Some(65536),
        v if v >= 512 && v.is_power_of_two() => Some(v as u64),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalesces_runs() {
        assert_eq!(
            coalesce(&[1, 2, 3, 7, 9, 10], 4096, 1 << 20),
            vec![(0, 12288), (24576, 4096), (32768, 8192)]
        );
        assert_eq!(coalesce(&[3], 4096, 10_000), vec![(8192, 1808)]);
    }
}
