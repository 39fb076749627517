//! Just enough of SQLite's B-tree page format (pure, no I/O) for readers to plan a search's reads
//! before running it, and for the sidecar to find overflow chains: the
//! children of interior pages, and the overflow chains the cells of a leaf start. With the
//! sidecar's interior pages pinned, the leaves of a table are known without any I/O; once the
//! leaves are fetched, their overflow chains (sqlite-vec's vector chunks) are known too, so a
//! cold vector search costs a fixed number of rounds instead of one per page.

/// Offset of the B-tree header in a page: page 1 starts with the 100-byte database header.
pub(crate) fn page_base(number: u32) -> usize {
    if number == 1 {
        100
    } else {
        0
    }
}

pub(crate) fn be16(page: &[u8], at: usize) -> Option<usize> {
    page.get(at..at + 2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
}

pub(crate) fn be32(page: &[u8], at: usize) -> Option<u32> {
    page.get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// SQLite varint at `at`: (value, bytes used).
pub(crate) fn varint(page: &[u8], at: usize) -> Option<(u64, usize)> {
    let mut value: u64 = 0;
    for i in 0..9 {
        let byte = *page.get(at + i)?;
        if i == 8 {
            return Some(((value << 8) | byte as u64, 9));
        }
        value = (value << 7) | (byte & 0x7f) as u64;
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// The cell offsets of a B-tree page and its type, or `None` for a page that is not one.
pub(crate) fn cells(number: u32, page: &[u8]) -> Option<(u8, Vec<usize>)> {
    let base = page_base(number);
    let kind = *page.get(base)?;
    let header = match kind {
        2 | 5 => 12,
        10 | 13 => 8,
        _ => return None,
    };
    let n = be16(page, base + 3)?;
    let offsets = (0..n)
        .map_while(|i| be16(page, base + header + 2 * i))
        .collect();
    Some((kind, offsets))
}

/// Whether the page is an interior B-tree page (table or index).
pub fn is_interior(number: u32, page: &[u8]) -> bool {
    matches!(page.get(page_base(number)), Some(2 | 5))
}

/// Child page numbers of an interior page (left children in order, then the right-most one);
/// empty for any other page.
pub fn children(number: u32, page: &[u8]) -> Vec<u32> {
    let Some((kind, offsets)) = cells(number, page) else {
        return Vec::new();
    };
    if kind != 2 && kind != 5 {
        return Vec::new();
    }
    let mut out: Vec<u32> = offsets.iter().filter_map(|c| be32(page, *c)).collect();
    out.extend(be32(page, page_base(number) + 8));
    out.retain(|p| *p > 0);
    out
}

/// How many payload bytes a cell keeps on its page (SQLite file format, section 1.6), usable
/// size `u`.
pub(crate) fn local_payload(u: usize, payload: usize, table_leaf: bool) -> usize {
    let max_local = if table_leaf {
        u - 35
    } else {
        (u - 12) * 64 / 255 - 23
    };
    if payload <= max_local {
        return payload;
    }
    let min_local = (u - 12) * 32 / 255 - 23;
    let k = min_local + (payload - min_local) % (u - 4);
    if k <= max_local {
        k
    } else {
        min_local
    }
}

/// First overflow page of every overflowing cell of a leaf page (table leaf or index leaf) or of
/// an interior index page; empty for other pages. `usable_size` is the page size less the bytes
/// each page reserves (header byte 20). Malformed cells are skipped.
pub fn overflow_heads(number: u32, page: &[u8], usable_size: u32) -> Vec<u32> {
    cell_overflow_heads(number, page, usable_size)
        .into_iter()
        .map(|(_, head)| head)
        .collect()
}

/// On a table leaf page: `(rowid, first overflow page)` of every overflowing cell, so a reader
/// can fetch the chains of the rows it needs only (the vector chunks of the probed IVF cells).
pub fn rowid_overflow_heads(number: u32, page: &[u8], usable_size: u32) -> Vec<(i64, u32)> {
    cell_overflow_heads(number, page, usable_size)
        .into_iter()
        .filter_map(|(rowid, head)| Some((rowid?, head)))
        .collect()
}

/// `(rowid on table leaves, first overflow page)` of every overflowing cell; see
/// [`overflow_heads`].
fn cell_overflow_heads(number: u32, page: &[u8], usable_size: u32) -> Vec<(Option<i64>, u32)> {
    let Some((kind, offsets)) = cells(number, page) else {
        return Vec::new();
    };
    // SQLite's own minimum usable size is 480; anything smaller is a malformed header and the
    // cell arithmetic below would underflow.
    if usable_size < 480 {
        return Vec::new();
    }
    let u = usable_size as usize;
    let mut heads = Vec::new();
    for cell in offsets {
        let (payload_at, table_leaf) = match kind {
            13 => (cell, true),
            10 => (cell, false),
            2 => (cell + 4, false),
            _ => return Vec::new(),
        };
        let Some((payload, used)) = varint(page, payload_at) else {
            continue;
        };
        let mut data_at = payload_at + used;
        let mut rowid = None;
        if table_leaf {
            let Some((value, rowid_len)) = varint(page, data_at) else {
                continue;
            };
            rowid = Some(value as i64);
            data_at += rowid_len;
        }
        let local = local_payload(u, payload as usize, table_leaf);
        if local < payload as usize {
            if let Some(head) = be32(page, data_at + local) {
                if head > 0 {
                    heads.push((rowid, head));
                }
            }
        }
    }
    heads
}

/// One cell of a table leaf page: its rowid, where its payload's local part sits on the page,
/// and its first overflow page (0 when the payload fits on the page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeafCell {
    /// The row's rowid.
    pub rowid: i64,
    /// Offset of the payload's first byte on the page.
    pub local_at: usize,
    /// Payload bytes kept on the page.
    pub local_len: usize,
    /// First overflow page, 0 for none.
    pub overflow: u32,
}

/// The cells of a table leaf page (`None` for any other page, or a cell that runs off the page).
pub fn table_leaf_cells(number: u32, page: &[u8], usable_size: u32) -> Option<Vec<LeafCell>> {
    let (kind, offsets) = cells(number, page)?;
    if kind != 13 || usable_size < 480 {
        return None;
    }
    let mut out = Vec::with_capacity(offsets.len());
    for cell in offsets {
        let (payload, used) = varint(page, cell)?;
        let (rowid, rowid_len) = varint(page, cell + used)?;
        let local_at = cell + used + rowid_len;
        let local_len = local_payload(usable_size as usize, payload as usize, true);
        let overflow = match local_len < payload as usize {
            true => be32(page, local_at + local_len)?,
            false => 0,
        };
        page.get(local_at..local_at + local_len)?;
        out.push(LeafCell {
            rowid: rowid as i64,
            local_at,
            local_len,
            overflow,
        });
    }
    Some(out)
}

/// Offset, within a record (its header at the start of `payload`), of column `column`'s value:
/// the header's length plus the sizes of the values before it. `None` when the header does not
/// fit in `payload` or names a reserved serial type.
pub fn record_column_offset(payload: &[u8], column: usize) -> Option<usize> {
    let (header_len, mut at) = varint(payload, 0)?;
    let mut offset = header_len as usize;
    for _ in 0..column {
        if at >= header_len as usize {
            return None;
        }
        let (serial, used) = varint(payload, at)?;
        at += used;
        offset += match serial {
            0 | 8 | 9 => 0,
            1..=4 => serial as usize,
            5 => 6,
            6 | 7 => 8,
            10 | 11 => return None,
            n => (n as usize - 12) / 2,
        };
    }
    Some(offset)
}

/// On an interior table page: the child whose subtree holds `rowid` (the left child of the
/// first cell whose key is at least `rowid`, else the right-most child); `None` for any other
/// page.
pub fn table_child_for(number: u32, page: &[u8], rowid: i64) -> Option<u32> {
    let (kind, offsets) = cells(number, page)?;
    if kind != 5 {
        return None;
    }
    for cell in offsets {
        let child = be32(page, cell)?;
        let (key, _) = varint(page, cell + 4)?;
        if rowid <= key as i64 {
            return Some(child);
        }
    }
    be32(page, page_base(number) + 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints() {
        assert_eq!(varint(&[0x05], 0), Some((5, 1)));
        assert_eq!(varint(&[0x81, 0x00], 0), Some((128, 2)));
        assert_eq!(varint(&[0x81], 0), None);
    }

    #[test]
    fn interior_table_page_children() {
        let mut page = vec![0u8; 4096];
        page[0] = 5;
        page[3..5].copy_from_slice(&2u16.to_be_bytes());
        page[8..12].copy_from_slice(&9u32.to_be_bytes());
        page[12..14].copy_from_slice(&100u16.to_be_bytes());
        page[14..16].copy_from_slice(&200u16.to_be_bytes());
        page[100..104].copy_from_slice(&3u32.to_be_bytes());
        page[104] = 1;
        page[200..204].copy_from_slice(&4u32.to_be_bytes());
        page[204] = 2;
        assert_eq!(children(2, &page), vec![3, 4, 9]);
        // Keys 1 and 2: rowids up to 1 left of the first, 2 left of the second, the rest right.
        assert_eq!(table_child_for(2, &page, -5), Some(3));
        assert_eq!(table_child_for(2, &page, 1), Some(3));
        assert_eq!(table_child_for(2, &page, 2), Some(4));
        assert_eq!(table_child_for(2, &page, 3), Some(9));
        assert!(is_interior(2, &page));
        assert!(
            children(1, &page).is_empty(),
            "page 1 has its header at 100"
        );
    }

    #[test]
    fn table_leaf_overflow_head() {
        let mut page = vec![0u8; 4096];
        page[0] = 13;
        page[3..5].copy_from_slice(&1u16.to_be_bytes());
        page[8..10].copy_from_slice(&1000u16.to_be_bytes());
        // Payload 10,000 bytes (varint 0xce 0x10), rowid 1.
        page[1000] = 0xce;
        page[1001] = 0x10;
        page[1002] = 1;
        let local = local_payload(4096, 10_000, true);
        assert!(local < 10_000);
        page[1003 + local..1003 + local + 4].copy_from_slice(&77u32.to_be_bytes());
        assert_eq!(overflow_heads(5, &page, 4096), vec![77]);
        assert_eq!(rowid_overflow_heads(5, &page, 4096), vec![(1, 77)]);
    }
}
