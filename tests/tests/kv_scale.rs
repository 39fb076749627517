//! 100,000 KV rows in 8 shards: every value reads back exactly.

use edgeshard_builder::build::build;
use edgeshard_native::Snapshot;
use edgeshard_shared::Key;
use edgeshard_tests::{build_options, random_bytes, rng, temp_dir, write_parquet, ParquetColumns};
use rand::seq::SliceRandom;
use rand::Rng;
use std::collections::{HashMap, HashSet};

const ROWS: usize = 100_000;

#[test]
fn hundred_thousand_rows_read_back() {
    let dir = temp_dir();
    let input = dir.path().join("kv.parquet");
    let out = dir.path().join("snap");
    let mut rng = rng(0x5ca1e);

    let mut key_set = HashSet::with_capacity(ROWS);
    while key_set.len() < ROWS {
        key_set.insert(rng.random_range(0..(1i64 << 62)));
    }
    let mut keys: Vec<i64> = key_set.iter().copied().collect();
    keys.shuffle(&mut rng);
    let values: Vec<Vec<u8>> = (0..ROWS)
        .map(|i| {
            if i % 2 == 0 {
                // Printable text.
                let len = rng.random_range(10..=200);
                (0..len).map(|_| rng.random_range(b' '..=b'~')).collect()
            } else {
                // Arbitrary bytes, almost surely not UTF-8.
                random_bytes(&mut rng, 10, 200)
            }
        })
        .collect();
    let non_utf8 = values
        .iter()
        .filter(|v| std::str::from_utf8(v).is_err())
        .count();
    assert!(non_utf8 > ROWS / 4, "the data has non-UTF-8 values");
    write_parquet(
        &input,
        &ParquetColumns {
            ids: &keys,
            values: &values,
            vectors: None,
            tags: None,
        },
    );

    let mut opts = build_options(&input, &out);
    opts.shards = 8;
    let summary = build(&opts).expect("build");
    assert_eq!(summary.rows, ROWS as u64);
    assert_eq!(summary.key_encoding, "u64be");

    let snap = Snapshot::open(out.to_str().unwrap()).expect("open");
    let manifest = snap.manifest();
    assert_eq!(manifest.meta.num_dbs, 8);
    let total: u64 = manifest.shards.iter().map(|s| s.row_count).sum();
    assert_eq!(total, ROWS as u64, "row counts per shard sum to the input");

    let expected: HashMap<i64, &Vec<u8>> = keys.iter().copied().zip(values.iter()).collect();
    for (batch_no, batch) in keys.chunks(5_000).enumerate() {
        let wanted: Vec<Key> = batch.iter().copied().map(Key::Int).collect();
        let got = snap.multi_get(&wanted).expect("multi_get");
        assert_eq!(got.len(), batch.len());
        for (key, value) in batch.iter().zip(got) {
            assert_eq!(
                value.as_ref(),
                Some(expected[key]),
                "batch {batch_no}, key {key}"
            );
        }
    }
    for _ in 0..1_000 {
        let key = keys[rng.random_range(0..ROWS)];
        assert_eq!(
            snap.get(&Key::Int(key)).expect("get").as_ref(),
            Some(expected[&key]),
            "get {key}"
        );
    }

    // Absent keys, including ones routed to every shard.
    let mut absent = Vec::new();
    while absent.len() < 1_000 {
        let k = rng.random_range(0..(1i64 << 62));
        if !key_set.contains(&k) {
            absent.push(Key::Int(k));
        }
    }
    assert!(snap.multi_get(&absent).unwrap().iter().all(Option::is_none));
    for key in absent.iter().take(100) {
        assert_eq!(snap.get(key).unwrap(), None, "absent {key}");
    }
    // A mixed batch keeps input order.
    let mixed = vec![
        absent[0].clone(),
        Key::Int(keys[7]),
        absent[1].clone(),
        Key::Int(keys[3]),
    ];
    assert_eq!(
        snap.multi_get(&mixed).unwrap(),
        vec![None, Some(values[7].clone()), None, Some(values[3].clone())]
    );
}
