//! Human-readable reports of differential mismatches: the command, both raw outputs and exit
//! codes, and a line diff of the normalised outputs.
//!
//! Invariant: reports are bounded: every shown stream and every diff line is truncated, so a
//! 2 MB value cannot flood the test log.

use crate::common::etcdctl::CtlOutput;

use super::normalize::escape_bytes;

/// Characters of one raw stream shown in a report.
const STREAM_CHARS_MAX: usize = 3000;
/// Characters of one diff line shown in a report.
const DIFF_LINE_CHARS_MAX: usize = 400;
/// Lines per side above which the diff only shows the first differing line.
const DIFF_LINES_MAX: usize = 2000;

/// One side of a compared run: the raw output plus its normalised streams.
pub struct SideRun {
    pub label: String,
    pub output: CtlOutput,
    pub stdout: String,
    pub stderr: String,
}

impl SideRun {
    pub fn same_as(&self, other: &SideRun) -> bool {
        self.output.code == other.output.code
            && self.stdout == other.stdout
            && self.stderr == other.stderr
    }
}

/// Everything needed to explain one mismatch.
pub struct Mismatch<'a> {
    pub file: &'a str,
    pub line: usize,
    pub variant: String,
    pub command: String,
    pub stdin: &'a [u8],
    pub reference: &'a SideRun,
    pub candidate: &'a SideRun,
}

/// Renders one mismatch as a block of text.
pub fn render_mismatch(m: &Mismatch<'_>) -> String {
    let (r, c) = (m.reference, m.candidate);
    let mut out = String::new();
    out.push_str(&format!(
        "=== MISMATCH {}:{} [{}]\n",
        m.file, m.line, m.variant
    ));
    out.push_str(&format!("command: {}\n", m.command));
    out.push_str(&format!("stdin:   {}\n", describe_stdin(m.stdin)));
    out.push_str(&format!(
        "exit code: {} {}, {} {}{}\n",
        r.label,
        r.output.code,
        c.label,
        c.output.code,
        if r.output.code == c.output.code {
            " (same)"
        } else {
            "  <-- differs"
        }
    ));
    for (name, pick) in [("stdout", true), ("stderr", false)] {
        let raw = |s: &SideRun| {
            if pick {
                s.output.stdout.clone()
            } else {
                s.output.stderr.clone()
            }
        };
        out.push_str(&format!("--- {name} of {} (raw):\n", r.label));
        out.push_str(&bounded(&escape_bytes(&raw(r)), STREAM_CHARS_MAX));
        out.push_str(&format!("--- {name} of {} (raw):\n", c.label));
        out.push_str(&bounded(&escape_bytes(&raw(c)), STREAM_CHARS_MAX));
        let (a, b) = if pick {
            (&r.stdout, &c.stdout)
        } else {
            (&r.stderr, &c.stderr)
        };
        if a == b {
            out.push_str(&format!("--- normalised {name}: identical\n"));
        } else {
            out.push_str(&format!(
                "--- normalised {name} diff (- {}, + {}):\n",
                r.label, c.label
            ));
            out.push_str(&line_diff(a, b));
        }
    }
    out
}

fn describe_stdin(stdin: &[u8]) -> String {
    if stdin.is_empty() {
        return "(empty)".into();
    }
    let shown = escape_bytes(&stdin[..stdin.len().min(200)]);
    let more = if stdin.len() > 200 { " ..." } else { "" };
    format!("{} bytes: {:?}{more}", stdin.len(), shown)
}

fn bounded(text: &str, max_chars: usize) -> String {
    let mut out: String = text.chars().take(max_chars).collect();
    let total = text.chars().count();
    if total > max_chars {
        out.push_str(&format!("... ({} more characters)", total - max_chars));
    }
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// A minimal line diff (longest common subsequence): ` ` kept, `-` only in `a`, `+` only in `b`.
pub fn line_diff(a: &str, b: &str) -> String {
    let a: Vec<&str> = a.split('\n').collect();
    let b: Vec<&str> = b.split('\n').collect();
    if a.len() > DIFF_LINES_MAX || b.len() > DIFF_LINES_MAX {
        let first = a
            .iter()
            .zip(&b)
            .position(|(x, y)| x != y)
            .unwrap_or(a.len().min(b.len()));
        return format!(
            "(outputs too long to diff: {} vs {} lines; first difference at line {})\n",
            a.len(),
            b.len(),
            first + 1
        );
    }
    // lcs[i][j] = length of the LCS of a[i..] and b[j..].
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut out = String::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            push_line(&mut out, ' ', a[i]);
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            push_line(&mut out, '-', a[i]);
            i += 1;
        } else {
            push_line(&mut out, '+', b[j]);
            j += 1;
        }
    }
    out
}

fn push_line(out: &mut String, mark: char, line: &str) {
    out.push(mark);
    out.push(' ');
    out.push_str(&bounded(line, DIFF_LINE_CHARS_MAX));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_marks_changed_lines() {
        let got = line_diff("a\nb\nc", "a\nx\nc");
        assert_eq!(got, "  a\n- b\n+ x\n  c\n");
    }

    #[test]
    fn diff_handles_insertions_at_the_end() {
        let got = line_diff("a", "a\nb");
        assert_eq!(got, "  a\n+ b\n");
    }

    #[test]
    fn long_lines_are_truncated() {
        let long = "y".repeat(5000);
        let got = line_diff("x", &long);
        assert!(got.len() < 1000, "{}", got.len());
        assert!(got.contains("more characters"));
    }
}
