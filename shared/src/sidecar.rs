//! Page-cache sidecar v8 (`shard.sidecar`): what a range reader needs to pin at open so a cold
//! point lookup costs one leaf read, and so overflow chains can be fetched in one parallel round.
//!
//! ```text
//! prefix (little-endian): "SQPC" | u8 version = 8 | u64 body_size | u32 page_size | u8 tag_len
//!                         | tag (the shard.db ETag, quotes included) | one zstd frame
//! body: u32 n | n x u32 page numbers (ascending) | (n+1) x u32 blob offsets
//!       | u32 C | C x u32 chain heads (ascending) | (C+1) x u32 chain offsets (in pages)
//!       | M x u32 chain pages (head first) | page blob
//! ```
//! B-tree pages are stored gap-stripped (`page[..cpa_end] ++ page[cca..]`); other pages whole.
//!
//! This module parses sidecars ([`Sidecar::parse`]) and computes one from a database image
//! ([`analyze`] + [`SidecarContent::encode_body`] + [`assemble`]); compression is the caller's
//! (so this crate needs only a zstd *decoder*, which is pure Rust and runs on wasm32).

use crate::btree::{local_payload, page_base};
use crate::error::{Error, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;

/// The first four bytes of every sidecar file.
pub const MAGIC: &[u8; 4] = b"SQPC";
/// The sidecar format version this crate writes and reads; a sidecar of another version is
/// refused.
pub const VERSION: u8 = 8;
/// Fixed prefix length before the tag: magic, version, body size, page size, tag length.
const PREFIX_LEN: usize = 4 + 1 + 8 + 4 + 1;
/// Refuse bodies beyond this (a malformed size must not make a reader allocate gigabytes).
const MAX_BODY: u64 = 1 << 30;

fn bad(why: impl Into<String>) -> Error {
    Error::InvalidArgument(format!("invalid sidecar: {}", why.into()))
}

/// The decoded content of a sidecar: pinned pages (rebuilt to full size) and overflow chains.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SidecarContent {
    /// The shard's page size (every rebuilt page is this long).
    pub page_size: u32,
    /// Page number -> full page bytes.
    pub pages: BTreeMap<u32, Vec<u8>>,
    /// Overflow chains: each the list of its pages, head first. Sorted by head.
    pub chains: Vec<Vec<u32>>,
}

/// A parsed sidecar file.
#[derive(Debug, Clone, PartialEq)]
pub struct Sidecar {
    /// The ETag of `shard.db` this sidecar describes, exactly as the store returned it.
    pub tag: String,
    /// The pinned pages and overflow chains.
    pub content: SidecarContent,
}

impl Sidecar {
    /// Parses and fully checks a sidecar. Any inconsistency is an error: a reader must then
    /// fall back to plain page reads, never use half a sidecar.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        if bytes.len() < PREFIX_LEN || &bytes[..4] != MAGIC {
            return Err(bad("missing SQPC magic"));
        }
        if bytes[4] != VERSION {
            return Err(bad(format!("version {} is not {VERSION}", bytes[4])));
        }
        let body_size = u64::from_le_bytes(bytes[5..13].try_into().map_err(|_| bad("prefix"))?);
        let page_size = u32::from_le_bytes(bytes[13..17].try_into().map_err(|_| bad("prefix"))?);
        let tag_len = bytes[17] as usize;
        let tag = bytes
            .get(PREFIX_LEN..PREFIX_LEN + tag_len)
            .and_then(|t| std::str::from_utf8(t).ok())
            .ok_or_else(|| bad("tag is truncated or not UTF-8"))?
            .to_string();
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return Err(bad(format!("page size {page_size}")));
        }
        if body_size > MAX_BODY {
            return Err(bad(format!("body size {body_size} is implausible")));
        }
        let body = decompress(&bytes[PREFIX_LEN + tag_len..], body_size)?;
        let content = SidecarContent::decode_body(&body, page_size)?;
        Ok(Self { tag, content })
    }
}

/// Decodes one zstd frame, verifying its checksum when present and its exact size.
fn decompress(frame: &[u8], expected: u64) -> Result<Vec<u8>> {
    zstd_frame(frame, expected).map_err(bad)
}

/// Decodes one zstd frame of exactly `expected` bytes that carries its checksum (checked); the
/// error says what is wrong. Shared with [`crate::key_index`].
pub(crate) fn zstd_frame(frame: &[u8], expected: u64) -> std::result::Result<Vec<u8>, String> {
    let mut source = frame;
    let mut decoder = ruzstd::decoding::StreamingDecoder::new(&mut source)
        .map_err(|e| format!("zstd frame: {e}"))?;
    let mut out = Vec::with_capacity(expected as usize);
    (&mut decoder)
        .take(expected + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("zstd data: {e}"))?;
    let frame_decoder = decoder.into_frame_decoder();
    // The frame header's content size is not covered by the checksum: hold it to the prefix.
    let declared = frame_decoder.content_size();
    if declared != 0 && declared != expected {
        return Err(format!(
            "zstd frame declares {declared} bytes, the prefix says {expected}"
        ));
    }
    // The format writes the frame checksum; a frame without one, or with a wrong one, is refused.
    match (
        frame_decoder.get_checksum_from_data(),
        frame_decoder.get_calculated_checksum(),
    ) {
        (Some(stored), Some(computed)) if stored == computed => {}
        (Some(_), Some(_)) => return Err("zstd checksum mismatch".into()),
        _ => return Err("zstd frame carries no checksum".into()),
    }
    if out.len() as u64 != expected {
        return Err(format!(
            "body is {} bytes, the prefix says {expected}",
            out.len()
        ));
    }
    Ok(out)
}

/// Little-endian u32 reader over the body with bounds checks.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn u32(&mut self) -> Result<u32> {
        let v = self
            .bytes
            .get(self.at..self.at + 4)
            .ok_or_else(|| bad("body is truncated"))?;
        self.at += 4;
        Ok(u32::from_le_bytes([v[0], v[1], v[2], v[3]]))
    }

    fn u32s(&mut self, count: usize) -> Result<Vec<u32>> {
        if count > self.bytes.len() / 4 {
            return Err(bad("a count exceeds the body"));
        }
        (0..count).map(|_| self.u32()).collect()
    }
}

fn strictly_ascending(values: &[u32]) -> bool {
    values.windows(2).all(|w| w[0] < w[1])
}

impl SidecarContent {
    fn decode_body(body: &[u8], page_size: u32) -> Result<Self> {
        let mut cur = Cursor { bytes: body, at: 0 };
        let n = cur.u32()? as usize;
        let page_numbers = cur.u32s(n)?;
        let offsets = cur.u32s(n + 1)?;
        let c = cur.u32()? as usize;
        let heads = cur.u32s(c)?;
        let chain_offsets = cur.u32s(c + 1)?;
        let m = *chain_offsets.last().unwrap_or(&0) as usize;
        let chain_pages = cur.u32s(m)?;
        let blob = &body[cur.at..];

        if !strictly_ascending(&page_numbers) || page_numbers.first() == Some(&0) {
            return Err(bad("page numbers are not ascending and positive"));
        }
        if !strictly_ascending(&heads) {
            return Err(bad("chain heads are not ascending"));
        }
        if offsets.first() != Some(&0)
            || offsets.windows(2).any(|w| w[0] > w[1])
            || *offsets.last().unwrap_or(&0) as usize != blob.len()
        {
            return Err(bad("page offsets do not cover the page blob"));
        }
        if chain_offsets.first() != Some(&0) || chain_offsets.windows(2).any(|w| w[0] >= w[1]) {
            return Err(bad("chain offsets are not increasing"));
        }
        let mut pages = BTreeMap::new();
        for (i, number) in page_numbers.iter().enumerate() {
            let stored = &blob[offsets[i] as usize..offsets[i + 1] as usize];
            pages.insert(*number, rebuild_page(*number, stored, page_size)?);
        }
        let mut chains = Vec::with_capacity(c);
        for (i, head) in heads.iter().enumerate() {
            let chain =
                chain_pages[chain_offsets[i] as usize..chain_offsets[i + 1] as usize].to_vec();
            if chain.first() != Some(head) {
                return Err(bad(format!(
                    "chain {i} does not start with its head {head}"
                )));
            }
            chains.push(chain);
        }
        Ok(Self {
            page_size,
            pages,
            chains,
        })
    }

    /// The uncompressed body. Pages are gap-stripped when they are B-tree pages.
    pub fn encode_body(&self) -> Vec<u8> {
        let mut blob = Vec::new();
        let mut offsets = vec![0u32];
        for (number, page) in &self.pages {
            blob.extend_from_slice(&strip_page(*number, page));
            offsets.push(blob.len() as u32);
        }
        let mut out = Vec::new();
        let mut put = |v: u32| out.extend_from_slice(&v.to_le_bytes());
        put(self.pages.len() as u32);
        self.pages.keys().for_each(|n| put(*n));
        offsets.iter().for_each(|o| put(*o));
        put(self.chains.len() as u32);
        self.chains.iter().for_each(|c| put(c[0]));
        let mut total = 0u32;
        put(0);
        for chain in &self.chains {
            total += chain.len() as u32;
            put(total);
        }
        self.chains.iter().flatten().for_each(|p| put(*p));
        out.extend_from_slice(&blob);
        out
    }
}

/// The full sidecar file from a compressed body (`zstd_frame` must be one zstd frame of
/// `body_size` bytes, written with its checksum).
pub fn assemble(page_size: u32, tag: &str, body_size: u64, zstd_frame: &[u8]) -> Result<Vec<u8>> {
    let tag_len =
        u8::try_from(tag.len()).map_err(|_| bad(format!("tag {tag:?} is over 255 bytes")))?;
    let mut out = Vec::with_capacity(PREFIX_LEN + tag.len() + zstd_frame.len());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&body_size.to_le_bytes());
    out.extend_from_slice(&page_size.to_le_bytes());
    out.push(tag_len);
    out.extend_from_slice(tag.as_bytes());
    out.extend_from_slice(zstd_frame);
    Ok(out)
}

impl SidecarContent {
    /// Bytes per page SQLite may use (the page size less the bytes each page reserves, header
    /// byte 20 of page 1): what cell-size arithmetic needs. The page size when page 1 is absent.
    pub fn usable_size(&self) -> u32 {
        let reserved = self
            .pages
            .get(&1)
            .and_then(|page| page.get(20))
            .copied()
            .unwrap_or(0);
        self.page_size.saturating_sub(reserved as u32)
    }
}

/// Heads of the overflow chains that start in cells of pinned *interior* index pages.
///
/// A WITHOUT ROWID table (like `kv`) keeps whole rows in its interior cells, so a large value
/// can become a divider key; SQLite reads that cell's whole payload while descending the tree.
/// A reader that fetches these chains once at open keeps every later point lookup at one leaf
/// read.
pub fn interior_chain_heads(content: &SidecarContent) -> Vec<u32> {
    let mut heads: Vec<u32> = content
        .pages
        .iter()
        .filter(|(number, page)| page.get(page_base(**number)) == Some(&2))
        .flat_map(|(number, page)| index_overflow_heads(*number, page, content.usable_size()))
        .collect();
    heads.sort_unstable();
    heads.dedup();
    heads
}

/// Heads of the overflow chains of the cells of one index B-tree page (types 2 and 10); empty
/// for other pages. SQLite reads the whole payload of an overflowing index cell whenever a
/// search compares against it, so a reader that has just fetched such a page can fetch all of
/// these chains in the next round instead of one round per comparison. `usable_size` is the page
/// size less the bytes reserved per page. Malformed pages yield what could be read.
pub fn index_overflow_heads(number: u32, page: &[u8], usable_size: u32) -> Vec<u32> {
    match page.get(page_base(number)) {
        Some(2) | Some(10) => crate::btree::overflow_heads(number, page, usable_size),
        _ => Vec::new(),
    }
}

/// The same sidecar bound to another tag: the ETag a host reports for `shard.db` once the
/// snapshot is deployed there (static hosts compute their own ETags). The body is unchanged.
pub fn retag(sidecar: &[u8], tag: &str) -> Result<Vec<u8>> {
    if sidecar.len() < PREFIX_LEN || &sidecar[..4] != MAGIC || sidecar[4] != VERSION {
        return Err(bad("not a v8 sidecar"));
    }
    let old_tag_len = sidecar[17] as usize;
    let frame = sidecar
        .get(PREFIX_LEN + old_tag_len..)
        .ok_or_else(|| bad("tag is truncated"))?;
    let body_size = u64::from_le_bytes(sidecar[5..13].try_into().map_err(|_| bad("prefix"))?);
    let page_size = u32::from_le_bytes(sidecar[13..17].try_into().map_err(|_| bad("prefix"))?);
    assemble(page_size, tag, body_size, frame)
}

/// For a B-tree page, `(cpa_end, cca)`: the end of the cell pointer array and the start of the
/// cell content area. `None` for pages that are not B-tree pages.
fn btree_gap(number: u32, page: &[u8]) -> Option<(usize, usize)> {
    let base = page_base(number);
    let header = match *page.get(base)? {
        2 | 5 => 12,
        10 | 13 => 8,
        _ => return None,
    };
    let n = u16::from_be_bytes([*page.get(base + 3)?, *page.get(base + 4)?]) as usize;
    let cca = match u16::from_be_bytes([*page.get(base + 5)?, *page.get(base + 6)?]) {
        0 => 65536,
        v => v as usize,
    };
    let cpa_end = base + header + 2 * n;
    (cpa_end <= cca && cca <= page.len()).then_some((cpa_end, cca))
}

fn strip_page(number: u32, page: &[u8]) -> Vec<u8> {
    match btree_gap(number, page) {
        Some((cpa_end, cca)) => [&page[..cpa_end], &page[cca..]].concat(),
        None => page.to_vec(),
    }
}

fn rebuild_page(number: u32, stored: &[u8], page_size: u32) -> Result<Vec<u8>> {
    let page_size = page_size as usize;
    if stored.len() == page_size {
        return Ok(stored.to_vec());
    }
    // A stripped page: its header (within the stored prefix) says where the gap goes.
    let base = page_base(number);
    let header = match stored.get(base) {
        Some(2 | 5) => 12,
        Some(10 | 13) => 8,
        _ => return Err(bad(format!("page {number} is short but not a B-tree page"))),
    };
    let field = |at: usize| -> Result<usize> {
        stored
            .get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
            .ok_or_else(|| bad(format!("page {number} header is truncated")))
    };
    let n = field(base + 3)?;
    let cca = match field(base + 5)? {
        0 => 65536,
        v => v,
    };
    let cpa_end = base + header + 2 * n;
    if cpa_end > stored.len() || cca < cpa_end || stored.len() + (cca - cpa_end) != page_size {
        return Err(bad(format!(
            "page {number} does not rebuild to {page_size} bytes"
        )));
    }
    let mut page = Vec::with_capacity(page_size);
    page.extend_from_slice(&stored[..cpa_end]);
    page.resize(cca, 0);
    page.extend_from_slice(&stored[cpa_end..]);
    Ok(page)
}

/// Computes the sidecar content of a database image: every interior B-tree page, every page of
/// the schema tree, and every overflow chain of every table and index.
pub fn analyze(db: &[u8]) -> Result<SidecarContent> {
    let image = DbImage::new(db)?;
    let mut keep = BTreeSet::new();
    let mut chains = Vec::new();
    // The schema tree (rooted at page 1) is kept whole, leaves included: a reader needs all of
    // it to open the database.
    let mut roots = Vec::new();
    image.walk(1, true, &mut keep, &mut chains, &mut |payload| {
        if let Some(root) = schema_rootpage(payload) {
            roots.push(root);
        }
    })?;
    for root in roots {
        image.walk(root, false, &mut keep, &mut chains, &mut |_| {})?;
    }
    chains.sort_by_key(|c: &Vec<u32>| c[0]);
    chains.dedup();
    // Pages as a reader rebuilds them: the unused gap inside a B-tree page reads as zeros.
    let pages = keep
        .into_iter()
        .map(|n| {
            let page = image.page(n)?;
            let rebuilt = rebuild_page(n, &strip_page(n, page), image.page_size as u32)?;
            // Pages that reserve bytes (page checksums) must rebuild byte for byte, or the
            // checksum a reader verifies would not match: the writer zeroes the gaps first
            // (`integrity::seal_pages`).
            if image.usable != image.page_size && rebuilt != page {
                return Err(bad(format!(
                    "page {n} reserves bytes per page and its unused gap is not zero, so its \
                     gap-stripped copy would not rebuild byte for byte"
                )));
            }
            Ok((n, rebuilt))
        })
        .collect::<Result<_>>()?;
    Ok(SidecarContent {
        page_size: image.page_size as u32,
        pages,
        chains,
    })
}

/// Every B-tree page of a database image (interior and leaf pages of the schema tree and of
/// every table and index it names), ascending. Overflow, freelist and other pages are not
/// listed.
pub fn btree_pages(db: &[u8]) -> Result<BTreeSet<u32>> {
    let image = DbImage::new(db)?;
    let mut pages = BTreeSet::new();
    let mut chains = Vec::new();
    let mut roots = Vec::new();
    image.walk(1, true, &mut pages, &mut chains, &mut |payload| {
        if let Some(root) = schema_rootpage(payload) {
            roots.push(root);
        }
    })?;
    for root in roots {
        image.walk(root, true, &mut pages, &mut chains, &mut |_| {})?;
    }
    Ok(pages)
}

/// For a B-tree page, the unused gap between its cell pointer array and its cell content area,
/// as a byte range of the page (`None` for other pages). SQLite never reads it.
pub fn unused_gap(number: u32, page: &[u8]) -> Option<std::ops::Range<usize>> {
    btree_gap(number, page).map(|(cpa_end, cca)| cpa_end..cca)
}

struct DbImage<'a> {
    db: &'a [u8],
    page_size: usize,
    usable: usize,
    page_count: u32,
}

impl<'a> DbImage<'a> {
    fn new(db: &'a [u8]) -> Result<Self> {
        if db.len() < 100 || &db[..16] != b"SQLite format 3\0" {
            return Err(bad("not a SQLite database image"));
        }
        let page_size = match u16::from_be_bytes([db[16], db[17]]) {
            1 => 65536,
            v => v as usize,
        };
        if page_size < 512 || !page_size.is_power_of_two() || !db.len().is_multiple_of(page_size) {
            return Err(bad(format!("page size {page_size} does not fit the image")));
        }
        // Bytes reserved at the end of each page (edgeshard's page checksums use 8). SQLite
        // requires a usable size of at least 480.
        let usable = page_size - db[20] as usize;
        if usable < 480 {
            return Err(bad(format!(
                "{} bytes reserved per page leave too little of a {page_size}-byte page",
                db[20]
            )));
        }
        Ok(Self {
            db,
            page_size,
            usable,
            page_count: (db.len() / page_size) as u32,
        })
    }

    fn page(&self, number: u32) -> Result<&'a [u8]> {
        if number == 0 || number > self.page_count {
            return Err(bad(format!("page {number} is outside the database")));
        }
        let start = (number as usize - 1) * self.page_size;
        Ok(&self.db[start..start + self.page_size])
    }

    /// Walks the B-tree at `root`: records interior pages (and leaves too when `keep_leaves`),
    /// overflow chains, and hands each leaf payload (overflow reassembled) to `on_payload`.
    fn walk(
        &self,
        root: u32,
        keep_leaves: bool,
        keep: &mut BTreeSet<u32>,
        chains: &mut Vec<Vec<u32>>,
        on_payload: &mut dyn FnMut(&[u8]),
    ) -> Result<()> {
        let mut stack = vec![root];
        let mut visited = BTreeSet::new();
        while let Some(number) = stack.pop() {
            if !visited.insert(number) {
                return Err(bad(format!(
                    "page {number} is reached twice (corrupt tree)"
                )));
            }
            let page = self.page(number)?;
            let base = page_base(number);
            let kind = page[base];
            let interior = matches!(kind, 2 | 5);
            if !matches!(kind, 2 | 5 | 10 | 13) {
                return Err(bad(format!(
                    "page {number} is not a B-tree page (type {kind})"
                )));
            }
            if interior || keep_leaves {
                keep.insert(number);
            }
            let n = u16::from_be_bytes([page[base + 3], page[base + 4]]) as usize;
            let header = if interior { 12 } else { 8 };
            if interior {
                stack.push(be32(page, base + 8)?);
            }
            for i in 0..n {
                let cell = u16::from_be_bytes([
                    *page
                        .get(base + header + 2 * i)
                        .ok_or_else(|| bad("cell pointer"))?,
                    *page
                        .get(base + header + 2 * i + 1)
                        .ok_or_else(|| bad("cell pointer"))?,
                ]) as usize;
                let mut at = cell;
                if interior {
                    stack.push(be32(page, at)?);
                    at += 4;
                    if kind == 5 {
                        continue; // table interior cells hold only a child and a rowid
                    }
                }
                let (payload_len, used) = varint(page, at)?;
                at += used;
                if kind == 13 {
                    at += varint(page, at)?.1; // rowid
                }
                let payload_len = payload_len as usize;
                let local = self.local_size(payload_len, kind == 13);
                let local_bytes = page
                    .get(at..at + local)
                    .ok_or_else(|| bad(format!("cell {i} of page {number} overruns the page")))?;
                if local < payload_len {
                    let head = be32(page, at + local)?;
                    let (chain, rest) = self.chain(head, payload_len - local)?;
                    chains.push(chain);
                    if kind == 13 || keep_leaves {
                        on_payload(&[local_bytes, &rest].concat());
                    }
                } else {
                    on_payload(local_bytes);
                }
            }
        }
        Ok(())
    }

    fn local_size(&self, payload: usize, table_leaf: bool) -> usize {
        local_payload(self.usable, payload, table_leaf)
    }

    /// Follows an overflow chain holding `remaining` bytes: its pages and the bytes.
    fn chain(&self, head: u32, mut remaining: usize) -> Result<(Vec<u32>, Vec<u8>)> {
        // A payload cannot be larger than the database holding it (found by fuzzing: a
        // corrupt length made the allocation below overflow).
        if remaining > self.db.len() {
            return Err(bad(format!(
                "a payload of {remaining} bytes overflowing to page {head} is larger than the \
                 database"
            )));
        }
        let mut pages = Vec::new();
        let mut bytes = Vec::with_capacity(remaining);
        let mut next = head;
        while remaining > 0 {
            if next == 0 || pages.len() > self.page_count as usize {
                return Err(bad(format!("overflow chain from page {head} is broken")));
            }
            let page = self.page(next)?;
            pages.push(next);
            let take = remaining.min(self.usable - 4);
            bytes.extend_from_slice(&page[4..4 + take]);
            remaining -= take;
            next = be32(page, 0)?;
        }
        Ok((pages, bytes))
    }
}

fn be32(page: &[u8], at: usize) -> Result<u32> {
    page.get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| bad("a page pointer overruns the page"))
}

/// SQLite's big-endian varint: (value, bytes used).
fn varint(bytes: &[u8], at: usize) -> Result<(u64, usize)> {
    let mut value = 0u64;
    for i in 0..9 {
        let b = *bytes
            .get(at + i)
            .ok_or_else(|| bad("varint overruns the page"))?;
        if i == 8 {
            return Ok(((value << 8) | b as u64, 9));
        }
        value = (value << 7) | (b & 0x7f) as u64;
        if b & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    Err(bad("varint"))
}

/// The `rootpage` of a `sqlite_master` record when it names a B-tree (tables and indexes;
/// views, triggers and virtual tables have 0).
fn schema_rootpage(record: &[u8]) -> Option<u32> {
    let (header_len, mut at) = varint(record, 0).ok()?;
    let mut serial_types = Vec::new();
    while at < header_len as usize {
        let (t, used) = varint(record, at).ok()?;
        serial_types.push(t);
        at += used;
    }
    let mut body = header_len as usize;
    for (column, t) in serial_types.iter().enumerate() {
        let size = match t {
            0 | 8 | 9 => 0,
            1 => 1,
            2 => 2,
            3 => 3,
            4 => 4,
            5 => 6,
            6 | 7 => 8,
            t if *t >= 12 => ((t - 12) / 2) as usize,
            _ => return None,
        };
        if column == 3 {
            let v = match t {
                8 => 0,
                9 => 1,
                1..=6 => {
                    let raw = record.get(body..body + size)?;
                    raw.iter().fold(0i64, |acc, b| (acc << 8) | *b as i64)
                }
                _ => return None,
            };
            return u32::try_from(v).ok().filter(|v| *v > 0);
        }
        body += size;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_strip_and_rebuild_round_trip() {
        // A table leaf page with 2 cells: header 8 bytes + 4 pointer bytes, content at 4000.
        let mut page = vec![0u8; 4096];
        page[0] = 13;
        page[3..5].copy_from_slice(&2u16.to_be_bytes());
        page[5..7].copy_from_slice(&4000u16.to_be_bytes());
        page[4000..4096]
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = i as u8);
        let stripped = strip_page(5, &page);
        assert_eq!(stripped.len(), 8 + 4 + 96);
        assert_eq!(rebuild_page(5, &stripped, 4096).unwrap(), page);
    }

    #[test]
    fn body_round_trips() {
        let mut page = vec![0u8; 4096];
        page[0] = 5;
        page[5..7].copy_from_slice(&4090u16.to_be_bytes());
        let content = SidecarContent {
            page_size: 4096,
            pages: [(2, page), (7, vec![9u8; 4096])].into_iter().collect(),
            chains: vec![vec![3, 4], vec![10, 12, 11]],
        };
        let body = content.encode_body();
        assert_eq!(SidecarContent::decode_body(&body, 4096).unwrap(), content);
        assert!(SidecarContent::decode_body(&body[..body.len() - 1], 4096).is_err());
    }

    #[test]
    fn varints() {
        assert_eq!(varint(&[0x05], 0).unwrap(), (5, 1));
        assert_eq!(varint(&[0x81, 0x00], 0).unwrap(), (128, 2));
        assert!(varint(&[0x81], 0).is_err());
    }
}
