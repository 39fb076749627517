//! The plan of a vector search, the same in every reader: which routing artifact a vector-only
//! snapshot needs, the [`Router`] built from it with every check, and the shards a query reads
//! given its options ([`Router::shards_to_search`]). Pure: a reader fetches the artifact's bytes
//! its own way (disk, S3, HTTP, `fetch`) and hands them over.
//!
//! Keeping this in one place is what keeps the readers from drifting: a reader that skipped a
//! check here would misroute every query (a centroid of the wrong width, a wrong bit count)
//! instead of failing, and one that ignored `probes` would answer a different question.

use crate::error::{Error, Result};
use crate::layout;
use crate::manifest::{Manifest, VectorSpec};
use crate::npy::{self, Matrix};
use crate::vector::Metric;
use crate::vector_routing::{self as vrouting, VectorStrategy};

/// The sqlite-vec statements every reader runs over a shard (format spec section 5's tables).
/// Each yields `rowid, distance, original_id, payload, embedding` (the last `NULL` unless the
/// vectors are asked for: dot_product re-ranks from them), nearest first, ties by rowid.
pub mod sql {
    use super::Metric;

    /// The vector tables of a shard and their root pages, `(table, rootpage)`: what a range
    /// reader walks (pinned interior pages down to the leaves) to fetch a cold search's pages
    /// in two rounds (`ShardPages::want_vector_table_leaves`).
    pub const VECTOR_TABLE_ROOTS: &str = "SELECT tbl_name, rootpage FROM sqlite_master \
         WHERE rootpage > 0 AND (tbl_name LIKE 'vec_index%' \
         OR tbl_name IN ('vec_id_map', 'vec_payloads'))";

    /// The `?2` nearest rows to `?1` (little-endian f32 bytes) by the index's own distance,
    /// nearest first (ties by rowid), as `rowid, distance, original_id, payload, embedding`.
    /// (IVF shards read their probed cells with [`CELL_CHUNK_DATA`] instead.)
    ///
    /// - `joined`: `original_id` and `payload` joined in (a filter needs the payload in the
    ///   same statement); else both `NULL`, for a reader that looks the hits up afterwards.
    /// - `with_vectors`: the stored vectors too (dot_product rescoring), else `NULL`.
    pub fn knn(joined: bool, with_vectors: bool) -> String {
        let embedding = if with_vectors { ", embedding" } else { "" };
        let vectors = if with_vectors {
            "knn.embedding"
        } else {
            "NULL"
        };
        let (columns, joins) = match joined {
            true => (
                "m.original_id, p.payload",
                "\n     LEFT JOIN vec_id_map m ON m.internal_id = knn.rowid\
                 \n     LEFT JOIN vec_payloads p ON p.rowid = knn.rowid",
            ),
            false => ("NULL, NULL", ""),
        };
        format!(
            "WITH knn AS MATERIALIZED (\n     SELECT rowid, distance{embedding} FROM vec_index \
             WHERE embedding MATCH ?1 AND k = ?2\n )\n \
             SELECT knn.rowid, knn.distance, {columns}, {vectors}\n FROM knn{joins}\n \
             ORDER BY knn.distance, knn.rowid"
        )
    }

    /// The chunks of IVF cell `?1` with their contents, `rowids, validity, vectors`, for
    /// [`crate::ivf::scan_chunks`] (the vector-chunk table is keyed by its real rowid, the chunk
    /// id: sqlite-vec's own column named `rowid` hides it, `oid` does not).
    pub const CELL_CHUNK_DATA: &str = "SELECT c.rowids, c.validity, v.vectors \
         FROM vec_index_chunks c JOIN vec_index_vector_chunks00 v ON v.oid = c.chunk_id \
         WHERE c.partition00 = ?1 ORDER BY c.chunk_id";

    /// Every vector chunk of the shard (a flat shard, or an IVF shard searched in every cell):
    /// `rowids, validity, vectors`, for [`crate::ivf::scan_chunks`].
    pub const ALL_CHUNK_DATA: &str = "SELECT c.rowids, c.validity, v.vectors \
         FROM vec_index_chunks c JOIN vec_index_vector_chunks00 v ON v.oid = c.chunk_id \
         ORDER BY c.chunk_id";

    /// The id and payload of vector `?1`: `original_id, payload` (either may be `NULL`).
    pub const HIT_LOOKUP: &str =
        "SELECT (SELECT original_id FROM vec_id_map WHERE internal_id = ?1), \
         (SELECT payload FROM vec_payloads WHERE rowid = ?1)";

    /// The chunks of IVF cell `?1` (sqlite-vec's chunk list, through its cell index).
    pub const CELL_CHUNKS: &str = "SELECT chunk_id FROM vec_index_chunks WHERE partition00 = ?1";

    /// Root page of the table of sqlite-vec's vector chunks (rowid = chunk id).
    pub const VECTOR_CHUNKS_ROOT: &str =
        "SELECT rootpage FROM sqlite_master WHERE name = 'vec_index_vector_chunks00'";

    /// An IVF shard's centroids, in cell order: `cell, centroid`.
    pub const IVF_CENTROIDS: &str = "SELECT cell, centroid FROM vec_ivf_centroids ORDER BY cell";

    /// The small tables an IVF search reads besides the cells' vectors, with their root pages
    /// `(table, rootpage)`: the centroids, sqlite-vec's chunk list and its cell index, its
    /// info table, and the id and payload tables (left to per-hit reads when large, see
    /// `ShardPages::want_vector_table_leaves`). A range reader fetches their leaves in one
    /// round; the vectors of the probed cells come after, and only those.
    pub const IVF_TABLE_ROOTS: &str = "SELECT tbl_name, rootpage FROM sqlite_master \
         WHERE rootpage > 0 AND name IN ('vec_ivf_centroids', 'vec_index_chunks', \
         'vec_index_chunks_cell', 'vec_index_info', 'vec_id_map', 'vec_payloads')";

    /// Every row of the shard by distance to `?1`: the exact fallback past sqlite-vec's KNN cap
    /// (the index's own distances: `vec_distance_cosine`, or `vec_distance_l2` for l2 and for
    /// dot_product's L2 reduction).
    pub fn scan(metric: Metric, with_vectors: bool) -> String {
        let function = match metric {
            Metric::Cosine => "vec_distance_cosine",
            Metric::L2 | Metric::DotProduct => "vec_distance_l2",
        };
        let vectors = if with_vectors { "v.embedding" } else { "NULL" };
        format!(
            "SELECT v.rowid, {function}(v.embedding, ?1) AS distance, m.original_id, p.payload,
                    {vectors}
             FROM vec_index v
             LEFT JOIN vec_id_map m ON m.internal_id = v.rowid
             LEFT JOIN vec_payloads p ON p.rowid = v.rowid
             ORDER BY distance, v.rowid"
        )
    }
}

/// How a snapshot places vectors, ready to route queries.
#[derive(Debug, Clone, PartialEq)]
pub enum Router {
    /// Rows routed by key (unified snapshots, hash-routed vector-only ones): a search reads every
    /// shard.
    ByKey,
    /// Nearest centroids; a query probes the `probes` nearest.
    Cluster(Matrix),
    /// Random hyperplanes; a query probes its code's shard, then flipped bits.
    Lsh(Matrix),
    /// The writer was told each vector's shard: the caller names the shards.
    Explicit,
    /// Placed by a CEL expression: without a routing context the caller names the shards.
    Cel,
}

/// The routing artifact a snapshot's router needs, as `(path relative to the root, file name)`;
/// `None` when its routing needs none.
pub fn artifact_to_fetch(
    manifest: &Manifest,
    spec: &VectorSpec,
) -> Result<Option<(String, &'static str)>> {
    let Some(routing) = &spec.routing else {
        return Ok(None);
    };
    let (recorded, file) = match routing.strategy {
        VectorStrategy::Cluster => (&routing.centroids_ref, layout::CENTROIDS_FILE),
        VectorStrategy::Lsh => (&routing.hyperplanes_ref, layout::HYPERPLANES_FILE),
        VectorStrategy::Explicit | VectorStrategy::Cel => return Ok(None),
    };
    let relative = manifest.artifact_relative(recorded.as_deref(), file)?;
    Ok(Some((relative, file)))
}

impl Router {
    /// Builds the router of `spec` from the bytes of the artifact [`artifact_to_fetch`] named
    /// (`None` when it named none). A malformed artifact is an error: not NPY, another width
    /// than the vectors, a non-finite value or an all-zero row, centroids not one per shard,
    /// hyperplanes not as many as the recorded bit count (1 to 64).
    pub fn new(spec: &VectorSpec, num_dbs: u32, artifact: Option<&[u8]>) -> Result<Self> {
        let Some(routing) = &spec.routing else {
            return Ok(Router::ByKey);
        };
        let matrix = || -> Result<Matrix> {
            let bytes = artifact.ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "{} routing needs its artifact",
                    routing.strategy.as_str()
                ))
            })?;
            let matrix = npy::read(bytes)?;
            matrix.check_routing_artifact(spec.dim)?;
            Ok(matrix)
        };
        Ok(match routing.strategy {
            VectorStrategy::Cluster => {
                let centroids = matrix()?;
                if centroids.rows != num_dbs as usize {
                    return Err(Error::InvalidNpy(format!(
                        "{} centroids but num_dbs is {num_dbs}",
                        centroids.rows
                    )));
                }
                Router::Cluster(centroids)
            }
            VectorStrategy::Lsh => {
                let planes = matrix()?;
                let bits_ok = (1..=vrouting::MAX_HASH_BITS as usize).contains(&planes.rows)
                    && routing
                        .num_hash_bits
                        .is_none_or(|bits| bits as usize == planes.rows);
                if !bits_ok {
                    return Err(Error::InvalidNpy(format!(
                        "{} hyperplanes but num_hash_bits is {:?} (1 to {})",
                        planes.rows,
                        routing.num_hash_bits,
                        vrouting::MAX_HASH_BITS
                    )));
                }
                Router::Lsh(planes)
            }
            VectorStrategy::Explicit => Router::Explicit,
            VectorStrategy::Cel => Router::Cel,
        })
    }

    /// The shard ids a search of `query` reads, ascending (before a reader drops empty slots).
    /// `shard_ids` are taken as given (checked to exist); otherwise `probes` (default: the
    /// manifest's `num_probes`, capped at `num_dbs`) nearest shards of a cluster or LSH
    /// snapshot, or every shard of one routed by key. Errors (the caller's request): probes of
    /// 0, probes together with shard ids, probes on a snapshot routed by key, a shard that does
    /// not exist, no shard ids on explicit or CEL routing.
    pub fn shards_to_search(
        &self,
        spec: &VectorSpec,
        num_dbs: u32,
        query: &[f32],
        probes: Option<usize>,
        shard_ids: Option<&[u32]>,
    ) -> Result<Vec<u32>> {
        if probes == Some(0) {
            return Err(Error::InvalidArgument("probes must be at least 1".into()));
        }
        if let Some(ids) = shard_ids {
            if probes.is_some() {
                return Err(Error::InvalidArgument(
                    "give shard ids or probes, not both".into(),
                ));
            }
            if let Some(bad) = ids.iter().find(|id| **id >= num_dbs) {
                return Err(Error::InvalidArgument(format!(
                    "shard {bad} does not exist (num_dbs is {num_dbs})"
                )));
            }
            let mut ids = ids.to_vec();
            ids.sort_unstable();
            ids.dedup();
            return Ok(ids);
        }
        let probe_count = || {
            let default = spec.routing.as_ref().map_or(1, |r| r.num_probes as usize);
            probes.unwrap_or(default).clamp(1, num_dbs.max(1) as usize)
        };
        let mut ids =
            match self {
                Router::ByKey => {
                    match probes {
                        Some(_) => return Err(Error::InvalidArgument(
                            "probes apply to vector-routed (cluster / lsh) snapshots; this one \
                         routes by key, so a search covers every shard"
                                .into(),
                        )),
                        None => (0..num_dbs).collect(),
                    }
                }
                Router::Cluster(centroids) => {
                    vrouting::cluster_probes(query, centroids, spec.metric, probe_count())
                }
                Router::Lsh(planes) => vrouting::lsh_probes(query, planes, num_dbs, probe_count()),
                Router::Explicit => {
                    return Err(Error::InvalidArgument(
                        "this snapshot uses explicit vector routing: give the shard ids to search"
                            .into(),
                    ))
                }
                Router::Cel => return Err(Error::InvalidArgument(
                    "this snapshot places vectors by CEL routing, which needs a routing context \
                     this reader does not take yet: give the shard ids to search"
                        .into(),
                )),
            };
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::VectorRouting;
    use crate::vector::Metric;

    fn spec(strategy: Option<VectorStrategy>, num_hash_bits: Option<u32>) -> VectorSpec {
        VectorSpec {
            dim: 2,
            metric: Metric::L2,
            backend: None,
            unified: strategy.is_none(),
            routing: strategy.map(|strategy| VectorRouting {
                strategy,
                num_probes: 2,
                centroids_ref: None,
                hyperplanes_ref: None,
                num_hash_bits,
                total_vectors: None,
                spill_fraction: None,
            }),
            dot_reduction: None,
            ann_defaults: Default::default(),
            index_type: None,
            quantization: None,
            index_params: None,
            kv_backend: None,
        }
    }

    fn npy(rows: usize, data: Vec<f32>) -> Vec<u8> {
        npy::write(&Matrix {
            rows,
            cols: data.len() / rows,
            data,
        })
    }

    #[test]
    fn artifacts_are_checked_when_the_router_is_built() {
        let cluster = spec(Some(VectorStrategy::Cluster), None);
        let four = npy(4, vec![0., 1., 1., 0., 0., -1., -1., 0.]);
        assert!(matches!(
            Router::new(&cluster, 4, Some(&four)),
            Ok(Router::Cluster(_))
        ));
        // One centroid per shard, the vectors' width, finite values.
        assert!(Router::new(&cluster, 5, Some(&four)).is_err());
        assert!(Router::new(&cluster, 2, Some(&npy(2, vec![0., 1., 2., 1., 0., 3.]))).is_err());
        assert!(Router::new(&cluster, 2, Some(&npy(2, vec![f32::NAN, 1., 1., 0.]))).is_err());
        assert!(Router::new(&cluster, 4, None).is_err());
        // Hyperplanes: as many as the recorded bit count.
        let planes = npy(3, vec![1., 0., 0., 1., 1., 1.]);
        let lsh = spec(Some(VectorStrategy::Lsh), Some(3));
        assert!(matches!(
            Router::new(&lsh, 8, Some(&planes)),
            Ok(Router::Lsh(_))
        ));
        let lsh_two = spec(Some(VectorStrategy::Lsh), Some(2));
        assert!(Router::new(&lsh_two, 8, Some(&planes)).is_err());
        assert_eq!(Router::new(&spec(None, None), 8, None), Ok(Router::ByKey));
    }

    #[test]
    fn options_choose_the_same_shards_everywhere() {
        let cluster_spec = spec(Some(VectorStrategy::Cluster), None);
        let centroids = npy(4, vec![0., 1., 1., 0., 0., -1., -1., 0.]);
        let cluster = Router::new(&cluster_spec, 4, Some(&centroids)).unwrap();
        let q = [0.9, 0.2];
        // Default probes (the manifest's 2), ascending: nearest are shard 1 then 0.
        assert_eq!(
            cluster.shards_to_search(&cluster_spec, 4, &q, None, None),
            Ok(vec![0, 1])
        );
        assert_eq!(
            cluster.shards_to_search(&cluster_spec, 4, &q, Some(1), None),
            Ok(vec![1])
        );
        // More probes than shards: every shard.
        assert_eq!(
            cluster.shards_to_search(&cluster_spec, 4, &q, Some(9), None),
            Ok(vec![0, 1, 2, 3])
        );
        assert_eq!(
            cluster.shards_to_search(&cluster_spec, 4, &q, None, Some(&[3, 1, 3])),
            Ok(vec![1, 3])
        );
        for (probes, ids) in [
            (Some(0), None),
            (Some(1), Some(&[1u32][..])),
            (None, Some(&[4u32][..])),
        ] {
            assert!(cluster
                .shards_to_search(&cluster_spec, 4, &q, probes, ids)
                .is_err());
        }
        let by_key = spec(None, None);
        assert_eq!(
            Router::ByKey.shards_to_search(&by_key, 3, &q, None, None),
            Ok(vec![0, 1, 2])
        );
        assert!(Router::ByKey
            .shards_to_search(&by_key, 3, &q, Some(1), None)
            .is_err());
        for router in [Router::Explicit, Router::Cel] {
            assert!(router.shards_to_search(&by_key, 3, &q, None, None).is_err());
            assert_eq!(
                router.shards_to_search(&by_key, 3, &q, None, Some(&[2])),
                Ok(vec![2])
            );
        }
    }
}
