//! What page checksums cost: sealing a shard image (builder) and checking its pages (range
//! readers), on a real SQLite image of the `kv` schema with 8 reserved bytes per page.
//!
//!     cargo run --release -p edgeshard-shared --example page_checks -- [ROWS]
//!
//! Prints the image size, the space the checksums take, and medians of 9 runs of
//! `seal_pages` and `PageVerifier::check_block` over the whole image (per page and per GB).
use edgeshard_shared::integrity::{seal_pages, PageVerifier, PAGE_CHECKSUM_BYTES};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rows: u32 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(150_000);
    let mut conn = rusqlite::Connection::open_in_memory()?;
    conn.execute_batch("PRAGMA page_size = 4096")?;
    let mut reserve = PAGE_CHECKSUM_BYTES as std::ffi::c_int;
    conn.file_control(
        Some("main"),
        rusqlite::FileControl::ReserveBytes(&mut reserve),
    )?;
    conn.execute_batch(
        "CREATE TABLE kv (k BLOB PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID; BEGIN;",
    )?;
    {
        let mut insert = conn.prepare("INSERT INTO kv VALUES (?1, ?2)")?;
        for i in 0..rows {
            insert.execute(rusqlite::params![
                u64::from(i).to_be_bytes().to_vec(),
                vec![(i % 251) as u8; 100]
            ])?;
        }
    }
    conn.execute_batch("COMMIT")?;
    let image = conn.serialize("main")?.to_vec();
    let pages = image.len() / 4096;
    let median = |mut samples: Vec<f64>| {
        samples.sort_by(f64::total_cmp);
        samples[samples.len() / 2]
    };
    let mut seal_s = Vec::new();
    let mut sealed = image.clone();
    let mut seed = 0;
    for _ in 0..9 {
        sealed.copy_from_slice(&image);
        let started = Instant::now();
        seed = seal_pages(&mut sealed, 42, 0)?;
        seal_s.push(started.elapsed().as_secs_f64());
    }
    let verifier = PageVerifier::new(0, seed);
    let mut check_s = Vec::new();
    for _ in 0..9 {
        let started = Instant::now();
        verifier.check_block(1, std::hint::black_box(&sealed), 4096)?;
        check_s.push(started.elapsed().as_secs_f64());
    }
    let (seal, check) = (median(seal_s), median(check_s));
    let gb = image.len() as f64 / 1e9;
    println!(
        "{rows} rows, {:.1} MB, {pages} pages of 4096 bytes; checksums take {:.2} % of each page",
        image.len() as f64 / 1e6,
        100.0 * PAGE_CHECKSUM_BYTES as f64 / 4096.0
    );
    println!(
        "seal_pages (zero B-tree gaps + write checksums): {:.1} ms, {:.0} ns/page, {:.1} GB/s",
        seal * 1e3,
        seal * 1e9 / pages as f64,
        gb / seal
    );
    println!(
        "check_block (every page):                         {:.1} ms, {:.0} ns/page, {:.1} GB/s",
        check * 1e3,
        check * 1e9 / pages as f64,
        gb / check
    );
    Ok(())
}
