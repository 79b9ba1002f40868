//! systemd's version comparison, by which A/B partition labels and the entries of
//! versioned directories are ordered.

use std::cmp::Ordering;

fn is_version_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'~' | b'-' | b'^' | b'.')
}

/// The UAPI version comparison (UAPI.10), a port of `strverscmp_improved()` from
/// systemd's src/fundamental/string-util-fundamental.c, so that A/B partition labels and
/// versioned file names sort exactly as systemd sorts them. A NUL byte ends a string.
pub fn strverscmp_improved(a: &[u8], b: &[u8]) -> Ordering {
    // Past the end reads as NUL, as in the C original.
    let at = |s: &[u8], i: usize| s.get(i).copied().unwrap_or(0);
    let (mut i, mut j) = (0usize, 0usize);
    loop {
        while at(a, i) != 0 && !is_version_char(at(a, i)) {
            i += 1;
        }
        while at(b, j) != 0 && !is_version_char(at(b, j)) {
            j += 1;
        }

        // '~' marks a pre-release, older than anything without it.
        if at(a, i) == b'~' || at(b, j) == b'~' {
            let r = (at(a, i) != b'~').cmp(&(at(b, j) != b'~'));
            if r.is_ne() {
                return r;
            }
            i += 1;
            j += 1;
        }

        // More segments is newer, except for the '~' case handled above.
        if at(a, i) == 0 || at(b, j) == 0 {
            return at(a, i).cmp(&at(b, j));
        }

        // '-' separates version and release, '^' marks a patched release, '.' a point
        // release; a segment without the prefix is newer.
        for sep in [b'-', b'^', b'.'] {
            if at(a, i) == sep || at(b, j) == sep {
                let r = (at(a, i) != sep).cmp(&(at(b, j) != sep));
                if r.is_ne() {
                    return r;
                }
                i += 1;
                j += 1;
            }
        }

        let (aa, bb);
        if at(a, i).is_ascii_digit() || at(b, j).is_ascii_digit() {
            aa = i + (i..).take_while(|&k| at(a, k).is_ascii_digit()).count();
            bb = j + (j..).take_while(|&k| at(b, k).is_ascii_digit()).count();
            // A number is newer than no number.
            let r = (aa != i).cmp(&(bb != j));
            if r.is_ne() {
                return r;
            }
            while at(a, i) == b'0' {
                i += 1;
            }
            while at(b, j) == b'0' {
                j += 1;
            }
            // Without leading zeros, the longer number is the larger one.
            let r = (aa - i).cmp(&(bb - j));
            if r.is_ne() {
                return r;
            }
            let r = a.get(i..aa).cmp(&b.get(j..bb));
            if r.is_ne() {
                return r;
            }
        } else {
            aa = i
                + (i..)
                    .take_while(|&k| at(a, k).is_ascii_alphabetic())
                    .count();
            bb = j
                + (j..)
                    .take_while(|&k| at(b, k).is_ascii_alphabetic())
                    .count();
            let common = (aa - i).min(bb - j);
            let r = a.get(i..i + common).cmp(&b.get(j..j + common));
            if r.is_ne() {
                return r;
            }
            let r = (aa - i).cmp(&(bb - j));
            if r.is_ne() {
                return r;
            }
        }
        i = aa;
        j = bb;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Cases from systemd's src/test/test-string-util.c.

    fn cmp(a: &str, b: &str) -> Ordering {
        strverscmp_improved(a.as_bytes(), b.as_bytes())
    }

    fn newer(older: &str, newer: &str) {
        assert_eq!(cmp(older, newer), Ordering::Less, "{older:?} < {newer:?}");
        assert_eq!(
            cmp(newer, older),
            Ordering::Greater,
            "{newer:?} > {older:?}"
        );
        assert_eq!(cmp(older, older), Ordering::Equal);
        assert_eq!(cmp(newer, newer), Ordering::Equal);
    }

    #[test]
    fn strverscmp_improved_ordering() {
        let versions = [
            "~1",
            "",
            "ab",
            "abb",
            "abc",
            "0001",
            "002",
            "12",
            "122",
            "122.9",
            "123~rc1",
            "123",
            "123-a",
            "123-a.1",
            "123-a1",
            "123-a1.1",
            "123-3",
            "123-3.1",
            "123^patch1",
            "123^1",
            "123.a-1",
            "123.1-1",
            "123a-1",
            "124",
        ];
        for (i, p) in versions.iter().enumerate() {
            for q in &versions[i + 1..] {
                newer(p, q);
            }
        }

        newer("123.45-67.88", "123.45-67.89");
        newer("123.45-67.89", "123.45-67.89a");
        newer("123.45-67.ab", "123.45-67.89");
        newer("123.45-67.9", "123.45-67.89");
        newer("123.45-67", "123.45-67.89");
        newer("123.45-66.89", "123.45-67.89");
        newer("123.45-9.99", "123.45-67.89");
        newer("123.42-99.99", "123.45-67.89");
        newer("123-99.99", "123.45-67.89");

        newer("123~rc1-99.99", "123.45-67.89");
        newer("123~rc1-99.99", "123-45.67.89");
        newer("123~rc1-99.99", "123~rc2-67.89");
        newer("123~rc1-99.99", "123^aa2-67.89");
        newer("123~rc1-99.99", "123aa2-67.89");

        newer("123-99.99", "123.45-67.89");
        newer("123-99.99", "123^aa2-67.89");
        newer("123-99.99", "123aa2-67.89");

        newer("123^45-67.89", "123.45-67.89");
        newer("123^aa1-99.99", "123^aa2-67.89");
        newer("123^aa2-67.89", "123aa2-67.89");

        newer("123.aa2-67.89", "123aa2-67.89");
        newer("123.aa2-67.89", "123.ab2-67.89");

        assert_eq!(cmp("123_aa2-67.89", "123aa+2-67.89"), Ordering::Equal);

        assert_eq!(cmp("123.", "123"), Ordering::Greater);
        assert_eq!(cmp("12_3", "123"), Ordering::Less);
        assert_eq!(cmp("12_3", "12"), Ordering::Greater);
        assert_eq!(cmp("12_3", "12.3"), Ordering::Greater);
        assert_eq!(cmp("123.0", "123"), Ordering::Greater);
        assert_eq!(cmp("123_0", "123"), Ordering::Greater);
        assert_eq!(cmp("123..0", "123.0"), Ordering::Less);

        for (a, b) in [
            ("", ""),
            ("0_", "0"),
            ("_0_", "0"),
            ("_0", "0"),
            ("0", "0___"),
            ("", "_"),
            ("_", ""),
            ("_", "_"),
        ] {
            assert_eq!(cmp(a, b), Ordering::Equal, "{a:?} == {b:?}");
        }
        assert_eq!(cmp("", "~"), Ordering::Greater);
        assert_eq!(cmp("~", ""), Ordering::Less);
        assert_eq!(cmp("~", "~"), Ordering::Equal);

        // Non-ASCII digits are not digits.
        assert_eq!(cmp("1٠١٢٣٤٥٦٧٨٩", "1"), Ordering::Equal);
        assert_eq!(cmp("1๐๑๒๓๔๕๖๗๘๙", "1"), Ordering::Equal);
        // A NUL ends the string, as in C.
        assert_eq!(strverscmp_improved(b"1.2\x009", b"1.2"), Ordering::Equal);
    }

    #[test]
    fn strverscmp_improved_rpm_cases() {
        use Ordering::{Equal as E, Greater as G, Less as L};
        let cases = [
            ("1.0", "1.0", E),
            ("1.0", "2.0", L),
            ("2.0", "1.0", G),
            ("2.0.1", "2.0.1", E),
            ("2.0", "2.0.1", L),
            ("2.0.1", "2.0", G),
            ("2.0.1a", "2.0.1a", E),
            ("2.0.1a", "2.0.1", G),
            ("2.0.1", "2.0.1a", L),
            ("5.5p1", "5.5p1", E),
            ("5.5p1", "5.5p2", L),
            ("5.5p2", "5.5p1", G),
            ("5.5p10", "5.5p10", E),
            ("5.5p1", "5.5p10", L),
            ("5.5p10", "5.5p1", G),
            ("10xyz", "10.1xyz", G),
            ("10.1xyz", "10xyz", L),
            ("xyz10", "xyz10", E),
            ("xyz10", "xyz10.1", L),
            ("xyz10.1", "xyz10", G),
            ("xyz.4", "xyz.4", E),
            ("xyz.4", "8", L),
            ("8", "xyz.4", G),
            ("xyz.4", "2", L),
            ("2", "xyz.4", G),
            ("5.5p2", "5.6p1", L),
            ("5.6p1", "5.5p2", G),
            ("5.6p1", "6.5p1", L),
            ("6.5p1", "5.6p1", G),
            ("6.0.rc1", "6.0", G),
            ("6.0", "6.0.rc1", L),
            ("10b2", "10a1", G),
            ("10a2", "10b2", L),
            ("1.0aa", "1.0aa", E),
            ("1.0a", "1.0aa", L),
            ("1.0aa", "1.0a", G),
            ("10.0001", "10.0001", E),
            ("10.0001", "10.1", E),
            ("10.1", "10.0001", E),
            ("10.0001", "10.0039", L),
            ("10.0039", "10.0001", G),
            ("4.999.9", "5.0", L),
            ("5.0", "4.999.9", G),
            ("20101121", "20101121", E),
            ("20101121", "20101122", L),
            ("20101122", "20101121", G),
            ("2_0", "2_0", E),
            ("2.0", "2_0", L),
            ("2_0", "2.0", G),
            ("a", "a", E),
            ("a+", "a+", E),
            ("a+", "a_", E),
            ("a_", "a+", E),
            ("+a", "+a", E),
            ("+a", "_a", E),
            ("_a", "+a", E),
            ("+_", "+_", E),
            ("_+", "+_", E),
            ("_+", "_+", E),
            ("+", "_", E),
            ("_", "+", E),
            ("1.0~rc1", "1.0~rc1", E),
            ("1.0~rc1", "1.0", L),
            ("1.0", "1.0~rc1", G),
            ("1.0~rc1", "1.0~rc2", L),
            ("1.0~rc2", "1.0~rc1", G),
            ("1.0~rc1~git123", "1.0~rc1~git123", E),
            ("1.0~rc1~git123", "1.0~rc1", L),
            ("1.0~rc1", "1.0~rc1~git123", G),
            ("1.0^", "1.0^", E),
            ("1.0^", "1.0", G),
            ("1.0", "1.0^", L),
            ("1.0^git1", "1.0^git1", E),
            ("1.0^git1", "1.0", G),
            ("1.0", "1.0^git1", L),
            ("1.0^git1", "1.0^git2", L),
            ("1.0^git2", "1.0^git1", G),
            ("1.0^git1", "1.01", L),
            ("1.01", "1.0^git1", G),
            ("1.0^20160101", "1.0^20160101", E),
            ("1.0^20160101", "1.0.1", L),
            ("1.0.1", "1.0^20160101", G),
            ("1.0^20160101^git1", "1.0^20160101^git1", E),
            ("1.0^20160102", "1.0^20160101^git1", G),
            ("1.0^20160101^git1", "1.0^20160102", L),
            ("1.0~rc1^git1", "1.0~rc1^git1", E),
            ("1.0~rc1^git1", "1.0~rc1", G),
            ("1.0~rc1", "1.0~rc1^git1", L),
            ("1.0^git1~pre", "1.0^git1~pre", E),
            ("1.0^git1", "1.0^git1~pre", G),
            ("1.0^git1~pre", "1.0^git1", L),
            ("1b.fc17", "1b.fc17", E),
            ("1b.fc17", "1.fc17", G),
            ("1.fc17", "1b.fc17", L),
            ("1g.fc17", "1g.fc17", E),
            ("1g.fc17", "1.fc17", G),
            ("1.fc17", "1g.fc17", L),
            ("1.1.α", "1.1.α", E),
            ("1.1.α", "1.1.β", E),
            ("1.1.β", "1.1.α", E),
            ("1.1.αα", "1.1.α", E),
            ("1.1.α", "1.1.ββ", E),
            ("1.1.ββ", "1.1.αα", E),
        ];
        for (a, b, want) in cases {
            assert_eq!(cmp(a, b), want, "{a:?} vs {b:?}");
        }
    }
}
