//! Length-sorted batching, the one way every caller runs many inputs: order them longest first so that
//! each batch holds rows of similar length, right-pad a batch to its longest row, and put the rows that
//! come out back in input order.

/// Indices `0..lengths.len()`, longest first; equal lengths keep their input order.
pub fn longest_first(lengths: &[usize]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    order
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
