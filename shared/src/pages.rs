//! The pages of SQLite shard files read piece by piece, for every range reader (native range
//! mode over a local file, HTTP or S3; the wasm reader over `fetch`): the sidecar's pinned pages,
//! an LRU page cache under a byte budget, and the *misses* that drive the reads.
//!
//! A read of a page that is not here does not wait for I/O: [`ShardPages::read_at`] records the
//! page (with the rest of its overflow chain and any read-ahead) and fails. The reader's driver
//! then fetches every recorded page (of every shard a call touches) in one parallel round and
//! runs the statement again ([`crate::sqlite_vfs`] turns the failure into SQLite's
//! `SQLITE_IOERR_READ`). So a cold search costs a few dependent rounds whatever the number of
//! pages, and the same code serves a synchronous native reader and an asynchronous wasm one.
//!
//! Nothing here performs I/O: callers fetch the ranges [`ShardPages::take_fetch`] plans and hand
//! the bytes to [`ShardPages::store`], which checks them against the shard's page checksums.

use crate::btree;
use crate::integrity::PageVerifier;
use crate::sidecar::{index_overflow_heads, interior_chain_heads, SidecarContent};
use crate::Error;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// A cached page: (shard slot, page number).
pub type PageKey = (u32, u32);

/// Hashes a [`PageKey`] by its bits: every page read of a scan looks the cache up, and the
/// default SipHash costs more than the rest of the lookup. Keys are not attacker-chosen.
#[derive(Default)]
pub struct PageKeyHasher(u64);

impl std::hash::Hasher for PageKeyHasher {
    fn finish(&self) -> u64 {
        // Fibonacci hashing spreads consecutive page numbers over the table.
        self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | *b as u64;
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0 << 32) | n as u64;
    }
}

type PageMap<V> = HashMap<PageKey, V, std::hash::BuildHasherDefault<PageKeyHasher>>;

/// Read-ahead doubles on each sequential miss up to this many pages (256 KiB at 4 KiB pages), so
/// a scan without a sidecar costs few rounds.
pub const MAX_READ_AHEAD_PAGES: u32 = 64;

/// LRU page cache under a byte budget, shared by the shards of one snapshot.
///
/// Pages used by the call in progress are never evicted: one statement may need more pages at
/// once than the budget holds (a vector scan), and evicting them would make it miss forever. The
/// cache then exceeds its budget until the call ends ([`PageCache::begin_call`] of the next one
/// lets them go).
#[derive(Debug)]
pub struct PageCache {
    pages: PageMap<(Arc<[u8]>, u64)>,
    /// Last-use stamp -> page, oldest first.
    order: BTreeMap<u64, PageKey>,
    next_stamp: u64,
    /// Stamps from here on belong to the current call.
    call_start: u64,
    bytes: usize,
    budget: usize,
    /// Pages served by [`PageCache::get`] since the cache was made.
    pub hits: u64,
}

impl PageCache {
    /// An empty cache that evicts down to `budget_bytes` of page bytes (pages of the call in
    /// progress excepted).
    pub fn new(budget_bytes: usize) -> Self {
        Self {
            pages: PageMap::default(),
            order: BTreeMap::new(),
            next_stamp: 0,
            call_start: 0,
            bytes: 0,
            budget: budget_bytes,
            hits: 0,
        }
    }

    /// Marks the start of a call: pages touched before it become evictable, then evicts down
    /// to the budget.
    pub fn begin_call(&mut self) {
        self.call_start = self.next_stamp;
        self.evict();
    }

    /// Bytes of the pages held now (may exceed the budget during a call).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Number of pages held.
    pub fn len(&self) -> usize {
        self.pages.len()
    }

    /// Whether no page is held.
    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }

    /// The byte budget given to [`PageCache::new`].
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Whether the page is held, without marking it used or counting a hit.
    pub fn contains(&self, key: PageKey) -> bool {
        self.pages.contains_key(&key)
    }

    /// The page, marked as just used.
    pub fn get(&mut self, key: PageKey) -> Option<Arc<[u8]>> {
        let stamp = self.next_stamp;
        let call_start = self.call_start;
        let (page, old) = self.pages.get_mut(&key)?;
        let page = page.clone();
        self.hits += 1;
        // Already used in this call: it is protected and ordered after every older page, so
        // reordering it again would change nothing that eviction looks at.
        if *old < call_start {
            self.order.remove(old);
            *old = stamp;
            self.order.insert(stamp, key);
            self.next_stamp += 1;
        }
        Some(page)
    }

    /// The page without marking it used.
    pub fn peek(&self, key: PageKey) -> Option<&Arc<[u8]>> {
        self.pages.get(&key).map(|(page, _)| page)
    }

    /// Stores a page (replacing any held under `key`), marks it used by the current call, then
    /// evicts older calls' pages down to the budget.
    pub fn insert(&mut self, key: PageKey, page: Arc<[u8]>) {
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        self.bytes += page.len();
        if let Some((old, old_stamp)) = self.pages.insert(key, (page, stamp)) {
            self.bytes -= old.len();
            self.order.remove(&old_stamp);
        }
        self.order.insert(stamp, key);
        self.evict();
    }

    /// Drops least recently used pages of earlier calls until the budget holds.
    fn evict(&mut self) {
        while self.bytes > self.budget {
            let Some((&stamp, &key)) = self.order.iter().next() else {
                break;
            };
            if stamp >= self.call_start {
                break;
            }
            self.order.remove(&stamp);
            if let Some((page, _)) = self.pages.remove(&key) {
                self.bytes -= page.len();
            }
        }
    }
}

/// What reading pages cost, for one snapshot. Counters only grow; take two snapshots and
/// subtract for one call. Shared by every shard of a snapshot (and by its HTTP client).
#[derive(Debug, Default)]
pub struct PageStats {
    /// Requests sent (whole objects and ranges, retries included).
    pub requests: AtomicU64,
    /// Dependent rounds: sets of requests sent together and waited for together.
    pub rounds: AtomicU64,
    /// Bytes of response bodies.
    pub bytes: AtomicU64,
    /// Page reads served by the LRU cache.
    pub cache_hits: AtomicU64,
    /// Page reads served by pinned pages (sidecar, page 1, interior chains).
    pub pinned_hits: AtomicU64,
    /// Retried requests (transient errors, pages that failed their checksums).
    pub retries: AtomicU64,
    /// Keys looked up through a shard's key index (one page each, no B-tree descent).
    pub key_index_lookups: AtomicU64,
    /// Key indexes passed over (missing, damaged, or bound to another file): those shards were
    /// read through their sidecar instead, with the same answers.
    pub key_index_fallbacks: AtomicU64,
}

impl PageStats {
    /// Adds one to a counter.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// A point-in-time copy.
    pub fn snapshot(&self) -> StatsSnapshot {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            requests: load(&self.requests),
            rounds: load(&self.rounds),
            bytes: load(&self.bytes),
            cache_hits: load(&self.cache_hits),
            pinned_hits: load(&self.pinned_hits),
            retries: load(&self.retries),
            key_index_lookups: load(&self.key_index_lookups),
            key_index_fallbacks: load(&self.key_index_fallbacks),
        }
    }
}

/// A point-in-time copy of [`PageStats`]; subtract two for one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StatsSnapshot {
    /// A point-in-time [`PageStats::requests`].
    pub requests: u64,
    /// A point-in-time [`PageStats::rounds`].
    pub rounds: u64,
    /// A point-in-time [`PageStats::bytes`].
    pub bytes: u64,
    /// A point-in-time [`PageStats::cache_hits`].
    pub cache_hits: u64,
    /// A point-in-time [`PageStats::pinned_hits`].
    pub pinned_hits: u64,
    /// A point-in-time [`PageStats::retries`].
    pub retries: u64,
    /// A point-in-time [`PageStats::key_index_lookups`].
    pub key_index_lookups: u64,
    /// A point-in-time [`PageStats::key_index_fallbacks`].
    pub key_index_fallbacks: u64,
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
            retries: self.retries - before.retries,
            key_index_lookups: self.key_index_lookups - before.key_index_lookups,
            key_index_fallbacks: self.key_index_fallbacks - before.key_index_fallbacks,
        }
    }
}

/// Leaves of `vec_id_map` / `vec_payloads` a cold search prefetches with the vectors.
pub const MAX_LOOKUP_TABLE_LEAVES: usize = 128;

/// A statement that still misses pages after this many rounds of reads is given up on: the cache
/// budget cannot hold what it needs, or the server keeps answering with something else.
pub const MAX_ROUNDS: u32 = 500;

/// The ranges of one round of reads for one shard: the pages recorded missing, coalesced.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PageFetch {
    /// The pages asked for (ascending).
    pub pages: Vec<u32>,
    /// `(offset, length)` byte ranges covering them, clipped to the file.
    pub ranges: Vec<(u64, u64)>,
}

impl PageFetch {
    /// Whether this round reads nothing.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

/// First read of a shard without a sidecar: enough for page 1 at any page size and, for small
/// shards, the schema, so the open costs one request.
pub const HEADER_BLOCK: u64 = 65536;

/// First read of a shard with a sidecar, by readers that need one anyway for the object's size
/// and ETag: the sidecar holds page 1 and the schema, so this is page 1 at the default size.
pub const PROBE_BLOCK: u64 = 4096;

/// The page size a SQLite header declares, when `block` starts with a valid one.
pub fn header_page_size(block: &[u8]) -> Option<u32> {
    if block.len() < 100 || &block[..16] != b"SQLite format 3\0" {
        return None;
    }
    match u16::from_be_bytes([block[16], block[17]]) {
        1 => Some(65536),
        v if v >= 512 && v.is_power_of_two() => Some(v as u32),
        _ => None,
    }
}

/// What a reader has in hand when it opens a shard for page reads.
#[derive(Debug)]
pub struct ShardOpening<'a> {
    /// The shard's `db_id`.
    pub slot: u32,
    /// Size of `shard.db` in bytes (checked against the manifest by the caller).
    pub len: u64,
    /// From the shard's manifest row: every page is checked when it carries checksums.
    pub verifier: Option<PageVerifier>,
    /// The shard's sidecar, when one is bound to the object being read.
    pub sidecar: Option<SidecarContent>,
    /// The first bytes of `shard.db` when they were read (always without a sidecar): page 1
    /// and, for a longer block, the pages after it.
    pub first_block: &'a [u8],
}

/// Locks a mutex, recovering the data when an earlier panic poisoned it: every structure behind
/// these locks (a cache, a set of page numbers) stays valid whatever a panic interrupted, at
/// worst missing an entry, which only costs a read.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The pages of one shard database: what is pinned, what is cached (in a cache that may be
/// shared by the shards of a snapshot), and what the statements running now found missing.
#[derive(Debug)]
pub struct ShardPages {
    /// Slot of the shard (its `db_id`), the cache key's first half.
    pub slot: u32,
    /// Size of `shard.db` in bytes.
    pub len: u64,
    /// Page size of the database (from its sidecar, else from its header).
    pub page_size: u32,
    /// Page size less the bytes each page reserves: what cell-size arithmetic needs.
    pub usable_size: u32,
    /// Checks fetched pages before they are stored, when the shard's pages carry checksums.
    verifier: Option<PageVerifier>,
    /// Never evicted: the sidecar's pages, page 1, chains hanging off interior pages.
    pinned: Mutex<HashMap<u32, Arc<[u8]>>>,
    /// Page -> the whole overflow chain it belongs to (from the sidecar).
    chain_of: HashMap<u32, Arc<[u32]>>,
    cache: Arc<Mutex<PageCache>>,
    stats: Arc<PageStats>,
    /// Pages reads asked for and did not find, since the driver last took them.
    missing: Mutex<BTreeSet<u32>>,
    /// Incremented on every failed read, so the driver can tell which statement missed.
    misses: AtomicU64,
    /// Sequential-miss detection: (last page recorded, read-ahead window in pages).
    read_ahead: Mutex<(u32, u32)>,
}

impl ShardPages {
    /// `pinned` must already have passed `verifier` (see [`ShardPages::check_block`]).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        slot: u32,
        len: u64,
        page_size: u32,
        usable_size: u32,
        verifier: Option<PageVerifier>,
        pinned: HashMap<u32, Arc<[u8]>>,
        chains: Vec<Vec<u32>>,
        cache: Arc<Mutex<PageCache>>,
        stats: Arc<PageStats>,
    ) -> Self {
        let mut chain_of = HashMap::new();
        for chain in chains {
            let chain: Arc<[u32]> = Arc::from(chain);
            for page in chain.iter() {
                chain_of.insert(*page, chain.clone());
            }
        }
        Self {
            slot,
            len,
            page_size,
            usable_size,
            verifier,
            pinned: Mutex::new(pinned),
            chain_of,
            cache,
            stats,
            missing: Mutex::new(BTreeSet::new()),
            misses: AtomicU64::new(0),
            read_ahead: Mutex::new((0, 1)),
        }
    }

    /// A shard ready for page reads: the sidecar's pages (each checked) pinned, page 1 pinned
    /// (from the sidecar or the first block, checked), the rest of the first block cached when
    /// it passes its checks (it was paid for), and the overflow chains hanging off pinned
    /// interior pages wanted (large divider keys, read on every descent: the caller fetches
    /// them with `pin`). An error means the shard cannot be read: not a database, or a page
    /// that fails its checksum (the caller may fetch the first block once more).
    pub fn open(
        opening: ShardOpening<'_>,
        cache: Arc<Mutex<PageCache>>,
        stats: Arc<PageStats>,
    ) -> crate::Result<Self> {
        let ShardOpening {
            slot,
            len,
            verifier,
            sidecar,
            first_block,
        } = opening;
        let (page_size, mut pinned, chains, interior_heads) = match sidecar {
            Some(sidecar) => {
                if let Some(verifier) = &verifier {
                    for (number, page) in &sidecar.pages {
                        verifier.check_page(*number, page)?;
                    }
                }
                let heads = interior_chain_heads(&sidecar);
                let pinned: HashMap<u32, Arc<[u8]>> = sidecar
                    .pages
                    .into_iter()
                    .map(|(n, p)| (n, Arc::from(p)))
                    .collect();
                (sidecar.page_size, pinned, sidecar.chains, heads)
            }
            None => {
                let page_size = header_page_size(first_block)
                    .ok_or_else(|| Error::Integrity("not a SQLite database (bad header)".into()))?;
                (page_size, HashMap::new(), Vec::new(), Vec::new())
            }
        };
        let page_bytes = page_size as usize;
        // Page 1 is read at the start of every statement: keep it for good.
        if !pinned.contains_key(&1) && first_block.len() >= page_bytes.min(len as usize) {
            let mut first = first_block[..page_bytes.min(first_block.len())].to_vec();
            first.resize(page_bytes, 0);
            if let Some(verifier) = &verifier {
                verifier.check_page(1, &first)?;
            }
            pinned.insert(1, Arc::from(first));
        }
        let reserved = pinned.get(&1).and_then(|p| p.get(20)).copied().unwrap_or(0);
        let pages = Self::new(
            slot,
            len,
            page_size,
            page_size.saturating_sub(reserved as u32),
            verifier,
            pinned,
            chains,
            cache,
            stats,
        );
        if first_block.len() > page_bytes {
            let rest = &first_block[page_bytes..];
            let whole = rest.len() - rest.len() % page_bytes;
            // Pages that fail are simply not kept: fetched again when needed.
            let _ = pages.store(page_size as u64, &rest[..whole], false);
        }
        let chain_pages: Vec<u32> = interior_heads
            .iter()
            .filter_map(|head| pages.chain_of(*head))
            .flat_map(|chain| chain.iter().copied().collect::<Vec<_>>())
            .collect();
        pages.want(chain_pages);
        Ok(pages)
    }

    /// Number of pages of the file.
    pub fn page_count(&self) -> u32 {
        self.len.div_ceil(self.page_size as u64) as u32
    }

    /// Whether the page is pinned (sidecar, page 1, an interior page's chain).
    pub fn is_pinned(&self, page: u32) -> bool {
        lock(&self.pinned).contains_key(&page)
    }

    /// A pinned page, for walking B-trees without I/O.
    pub fn pinned_page(&self, page: u32) -> Option<Arc<[u8]>> {
        lock(&self.pinned).get(&page).cloned()
    }

    /// A page from pinned pages or the cache, without counting or recording anything.
    pub fn peek_page(&self, page: u32) -> Option<Arc<[u8]>> {
        if let Some(p) = lock(&self.pinned).get(&page) {
            return Some(p.clone());
        }
        lock(&self.cache).peek((self.slot, page)).cloned()
    }

    /// Whether the page can be read without I/O (pinned or cached).
    pub fn has_page(&self, page: u32) -> bool {
        self.is_pinned(page) || lock(&self.cache).contains((self.slot, page))
    }

    /// The overflow chain `page` belongs to, when the sidecar lists one.
    pub fn chain_of(&self, page: u32) -> Option<Arc<[u32]>> {
        self.chain_of.get(&page).cloned()
    }

    /// Failed reads so far: a statement missed pages when this moved while it ran.
    pub fn miss_count(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    /// Whether reads recorded missing pages the driver has not taken yet.
    pub fn has_missing(&self) -> bool {
        !lock(&self.missing).is_empty()
    }

    /// The recorded missing pages (ascending), clearing the record.
    pub fn take_missing(&self) -> Vec<u32> {
        std::mem::take(&mut *lock(&self.missing))
            .into_iter()
            .collect()
    }

    /// The recorded missing pages as one round of coalesced ranges, clearing the record.
    pub fn take_fetch(&self) -> PageFetch {
        let pages = self.take_missing();
        let ranges = coalesce(&pages, self.page_size, self.len);
        PageFetch { pages, ranges }
    }

    /// Asks for pages ahead of time (a prefetch plan), as if a read had missed them.
    pub fn want(&self, pages: impl IntoIterator<Item = u32>) {
        let wanted: Vec<u32> = pages
            .into_iter()
            .filter(|&page| page >= 1 && page <= self.page_count() && !self.has_page(page))
            .collect();
        lock(&self.missing).extend(wanted);
    }

    /// Fills `buf` from `offset` when every page it spans is here; returns the number of bytes
    /// available (short at the end of the file). When a page is missing, records it (and the
    /// rest of its overflow chain and the read-ahead) and returns `None`.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Option<usize> {
        let end = offset.saturating_add(buf.len() as u64).min(self.len);
        if offset >= end {
            return Some(0);
        }
        let page_size = self.page_size as u64;
        let first_page = (offset / page_size) as u32 + 1;
        let last_page = ((end - 1) / page_size) as u32 + 1;
        let mut pages = Vec::with_capacity((last_page - first_page + 1) as usize);
        let mut absent = Vec::new();
        for page in first_page..=last_page {
            if let Some(p) = lock(&self.pinned).get(&page) {
                PageStats::bump(&self.stats.pinned_hits);
                pages.push(Some(p.clone()));
                continue;
            }
            let cached = lock(&self.cache).get((self.slot, page));
            match cached {
                Some(p) => {
                    PageStats::bump(&self.stats.cache_hits);
                    pages.push(Some(p));
                }
                None => {
                    pages.push(None);
                    absent.push(page);
                }
            }
        }
        if !absent.is_empty() {
            self.record_missing(&absent);
            return None;
        }
        let mut written = 0usize;
        for (i, page) in pages.iter().flatten().enumerate() {
            let page_start = (first_page as u64 + i as u64 - 1) * page_size;
            let from = offset.max(page_start) - page_start;
            let to = end.min(page_start + page_size) - page_start;
            let n = (to - from) as usize;
            buf[written..written + n].copy_from_slice(&page[from as usize..to as usize]);
            written += n;
        }
        Some(written)
    }

    fn record_missing(&self, absent: &[u32]) {
        self.misses.fetch_add(1, Ordering::Relaxed);
        let mut wanted: BTreeSet<u32> = absent.iter().copied().collect();
        for page in absent {
            if let Some(chain) = self.chain_of.get(page) {
                wanted.extend(chain.iter().filter(|p| !self.has_page(**p)));
            }
        }
        // A miss right after the previous one is a scan: also fetch the pages after it,
        // doubling the window each time; any other miss resets the window.
        let first = absent[0];
        let mut read_ahead = lock(&self.read_ahead);
        let (last, window) = *read_ahead;
        let next_window = if first == last.wrapping_add(1) {
            (window * 2).min(MAX_READ_AHEAD_PAGES)
        } else {
            1
        };
        // Only the window after the miss: an overflow chain elsewhere in the file (already
        // wanted whole) does not stretch it.
        let end = first.saturating_add(next_window - 1).min(self.page_count());
        for page in first..=end {
            if !self.has_page(page) {
                wanted.insert(page);
            }
        }
        let end = end.max(absent.last().copied().unwrap_or(first));
        *read_ahead = (end, next_window);
        drop(read_ahead);
        lock(&self.missing).extend(wanted);
    }

    /// Forgets the scan in progress: read-ahead follows misses within one call (a scan), not
    /// point lookups of separate calls that happen to hit neighbouring pages.
    pub fn reset_read_ahead(&self) {
        *lock(&self.read_ahead) = (0, 1);
    }

    /// Checks the pages of a block fetched from byte `offset` against their checksums (a no-op
    /// when the shard's pages carry none).
    pub fn check_block(&self, offset: u64, block: &[u8]) -> crate::Result<()> {
        let Some(verifier) = &self.verifier else {
            return Ok(());
        };
        let first = (offset / self.page_size as u64) as u32 + 1;
        verifier.check_block(first, block, self.page_size as usize)
    }

    /// Checks a block fetched from byte `offset` ([`ShardPages::check_block`]) and stores its
    /// pages: pinned (never evicted) or cached. A block that fails is not stored; the caller
    /// fetches it once more (a network that flipped a bit rarely does so twice) and reports a
    /// second failure as a corrupt shard.
    pub fn store(&self, offset: u64, block: &[u8], pin: bool) -> crate::Result<()> {
        self.check_block(offset, block)?;
        let page_size = self.page_size as usize;
        let first = (offset / self.page_size as u64) as u32 + 1;
        let pages = block.chunks(page_size).enumerate().map(|(i, chunk)| {
            let mut page = chunk.to_vec();
            page.resize(page_size, 0);
            (first + i as u32, Arc::<[u8]>::from(page))
        });
        if pin {
            lock(&self.pinned).extend(pages);
        } else {
            let mut cache = lock(&self.cache);
            for (number, page) in pages {
                cache.insert((self.slot, number), page);
            }
        }
        Ok(())
    }

    /// After a round fetched `fetched`: index pages among them may hold overflowing cells that
    /// SQLite reads whole whenever a search compares against one, so their chains are wanted
    /// now (one more round for all of them instead of one per comparison). Returns whether
    /// anything is wanted.
    pub fn want_index_overflow_chains(&self, fetched: &[u32]) -> bool {
        for number in fetched {
            let Some(page) = self.peek_page(*number) else {
                continue;
            };
            for head in index_overflow_heads(*number, &page, self.usable_size) {
                if let Some(chain) = self.chain_of(head) {
                    self.want(chain.iter().copied());
                }
            }
        }
        self.has_missing()
    }

    /// After a round fetched table leaves: the overflow chains their cells start (sqlite-vec's
    /// vector chunks, large values) are wanted, whole when the sidecar lists the chain, else
    /// their first page. Returns whether anything is wanted.
    pub fn want_overflow_chains(&self, fetched: &[u32]) -> bool {
        for number in fetched {
            let Some(page) = self.peek_page(*number) else {
                continue;
            };
            for head in btree::overflow_heads(*number, &page, self.usable_size) {
                match self.chain_of(head) {
                    Some(chain) => self.want(chain.iter().copied()),
                    None => self.want([head]),
                }
            }
        }
        self.has_missing()
    }

    /// Before a cold search: wants the leaves of the vector tables (`(table, root page)`, from
    /// [`crate::search_plan::sql::VECTOR_TABLE_ROOTS`]), found by walking pinned interior
    /// pages. The id and payload lookup tables are left to per-hit reads when they have more
    /// than [`MAX_LOOKUP_TABLE_LEAVES`] leaves (one more round, far fewer bytes).
    pub fn want_vector_table_leaves(&self, tables: &[(String, u32)]) {
        for (table, root) in tables {
            let leaves = self.leaves_below(*root);
            let lookup_table = table == "vec_id_map" || table == "vec_payloads";
            if lookup_table && leaves.len() > MAX_LOOKUP_TABLE_LEAVES {
                continue;
            }
            self.want(leaves);
        }
    }

    /// Wants the table leaves holding `rowids` in the table B-tree rooted at `root`, found by
    /// descending pinned interior pages (a page that is not pinned is taken for the leaf).
    /// Returns those leaves (an IVF search's vector chunks: [`Self::want_row_overflow_chains`]
    /// follows once they are fetched).
    pub fn want_table_rows(&self, root: u32, rowids: &[i64]) -> Vec<u32> {
        let mut leaves = BTreeSet::new();
        for rowid in rowids {
            let mut number = root;
            // A B-tree is at most a few levels deep; the bound stops a cycle in bad bytes.
            for _ in 0..32 {
                if number == 0 || number > self.page_count() {
                    break;
                }
                match self.pinned_page(number) {
                    Some(page) if btree::is_interior(number, &page) => {
                        match btree::table_child_for(number, &page, *rowid) {
                            Some(child) => number = child,
                            None => break,
                        }
                    }
                    _ => {
                        leaves.insert(number);
                        break;
                    }
                }
            }
        }
        let leaves: Vec<u32> = leaves.into_iter().collect();
        self.want(leaves.iter().copied());
        leaves
    }

    /// After the leaves of [`Self::want_table_rows`] are fetched: the overflow chains of the
    /// rows `rowids` on them (whole when the sidecar lists the chain, else their first page),
    /// not those of their neighbours. Returns whether anything is wanted.
    pub fn want_row_overflow_chains(&self, leaves: &[u32], rowids: &BTreeSet<i64>) -> bool {
        for number in leaves {
            let Some(page) = self.peek_page(*number) else {
                continue;
            };
            for (rowid, head) in btree::rowid_overflow_heads(*number, &page, self.usable_size) {
                if !rowids.contains(&rowid) {
                    continue;
                }
                match self.chain_of(head) {
                    Some(chain) => self.want(chain.iter().copied()),
                    None => self.want([head]),
                }
            }
        }
        self.has_missing()
    }

    /// The leaf pages of the B-tree rooted at `root`, walking pinned interior pages only (a page
    /// that is not pinned is taken for a leaf: a sidecar pins every interior page).
    pub fn leaves_below(&self, root: u32) -> Vec<u32> {
        let mut leaves = Vec::new();
        let mut stack = vec![root];
        let mut visited = BTreeSet::new();
        while let Some(number) = stack.pop() {
            if !visited.insert(number) || number == 0 || number > self.page_count() {
                continue;
            }
            match self.pinned_page(number) {
                Some(page) if btree::is_interior(number, &page) => {
                    stack.extend(btree::children(number, &page));
                }
                Some(_) => {}
                None => leaves.push(number),
            }
        }
        leaves.sort_unstable();
        leaves
    }
}

/// Gaps up to this many bytes between wanted pages are fetched with them: one ranged GET that
/// carries 64 KiB more costs less than a second request (a browser runs at most 6 at a time per
/// host, and a Worker's requests are counted), e.g. 5 ms at 100 Mbit/s against a 40 ms round
/// trip. The pages in a gap are checked and cached like the rest.
pub const MAX_GAP_BYTES: u64 = 64 * 1024;

/// Runs of pages as `(offset, length)` byte ranges, clipped to the object size: contiguous
/// pages, and pages separated by at most [`MAX_GAP_BYTES`], share a range.
pub fn coalesce(pages: &[u32], page_size: u32, len: u64) -> Vec<(u64, u64)> {
    let page_size = page_size as u64;
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for page in pages {
        let start = (*page as u64 - 1) * page_size;
        match ranges.last_mut() {
            Some((s, l)) if start >= *s + *l && start - (*s + *l) <= MAX_GAP_BYTES => {
                *l = start + page_size - *s
            }
            Some((s, l)) if start < *s + *l => *l = (*l).max(start + page_size - *s),
            _ => ranges.push((start, page_size)),
        }
    }
    ranges
        .into_iter()
        .filter(|(s, _)| *s < len)
        .map(|(s, l)| (s, l.min(len - s)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(byte: u8) -> Arc<[u8]> {
        Arc::from(vec![byte; 4096])
    }

    #[test]
    fn lru_evicts_oldest_pages_of_earlier_calls_only() {
        let mut cache = PageCache::new(2 * 4096);
        cache.begin_call();
        cache.insert((0, 1), page(1));
        cache.insert((0, 2), page(2));
        cache.insert((0, 3), page(3));
        // All three belong to the running call: over budget, nothing evicted.
        assert_eq!(cache.len(), 3);
        cache.begin_call();
        // Next call: back to the budget, oldest first.
        assert_eq!(cache.len(), 2);
        assert!(!cache.contains((0, 1)));
        assert!(cache.get((0, 2)).is_some());
        cache.begin_call();
        cache.insert((1, 9), page(9));
        // Page 3 was used least recently (page 2 was read in the previous call).
        assert!(!cache.contains((0, 3)));
        assert!(cache.contains((0, 2)) && cache.contains((1, 9)));
        assert_eq!(cache.bytes(), 2 * 4096);
    }

    fn shard(len: u64, chains: Vec<Vec<u32>>) -> ShardPages {
        let mut pinned = HashMap::new();
        pinned.insert(1, page(0));
        ShardPages::new(
            0,
            len,
            4096,
            4096,
            None,
            pinned,
            chains,
            Arc::new(Mutex::new(PageCache::new(1 << 20))),
            Arc::new(PageStats::default()),
        )
    }

    #[test]
    fn a_miss_records_the_whole_chain_and_fails() {
        let pages = shard(40 * 4096, vec![vec![7, 8, 20]]);
        let mut buf = [0u8; 100];
        assert_eq!(pages.read_at(0, &mut buf), Some(100));
        assert_eq!(pages.read_at(6 * 4096, &mut buf), None);
        assert_eq!(pages.miss_count(), 1);
        let fetch = pages.take_fetch();
        assert_eq!(fetch.pages, vec![7, 8, 20]);
        // Pages 9..19 (44 KiB) lie between: fetched with them, one request.
        assert_eq!(fetch.ranges, vec![(6 * 4096, 14 * 4096)]);
        pages.store(6 * 4096, &[5u8; 4096], false).unwrap();
        assert_eq!(pages.read_at(6 * 4096 + 10, &mut buf), Some(100));
        assert_eq!(buf[0], 5);
        assert!(!pages.has_missing());
    }

    #[test]
    fn sequential_misses_read_ahead_doubling() {
        let pages = shard(200 * 4096, vec![]);
        let mut buf = [0u8; 4096];
        assert_eq!(pages.read_at(4096, &mut buf), None);
        assert_eq!(pages.take_missing(), vec![2]);
        pages.store(4096, &[0; 4096], false).unwrap();
        assert_eq!(pages.read_at(2 * 4096, &mut buf), None);
        assert_eq!(pages.take_missing(), vec![3, 4]);
        pages.store(2 * 4096, &[0; 8192], false).unwrap();
        assert_eq!(pages.read_at(4 * 4096, &mut buf), None);
        assert_eq!(pages.take_missing(), vec![5, 6, 7, 8]);
        pages.reset_read_ahead();
        assert_eq!(pages.read_at(9 * 4096, &mut buf), None);
        assert_eq!(pages.take_missing(), vec![10]);
    }

    #[test]
    fn short_last_page() {
        let pages = shard(4096 + 100, vec![]);
        pages.store(4096, &[3u8; 100], true).unwrap();
        assert!(pages.is_pinned(2));
        let mut buf = [9u8; 200];
        assert_eq!(pages.read_at(4096, &mut buf), Some(100));
        // Page 7 lies past the 5-page object: the range is clipped to the object.
        assert_eq!(coalesce(&[1, 2, 3, 7], 4096, 5 * 4096), vec![(0, 5 * 4096)]);
        // A gap of up to 64 KiB is fetched with its neighbours; a longer one is not.
        assert_eq!(coalesce(&[1, 2, 4], 4096, 1 << 20), vec![(0, 16384)]);
        assert_eq!(coalesce(&[1, 18], 4096, 1 << 20), vec![(0, 18 * 4096)]);
        assert_eq!(
            coalesce(&[1, 19], 4096, 1 << 20),
            vec![(0, 4096), (18 * 4096, 4096)]
        );
    }

    #[test]
    fn a_block_that_fails_its_checksums_is_not_stored() {
        use crate::integrity::{page_checksum, PAGE_CHECKSUM_BYTES};
        // Pages 2 and 3 of shard 3, each with its checksum in its reserved bytes.
        let (seed, db_id) = (7, 3);
        let mut block = vec![0u8; 2 * 4096];
        for (i, page) in block.chunks_mut(4096).enumerate() {
            page[..100].fill(i as u8 + 1);
            let sum = page_checksum(seed, db_id, i as u32 + 2, page);
            page[4096 - PAGE_CHECKSUM_BYTES as usize..].copy_from_slice(&sum.to_le_bytes());
        }
        let pages = ShardPages::new(
            db_id,
            4 * 4096,
            4096,
            4096 - PAGE_CHECKSUM_BYTES as u32,
            Some(PageVerifier::new(db_id, seed)),
            HashMap::new(),
            vec![],
            Arc::new(Mutex::new(PageCache::new(1 << 20))),
            Arc::new(PageStats::default()),
        );
        let mut bad = block.clone();
        bad[4096 + 50] ^= 1;
        assert!(pages.store(4096, &bad, false).is_err());
        assert!(!pages.has_page(2) && !pages.has_page(3));
        // The same bytes at another offset are other pages: refused too.
        assert!(pages.store(2 * 4096, &block, false).is_err());
        pages.store(4096, &block, false).unwrap();
        assert!(pages.has_page(2) && pages.has_page(3));
    }
}
