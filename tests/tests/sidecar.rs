//! `shard.sidecar` (format spec section 8) as the builder writes it, checked against the shard
//! files with an independent B-tree walker written here (the expected pages and chains do not
//! come from `edgeshard_shared::sidecar`), plus the manifest's `custom.sqlite_sidecar`.

use edgeshard_builder::build::build;
use edgeshard_shared::sidecar::{analyze, Sidecar};
use edgeshard_tests::{
    build_options, random_bytes, random_vector, rng, run_cli, temp_dir, write_parquet,
    ParquetColumns, TempDir,
};
use md5::{Digest, Md5};
use rand::seq::IndexedRandom;
use rand::Rng;
use rusqlite::{Connection, OpenFlags};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------------------------------------
// Snapshot fixtures

struct Built {
    _dir: TempDir,
    root: PathBuf,
    /// id -> value, as written to the input.
    values: BTreeMap<i64, Vec<u8>>,
}

/// A unified snapshot (64-d vectors) of `n` records over 4 shards. Values are 200 bytes, except
/// every `big_every`-th record, whose value is ~10 KB (overflow pages at page size 4096).
fn build_unified(n: usize, big_every: Option<usize>, page_size: u32, sidecar: bool) -> Built {
    let tmp = temp_dir();
    let dir = tmp.path();
    let mut r = rng(0x51dec0de);
    let ids: Vec<i64> = (0..n as i64).map(|i| i * 7 + 3).collect();
    let values: Vec<Vec<u8>> = (0..n)
        .map(|i| match big_every {
            Some(k) if i % k == 0 => random_bytes(&mut r, 9_500, 10_500),
            _ => random_bytes(&mut r, 200, 200),
        })
        .collect();
    let vectors: Vec<Vec<f32>> = (0..n).map(|_| random_vector(&mut r, 64)).collect();
    let input = dir.join("in.parquet");
    write_parquet(
        &input,
        &ParquetColumns {
            ids: &ids,
            values: &values,
            vectors: Some(&vectors),
            tags: None,
        },
    );
    let root = dir.join("root");
    let mut opts = build_options(&input, &root);
    opts.fields.vector_field = Some("emb".into());
    opts.shards = 4;
    opts.page_size = page_size;
    opts.sidecar = sidecar;
    build(&opts).expect("build");
    Built {
        _dir: tmp,
        root,
        values: ids.into_iter().zip(values).collect(),
    }
}

struct ShardFiles {
    db_id: i64,
    db: PathBuf,
    sidecar: PathBuf,
    writer_info: Value,
}

fn open_ro(path: &Path) -> Connection {
    Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap()
}

/// The single manifest under `root`: its `custom` and its shard rows.
fn manifest(root: &Path) -> (Value, Vec<ShardFiles>) {
    let dirs: Vec<PathBuf> = std::fs::read_dir(root.join("manifests"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1);
    let conn = open_ro(&dirs[0].join("manifest"));
    let custom: String = conn
        .query_row("SELECT custom FROM build_meta", [], |r| r.get(0))
        .unwrap();
    let run_id: String = conn
        .query_row("SELECT run_id FROM build_meta", [], |r| r.get(0))
        .unwrap();
    let mut stmt = conn
        .prepare("SELECT db_id, writer_info FROM shards ORDER BY db_id")
        .unwrap();
    let shards = stmt
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .map(|(db_id, info)| {
            let dir = root.join(format!("shards/run_id={run_id}/db={db_id:05}/attempt=00"));
            ShardFiles {
                db_id,
                db: dir.join("shard.db"),
                sidecar: dir.join("shard.sidecar"),
                writer_info: serde_json::from_str(&info).unwrap(),
            }
        })
        .collect::<Vec<_>>();
    assert!(!shards.is_empty());
    (serde_json::from_str(&custom).unwrap(), shards)
}

fn md5_etag(bytes: &[u8]) -> String {
    let hex: String = Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("\"{hex}\"")
}

// ---------------------------------------------------------------------------------------------
// An independent reading of the SQLite file format (https://sqlite.org/fileformat.html, 1.6)

struct Db<'a> {
    bytes: &'a [u8],
    page_size: usize,
    /// Page size less the bytes reserved at the end of each page (edgeshard's checksums).
    usable: usize,
}

struct Cell {
    left_child: Option<u32>,
    /// The whole payload (local part + overflow), empty for table interior cells.
    payload: Vec<u8>,
    /// The overflow chain, head first (empty when the payload fits on the page).
    chain: Vec<u32>,
}

struct Page {
    kind: u8,
    cells: Vec<Cell>,
    right_child: Option<u32>,
}

#[derive(Default)]
struct Tree {
    interior: BTreeSet<u32>,
    leaves: BTreeSet<u32>,
    chains: Vec<Vec<u32>>,
}

fn varint(b: &[u8], at: usize) -> (u64, usize) {
    let mut v = 0u64;
    for i in 0..8 {
        v = (v << 7) | (b[at + i] & 0x7f) as u64;
        if b[at + i] < 0x80 {
            return (v, i + 1);
        }
    }
    ((v << 8) | b[at + 8] as u64, 9)
}

impl<'a> Db<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        assert_eq!(&bytes[..16], b"SQLite format 3\0");
        assert_eq!(
            bytes[20], 8,
            "8 bytes reserved per page for the page checksums"
        );
        let page_size = match u16::from_be_bytes([bytes[16], bytes[17]]) {
            1 => 65536,
            p => p as usize,
        };
        let usable = page_size - bytes[20] as usize;
        Self {
            bytes,
            page_size,
            usable,
        }
    }

    fn raw(&self, n: u32) -> &'a [u8] {
        let start = (n as usize - 1) * self.page_size;
        &self.bytes[start..start + self.page_size]
    }

    fn page(&self, n: u32) -> Page {
        let p = self.raw(n);
        let base = if n == 1 { 100 } else { 0 };
        let kind = p[base];
        assert!(matches!(kind, 2 | 5 | 10 | 13), "page {n} type {kind}");
        let interior = kind == 2 || kind == 5;
        let count = u16::from_be_bytes([p[base + 3], p[base + 4]]) as usize;
        let header = if interior { 12 } else { 8 };
        let u = self.usable;
        let cells = (0..count)
            .map(|i| {
                let ptr = base + header + 2 * i;
                let mut at = u16::from_be_bytes([p[ptr], p[ptr + 1]]) as usize;
                let mut left_child = None;
                if interior {
                    left_child = Some(u32::from_be_bytes(p[at..at + 4].try_into().unwrap()));
                    at += 4;
                }
                if kind == 5 {
                    return Cell {
                        left_child,
                        payload: Vec::new(),
                        chain: Vec::new(),
                    };
                }
                let (size, used) = varint(p, at);
                at += used;
                if kind == 13 {
                    at += varint(p, at).1;
                }
                let size = size as usize;
                let max_local = if kind == 13 {
                    u - 35
                } else {
                    (u - 12) * 64 / 255 - 23
                };
                let min_local = (u - 12) * 32 / 255 - 23;
                let local = if size <= max_local {
                    size
                } else {
                    let k = min_local + (size - min_local) % (u - 4);
                    if k <= max_local {
                        k
                    } else {
                        min_local
                    }
                };
                let mut payload = p[at..at + local].to_vec();
                let mut chain = Vec::new();
                if local < size {
                    let mut next =
                        u32::from_be_bytes(p[at + local..at + local + 4].try_into().unwrap());
                    while payload.len() < size {
                        chain.push(next);
                        let o = self.raw(next);
                        let take = (size - payload.len()).min(u - 4);
                        payload.extend_from_slice(&o[4..4 + take]);
                        next = u32::from_be_bytes(o[..4].try_into().unwrap());
                    }
                    assert_eq!(next, 0, "chain ends with a zero pointer");
                }
                Cell {
                    left_child,
                    payload,
                    chain,
                }
            })
            .collect();
        let right_child =
            interior.then(|| u32::from_be_bytes(p[base + 8..base + 12].try_into().unwrap()));
        Page {
            kind,
            cells,
            right_child,
        }
    }

    fn walk(&self, root: u32) -> Tree {
        let mut tree = Tree::default();
        let mut stack = vec![root];
        while let Some(n) = stack.pop() {
            let page = self.page(n);
            if page.right_child.is_some() {
                tree.interior.insert(n);
            } else {
                tree.leaves.insert(n);
            }
            stack.extend(page.right_child);
            for cell in page.cells {
                stack.extend(cell.left_child);
                if !cell.chain.is_empty() {
                    tree.chains.push(cell.chain);
                }
            }
        }
        tree
    }
}

/// The columns of a record: (serial type, bytes).
fn record(payload: &[u8]) -> Vec<(u64, &[u8])> {
    let (header_len, mut at) = varint(payload, 0);
    let mut types = Vec::new();
    while at < header_len as usize {
        let (t, used) = varint(payload, at);
        types.push(t);
        at += used;
    }
    let mut body = header_len as usize;
    types
        .into_iter()
        .map(|t| {
            let len = match t {
                0 | 8 | 9 => 0,
                1..=4 => t as usize,
                5 => 6,
                6 | 7 => 8,
                t => ((t - 12) / 2) as usize,
            };
            let col = &payload[body..body + len];
            body += len;
            (t, col)
        })
        .collect()
}

/// name -> rootpage of every B-tree in the schema.
fn roots(db_path: &Path) -> BTreeMap<String, u32> {
    let conn = open_ro(db_path);
    let mut stmt = conn
        .prepare("SELECT name, rootpage FROM sqlite_master WHERE rootpage > 0")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// The pages visited looking `key` up in the `kv` index B-tree, root first. The last page holds
/// the key (a leaf, or an interior page when the key sits in an interior cell).
fn descend(db: &Db<'_>, root: u32, key: &[u8]) -> Vec<u32> {
    let mut path = vec![root];
    loop {
        let n = *path.last().unwrap();
        let page = db.page(n);
        assert!(matches!(page.kind, 2 | 10), "kv is an index B-tree");
        let first_col = |c: &Cell| record(&c.payload)[0].1.to_vec();
        let pos = page
            .cells
            .iter()
            .position(|c| first_col(c).as_slice() >= key);
        if let Some(i) = pos {
            if first_col(&page.cells[i]) == key {
                return path;
            }
        }
        match (page.kind, pos) {
            (2, Some(i)) => path.push(page.cells[i].left_child.unwrap()),
            (2, None) => path.push(page.right_child.unwrap()),
            _ => panic!("key {key:02x?} not found on leaf {n}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------

/// Test 1 (+ the manifest side of test 4): every shard has a sidecar that parses, is bound to the
/// S3 single-part ETag of its shard.db, and pins page bytes equal to the file outside the gap.
#[test]
fn every_shard_has_a_valid_sidecar_bound_to_its_md5_etag() {
    let built = build_unified(3_000, None, 4096, true);
    let (custom, shards) = manifest(&built.root);
    assert_eq!(
        custom["sqlite_sidecar"],
        json!({"codec": "zstd", "filename": "shard.sidecar", "format_version": 8, "page_size": 4096})
    );
    assert_eq!(shards.len(), 4);
    for shard in &shards {
        let db = std::fs::read(&shard.db).unwrap();
        let bytes = std::fs::read(&shard.sidecar).expect("shard.sidecar beside shard.db");
        eprintln!(
            "shard {}: shard.db {} bytes, shard.sidecar {} bytes ({:.2}%)",
            shard.db_id,
            db.len(),
            bytes.len(),
            100.0 * bytes.len() as f64 / db.len() as f64
        );
        let sidecar = Sidecar::parse(&bytes).unwrap();
        let etag = md5_etag(&db);
        assert_eq!(sidecar.tag, etag);
        assert_eq!(shard.writer_info["sidecar_tag"], json!(etag));
        assert_eq!(sidecar.content.page_size, 4096);
        assert!(sidecar.content.pages.contains_key(&1), "page 1 is pinned");
        for (number, page) in &sidecar.content.pages {
            let start = (*number as usize - 1) * 4096;
            let original = &db[start..start + 4096];
            let base = if *number == 1 { 100 } else { 0 };
            let header = if matches!(original[base], 2 | 5) {
                12
            } else {
                8
            };
            let cells = u16::from_be_bytes([original[base + 3], original[base + 4]]) as usize;
            let gap_start = base + header + 2 * cells;
            let gap_end = u16::from_be_bytes([original[base + 5], original[base + 6]]) as usize;
            assert_eq!(page.len(), 4096);
            assert_eq!(&page[..gap_start], &original[..gap_start], "page {number}");
            assert_eq!(&page[gap_end..], &original[gap_end..], "page {number}");
            assert!(page[gap_start..gap_end].iter().all(|b| *b == 0));
        }
        assert!(
            analyze(&db).unwrap() == sidecar.content,
            "analyze = sidecar"
        );
    }
}

/// Test 2: a cold lookup needs only the leaf. For 200 random stored keys, every page on the path
/// from the `kv` root to the key's page, except a leaf, is pinned; and, over the whole file,
/// exactly the interior pages and the schema tree are pinned (no data leaf).
#[test]
fn lookup_paths_and_all_interior_pages_are_pinned() {
    let built = build_unified(3_000, None, 4096, true);
    let (_, shards) = manifest(&built.root);
    let mut all_keys: Vec<(usize, Vec<u8>)> = Vec::new();
    for (i, shard) in shards.iter().enumerate() {
        let conn = open_ro(&shard.db);
        let mut stmt = conn.prepare("SELECT k FROM kv").unwrap();
        all_keys.extend(
            stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))
                .unwrap()
                .map(|k| (i, k.unwrap())),
        );
    }
    assert_eq!(all_keys.len(), 3_000);
    let images: Vec<Vec<u8>> = shards
        .iter()
        .map(|s| std::fs::read(&s.db).unwrap())
        .collect();
    let sidecars: Vec<Sidecar> = shards
        .iter()
        .map(|s| Sidecar::parse(&std::fs::read(&s.sidecar).unwrap()).unwrap())
        .collect();

    let mut r = rng(7);
    let mut deepest = 0;
    for (i, key) in all_keys.choose_multiple(&mut r, 200) {
        let db = Db::new(&images[*i]);
        let root = roots(&shards[*i].db)["kv"];
        let path = descend(&db, root, key);
        deepest = deepest.max(path.len());
        for n in &path {
            let is_leaf = db.page(*n).kind == 10;
            assert!(
                is_leaf || sidecars[*i].content.pages.contains_key(n),
                "shard {i}: page {n} on the path to {key:02x?} is not pinned"
            );
        }
        let last = *path.last().unwrap();
        assert!(
            !sidecars[*i].content.pages.contains_key(&last) || db.page(last).kind == 2,
            "a data leaf is pinned"
        );
    }
    assert!(deepest >= 2, "the kv trees have interior pages");

    for (i, shard) in shards.iter().enumerate() {
        let db = Db::new(&images[i]);
        let schema = db.walk(1);
        let mut want: BTreeSet<u32> = schema.interior.union(&schema.leaves).copied().collect();
        for root in roots(&shard.db).values() {
            want.extend(db.walk(*root).interior);
        }
        let pinned: BTreeSet<u32> = sidecars[i].content.pages.keys().copied().collect();
        assert_eq!(pinned, want, "shard {i}: interior pages + schema tree");
    }
}

/// Test 3: large values and sqlite-vec vector chunks are overflow chains in the sidecar, exactly
/// the chains the file holds.
#[test]
fn overflow_chains_of_large_values_and_vector_chunks() {
    let built = build_unified(1_500, Some(10), 4096, true);
    let (_, shards) = manifest(&built.root);
    let mut big_seen = 0;
    for shard in &shards {
        let image = std::fs::read(&shard.db).unwrap();
        let db = Db::new(&image);
        let sidecar = Sidecar::parse(&std::fs::read(&shard.sidecar).unwrap()).unwrap();
        let got: BTreeSet<Vec<u32>> = sidecar.content.chains.iter().cloned().collect();
        assert_eq!(got.len(), sidecar.content.chains.len(), "no chain twice");

        // Every chain of every tree, found independently, and nothing else.
        let roots = roots(&shard.db);
        let mut want = BTreeSet::new();
        for root in roots.values() {
            want.extend(db.walk(*root).chains);
        }
        want.extend(db.walk(1).chains);
        assert_eq!(got, want, "shard {}: chains", shard.db_id);

        // The kv chains are exactly the large values, and hold their bytes.
        let kv = db.walk(roots["kv"]);
        let mut big_here = 0;
        let mut stack = vec![roots["kv"]];
        while let Some(n) = stack.pop() {
            let page = db.page(n);
            stack.extend(page.right_child);
            for cell in &page.cells {
                stack.extend(cell.left_child);
                let cols = record(&cell.payload);
                let id = i64::from_be_bytes(cols[0].1.try_into().unwrap());
                let value = &built.values[&id];
                assert_eq!(cols[1].1, value.as_slice());
                assert_eq!(!cell.chain.is_empty(), value.len() > 9_000, "id {id}");
                if !cell.chain.is_empty() {
                    big_here += 1;
                    assert!(got.contains(&cell.chain), "chain of id {id} is pinned");
                }
            }
        }
        assert_eq!(kv.chains.len(), big_here);
        big_seen += big_here;

        // sqlite-vec's vector chunk blobs.
        let chunks = db.walk(roots["vec_index_vector_chunks00"]);
        assert!(!chunks.chains.is_empty(), "vector chunks overflow");
        for chain in &chunks.chains {
            assert!(
                got.contains(chain),
                "vector chunk chain {chain:?} is pinned"
            );
        }
    }
    assert_eq!(big_seen, 150);
}

/// Test 4: `custom.sqlite_sidecar` follows `--page-size`; `--no-sidecar` writes none.
#[test]
fn cli_page_size_and_no_sidecar() {
    let dir = temp_dir();
    let input = dir.path().join("in.jsonl");
    let mut r = rng(3);
    edgeshard_tests::write_jsonl(
        &input,
        (0..600).map(|i| {
            let len = r.random_range(10..2000);
            json!({"id": i, "value": "x".repeat(len)})
        }),
    );
    let input = input.to_str().unwrap();

    let root = dir.path().join("big-pages");
    let root_s = root.to_str().unwrap();
    run_cli(&[
        "build",
        "--input",
        input,
        "--key-field",
        "id",
        "--value-field",
        "value",
        "--shards",
        "3",
        "--page-size",
        "8192",
        "--out",
        root_s,
        "--quiet",
    ])
    .unwrap();
    let (custom, shards) = manifest(&root);
    assert_eq!(
        custom["sqlite_sidecar"],
        json!({"codec": "zstd", "filename": "shard.sidecar", "format_version": 8, "page_size": 8192})
    );
    for shard in &shards {
        let db = std::fs::read(&shard.db).unwrap();
        assert_eq!(u16::from_be_bytes([db[16], db[17]]), 8192);
        let sidecar = Sidecar::parse(&std::fs::read(&shard.sidecar).unwrap()).unwrap();
        assert_eq!(sidecar.content.page_size, 8192);
        assert_eq!(sidecar.tag, md5_etag(&db));
        assert!(analyze(&db).unwrap() == sidecar.content);
    }

    let root = dir.path().join("none");
    let root_s = root.to_str().unwrap();
    run_cli(&[
        "build",
        "--input",
        input,
        "--key-field",
        "id",
        "--value-field",
        "value",
        "--shards",
        "3",
        "--no-sidecar",
        "--out",
        root_s,
        "--quiet",
    ])
    .unwrap();
    let (custom, shards) = manifest(&root);
    assert!(custom.get("sqlite_sidecar").is_none(), "{custom}");
    for shard in &shards {
        assert!(shard.db.is_file());
        assert!(!shard.sidecar.exists(), "{}", shard.sidecar.display());
        assert!(shard.writer_info.get("sidecar_tag").is_none());
    }
}

/// Test 5: any single corrupted byte makes the sidecar unusable: `Sidecar::parse` fails, or (in
/// the tag) the tag no longer matches the ETag. One exception, checked to be harmless: zstd's
/// Frame_Content_Size header field is covered by neither zstd's checksum nor the parser (the
/// prefix's body_size is what is checked), so a flip there still decodes the identical body.
#[test]
fn a_corrupted_byte_is_detected() {
    let built = build_unified(400, None, 4096, true);
    let (_, shards) = manifest(&built.root);
    let good = std::fs::read(&shards[0].sidecar).unwrap();
    let parsed = Sidecar::parse(&good).unwrap();
    let etag = md5_etag(&std::fs::read(&shards[0].db).unwrap());
    assert_eq!(parsed.tag, etag);
    let tag_len = good[17] as usize;
    let tag = 18..18 + tag_len;
    // The zstd frame header (RFC 8878 3.1.1.1): magic, descriptor, [window], [dict id], [FCS].
    let frame = 18 + tag_len;
    assert_eq!(good[frame..frame + 4], [0x28, 0xb5, 0x2f, 0xfd]);
    let fhd = good[frame + 4];
    assert_ne!(fhd & 0x04, 0, "the frame carries a checksum");
    let single_segment = fhd & 0x20 != 0;
    let dict_id_len = [0, 1, 2, 4][(fhd & 3) as usize];
    let fcs_len = [usize::from(single_segment), 2, 4, 8][(fhd >> 6) as usize];
    let fcs_start = frame + 5 + usize::from(!single_segment) + dict_id_len;
    let fcs = fcs_start..fcs_start + fcs_len;
    for at in 0..good.len() {
        let mut bad = good.clone();
        bad[at] ^= 0x5a;
        match Sidecar::parse(&bad) {
            Err(_) => {}
            Ok(s) if tag.contains(&at) => assert_ne!(s.tag, etag),
            Ok(s) if fcs.contains(&at) => assert_eq!(s, parsed, "byte {at}"),
            Ok(_) => panic!("flipping byte {at} of {} went unnoticed", good.len()),
        }
    }
    // Truncation anywhere is refused too.
    for len in [0, 17, frame, frame + 10, good.len() / 2, good.len() - 1] {
        assert!(Sidecar::parse(&good[..len]).is_err(), "truncated to {len}");
    }
}
