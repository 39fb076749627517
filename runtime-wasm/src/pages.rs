//! Where a shard's pages come from: the sidecar's pinned pages, then one LRU page cache shared by
//! all shards of a snapshot under a byte budget, and otherwise a *miss*.
//!
//! SQLite's VFS is synchronous and `fetch` is not, so a read of a page that is not here does not
//! wait: [`ShardPages::read_at`] records the page (with the rest of its overflow chain and any
//! read-ahead) and fails. The async driver (`snapshot.rs`) then fetches every recorded page of
//! every shard in one parallel round and runs the statement again.

use edgeshard_shared::integrity::PageVerifier;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;

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
    pages: PageMap<(Rc<[u8]>, u64)>,
    /// Last-use stamp -> page, oldest first.
    order: BTreeMap<u64, PageKey>,
    next_stamp: u64,
    /// Stamps from here on belong to the current call.
    call_start: u64,
    bytes: usize,
    budget: usize,
    pub hits: u64,
}

impl PageCache {
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

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.pages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }

    pub fn budget(&self) -> usize {
        self.budget
    }

    pub fn contains(&self, key: PageKey) -> bool {
        self.pages.contains_key(&key)
    }

    /// The page, marked as just used.
    pub fn get(&mut self, key: PageKey) -> Option<Rc<[u8]>> {
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
    pub fn peek(&self, key: PageKey) -> Option<&Rc<[u8]>> {
        self.pages.get(&key).map(|(page, _)| page)
    }

    pub fn insert(&mut self, key: PageKey, page: Rc<[u8]>) {
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

/// Counters of one snapshot. They only grow; subtract two copies for one call.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// HTTP requests sent (whole objects and ranges, retries included).
    pub requests: u64,
    /// Bytes of response bodies.
    pub bytes: u64,
    /// Dependent rounds: sets of requests sent together and waited for together.
    pub rounds: u64,
    /// Page reads served by the LRU cache.
    pub cache_hits: u64,
    /// Page reads served by pinned pages (sidecar, page 1, interior chains).
    pub pinned_hits: u64,
    /// Retried requests (transient HTTP errors and network failures).
    pub retries: u64,
}

impl std::ops::Sub for Counters {
    type Output = Counters;
    fn sub(self, before: Counters) -> Counters {
        Counters {
            requests: self.requests - before.requests,
            bytes: self.bytes - before.bytes,
            rounds: self.rounds - before.rounds,
            cache_hits: self.cache_hits - before.cache_hits,
            pinned_hits: self.pinned_hits - before.pinned_hits,
            retries: self.retries - before.retries,
        }
    }
}

/// The pages of one shard database: what is pinned, what is cached (in the shared cache), and
/// what the statements running now found missing.
#[derive(Debug)]
pub struct ShardPages {
    /// Slot of the shard (its `db_id`), the cache key's first half.
    pub slot: u32,
    /// Size of `shard.db` in bytes.
    pub len: u64,
    pub page_size: u32,
    /// Page size less the bytes each page reserves: what cell-size arithmetic needs.
    pub usable_size: u32,
    /// Checks fetched pages before they are stored, when the shard's pages carry checksums.
    verifier: Option<PageVerifier>,
    /// Never evicted: the sidecar's pages, page 1, chains hanging off interior pages.
    pinned: RefCell<HashMap<u32, Rc<[u8]>>>,
    /// Page -> the whole overflow chain it belongs to (from the sidecar).
    chain_of: HashMap<u32, Rc<[u32]>>,
    cache: Rc<RefCell<PageCache>>,
    counters: Rc<RefCell<Counters>>,
    /// Pages reads asked for and did not find, since the driver last took them.
    missing: RefCell<BTreeSet<u32>>,
    /// Incremented on every failed read, so the driver can tell which statement missed.
    misses: Cell<u64>,
    /// Sequential-miss detection: (last page recorded, read-ahead window in pages).
    read_ahead: Cell<(u32, u32)>,
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
        pinned: HashMap<u32, Rc<[u8]>>,
        chains: Vec<Vec<u32>>,
        cache: Rc<RefCell<PageCache>>,
        counters: Rc<RefCell<Counters>>,
    ) -> Self {
        let mut chain_of = HashMap::new();
        for chain in chains {
            let chain: Rc<[u32]> = Rc::from(chain);
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
            pinned: RefCell::new(pinned),
            chain_of,
            cache,
            counters,
            missing: RefCell::new(BTreeSet::new()),
            misses: Cell::new(0),
            read_ahead: Cell::new((0, 1)),
        }
    }

    /// Number of pages of the file.
    pub fn page_count(&self) -> u32 {
        self.len.div_ceil(self.page_size as u64) as u32
    }

    pub fn is_pinned(&self, page: u32) -> bool {
        self.pinned.borrow().contains_key(&page)
    }

    /// A pinned page, for walking B-trees without I/O.
    pub fn pinned_page(&self, page: u32) -> Option<Rc<[u8]>> {
        self.pinned.borrow().get(&page).cloned()
    }

    /// A page from pinned pages or the cache, without counting or recording anything.
    pub fn peek_page(&self, page: u32) -> Option<Rc<[u8]>> {
        if let Some(p) = self.pinned.borrow().get(&page) {
            return Some(p.clone());
        }
        self.cache.borrow().peek((self.slot, page)).cloned()
    }

    pub fn has_page(&self, page: u32) -> bool {
        self.is_pinned(page) || self.cache.borrow().contains((self.slot, page))
    }

    /// The overflow chain `page` belongs to, when the sidecar lists one.
    pub fn chain_of(&self, page: u32) -> Option<Rc<[u32]>> {
        self.chain_of.get(&page).cloned()
    }

    pub fn miss_count(&self) -> u64 {
        self.misses.get()
    }

    pub fn has_missing(&self) -> bool {
        !self.missing.borrow().is_empty()
    }

    /// The recorded missing pages (ascending), clearing the record.
    pub fn take_missing(&self) -> Vec<u32> {
        std::mem::take(&mut *self.missing.borrow_mut())
            .into_iter()
            .collect()
    }

    /// Asks for pages ahead of time (a prefetch plan), as if a read had missed them.
    pub fn want(&self, pages: impl IntoIterator<Item = u32>) {
        let mut missing = self.missing.borrow_mut();
        for page in pages {
            if page >= 1 && page <= self.page_count() && !self.has_page(page) {
                missing.insert(page);
            }
        }
    }

    /// Fills `buf` from `offset` when every page it spans is here; returns the number of bytes
    /// available (short at the end of the file). When a page is missing, records it (and the
    /// rest of its overflow chain and the read-ahead) and returns `None`.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Option<usize> {
        let end = (offset + buf.len() as u64).min(self.len);
        if offset >= end {
            return Some(0);
        }
        let page_size = self.page_size as u64;
        let first_page = (offset / page_size) as u32 + 1;
        let last_page = ((end - 1) / page_size) as u32 + 1;
        let mut pages = Vec::with_capacity((last_page - first_page + 1) as usize);
        let mut absent = Vec::new();
        for page in first_page..=last_page {
            if let Some(p) = self.pinned.borrow().get(&page) {
                self.counters.borrow_mut().pinned_hits += 1;
                pages.push(Some(p.clone()));
                continue;
            }
            let cached = self.cache.borrow_mut().get((self.slot, page));
            match cached {
                Some(p) => {
                    self.counters.borrow_mut().cache_hits += 1;
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
        self.misses.set(self.misses.get() + 1);
        let mut wanted: BTreeSet<u32> = absent.iter().copied().collect();
        for page in absent {
            if let Some(chain) = self.chain_of.get(page) {
                wanted.extend(chain.iter().filter(|p| !self.has_page(**p)));
            }
        }
        // A miss right after the previous one is a scan: also fetch the pages after it,
        // doubling the window each time; any other miss resets the window.
        let first = absent[0];
        let (last, window) = self.read_ahead.get();
        let next_window = if first == last + 1 {
            (window * 2).min(MAX_READ_AHEAD_PAGES)
        } else {
            1
        };
        // Only the window after the miss: an overflow chain elsewhere in the file (already
        // wanted whole) does not stretch it.
        let end = (first + next_window - 1).min(self.page_count());
        for page in first..=end {
            if !self.has_page(page) {
                wanted.insert(page);
            }
        }
        let end = end.max(absent.last().copied().unwrap_or(first));
        self.read_ahead.set((end, next_window));
        self.missing.borrow_mut().extend(wanted);
    }

    /// Forgets the scan in progress: read-ahead follows misses within one call (a scan), not
    /// point lookups of separate calls that happen to hit neighbouring pages.
    pub fn reset_read_ahead(&self) {
        self.read_ahead.set((0, 1));
    }

    /// Checks the pages of a block fetched from byte `offset` against their checksums (a no-op
    /// when the shard's pages carry none). Call before [`ShardPages::insert_block`] or
    /// [`ShardPages::pin_block`].
    pub fn check_block(&self, offset: u64, block: &[u8]) -> Result<(), edgeshard_shared::Error> {
        let Some(verifier) = &self.verifier else {
            return Ok(());
        };
        let first = (offset / self.page_size as u64) as u32 + 1;
        verifier.check_block(first, block, self.page_size as usize)
    }

    /// Stores pages fetched as one block starting at byte `offset`.
    pub fn insert_block(&self, offset: u64, block: &[u8]) {
        let page_size = self.page_size as usize;
        let first = (offset / self.page_size as u64) as u32 + 1;
        let mut cache = self.cache.borrow_mut();
        for (i, chunk) in block.chunks(page_size).enumerate() {
            let mut page = chunk.to_vec();
            page.resize(page_size, 0);
            cache.insert((self.slot, first + i as u32), Rc::from(page));
        }
    }

    /// Pins pages fetched as one block (they are then never evicted).
    pub fn pin_block(&self, offset: u64, block: &[u8]) {
        let page_size = self.page_size as usize;
        let first = (offset / self.page_size as u64) as u32 + 1;
        let mut pinned = self.pinned.borrow_mut();
        for (i, chunk) in block.chunks(page_size).enumerate() {
            let mut page = chunk.to_vec();
            page.resize(page_size, 0);
            pinned.insert(first + i as u32, Rc::from(page));
        }
    }
}

/// Contiguous runs of pages as `(offset, length)` byte ranges, clipped to the object size.
pub fn coalesce(pages: &[u32], page_size: u32, len: u64) -> Vec<(u64, u64)> {
    let page_size = page_size as u64;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn page(byte: u8) -> Rc<[u8]> {
        Rc::from(vec![byte; 4096])
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
            Rc::new(RefCell::new(PageCache::new(1 << 20))),
            Rc::new(RefCell::new(Counters::default())),
        )
    }

    #[test]
    fn a_miss_records_the_whole_chain_and_fails() {
        let pages = shard(40 * 4096, vec![vec![7, 8, 20]]);
        let mut buf = [0u8; 100];
        assert_eq!(pages.read_at(0, &mut buf), Some(100));
        assert_eq!(pages.read_at(6 * 4096, &mut buf), None);
        assert_eq!(pages.take_missing(), vec![7, 8, 20]);
        pages.insert_block(6 * 4096, &[5u8; 4096]);
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
        pages.insert_block(4096, &[0; 4096]);
        assert_eq!(pages.read_at(2 * 4096, &mut buf), None);
        assert_eq!(pages.take_missing(), vec![3, 4]);
        pages.insert_block(2 * 4096, &[0; 8192]);
        assert_eq!(pages.read_at(4 * 4096, &mut buf), None);
        assert_eq!(pages.take_missing(), vec![5, 6, 7, 8]);
    }

    #[test]
    fn short_last_page() {
        let pages = shard(4096 + 100, vec![]);
        pages.insert_block(4096, &[3u8; 100]);
        let mut buf = [9u8; 200];
        assert_eq!(pages.read_at(4096, &mut buf), Some(100));
        assert_eq!(coalesce(&[1, 2, 3, 7], 4096, 5 * 4096), vec![(0, 12288)]);
        assert_eq!(
            coalesce(&[1, 2, 4], 4096, 1 << 20),
            vec![(0, 8192), (12288, 4096)]
        );
    }
}
