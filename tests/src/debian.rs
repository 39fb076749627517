//! The debian-minilm data set (`../shared/data/debian-minilm`): its held-out queries with exact
//! ground truth, the dot-product ground truth it lacks (brute force in f64), and the latency
//! percentiles every benchmark prints.

use arrow_array::cast::AsArray;
use arrow_array::types::Float32Type;
use arrow_array::Array;
use std::path::Path;

pub type BoxResult<T> = Result<T, Box<dyn std::error::Error>>;

/// The exact top 10 ids by inner product (f64, ties to the lower row), per query.
pub fn brute_force_dot(packages: &Path, queries: &[Query]) -> BoxResult<Vec<Vec<String>>> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::arrow::ProjectionMask;
    let builder = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(packages)?)?;
    let schema = builder.schema().clone();
    let mask = ProjectionMask::roots(
        builder.parquet_schema(),
        [schema.index_of("id")?, schema.index_of("embedding")?],
    );
    let mut ids = Vec::new();
    let mut vectors: Vec<Vec<f64>> = Vec::new();
    for batch in builder.with_projection(mask).build()? {
        let batch = batch?;
        let id = batch
            .column_by_name("id")
            .ok_or("no id")?
            .as_string::<i32>()
            .clone();
        let emb = batch
            .column_by_name("embedding")
            .ok_or("no embedding")?
            .as_fixed_size_list()
            .clone();
        for i in 0..batch.num_rows() {
            ids.push(id.value(i).to_string());
            let v = emb.value(i);
            vectors.push(
                v.as_primitive::<Float32Type>()
                    .values()
                    .iter()
                    .map(|x| *x as f64)
                    .collect(),
            );
        }
    }
    let truth = std::thread::scope(|scope| {
        let workers: Vec<_> = queries
            .chunks(queries.len().div_ceil(2).max(1))
            .map(|chunk| {
                let vectors = &vectors;
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|q| {
                            let q: Vec<f64> = q.vector.iter().map(|x| *x as f64).collect();
                            let mut scored: Vec<(f64, usize)> = vectors
                                .iter()
                                .enumerate()
                                .map(|(row, v)| {
                                    (-v.iter().zip(&q).map(|(a, b)| a * b).sum::<f64>(), row)
                                })
                                .collect();
                            scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                            scored.truncate(10);
                            scored
                                .into_iter()
                                .map(|(_, row)| row)
                                .collect::<Vec<usize>>()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_default())
            .collect::<Vec<_>>()
    });
    Ok(truth
        .into_iter()
        .map(|rows| rows.into_iter().map(|r| ids[r].clone()).collect())
        .collect())
}

pub struct Query {
    pub vector: Vec<f32>,
    pub gt_cosine: Vec<String>,
    pub gt_l2: Vec<String>,
    /// Filled by brute force (the set has no dot column).
    pub gt_dot: Vec<String>,
}

pub fn read_queries(path: &Path) -> BoxResult<Vec<Query>> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path)?)?.build()?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch?;
        let col = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or(format!("no column {name}"))
        };
        let emb = col("embedding")?.as_fixed_size_list().clone();
        let ids = |name: &str| -> BoxResult<Vec<Vec<String>>> {
            let list = col(name)?.as_list::<i32>().clone();
            Ok((0..list.len())
                .map(|i| {
                    let v = list.value(i);
                    let s = v.as_string::<i32>();
                    (0..s.len()).map(|j| s.value(j).to_string()).collect()
                })
                .collect())
        };
        let (cos, l2) = (ids("gt_cosine_ids")?, ids("gt_l2_ids")?);
        for (i, (gt_cosine, gt_l2)) in cos.into_iter().zip(l2).enumerate() {
            let v = emb.value(i);
            out.push(Query {
                vector: v.as_primitive::<Float32Type>().values().to_vec(),
                gt_cosine,
                gt_l2,
                gt_dot: Vec::new(),
            });
        }
    }
    Ok(out)
}

/// (p50, p99, mean) of `samples`.
pub fn percentiles(samples: &mut [f64]) -> (f64, f64, f64) {
    samples.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    let mean = samples.iter().sum::<f64>() / samples.len() as f64;
    (at(0.5), at(0.99), mean)
}
