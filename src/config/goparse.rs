//! Value parsers that accept exactly what etcd's Go flag package accepts: booleans
//! (`strconv.ParseBool`), integers (`strconv.ParseInt/ParseUint` with base 0) and durations
//! (`time.ParseDuration`), plus Go's `Duration.String` rendering for logs.
//!
//! Invariant: every parser is total over `&str` (never panics) and rejects rather than
//! truncates: an out-of-range number is an error, not a saturated value.
//! Invariant: error texts match Go's (`time: invalid duration "x"`, ...), because etcd shows
//! them to operators and scripts grep for them.

use std::fmt;

/// Why Go's `strconv` rejected a number; Go's flag package prints these as shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumError {
    /// Not a number at all (`flag` prints "parse error").
    Syntax,
    /// A number that does not fit (`flag` prints "value out of range").
    Range,
}

impl fmt::Display for NumError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NumError::Syntax => f.write_str("parse error"),
            NumError::Range => f.write_str("value out of range"),
        }
    }
}

/// Go `strconv.ParseBool`: 1, t, T, TRUE, true, True, 0, f, F, FALSE, false, False.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Go `strconv.ParseUint(s, 0, 64)`: optional `0x`/`0o`/`0b`/leading-`0` base prefix, and
/// underscores between digits (base-0 syntax).
pub fn parse_uint(s: &str) -> Result<u64, NumError> {
    let (radix, digits) = split_radix(s);
    if digits.is_empty() {
        return Err(NumError::Syntax);
    }
    if digits.starts_with('_') && !radix_had_prefix(s) || !underscores_between_digits(digits) {
        return Err(NumError::Syntax);
    }
    let mut value: u64 = 0;
    let mut overflow = false;
    for c in digits.chars().filter(|c| *c != '_') {
        let d = c.to_digit(radix).ok_or(NumError::Syntax)?;
        match value
            .checked_mul(u64::from(radix))
            .and_then(|v| v.checked_add(u64::from(d)))
        {
            Some(v) => value = v,
            None => overflow = true,
        }
    }
    if overflow {
        return Err(NumError::Range);
    }
    Ok(value)
}

/// Go `strconv.ParseInt(s, 0, 64)`.
pub fn parse_int(s: &str) -> Result<i64, NumError> {
    let (negative, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let magnitude = parse_uint(body)?;
    if negative {
        if magnitude > i64::MAX as u64 + 1 {
            return Err(NumError::Range);
        }
        Ok((magnitude as i64).wrapping_neg())
    } else {
        i64::try_from(magnitude).map_err(|_| NumError::Range)
    }
}

/// Go `strconv.ParseUint(s, 0, 32)`-style bounded parse for flags declared as `uint` that
/// we keep in a `u32`.
pub fn parse_uint_bounded(s: &str, max: u64) -> Result<u64, NumError> {
    let v = parse_uint(s)?;
    if v > max {
        return Err(NumError::Range);
    }
    Ok(v)
}

fn radix_had_prefix(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2 && b[0] == b'0'
}

fn split_radix(s: &str) -> (u32, &str) {
    let b = s.as_bytes();
    if b.len() >= 2 && b[0] == b'0' {
        match b[1] {
            b'x' | b'X' => return (16, &s[2..]),
            b'o' | b'O' => return (8, &s[2..]),
            b'b' | b'B' => return (2, &s[2..]),
            _ => return (8, &s[1..]),
        }
    }
    (10, s)
}

/// Go allows `_` only between digits (or right after a base prefix, checked by the caller).
fn underscores_between_digits(digits: &str) -> bool {
    let b = digits.as_bytes();
    if b.last() == Some(&b'_') {
        return false;
    }
    !digits.contains("__")
}

/// A Go `time.Duration`: signed nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct GoDuration {
    pub nanos: i64,
}

impl GoDuration {
    /// The duration as a std `Duration`, or `None` when negative.
    pub fn to_std(self) -> Option<std::time::Duration> {
        u64::try_from(self.nanos)
            .ok()
            .map(std::time::Duration::from_nanos)
    }
}

/// Why `time.ParseDuration` rejected a string; Display is Go's exact text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurationError {
    Invalid { input: String },
    MissingUnit { input: String },
    UnknownUnit { unit: String, input: String },
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurationError::Invalid { input } => write!(f, "time: invalid duration {input:?}"),
            DurationError::MissingUnit { input } => {
                write!(f, "time: missing unit in duration {input:?}")
            }
            DurationError::UnknownUnit { unit, input } => {
                write!(f, "time: unknown unit {unit:?} in duration {input:?}")
            }
        }
    }
}

impl std::error::Error for DurationError {}

const NANOS_PER_UNIT: &[(&str, u64)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("\u{b5}s", 1_000),
    ("\u{3bc}s", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Go `time.ParseDuration`: `[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+`, or a bare `0`.
pub fn parse_duration(input: &str) -> Result<GoDuration, DurationError> {
    let invalid = || DurationError::Invalid {
        input: input.to_string(),
    };
    let (negative, mut rest) = match input.as_bytes().first() {
        Some(b'-') => (true, &input[1..]),
        Some(b'+') => (false, &input[1..]),
        _ => (false, input),
    };
    if rest == "0" {
        return Ok(GoDuration { nanos: 0 });
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    // Magnitude limit: Go allows up to 1<<63 for negative values and 1<<63 - 1 otherwise.
    let limit: u128 = if negative { 1 << 63 } else { (1 << 63) - 1 };
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let (term, after) = parse_term(rest, input)?;
        total = total.checked_add(term).ok_or_else(invalid)?;
        if total > limit {
            return Err(invalid());
        }
        rest = after;
    }
    let nanos = if negative {
        (total as i128).wrapping_neg() as i64
    } else {
        total as i64
    };
    Ok(GoDuration { nanos })
}

/// One `<number><unit>` term; returns its nanoseconds and the unparsed remainder.
fn parse_term<'a>(s: &'a str, input: &str) -> Result<(u128, &'a str), DurationError> {
    let invalid = || DurationError::Invalid {
        input: input.to_string(),
    };
    let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
    let (int_digits, after_int) = s.split_at(int_len);
    let (frac_digits, after_num) = match after_int.strip_prefix('.') {
        Some(f) => {
            let n = f.bytes().take_while(u8::is_ascii_digit).count();
            f.split_at(n)
        }
        None => ("", after_int),
    };
    if int_digits.is_empty() && frac_digits.is_empty() {
        return Err(invalid());
    }
    let unit_len = after_num
        .char_indices()
        .find(|(_, c)| *c == '.' || c.is_ascii_digit())
        .map_or(after_num.len(), |(i, _)| i);
    let (unit, rest) = after_num.split_at(unit_len);
    if unit.is_empty() {
        return Err(DurationError::MissingUnit {
            input: input.to_string(),
        });
    }
    let scale = NANOS_PER_UNIT
        .iter()
        .find(|(name, _)| *name == unit)
        .map(|(_, n)| u128::from(*n))
        .ok_or_else(|| DurationError::UnknownUnit {
            unit: unit.to_string(),
            input: input.to_string(),
        })?;
    let mut whole: u128 = 0;
    for d in int_digits.bytes() {
        whole = whole
            .checked_mul(10)
            .and_then(|v| v.checked_add(u128::from(d - b'0')))
            .filter(|v| *v <= 1 << 63)
            .ok_or_else(invalid)?;
    }
    let mut nanos = whole.checked_mul(scale).ok_or_else(invalid)?;
    // Fraction: keep at most 18 digits, like Go stops accumulating before overflow.
    let mut frac: u128 = 0;
    let mut frac_scale: u128 = 1;
    for d in frac_digits.bytes().take(18) {
        frac = frac * 10 + u128::from(d - b'0');
        frac_scale *= 10;
    }
    nanos = nanos
        .checked_add(frac * scale / frac_scale)
        .ok_or_else(invalid)?;
    Ok((nanos, rest))
}

/// Go `Duration.String()`: "0s", "100ms", "1.5s", "10m0s", "2h0m0s".
pub fn format_duration(d: GoDuration) -> String {
    let negative = d.nanos < 0;
    let u = d.nanos.unsigned_abs();
    let sign = if negative { "-" } else { "" };
    if u < 1_000_000_000 {
        if u == 0 {
            return "0s".to_string();
        }
        let (unit, scale) = if u < 1_000 {
            ("ns", 1)
        } else if u < 1_000_000 {
            ("\u{b5}s", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{sign}{}{unit}", fixed_point(u, scale));
    }
    let secs_total = u / 1_000_000_000;
    let sub = u % 1_000_000_000;
    let hours = secs_total / 3600;
    let minutes = (secs_total / 60) % 60;
    let secs = fixed_point(secs_total % 60 * 1_000_000_000 + sub, 1_000_000_000);
    if hours > 0 {
        format!("{sign}{hours}h{minutes}m{secs}s")
    } else if minutes > 0 {
        format!("{sign}{minutes}m{secs}s")
    } else {
        format!("{sign}{secs}s")
    }
}

/// `value / scale` written with the shortest exact decimal fraction.
fn fixed_point(value: u64, scale: u64) -> String {
    let whole = value / scale;
    let frac = value % scale;
    if frac == 0 {
        return whole.to_string();
    }
    let width = scale.ilog10() as usize;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: i64) -> GoDuration {
        GoDuration {
            nanos: n * 1_000_000,
        }
    }

    #[test]
    fn bools_accept_go_spellings_only() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_bool(t), Some(true), "{t}");
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_bool(f), Some(false), "{f}");
        }
        for bad in ["", "yes", "tRUE", "2", " true", "on"] {
            assert_eq!(parse_bool(bad), None, "{bad}");
        }
    }

    #[test]
    fn integers_follow_base_zero_rules() {
        assert_eq!(parse_uint("100000"), Ok(100_000));
        assert_eq!(parse_uint("0x10"), Ok(16));
        assert_eq!(parse_uint("0o17"), Ok(15));
        assert_eq!(parse_uint("017"), Ok(15));
        assert_eq!(parse_uint("0b101"), Ok(5));
        assert_eq!(parse_uint("1_000"), Ok(1000));
        assert_eq!(parse_uint("0"), Ok(0));
        assert_eq!(parse_uint("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(parse_uint("18446744073709551616"), Err(NumError::Range));
        for bad in ["", "abc", "1__0", "10_", "-1", "0x", "09", "1.5", " 1"] {
            assert_eq!(parse_uint(bad), Err(NumError::Syntax), "{bad}");
        }
        assert_eq!(parse_int("-5"), Ok(-5));
        assert_eq!(parse_int("+5"), Ok(5));
        assert_eq!(parse_int("-9223372036854775808"), Ok(i64::MIN));
        assert_eq!(parse_int("9223372036854775808"), Err(NumError::Range));
        assert_eq!(parse_int("-"), Err(NumError::Syntax));
        assert_eq!(parse_uint_bounded("70000", 65535), Err(NumError::Range));
    }

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(parse_duration("100ms"), Ok(ms(100)));
        assert_eq!(parse_duration("5s"), Ok(ms(5_000)));
        assert_eq!(parse_duration("10m"), Ok(ms(600_000)));
        assert_eq!(parse_duration("1h30m"), Ok(ms(5_400_000)));
        assert_eq!(parse_duration("1.5h"), Ok(ms(5_400_000)));
        assert_eq!(parse_duration(".5s"), Ok(ms(500)));
        assert_eq!(parse_duration("0"), Ok(ms(0)));
        assert_eq!(parse_duration("-5s"), Ok(ms(-5_000)));
        assert_eq!(parse_duration("1us"), Ok(GoDuration { nanos: 1_000 }));
        assert_eq!(parse_duration("1\u{b5}s"), Ok(GoDuration { nanos: 1_000 }));
        assert_eq!(parse_duration("3ns"), Ok(GoDuration { nanos: 3 }));
        assert_eq!(
            parse_duration("2562047h47m16.854775807s"),
            Ok(GoDuration { nanos: i64::MAX })
        );
    }

    #[test]
    fn duration_errors_use_go_text() {
        let text = |s: &str| parse_duration(s).unwrap_err().to_string();
        assert_eq!(text(""), r#"time: invalid duration """#);
        assert_eq!(text("abc"), r#"time: invalid duration "abc""#);
        assert_eq!(text("-1"), r#"time: missing unit in duration "-1""#);
        assert_eq!(text("1.5"), r#"time: missing unit in duration "1.5""#);
        assert_eq!(text("1d"), r#"time: unknown unit "d" in duration "1d""#);
        assert_eq!(text("."), r#"time: invalid duration ".""#);
        assert_eq!(text("3000000h"), r#"time: invalid duration "3000000h""#);
        assert_eq!(text("5s "), r#"time: unknown unit "s " in duration "5s ""#);
    }

    #[test]
    fn durations_render_like_go() {
        let f = |s: &str| format_duration(parse_duration(s).unwrap());
        assert_eq!(f("0"), "0s");
        assert_eq!(f("100ms"), "100ms");
        assert_eq!(f("1s"), "1s");
        assert_eq!(f("1.5s"), "1.5s");
        assert_eq!(f("10m"), "10m0s");
        assert_eq!(f("2h"), "2h0m0s");
        assert_eq!(f("1h30m5.25s"), "1h30m5.25s");
        assert_eq!(f("1500us"), "1.5ms");
        assert_eq!(f("-5s"), "-5s");
        assert_eq!(f("7ns"), "7ns");
    }

    #[test]
    fn negative_durations_have_no_std_form() {
        assert_eq!(parse_duration("-1s").unwrap().to_std(), None);
        assert_eq!(
            parse_duration("2s").unwrap().to_std(),
            Some(std::time::Duration::from_secs(2))
        );
    }

    proptest::proptest! {
        #[test]
        fn rendered_durations_parse_back(nanos in proptest::num::i64::ANY) {
            let d = GoDuration { nanos };
            proptest::prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }

        #[test]
        fn parsers_never_panic(s in "\\PC{0,24}") {
            let _ = parse_duration(&s);
            let _ = parse_int(&s);
            let _ = parse_uint(&s);
        }

        #[test]
        fn decimal_integers_round_trip(n in proptest::num::i64::ANY) {
            proptest::prop_assert_eq!(parse_int(&n.to_string()), Ok(n));
        }
    }
}
