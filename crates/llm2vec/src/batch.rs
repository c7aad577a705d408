//! Length-sorted batching, the one way every caller runs many inputs: order them longest first so that
//! each batch holds rows of similar length, cut the order into batches bounded in rows and in padded
//! tokens, right-pad a batch to its longest row, and put the rows that come out back in input order.

/// Indices `0..lengths.len()`, longest first; equal lengths keep their input order.
pub fn longest_first(lengths: &[usize]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    order
}

/// Cuts `order` into consecutive batches of at most `max_rows` inputs whose padded cost (rows times the
/// longest row) stays within `max_tokens`; an input longer than `max_tokens` runs alone. With `order`
/// longest first, long inputs go in small batches and short ones in full ones.
pub fn batches<'a>(order: &'a [usize], lengths: &[usize], max_rows: usize, max_tokens: usize) -> Vec<&'a [usize]> {
    let mut batches = Vec::new();
    let mut rest = order;
    while !rest.is_empty() {
        let mut longest = lengths[rest[0]];
        let mut rows = 1;
        while rows < rest.len().min(max_rows) {
            let wider = longest.max(lengths[rest[rows]]);
            if (rows + 1) * wider > max_tokens {
                break;
            }
            (longest, rows) = (wider, rows + 1);
        }
        let (batch, after) = rest.split_at(rows);
        batches.push(batch);
        rest = after;
    }
    batches
}

/// Right-pads `rows` with id 0 to the longest: the ids `[rows, longest]`, flattened, and the longest length.
pub fn pad(rows: &[&[u32]]) -> (Vec<u32>, usize) {
    let longest = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(rows.len() * longest);
    for r in rows {
        ids.extend(r.iter().copied().chain(std::iter::repeat_n(0, longest - r.len())));
    }
    (ids, longest)
}

/// Tokens a batch costs once padded: rows times the longest row.
pub fn padded_tokens(lengths: &[usize]) -> usize {
    lengths.len() * lengths.iter().copied().max().unwrap_or(0)
}

/// Copies row `k` of `rows` (each `dim` wide) to row `batch[k]` of `out`: a batch's results back in place.
pub fn scatter(rows: &[f32], batch: &[usize], dim: usize, out: &mut [f32]) {
    for (row, &i) in rows.chunks_exact(dim).zip(batch) {
        out[i * dim..(i + 1) * dim].copy_from_slice(row);
    }
}

/// Where each input went in `order` (row `k` of the ordered rows is input `order[k]`): its inverse.
pub fn positions(order: &[usize]) -> Vec<usize> {
    let mut position = vec![0; order.len()];
    for (k, &i) in order.iter().enumerate() {
        position[i] = k;
    }
    position
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_first_keeps_ties_in_input_order() {
        assert_eq!(longest_first(&[3, 5, 3, 9, 5]), vec![3, 1, 4, 0, 2]);
        assert!(longest_first(&[]).is_empty());
    }

    #[test]
    fn batches_keep_to_the_rows_and_the_padded_tokens() {
        let lengths = [100, 40, 40, 40, 30, 10, 10, 10, 10];
        let order = longest_first(&lengths);
        let cut = |rows: usize, tokens: usize| -> Vec<Vec<usize>> {
            batches(&order, &lengths, rows, tokens).into_iter().map(<[usize]>::to_vec).collect()
        };
        // Rows alone.
        assert_eq!(cut(4, usize::MAX), vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8]]);
        // Tokens: 100 runs alone (two rows would pad to 200), three 40s fit 120, then 30 + 10s pad to 30 each.
        assert_eq!(cut(32, 120), vec![vec![0], vec![1, 2, 3], vec![4, 5, 6, 7], vec![8]]);
        // An input over the budget still runs, alone.
        assert_eq!(cut(32, 50), vec![vec![0], vec![1], vec![2], vec![3], vec![4], vec![5, 6, 7, 8]]);
        // Any order: the padded cost takes the batch's longest row, wherever it is.
        let shuffled = [5, 0, 1];
        let got: Vec<Vec<usize>> = batches(&shuffled, &lengths, 32, 200).into_iter().map(<[usize]>::to_vec).collect();
        assert_eq!(got, vec![vec![5, 0], vec![1]]);
        assert!(batches(&[], &lengths, 32, 100).is_empty());
    }

    #[test]
    fn pad_fills_with_zeros_to_the_longest() {
        let (ids, longest) = pad(&[&[7, 8, 9], &[4]]);
        assert_eq!((ids, longest), (vec![7, 8, 9, 4, 0, 0], 3));
        assert_eq!(padded_tokens(&[3, 1]), 6);
        assert_eq!(padded_tokens(&[]), 0);
    }

    #[test]
    fn scatter_and_positions_undo_the_order() {
        let order = longest_first(&[1, 3, 2]);
        let mut out = vec![0.0; 6];
        for batch in order.chunks(2) {
            let rows: Vec<f32> = batch.iter().flat_map(|&i| [i as f32, 10.0 * i as f32]).collect();
            scatter(&rows, batch, 2, &mut out);
        }
        assert_eq!(out, vec![0.0, 0.0, 1.0, 10.0, 2.0, 20.0]);
        let position = positions(&order);
        assert!((0..3).all(|i| order[position[i]] == i));
    }
}
