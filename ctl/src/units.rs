//! Sizes as Docker writes them.

/// Docker's sizes: bytes, or with k, m, g, t (binary multiples), optionally with a trailing b.
pub fn parse_size(s: &str) -> Result<i64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (use bytes or 64k, 64m, 1g)"))?;
    if !(v.is_finite() && v > 0.0) {
        return Err(format!("{s:?} is not a positive size"));
    }
    Ok((v * mult as f64) as i64)
}
