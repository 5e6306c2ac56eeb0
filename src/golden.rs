//! Golden-byte assertions for the format tests: an expected encoding is written as annotated
//! hex next to the test, so that any change to an on-disk or on-wire format fails a test and
//! has to be made on purpose (bump the format's version and keep a decoder for the old one).

/// Parses whitespace-separated hex digits; from `#` to the end of a line is a comment.
pub(crate) fn hex(annotated: &str) -> Vec<u8> {
    let digits: Vec<u8> = annotated
        .lines()
        .flat_map(|line| line.split('#').next().unwrap_or("").bytes())
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    assert!(digits.len() % 2 == 0, "odd number of hex digits");
    digits
        .chunks(2)
        .map(|pair| {
            let text = std::str::from_utf8(pair).expect("ASCII hex");
            u8::from_str_radix(text, 16).expect("hex digit")
        })
        .collect()
}

/// Formats bytes as hex, 16 bytes a line (what a golden literal is pasted from).
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    bytes
        .chunks(16)
        .map(|line| {
            line.iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Asserts that `actual` is exactly the annotated hex `expected`.
#[track_caller]
pub(crate) fn assert_golden(what: &str, actual: &[u8], expected: &str) {
    let expected = hex(expected);
    assert!(
        actual == expected.as_slice(),
        "{what}: the encoding changed. Changing these bytes changes the on-disk/on-wire format: \
         bump the version and keep a decoder for the old one.\nactual ({} bytes):\n{}\n\
         expected ({} bytes):\n{}",
        actual.len(),
        to_hex(actual),
        expected.len(),
        to_hex(&expected)
    );
}
