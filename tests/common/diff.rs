//! A small line diff: unified diffs of texts, a one-line summary for binary contents.

use std::fmt::Write as _;

/// A unified line diff of two byte strings, or a one-line summary if either is not UTF-8.
pub fn content_diff(old: &[u8], new: &[u8], old_label: &str, new_label: &str) -> String {
    match (std::str::from_utf8(old), std::str::from_utf8(new)) {
        (Ok(a), Ok(b)) => unified_diff(a, b, old_label, new_label),
        _ => format!(
            "binary contents differ ({} vs {} bytes)\n",
            old.len(),
            new.len()
        ),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Same,
    Delete,
    Insert,
}

/// The edit script between two line lists: a longest common subsequence after trimming the
/// common head and tail (quadratic, so very long inputs fall back to delete-all, insert-all).
fn diff_ops<'a>(a: &[&'a str], b: &[&'a str]) -> Vec<(Op, &'a str)> {
    let head = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let tail = a[head..]
        .iter()
        .rev()
        .zip(b[head..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (am, bm) = (&a[head..a.len() - tail], &b[head..b.len() - tail]);
    let mut ops: Vec<(Op, &str)> = a[..head].iter().map(|l| (Op::Same, *l)).collect();
    if am.len().saturating_mul(bm.len()) <= 4_000_000 {
        let w = bm.len() + 1;
        let mut lcs = vec![0u32; (am.len() + 1) * w];
        for i in (0..am.len()).rev() {
            for j in (0..bm.len()).rev() {
                lcs[i * w + j] = if am[i] == bm[j] {
                    lcs[(i + 1) * w + j + 1] + 1
                } else {
                    lcs[(i + 1) * w + j].max(lcs[i * w + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < am.len() && j < bm.len() {
            if am[i] == bm[j] {
                ops.push((Op::Same, am[i]));
                i += 1;
                j += 1;
            } else if lcs[(i + 1) * w + j] >= lcs[i * w + j + 1] {
                ops.push((Op::Delete, am[i]));
                i += 1;
            } else {
                ops.push((Op::Insert, bm[j]));
                j += 1;
            }
        }
        ops.extend(am[i..].iter().map(|l| (Op::Delete, *l)));
        ops.extend(bm[j..].iter().map(|l| (Op::Insert, *l)));
    } else {
        ops.extend(am.iter().map(|l| (Op::Delete, *l)));
        ops.extend(bm.iter().map(|l| (Op::Insert, *l)));
    }
    ops.extend(a[a.len() - tail..].iter().map(|l| (Op::Same, *l)));
    ops
}

/// A unified diff (3 lines of context) of two texts; empty if they are equal. A last line
/// without a newline is flagged as in `diff -u`.
pub fn unified_diff(old: &str, new: &str, old_label: &str, new_label: &str) -> String {
    const CONTEXT: usize = 3;
    if old == new {
        return String::new();
    }
    let a: Vec<&str> = old.split_inclusive('\n').collect();
    let b: Vec<&str> = new.split_inclusive('\n').collect();
    let ops = diff_ops(&a, &b);
    let changes: Vec<usize> = (0..ops.len()).filter(|&k| ops[k].0 != Op::Same).collect();

    // Group the changes into hunks: ranges of ops, merged when their context would overlap.
    let mut hunks: Vec<(usize, usize)> = Vec::new();
    for &k in &changes {
        let lo = k.saturating_sub(CONTEXT);
        let hi = (k + 1 + CONTEXT).min(ops.len());
        match hunks.last_mut() {
            Some(last) if lo <= last.1 => last.1 = hi,
            _ => hunks.push((lo, hi)),
        }
    }

    let mut out = format!("--- {old_label}\n+++ {new_label}\n");
    for (lo, hi) in hunks {
        let old_before = ops[..lo].iter().filter(|(op, _)| *op != Op::Insert).count();
        let new_before = ops[..lo].iter().filter(|(op, _)| *op != Op::Delete).count();
        let old_len = ops[lo..hi]
            .iter()
            .filter(|(op, _)| *op != Op::Insert)
            .count();
        let new_len = ops[lo..hi]
            .iter()
            .filter(|(op, _)| *op != Op::Delete)
            .count();
        let start = |before: usize, len: usize| if len == 0 { before } else { before + 1 };
        let _ = writeln!(
            out,
            "@@ -{},{old_len} +{},{new_len} @@",
            start(old_before, old_len),
            start(new_before, new_len)
        );
        for (op, line) in &ops[lo..hi] {
            out.push(match op {
                Op::Same => ' ',
                Op::Delete => '-',
                Op::Insert => '+',
            });
            out.push_str(line);
            if !line.ends_with('\n') {
                out.push_str("\n\\ No newline at end of file\n");
            }
        }
    }
    out
}
