//! Merging per-shard top-k lists into one.

/// One shard's hit, already converted to the reported score (lower is better).
#[derive(Debug, Clone, PartialEq)]
pub struct Scored<T> {
    pub score: f64,
    pub item: T,
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
    fn short_lists_and_nan() {
        let merged = merge_top_k(vec![vec![s(f64::NAN, "nan")], vec![], vec![s(1.0, "x")]], 5);
        let items: Vec<_> = merged.iter().map(|h| h.item).collect();
        assert_eq!(items, ["x", "nan"]);
    }
}
