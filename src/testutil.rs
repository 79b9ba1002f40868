//! Test support shared by the parsers' and readers' tests.

/// A small deterministic generator (xorshift64): failures must be reproducible.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// The low byte of `x`: random test data cut to a byte on purpose.
pub fn low_byte(x: u64) -> u8 {
    x.to_le_bytes()[0]
}

/// `x` made an index below `len`.
pub fn index_below(x: u64, len: usize) -> usize {
    usize::try_from(x % len as u64).expect("below a usize")
}

/// Asserts that `run` takes time linear in the size of its input: `input(n)` makes an input
/// of about `n` bytes, the worst case of its kind (thousands of sections, keys, ...). A 1 MiB
/// input is 16 times a 64 KiB one; a linear parser takes about 16 times as long, a quadratic
/// one 256 times. The bound, 6 times the ratio of the sizes, leaves room for a loaded test
/// machine (ratios of 35 were seen with the tests running side by side) without letting a
/// quadratic parser through; a big run under 50 ms passes anyway
/// (too fast to matter, and too short to measure the small one reliably).
pub fn assert_linear(what: &str, input: impl Fn(usize) -> Vec<u8>, run: impl Fn(&[u8])) {
    use std::time::{Duration, Instant};
    let time = |bytes: &[u8], tries: usize| -> Duration {
        (0..tries)
            .map(|_| {
                let start = Instant::now();
                run(bytes);
                start.elapsed()
            })
            .min()
            .unwrap_or_default()
    };
    let (small, big) = (input(64 * 1024), input(1024 * 1024));
    let t_small = time(&small, 5);
    let t_big = time(&big, 2);
    let sizes = big.len() as f64 / small.len().max(1) as f64;
    let times = t_big.as_secs_f64() / t_small.as_secs_f64().max(1e-9);
    assert!(
        t_big < Duration::from_millis(50) || times <= 6.0 * sizes,
        "{what}: {} bytes took {t_big:?}, {} bytes {t_small:?}: {times:.0} times as long for {sizes:.0} times the input, not linear",
        big.len(),
        small.len()
    );
}

/// About `n` bytes of `head` followed by `line(i)` for i = 0, 1, ...
pub fn repeated(n: usize, head: &str, line: impl Fn(usize) -> String) -> Vec<u8> {
    let mut out = head.as_bytes().to_vec();
    let mut i = 0;
    while out.len() < n {
        out.extend_from_slice(line(i).as_bytes());
        i += 1;
    }
    out
}
