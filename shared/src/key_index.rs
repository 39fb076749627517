//! Key index (`shard.keyindex`, edgeshard's extension): which page of `shard.db` holds a key
//! of the `kv` table, so a range reader's cold lookup reads the index (at open, in the same
//! round as the shard's HEAD) and then exactly one page.
//!
//! `kv` is `WITHOUT ROWID`, an index B-tree: its interior cells are whole records (values
//! included), so the sidecar that pins every interior page grows with the data (~275 KB a shard
//! of 125,000 rows with 100-byte values). The index lists instead, in key order, every
//! *segment* of the tree: each leaf page (a run of keys) and each interior cell (one key, on its
//! interior page), with the shortest separator that tells it from the segment before (a prefix
//! of its first key, greater than the previous segment's last key), front-coded. A key lives in
//! the segment of the last separator not above it, so the page to read is known without I/O.
//!
//! ```text
//! file (little-endian): "ESKI" | u8 version = 1 | u64 db_len | u32 page_size | u8 hash_len
//!                       | content hash (the shard.db content_xxh3_128, hex) | u64 body_size
//!                       | one zstd frame (checksum on) | u64 xxh3-64 of every byte before it
//! body: u32 kv_root | page 1 (page_size bytes) | u32 first_key_len | first key | u32 n
//!       | n x (varint shared, varint suffix_len, suffix, varint zigzag page delta)
//! ```
//! Separator 0 is empty (keys below the first key read segment 0 and are absent there).
//!
//! Trust: the file is checksummed and bound to the bytes of `shard.db` by its content hash (the
//! manifest row's `content_xxh3_128`) and size, so an index of another build or shard is refused
//! at open, before any lookup. Each page read through it passes the page checksums, and
//! [`find_in_page`] checks the page holds keys of the segment the index says (an answer is
//! never read off a page the index does not describe).

use crate::btree::{be32, cells, local_payload, page_base, varint};
use crate::error::{Error, Result};

/// The first four bytes of every key index file.
pub const MAGIC: &[u8; 4] = b"ESKI";
/// The key index format version this crate writes and reads.
pub const VERSION: u8 = 1;
/// Refuse bodies beyond this (a malformed size must not make a reader allocate gigabytes).
const MAX_BODY: u64 = 1 << 28;

fn bad(why: impl Into<String>) -> Error {
    Error::Integrity(format!("invalid key index: {}", why.into()))
}

/// `writer_info` key of a shard row: the xxh3-128 (hex) of the shard's key index file. The
/// file's own checksums catch damage, not a file rewritten and resealed (a segment left out
/// would send its keys to the previous page and read "not found"); the manifest, the root of
/// trust, pins its exact bytes.
pub const HASH_KEY: &str = "key_index_xxh3_128";

/// The key index of the shard of `entry`, from the bytes of its file: they must hash to the
/// row's [`HASH_KEY`], parse, and describe a `shard.db` of `db_len` bytes with the row's content
/// hash. Any mismatch is an error (readers then use the shard's sidecar).
pub fn load(entry: &crate::manifest::ShardEntry, bytes: &[u8], db_len: u64) -> Result<KeyIndex> {
    let recorded = entry.writer_info.get(HASH_KEY).and_then(|v| v.as_str());
    let actual = crate::integrity::content_hash(bytes);
    match recorded {
        Some(hash) if hash == actual => {}
        Some(hash) => {
            return Err(bad(format!(
                "its bytes hash to {actual}, the manifest row records {hash} (rewritten or \
                 another shard's)"
            )))
        }
        None => return Err(bad(format!("the manifest row records no {HASH_KEY}"))),
    }
    let index = KeyIndex::parse(bytes)?;
    index.check_bound(db_len, entry.content_hash())?;
    Ok(index)
}

/// The file name of a snapshot's key indexes, from its manifest's `custom` object
/// (`custom.edgeshard_key_index`), when it announces them in the format version this crate
/// reads; `None` otherwise (readers then use the sidecar).
pub fn announced_file(custom: &serde_json::Map<String, serde_json::Value>) -> Option<&str> {
    let config = custom.get(crate::layout::KEY_INDEX_CUSTOM_KEY)?;
    let version = config.get("format_version")?.as_u64()?;
    if version != VERSION as u64 {
        return None;
    }
    config.get("filename")?.as_str()
}

/// What a key index says about one shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyIndex {
    /// Size of the `shard.db` it describes.
    pub db_len: u64,
    /// Page size of that database.
    pub page_size: u32,
    /// Content hash (xxh3-128, hex) of that database.
    pub content_hash: String,
    /// Root page of its `kv` table.
    pub kv_root: u32,
    /// Page 1 of the database (the header and schema), so a reader opens it without a read.
    pub page1: Vec<u8>,
    /// The smallest key of `kv` (for the routing check of a first "not found").
    pub first_key: Vec<u8>,
    /// Separators, concatenated; separator `i` is `separators[ends[i-1]..ends[i]]`.
    separators: Vec<u8>,
    ends: Vec<u32>,
    /// Page of each segment.
    pages: Vec<u32>,
}

/// Where a key would be: the page to read and the bounds the index gives that page's segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement<'a> {
    /// The page holding the segment.
    pub page: u32,
    /// The segment's separator: its keys are `>=` this.
    pub lower: &'a [u8],
    /// The next segment's separator: the segment's keys are `<` this (`None`: the last).
    pub upper: Option<&'a [u8]>,
}

impl KeyIndex {
    /// Number of segments (leaf pages plus interior cells of `kv`).
    pub fn segments(&self) -> usize {
        self.pages.len()
    }

    fn separator(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.separators[start..self.ends[i] as usize]
    }

    /// The page that holds `key` if the shard has it.
    pub fn place(&self, key: &[u8]) -> Placement<'_> {
        // Separator 0 is empty, so at least one separator is <= any key.
        let (mut low, mut high) = (0, self.pages.len());
        while low < high {
            let mid = low + (high - low) / 2;
            if self.separator(mid) <= key {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        let i = low.saturating_sub(1);
        Placement {
            page: self.pages[i],
            lower: self.separator(i),
            upper: (i + 1 < self.pages.len()).then(|| self.separator(i + 1)),
        }
    }

    /// Checks the index describes this shard file: its size and content hash. `content_hash`
    /// is the manifest row's; a row without one cannot vouch for any index.
    pub fn check_bound(&self, db_len: u64, content_hash: Option<&str>) -> Result<()> {
        if self.db_len != db_len {
            return Err(bad(format!(
                "it describes a shard.db of {} bytes, the file has {db_len}",
                self.db_len
            )));
        }
        match content_hash {
            Some(hash) if hash == self.content_hash => Ok(()),
            Some(hash) => Err(bad(format!(
                "it describes the shard.db with content hash {}, the manifest row's is {hash} \
                 (an index of another build or shard)",
                self.content_hash
            ))),
            None => Err(bad(
                "the manifest row records no content hash to bind it to".to_string(),
            )),
        }
    }

    /// Parses and fully checks a key index file. Any inconsistency is an error, and a reader
    /// then reads the shard without it.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        const FIXED: usize = 4 + 1 + 8 + 4 + 1;
        if bytes.len() < FIXED + 8 + 8 || &bytes[..4] != MAGIC {
            return Err(bad("missing ESKI magic or shorter than its prefix"));
        }
        let (content, stored) = bytes.split_at(bytes.len() - 8);
        let stored = u64::from_le_bytes(stored.try_into().map_err(|_| bad("checksum"))?);
        if xxhash_rust::xxh3::xxh3_64(content) != stored {
            return Err(bad(
                "its checksum does not match (damaged or truncated in transit or at rest)",
            ));
        }
        if content[4] != VERSION {
            return Err(bad(format!("version {} is not {VERSION}", content[4])));
        }
        let le64 = |at: usize| -> Result<u64> {
            content
                .get(at..at + 8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_le_bytes)
                .ok_or_else(|| bad("prefix is truncated"))
        };
        let db_len = le64(5)?;
        let page_size = u32::from_le_bytes([content[13], content[14], content[15], content[16]]);
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return Err(bad(format!("page size {page_size}")));
        }
        let hash_len = content[17] as usize;
        let content_hash = content
            .get(FIXED..FIXED + hash_len)
            .and_then(|h| std::str::from_utf8(h).ok())
            .ok_or_else(|| bad("content hash is truncated or not UTF-8"))?
            .to_string();
        let body_size = le64(FIXED + hash_len)?;
        if body_size > MAX_BODY {
            return Err(bad(format!("body size {body_size} is implausible")));
        }
        let body =
            crate::sidecar::zstd_frame(&content[FIXED + hash_len + 8..], body_size).map_err(bad)?;
        Self::decode_body(&body, db_len, page_size, content_hash)
    }

    fn decode_body(body: &[u8], db_len: u64, page_size: u32, content_hash: String) -> Result<Self> {
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<&[u8]> {
            let out = body
                .get(at..at.saturating_add(n))
                .ok_or_else(|| bad("body is truncated"))?;
            at += n;
            Ok(out)
        };
        let u32_at = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let kv_root = u32_at(take(4)?);
        let page1 = take(page_size as usize)?.to_vec();
        let first_len = u32_at(take(4)?) as usize;
        let first_key = take(first_len)?.to_vec();
        let n = u32_at(take(4)?) as usize;
        let page_count = db_len.div_ceil(page_size as u64);
        if n == 0 || n as u64 > page_count.saturating_mul(page_size as u64) {
            return Err(bad(format!("{n} segments for a {db_len}-byte file")));
        }
        let mut rest = Leb128 { bytes: &body[at..] };
        let mut separators: Vec<u8> = Vec::new();
        let mut ends = Vec::with_capacity(n);
        let mut pages = Vec::with_capacity(n);
        let mut previous: Vec<u8> = Vec::new();
        let mut page = 0i64;
        for i in 0..n {
            let shared = rest.varint()? as usize;
            let suffix_len = rest.varint()? as usize;
            if shared > previous.len() {
                return Err(bad(format!("segment {i}: prefix length out of range")));
            }
            let mut separator = previous[..shared].to_vec();
            separator.extend_from_slice(rest.take(suffix_len)?);
            if i == 0 && !separator.is_empty() {
                return Err(bad("the first separator is not empty"));
            }
            if i > 0 && separator <= previous {
                return Err(bad(format!("separator {i} does not ascend")));
            }
            let delta = rest.varint()?;
            let delta = ((delta >> 1) as i64) ^ -((delta & 1) as i64);
            page = page.wrapping_add(delta);
            if page < 2 || page as u64 > page_count {
                return Err(bad(format!(
                    "segment {i} is on page {page}, outside pages 2..={page_count}"
                )));
            }
            separators.extend_from_slice(&separator);
            ends.push(separators.len() as u32);
            pages.push(page as u32);
            previous = separator;
        }
        if !rest.bytes.is_empty() {
            return Err(bad(format!(
                "{} bytes after the last segment",
                rest.bytes.len()
            )));
        }
        if kv_root < 2 || kv_root as u64 > page_count {
            return Err(bad(format!("kv root page {kv_root} is outside the file")));
        }
        Ok(Self {
            db_len,
            page_size,
            content_hash,
            kv_root,
            page1,
            first_key,
            separators,
            ends,
            pages,
        })
    }
}

/// Reads the body's LEB128 varints and byte strings.
struct Leb128<'a> {
    bytes: &'a [u8],
}

impl<'a> Leb128<'a> {
    fn varint(&mut self) -> Result<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, tail) = self
                .bytes
                .split_first()
                .ok_or_else(|| bad("body is truncated"))?;
            self.bytes = tail;
            value |= ((byte & 0x7f) as u64) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(bad("a varint is too long"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.bytes.len() {
            return Err(bad("body is truncated"));
        }
        let (out, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(out)
    }
}

/// One segment of the `kv` tree, in key order: a leaf page or one interior cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Its smallest key.
    pub first: Vec<u8>,
    /// Its largest key.
    pub last: Vec<u8>,
    /// The page that holds it.
    pub page: u32,
}

/// What the builder writes: everything of a [`KeyIndex`] but its binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyIndexContent {
    /// Page size of the database.
    pub page_size: u32,
    /// Root page of `kv`.
    pub kv_root: u32,
    /// Page 1 of the database.
    pub page1: Vec<u8>,
    /// The segments of `kv`, in key order.
    pub segments: Vec<Segment>,
}

/// The segments of the `kv` tree rooted at `kv_root` in a database image, in key order. `None`
/// when the table is empty or a key does not sit whole on its page (a key longer than a page
/// can hold locally): the shard then gets no index and readers use its sidecar.
pub fn analyze(db: &[u8], kv_root: u32) -> Result<Option<KeyIndexContent>> {
    let page_size = crate::pages::header_page_size(db)
        .ok_or_else(|| bad("not a SQLite database (bad header)"))?;
    let reserved = db.get(20).copied().unwrap_or(0) as u32;
    let usable = page_size - reserved;
    let page = |n: u32| -> Result<&[u8]> {
        let start = (n as usize - 1) * page_size as usize;
        db.get(start..start + page_size as usize)
            .ok_or_else(|| bad(format!("page {n} is outside the image")))
    };
    let mut segments = Vec::new();
    // In-order walk: left child, its divider cell, ..., the right-most child.
    let mut stack: Vec<(u32, usize)> = vec![(kv_root, 0)];
    let mut steps = 0usize;
    while let Some((number, next)) = stack.pop() {
        steps += 1;
        if steps > 4 * (db.len() / page_size as usize + 1) {
            return Err(bad("the kv tree loops"));
        }
        let bytes = page(number)?;
        let Some((kind, offsets)) = cells(number, bytes) else {
            return Err(bad(format!("page {number} of kv is not a B-tree page")));
        };
        match kind {
            10 => {
                let mut keys = Vec::with_capacity(offsets.len());
                for &at in &offsets {
                    match cell(number, bytes, at, usable, false)? {
                        Some(c) => keys.push(c.key),
                        None => return Ok(None),
                    }
                }
                if let (Some(first), Some(last)) = (keys.first(), keys.last()) {
                    segments.push(Segment {
                        first: first.to_vec(),
                        last: last.to_vec(),
                        page: number,
                    });
                }
            }
            2 => {
                // Past the right-most child: this page is done.
                if next > offsets.len() {
                    continue;
                }
                if let Some(&at) = next.checked_sub(1).and_then(|i| offsets.get(i)) {
                    let Some(c) = cell(number, bytes, at, usable, true)? else {
                        return Ok(None);
                    };
                    segments.push(Segment {
                        first: c.key.to_vec(),
                        last: c.key.to_vec(),
                        page: number,
                    });
                }
                let child = match offsets.get(next) {
                    Some(&at) => be32(bytes, at),
                    None => be32(bytes, page_base(number) + 8),
                }
                .ok_or_else(|| bad(format!("page {number}: a child pointer overruns it")))?;
                stack.push((number, next + 1));
                stack.push((child, 0));
            }
            _ => {
                return Err(bad(format!(
                    "page {number} of kv is not an index B-tree page"
                )))
            }
        }
    }
    if segments.is_empty() {
        return Ok(None);
    }
    if segments
        .windows(2)
        .any(|w| w[0].last >= w[1].first || w[1].first > w[1].last)
    {
        return Err(bad("the kv tree's keys are not in order"));
    }
    Ok(Some(KeyIndexContent {
        page_size,
        kv_root,
        page1: page(1)?.to_vec(),
        segments,
    }))
}

impl KeyIndexContent {
    /// The uncompressed body (see the module doc).
    pub fn encode_body(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.kv_root.to_le_bytes());
        out.extend_from_slice(&self.page1);
        let first = self
            .segments
            .first()
            .map(|s| s.first.as_slice())
            .unwrap_or(&[]);
        out.extend_from_slice(&(first.len() as u32).to_le_bytes());
        out.extend_from_slice(first);
        out.extend_from_slice(&(self.segments.len() as u32).to_le_bytes());
        let leb = |out: &mut Vec<u8>, mut v: u64| loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        };
        let mut previous: &[u8] = &[];
        let mut page = 0i64;
        for (i, segment) in self.segments.iter().enumerate() {
            let separator: &[u8] = match i {
                0 => &[],
                _ => shortest_separator(&self.segments[i - 1].last, &segment.first),
            };
            let shared = previous
                .iter()
                .zip(separator)
                .take_while(|(a, b)| a == b)
                .count();
            leb(&mut out, shared as u64);
            leb(&mut out, (separator.len() - shared) as u64);
            out.extend_from_slice(&separator[shared..]);
            let delta = segment.page as i64 - page;
            leb(&mut out, ((delta << 1) ^ (delta >> 63)) as u64);
            page = segment.page as i64;
            previous = separator;
        }
        out
    }
}

/// The file: prefix, the compressed body (`zstd_frame`, of `body_size` bytes decompressed,
/// checksum on), and the checksum of all of it.
pub fn assemble(
    db_len: u64,
    page_size: u32,
    content_hash: &str,
    body_size: u64,
    zstd_frame: &[u8],
) -> Result<Vec<u8>> {
    let hash_len = u8::try_from(content_hash.len())
        .map_err(|_| bad(format!("content hash of {} bytes", content_hash.len())))?;
    let mut out = Vec::with_capacity(64 + zstd_frame.len());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&db_len.to_le_bytes());
    out.extend_from_slice(&page_size.to_le_bytes());
    out.push(hash_len);
    out.extend_from_slice(content_hash.as_bytes());
    out.extend_from_slice(&body_size.to_le_bytes());
    out.extend_from_slice(zstd_frame);
    let checksum = xxhash_rust::xxh3::xxh3_64(&out);
    out.extend_from_slice(&checksum.to_le_bytes());
    Ok(out)
}

/// The shortest prefix of `first` greater than `last` (`last < first`).
fn shortest_separator<'a>(last: &[u8], first: &'a [u8]) -> &'a [u8] {
    let common = last.iter().zip(first).take_while(|(a, b)| a == b).count();
    &first[..(common + 1).min(first.len())]
}

/// One cell of a `kv` page (index B-tree): its key, and its payload as far as the page holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvCell<'a> {
    /// The key (column `k`, a BLOB).
    pub key: &'a [u8],
    /// Bytes of the whole record.
    pub payload_len: u64,
    /// The part of the record on this page.
    pub local: &'a [u8],
    /// First overflow page of the rest of the record.
    pub overflow: Option<u32>,
}

/// The cell at `at` of index B-tree page `number`: `Ok(None)` when its key is not a BLOB lying
/// whole on the page (readers then answer through SQLite).
fn cell(
    number: u32,
    page: &[u8],
    at: usize,
    usable: u32,
    interior: bool,
) -> Result<Option<KvCell<'_>>> {
    let broken = || {
        bad(format!(
            "page {number}: a cell at offset {at} overruns the page"
        ))
    };
    // SQLite's own minimum usable size is 480; below it the cell arithmetic underflows.
    if usable < 480 {
        return Err(bad(format!(
            "usable page size {usable} is below SQLite's minimum"
        )));
    }
    let at = if interior { at + 4 } else { at };
    let (payload_len, used) = varint(page, at).ok_or_else(broken)?;
    let start = at + used;
    let local_len = local_payload(usable as usize, payload_len as usize, false);
    let local = page.get(start..start + local_len).ok_or_else(broken)?;
    let overflow = match (local_len as u64) < payload_len {
        true => Some(be32(page, start + local_len).ok_or_else(broken)?),
        false => None,
    };
    let Some((header_len, used)) = varint(local, 0) else {
        return Ok(None);
    };
    let Some((serial, _)) = varint(local, used) else {
        return Ok(None);
    };
    if serial < 12 || serial % 2 == 1 {
        return Ok(None);
    }
    let key_start = header_len as usize;
    let key = local.get(key_start..key_start + ((serial - 12) / 2) as usize);
    Ok(key.map(|key| KvCell {
        key,
        payload_len,
        local,
        overflow,
    }))
}

/// What a page read through the index says about a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageAnswer<'a> {
    /// The key's cell.
    Found(KvCell<'a>),
    /// The key is not in the shard.
    Absent,
    /// The page holds cells the index path does not read (a key that is not a BLOB or does
    /// not lie whole on the page): answer through SQLite.
    Unsupported,
}

/// Looks `key` up on the page `placement` names (already checked against its page checksum),
/// first checking the page holds the segment the index describes: a leaf whose keys all lie in
/// `[lower, upper)`, or an interior page with a cell in that range. A page that does not is an
/// error (the index or the file is not what it claims).
pub fn find_in_page<'a>(
    placement: &Placement<'_>,
    page: &'a [u8],
    usable: u32,
    key: &[u8],
) -> Result<PageAnswer<'a>> {
    let number = placement.page;
    let in_segment = |k: &[u8]| k >= placement.lower && placement.upper.is_none_or(|u| k < u);
    let mismatch = |what: &str| {
        bad(format!(
            "it places keys from {} on page {number}, which {what}: the index does not describe \
             this file",
            hex(placement.lower)
        ))
    };
    let Some((kind, offsets)) = cells(number, page) else {
        return Err(mismatch("is not a B-tree page"));
    };
    let interior = match kind {
        10 => false,
        2 => true,
        _ => return Err(mismatch("is not an index B-tree page")),
    };
    let mut found = None;
    let mut any_in_segment = false;
    for &at in &offsets {
        let Some(c) = cell(number, page, at, usable, interior)? else {
            return Ok(PageAnswer::Unsupported);
        };
        let inside = in_segment(c.key);
        any_in_segment |= inside;
        if !interior && !inside {
            return Err(mismatch("holds keys outside that segment"));
        }
        if c.key == key && inside {
            found = Some(c);
        }
    }
    if !any_in_segment {
        return Err(mismatch("holds no key of that segment"));
    }
    Ok(match found {
        Some(c) => PageAnswer::Found(c),
        None => PageAnswer::Absent,
    })
}

/// What a lookup through the index needs next (see [`KeyIndex::lookup`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Read these pages (together, one round), then ask again.
    Need(Vec<u32>),
    /// The key's value.
    Found(Vec<u8>),
    /// The shard does not hold the key.
    Absent,
    /// The index cannot answer for this key (a value that is not a BLOB, a cell it cannot
    /// parse): the reader asks SQLite, which decides what such a row means.
    Unsupported,
}

impl KeyIndex {
    /// One step of a lookup of `key`, over the pages at hand (`page(n)`: page `n` if the reader
    /// holds it, already checked against the shard's page checksums). Asks first for the page
    /// the index places the key on, then, for a value that overflows, for the rest of its chain
    /// in one go: a chain written by one insert usually runs on consecutive pages, so the pages
    /// after its head are asked for together and a gap only costs one more step. A reader
    /// loops: fetch what [`Lookup::Need`] lists, call again.
    pub fn lookup(
        &self,
        key: &[u8],
        usable: u32,
        page: impl Fn(u32) -> Option<std::sync::Arc<[u8]>>,
    ) -> Result<Lookup> {
        let placement = self.place(key);
        let Some(leaf) = page(placement.page) else {
            return Ok(Lookup::Need(vec![placement.page]));
        };
        let cell = match find_in_page(&placement, &leaf, usable, key)? {
            PageAnswer::Found(cell) => cell,
            PageAnswer::Absent => return Ok(Lookup::Absent),
            PageAnswer::Unsupported => return Ok(Lookup::Unsupported),
        };
        let mut record = cell.local.to_vec();
        let mut next = cell.overflow.unwrap_or(0);
        let page_count = self.db_len.div_ceil(self.page_size as u64);
        let per_page = (usable as u64).saturating_sub(4).max(1);
        let mut steps = 0u64;
        while (record.len() as u64) < cell.payload_len {
            steps += 1;
            if next < 2 || next as u64 > page_count || steps > page_count {
                return Err(bad(format!(
                    "the value of a key on page {} continues on page {next}, outside pages \
                     2..={page_count} (a broken overflow chain)",
                    placement.page
                )));
            }
            let Some(overflow) = page(next) else {
                let left = (cell.payload_len - record.len() as u64).div_ceil(per_page);
                let last = (next as u64 + left - 1).min(page_count) as u32;
                return Ok(Lookup::Need((next..=last).collect()));
            };
            let (after, part) = overflow_part(&overflow, usable)
                .ok_or_else(|| bad(format!("overflow page {next} is shorter than a page")))?;
            let want = (cell.payload_len as usize - record.len()).min(part.len());
            record.extend_from_slice(&part[..want]);
            next = after;
        }
        Ok(match record_value(&record) {
            Some(value) => Lookup::Found(value.to_vec()),
            None => Lookup::Unsupported,
        })
    }
}

/// Column `v` of a whole `kv` record: `None` when it is not a BLOB (readers then answer
/// through SQLite, which decides what such a value means).
pub fn record_value(record: &[u8]) -> Option<&[u8]> {
    let (header_len, mut at) = varint(record, 0)?;
    let (key_serial, used) = varint(record, at)?;
    at += used;
    let (value_serial, _) = varint(record, at)?;
    if key_serial < 12 || value_serial < 12 || value_serial % 2 == 1 {
        return None;
    }
    let start = header_len as usize + ((key_serial - 12) / 2) as usize;
    record.get(start..start + ((value_serial - 12) / 2) as usize)
}

/// Bytes of an overflow page that carry payload, and the next page of the chain (0 at its end).
pub fn overflow_part(page: &[u8], usable: u32) -> Option<(u32, &[u8])> {
    let next = be32(page, 0)?;
    Some((next, page.get(4..usable as usize)?))
}

fn hex(bytes: &[u8]) -> String {
    match bytes.is_empty() {
        true => "the start".into(),
        false => bytes.iter().map(|b| format!("{b:02x}")).collect(),
    }
}
