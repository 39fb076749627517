//! Merging per-shard top-k lists into one.

/// One shard's hit, already converted to the reported score (lower is better).
#[derive(Debug, Clone, PartialEq)]
pub struct Scored<T> {
    /// The reported score (lower is better).
    pub score: f64,
    /// The hit itself.
    pub item: T,
}

/// Takes the `k` smallest scores over all shard lists, keeping the first (best) hit of each
/// `key`: a vector stored in two shards (cluster routing with spill) is reported once. Ties
/// keep shard order (the order of `per_shard`), then each shard's own order, so the result is
/// deterministic. NaN sorts last.
pub fn merge_top_k_distinct<T, K: PartialEq>(
    per_shard: Vec<Vec<Scored<T>>>,
    k: usize,
    key: impl Fn(&T) -> K,
) -> Vec<Scored<T>> {
    let mut kept: Vec<Scored<T>> = Vec::with_capacity(k);
    let mut keys: Vec<K> = Vec::with_capacity(k);
    for hit in merge_top_k(per_shard, usize::MAX) {
        if kept.len() == k {
            break;
        }
        let id = key(&hit.item);
        // k <= 4096, so a linear scan is cheaper than hashing every id type.
        if !keys.contains(&id) {
            keys.push(id);
            kept.push(hit);
        }
    }
    kept
}

/// Takes the `k` smallest scores over all shard lists. Ties keep shard order (the order of
/// `per_shard`), then each shard's own order, so the result is deterministic. NaN sorts last.
pub fn merge_top_k<T>(per_shard: Vec<Vec<Scored<T>>>, k: usize) -> Vec<Scored<T>> {
    let mut all: Vec<(usize, usize, Scored<T>)> = per_shard
        .into_iter()
        .enumerate()
        .flat_map(|(shard_pos, hits)| {
            hits.into_iter()
                .enumerate()
                .map(move |(rank, hit)| (shard_pos, rank, hit))
        })
        .collect();
    all.sort_by(|a, b| {
        a.2.score
            .total_cmp(&b.2.score)
            .then(a.0.cmp(&b.0))
            .then(a.1.cmp(&b.1))
    });
    all.truncate(k);
    all.into_iter().map(|(_, _, hit)| hit).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(score: f64, item: &'static str) -> Scored<&'static str> {
        Scored { score, item }
    }

    #[test]
    fn takes_k_smallest() {
        let merged = merge_top_k(
            vec![
                vec![s(0.1, "a"), s(0.5, "b")],
                vec![s(0.2, "c"), s(0.3, "d")],
            ],
            3,
        );
        let items: Vec<_> = merged.iter().map(|h| h.item).collect();
        assert_eq!(items, ["a", "c", "d"]);
    }

    #[test]
    fn ties_go_to_the_earlier_shard() {
        let merged = merge_top_k(vec![vec![s(0.5, "shard0")], vec![s(0.5, "shard1")]], 2);
        assert_eq!(merged[0].item, "shard0");
        let merged = merge_top_k(vec![vec![s(0.5, "shard1")], vec![s(0.5, "shard0")]], 1);
        assert_eq!(merged[0].item, "shard1");
    }

    #[test]
    fn a_vector_in_two_shards_is_reported_once() {
        let merged = merge_top_k_distinct(
            vec![
                vec![s(0.1, "a"), s(0.4, "b")],
                vec![s(0.1, "a"), s(0.2, "c"), s(0.3, "d")],
            ],
            3,
            |item| *item,
        );
        let items: Vec<_> = merged.iter().map(|h| h.item).collect();
        assert_eq!(items, ["a", "c", "d"]);
    }

    #[test]
    fn short_lists_and_nan() {
        let merged = merge_top_k(vec![vec![s(f64::NAN, "nan")], vec![], vec![s(1.0, "x")]], 5);
        let items: Vec<_> = merged.iter().map(|h| h.item).collect();
        assert_eq!(items, ["x", "nan"]);
    }
}
