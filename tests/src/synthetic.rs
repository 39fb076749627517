//! Synthetic vector sets for the benchmarks at scale (1,000,000 x 384 in docs/benchmarks.md):
//! clustered vectors written as Parquet, their exact neighbours by brute force, recall.

use crate::debian::BoxResult;
use edgeshard_native::VectorId;
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A synthetic set ready to benchmark (see [`prepare`]).
pub struct SyntheticSet {
    /// The Parquet file (`id`, `embedding`).
    pub input: PathBuf,
    /// 100 fresh queries from the same distribution.
    pub queries: Vec<Vec<f32>>,
    /// Each query's exact top 10 ids by l2.
    pub truth: Vec<Vec<String>>,
}

/// `rows` x 384-d vectors written to `dir/synthetic.parquet` ([`synthetic_parquet`]), with 100
/// queries and their exact neighbours ([`brute_force_l2`]); the time of each step on stderr.
pub fn prepare(dir: &Path, rows: usize) -> BoxResult<SyntheticSet> {
    let input = dir.join("synthetic.parquet");
    let t = Instant::now();
    let queries = synthetic_parquet(&input, rows, 384)?;
    eprintln!("wrote {rows} vectors in {:.1} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let truth = brute_force_l2(&input, &queries)?;
    eprintln!(
        "brute force for {} queries in {:.1} s",
        queries.len(),
        t.elapsed().as_secs_f64()
    );
    Ok(SyntheticSet {
        input,
        queries,
        truth,
    })
}

/// `rows` x 384-d vectors around 1,000 random centres (real embeddings are clustered; uniform
/// random vectors have no neighbours worth finding), written as Parquet with int ids.
pub fn synthetic_parquet(path: &Path, rows: usize, dim: usize) -> BoxResult<Vec<Vec<f32>>> {
    use arrow_array::builder::{FixedSizeListBuilder, Float32Builder};
    use arrow_array::{ArrayRef, Int64Array, RecordBatch};
    use arrow_schema::{DataType, Field, Schema};
    use parquet::arrow::ArrowWriter;
    use std::sync::Arc;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut gauss = move || -> f32 {
        // Box-Muller.
        let (u, v): (f32, f32) = (rng.random_range(1e-7..1.0), rng.random());
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    };
    let centres: Vec<Vec<f32>> = (0..1_000)
        .map(|_| (0..dim).map(|_| gauss()).collect())
        .collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new(
            "embedding",
            DataType::FixedSizeList(
                Arc::new(Field::new("item", DataType::Float32, true)),
                dim as i32,
            ),
            false,
        ),
    ]));
    let mut writer = ArrowWriter::try_new(std::fs::File::create(path)?, schema.clone(), None)?;
    let mut sample = Vec::new();
    let mut pick = rand::rngs::StdRng::seed_from_u64(8);
    for start in (0..rows).step_by(50_000) {
        let end = (start + 50_000).min(rows);
        let mut vectors = FixedSizeListBuilder::new(Float32Builder::new(), dim as i32);
        for _ in start..end {
            let centre = &centres[pick.random_range(0..centres.len())];
            let v: Vec<f32> = centre.iter().map(|c| c + 0.5 * gauss()).collect();
            vectors.values().append_slice(&v);
            vectors.append(true);
        }
        let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(start as i64..end as i64));
        let batch = RecordBatch::try_new(schema.clone(), vec![ids, Arc::new(vectors.finish())])?;
        writer.write(&batch)?;
    }
    writer.close()?;
    // Queries: fresh points from the same distribution (not in the set).
    for _ in 0..100 {
        let centre = &centres[pick.random_range(0..centres.len())];
        sample.push(centre.iter().map(|c| c + 0.5 * gauss()).collect());
    }
    Ok(sample)
}

/// Exact top 10 (ids) of each query by squared L2, in f64, read back from the Parquet file.
pub fn brute_force_l2(path: &Path, queries: &[Vec<f32>]) -> BoxResult<Vec<Vec<String>>> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float32Type, Int64Type};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path)?)?.build()?;
    let mut best: Vec<Vec<(f64, i64)>> = vec![Vec::new(); queries.len()];
    for batch in reader {
        let batch = batch?;
        let ids = batch.column(0).as_primitive::<Int64Type>().clone();
        let vectors = batch.column(1).as_fixed_size_list().clone();
        let flat = vectors
            .values()
            .as_primitive::<Float32Type>()
            .values()
            .to_vec();
        let dim = vectors.value_length() as usize;
        std::thread::scope(|scope| {
            for (q, top) in queries.iter().zip(best.iter_mut()) {
                let (flat, ids) = (&flat, &ids);
                scope.spawn(move || {
                    for (row, v) in flat.chunks(dim).enumerate() {
                        let d: f64 = v
                            .iter()
                            .zip(q)
                            .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
                            .sum();
                        top.push((d, ids.value(row)));
                    }
                    top.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                    top.truncate(10);
                });
            }
        });
    }
    Ok(best
        .into_iter()
        .map(|top| top.into_iter().map(|(_, id)| id.to_string()).collect())
        .collect())
}

/// Hits of the true top 10 among the returned ids.
pub fn recall_hits(returned: &[VectorId], truth: &[String]) -> usize {
    returned
        .iter()
        .filter(|id| match id {
            VectorId::Str(s) => truth.contains(s),
            VectorId::Int(i) => truth.contains(&i.to_string()),
        })
        .count()
}
