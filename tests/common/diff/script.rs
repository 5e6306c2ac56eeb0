//! The case-script language of the differential harness (`tests/diff/*.txt`).
//!
//! Grammar (one step per line; `#` comments and blank lines between steps are ignored):
//!
//! ```text
//! script    = { directive | step }
//! directive = "@skip-unless" ENV_VAR          (skip the whole file unless ENV_VAR=1)
//!           | "@server-flags" word { word }   (extra flags for both servers; first lines only)
//!           | "@sleep" MILLISECONDS           (a step that only waits, e.g. for a lease to expire)
//!           | "@join"                         (stop the `[background]` commands and compare them)
//! step      = [ "[" modifier { modifier } "]" ] word { word } [ stdin ] [ "=>" NAME ]
//! modifier  = "once" | "v34" | "v35" | "json" | "plain" | "stream" | "background"
//! word      = bare | '...' | "..."            (bare and "..." understand \xNN \n \t \0 \\ \" \'
//!                                              and "\ "; '...' is literal)
//! stdin     = "<<" DELIM NEWLINE { line } DELIM        (heredoc; every line ends with \n;
//!                                                      "@repeat N text" expands to N lines with
//!                                                      {i} = 1..=N)
//!           | "<" "fill:" N ":" CHAR                  (N copies of one ASCII character)
//! ```
//!
//! `${NAME}` inside words or heredocs is replaced, per server, by the lease ID (hex) that an
//! earlier step captured with `=> NAME` (`lease grant ... => NAME`).
//!
//! By default a step runs four times on each server, identically on both: etcdctl 3.5 as
//! written, etcdctl 3.5 with `-w json`, etcdctl 3.4 as written, etcdctl 3.4 with `-w json`
//! (the `-w json` variants are dropped when the step chooses its own `-w`). Writes therefore
//! repeat; `[once]` runs etcdctl 3.5 as written only, `[v34]`/`[v35]`/`[json]`/`[plain]`
//! restrict the variants. `[stream]` marks a command that does not end by itself (`watch`): each
//! run is stopped after a fixed window and the output collected until then is compared.
//! `[background]` starts every variant of a streaming command and goes on with the next steps
//! while it runs; the next `@join` stops it and compares what it printed (e.g. a live `watch`
//! seeing the writes of the steps in between).
//!
//! Invariant: a parsed `Step` has at least one variant, and every `${NAME}` it uses was
//! captured by an earlier step.

use std::collections::BTreeSet;
use std::fmt;

use crate::common::etcdctl::CtlVersion;

/// One way of running a step: which etcdctl, and whether `-w json` is added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Variant {
    pub ctl: CtlVersion,
    pub json: bool,
}

impl Variant {
    pub fn label(&self) -> String {
        let format = if self.json { ", -w json" } else { "" };
        format!("{}{format}", self.ctl.label())
    }
}

/// One line (or heredoc block) of a case script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// 1-based line of the step in its file.
    pub line: usize,
    /// The step as written (first line only for heredocs).
    pub source: String,
    pub args: Vec<Vec<u8>>,
    pub stdin: Vec<u8>,
    pub variants: Vec<Variant>,
    /// Name under which the lease ID granted by this step is remembered.
    pub capture: Option<String>,
    /// The command streams until stopped (`[stream]`): every run is cut off after a fixed window.
    pub stream: bool,
    /// A pause instead of a command (`@sleep MS`): `args` is empty.
    pub sleep_ms: u64,
    /// Runs in the background until the next `@join` (`[background]`).
    pub background: bool,
    /// Stops and compares the running background commands (`@join`): `args` is empty.
    pub join: bool,
}

/// A parsed case file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Script {
    pub steps: Vec<Step>,
    /// Environment variable that must be `1` for the file to run.
    pub skip_unless: Option<String>,
    /// Extra server flags both servers start with (`@server-flags`).
    pub server_flags: Vec<String>,
}

/// A syntax error with its 1-based line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// Upper bound for generated stdin (`fill:`) and `@repeat` counts.
const GENERATED_BYTES_MAX: usize = 16 * 1024 * 1024;
const REPEAT_LINES_MAX: usize = 10_000;

struct Token {
    bytes: Vec<u8>,
    quoted: bool,
}

impl Token {
    fn is(&self, s: &str) -> bool {
        !self.quoted && self.bytes == s.as_bytes()
    }
}

/// Parses a whole case file.
pub fn parse_script(text: &str) -> Result<Script, ParseError> {
    let lines: Vec<&str> = text.lines().collect();
    let mut script = Script {
        steps: Vec::new(),
        skip_unless: None,
        server_flags: Vec::new(),
    };
    let mut captured = BTreeSet::new();
    let mut background_open = false;
    let mut index = 0;
    while index < lines.len() {
        let line_no = index + 1;
        let trimmed = lines[index].trim();
        index += 1;
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let err = |message: String| ParseError {
            line: line_no,
            message,
        };
        if let Some(var) = trimmed.strip_prefix("@skip-unless") {
            script.skip_unless = Some(var.trim().to_string());
            continue;
        }
        if let Some(flags) = trimmed.strip_prefix("@server-flags") {
            if !script.steps.is_empty() {
                return Err(err("@server-flags must come before the first step".into()));
            }
            script
                .server_flags
                .extend(flags.split_whitespace().map(str::to_string));
            continue;
        }
        if trimmed == "@join" {
            if !background_open {
                return Err(err("@join without a [background] step before it".into()));
            }
            background_open = false;
            let mut step = sleep_step("1", line_no, trimmed).map_err(err)?;
            step.sleep_ms = 0;
            step.join = true;
            script.steps.push(step);
            continue;
        }
        if let Some(ms) = trimmed.strip_prefix("@sleep") {
            script
                .steps
                .push(sleep_step(ms, line_no, trimmed).map_err(err)?);
            continue;
        }
        let mut step = parse_step_line(trimmed, line_no)?;
        if let Some(delim) = step.heredoc.take() {
            let (body, next) = read_heredoc(&lines, index, &delim).map_err(err)?;
            step.step.stdin = body;
            index = next;
        }
        check_variables(&step.step, &captured).map_err(err)?;
        if let Some(name) = &step.step.capture {
            captured.insert(name.clone());
        }
        background_open |= step.step.background;
        script.steps.push(step.step);
    }
    if background_open {
        return Err(ParseError {
            line: lines.len(),
            message: "a [background] step is never joined (@join)".into(),
        });
    }
    Ok(script)
}

/// Longest pause a script may ask for.
const SLEEP_MS_MAX: u64 = 10_000;

fn sleep_step(ms: &str, line: usize, source: &str) -> Result<Step, String> {
    let sleep_ms: u64 = ms
        .trim()
        .parse()
        .map_err(|_| "@sleep needs a number of milliseconds".to_string())?;
    if sleep_ms == 0 || sleep_ms > SLEEP_MS_MAX {
        return Err(format!("@sleep must be 1..={SLEEP_MS_MAX} ms"));
    }
    Ok(Step {
        line,
        source: source.to_string(),
        args: Vec::new(),
        stdin: Vec::new(),
        variants: vec![Variant {
            ctl: CtlVersion::V35,
            json: false,
        }],
        capture: None,
        stream: false,
        sleep_ms,
        background: false,
        join: false,
    })
}

struct ParsedLine {
    step: Step,
    heredoc: Option<String>,
}

fn parse_step_line(text: &str, line: usize) -> Result<ParsedLine, ParseError> {
    let err = |message: String| ParseError { line, message };
    let (modifiers, rest) = split_modifiers(text).map_err(err)?;
    let mut tokens = tokenize(rest).map_err(err)?;

    let mut capture = None;
    if tokens.len() >= 2 && tokens[tokens.len() - 2].is("=>") {
        let name = tokens.pop().map(|t| t.bytes).unwrap_or_default();
        tokens.pop();
        let name = String::from_utf8(name).map_err(|_| err("capture name is not UTF-8".into()))?;
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(err(format!("bad capture name {name:?}")));
        }
        capture = Some(name);
    }

    let mut stdin = Vec::new();
    let mut heredoc = None;
    if let Some(last) = tokens.last() {
        if !last.quoted && last.bytes.starts_with(b"<<") {
            let delim = String::from_utf8_lossy(&last.bytes[2..]).into_owned();
            if delim.is_empty() {
                return Err(err("heredoc needs a delimiter, e.g. <<EOF".into()));
            }
            heredoc = Some(delim);
            tokens.pop();
        } else if tokens.len() >= 2 && tokens[tokens.len() - 2].is("<") {
            let spec = tokens.pop().map(|t| t.bytes).unwrap_or_default();
            tokens.pop();
            stdin = parse_fill(&spec).map_err(err)?;
        }
    }
    if tokens.iter().any(|t| t.is("<") || t.is("=>")) {
        return Err(err("`<` and `=>` may only end a step".into()));
    }
    if tokens.is_empty() {
        return Err(err("empty step".into()));
    }
    let args: Vec<Vec<u8>> = tokens.into_iter().map(|t| t.bytes).collect();
    if args.iter().any(|a| a.contains(&0)) {
        return Err(err(
            "a command-line argument cannot contain a NUL byte".into()
        ));
    }
    let variants = variants_for(&modifiers, has_output_flag(&args)).map_err(err)?;
    debug_assert!(!variants.is_empty());
    Ok(ParsedLine {
        step: Step {
            line,
            source: text.to_string(),
            args,
            stdin,
            variants,
            capture,
            stream: modifiers.iter().any(|m| m == "stream"),
            sleep_ms: 0,
            background: modifiers.iter().any(|m| m == "background"),
            join: false,
        },
        heredoc,
    })
}

fn split_modifiers(text: &str) -> Result<(Vec<String>, &str), String> {
    let Some(rest) = text.strip_prefix('[') else {
        return Ok((Vec::new(), text));
    };
    let Some(end) = rest.find(']') else {
        return Err("unterminated [modifiers]".into());
    };
    let modifiers: Vec<String> = rest[..end].split_whitespace().map(String::from).collect();
    for m in &modifiers {
        if ![
            "once",
            "v34",
            "v35",
            "json",
            "plain",
            "stream",
            "background",
        ]
        .contains(&m.as_str())
        {
            return Err(format!("unknown modifier {m:?}"));
        }
    }
    Ok((modifiers, rest[end + 1..].trim_start()))
}

/// True when the step picks its own output format.
pub fn has_output_flag(args: &[Vec<u8>]) -> bool {
    args.iter().any(|a| {
        a == b"-w" || a == b"--write-out" || a.starts_with(b"-w=") || a.starts_with(b"--write-out=")
    })
}

fn variants_for(modifiers: &[String], own_format: bool) -> Result<Vec<Variant>, String> {
    let has = |m: &str| modifiers.iter().any(|x| x == m);
    if own_format && has("json") {
        return Err("[json] on a step that already sets -w".into());
    }
    let ctls = match (has("v35"), has("v34")) {
        (true, false) => vec![CtlVersion::V35],
        (false, true) => vec![CtlVersion::V34],
        _ if has("once") => vec![CtlVersion::V35],
        _ => vec![CtlVersion::V35, CtlVersion::V34],
    };
    let formats = if own_format {
        vec![false]
    } else {
        match (has("json"), has("plain")) {
            (true, false) => vec![true],
            (false, true) => vec![false],
            _ if has("once") => vec![false],
            _ => vec![false, true],
        }
    };
    Ok(ctls
        .iter()
        .flat_map(|&ctl| formats.iter().map(move |&json| Variant { ctl, json }))
        .collect())
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let mut token = Token {
            bytes: Vec::new(),
            quoted: false,
        };
        while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
            match bytes[i] {
                b'\'' => {
                    let end = find_from(bytes, i + 1, b'\'').ok_or("unterminated '")?;
                    token.bytes.extend_from_slice(&bytes[i + 1..end]);
                    token.quoted = true;
                    i = end + 1;
                }
                b'"' => {
                    i = read_double_quoted(bytes, i + 1, &mut token.bytes)?;
                    token.quoted = true;
                }
                b'\\' => i = read_escape(bytes, i, &mut token.bytes)?,
                b => {
                    token.bytes.push(b);
                    i += 1;
                }
            }
        }
        tokens.push(token);
    }
    Ok(tokens)
}

fn find_from(bytes: &[u8], from: usize, needle: u8) -> Option<usize> {
    bytes[from..]
        .iter()
        .position(|&b| b == needle)
        .map(|p| p + from)
}

/// Reads up to the closing quote; returns the index after it.
fn read_double_quoted(bytes: &[u8], mut i: usize, out: &mut Vec<u8>) -> Result<usize, String> {
    while i < bytes.len() {
        match bytes[i] {
            b'"' => return Ok(i + 1),
            b'\\' => i = read_escape(bytes, i, out)?,
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Err("unterminated \"".into())
}

/// Decodes the escape starting at `bytes[i] == b'\\'`; returns the index after it.
fn read_escape(bytes: &[u8], i: usize, out: &mut Vec<u8>) -> Result<usize, String> {
    let Some(&c) = bytes.get(i + 1) else {
        return Err("trailing backslash".into());
    };
    match c {
        b'n' => out.push(b'\n'),
        b't' => out.push(b'\t'),
        b'0' => out.push(0),
        b'\\' | b'"' | b'\'' | b' ' => out.push(c),
        b'x' => {
            let hex = bytes.get(i + 2..i + 4).ok_or("\\x needs two hex digits")?;
            let hex = std::str::from_utf8(hex).map_err(|_| "\\x needs two hex digits")?;
            let byte = u8::from_str_radix(hex, 16).map_err(|_| "\\x needs two hex digits")?;
            out.push(byte);
            return Ok(i + 4);
        }
        other => return Err(format!("unknown escape \\{}", other as char)),
    }
    Ok(i + 2)
}

fn parse_fill(spec: &[u8]) -> Result<Vec<u8>, String> {
    let spec = std::str::from_utf8(spec).map_err(|_| "stdin spec is not UTF-8")?;
    let bad = || format!("bad stdin spec {spec:?}; expected fill:<bytes>:<char>");
    let rest = spec.strip_prefix("fill:").ok_or_else(bad)?;
    let (count, fill) = rest.split_once(':').ok_or_else(bad)?;
    let count: usize = count.parse().map_err(|_| bad())?;
    let [fill] = fill.as_bytes() else {
        return Err(bad());
    };
    if count > GENERATED_BYTES_MAX {
        return Err(format!(
            "fill of {count} bytes exceeds {GENERATED_BYTES_MAX}"
        ));
    }
    Ok(vec![*fill; count])
}

/// Collects heredoc lines after `start` up to `delim`; returns the body and the next line index.
fn read_heredoc(lines: &[&str], start: usize, delim: &str) -> Result<(Vec<u8>, usize), String> {
    let mut body = Vec::new();
    for (offset, line) in lines[start..].iter().enumerate() {
        if line.trim_end() == delim {
            return Ok((body, start + offset + 1));
        }
        match line.strip_prefix("@repeat ") {
            Some(rest) => expand_repeat(rest, &mut body)?,
            None => {
                body.extend_from_slice(line.as_bytes());
                body.push(b'\n');
            }
        }
    }
    Err(format!("heredoc not terminated by {delim:?}"))
}

fn expand_repeat(rest: &str, body: &mut Vec<u8>) -> Result<(), String> {
    let (count, template) = rest.split_once(' ').ok_or("@repeat needs: N text")?;
    let count: usize = count
        .parse()
        .map_err(|_| format!("bad @repeat count {count:?}"))?;
    if count > REPEAT_LINES_MAX {
        return Err(format!("@repeat {count} exceeds {REPEAT_LINES_MAX}"));
    }
    for i in 1..=count {
        body.extend_from_slice(template.replace("{i}", &i.to_string()).as_bytes());
        body.push(b'\n');
    }
    Ok(())
}

fn check_variables(step: &Step, captured: &BTreeSet<String>) -> Result<(), String> {
    let all = step.args.iter().chain(std::iter::once(&step.stdin));
    for bytes in all {
        for name in variable_names(bytes) {
            if !captured.contains(&name) {
                return Err(format!("${{{name}}} used before a step captured it"));
            }
        }
    }
    Ok(())
}

fn variable_names(bytes: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = bytes;
    while let Some(start) = rest.windows(2).position(|w| w == b"${") {
        let after = &rest[start + 2..];
        let Some(end) = after.iter().position(|&b| b == b'}') else {
            break;
        };
        names.push(String::from_utf8_lossy(&after[..end]).into_owned());
        rest = &after[end + 1..];
    }
    names
}

/// Replaces every `${NAME}` whose NAME is in `vars`.
pub fn expand_variables(bytes: &[u8], vars: &[(String, String)]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for (name, value) in vars {
        let pattern = format!("${{{name}}}");
        out = replace_bytes(&out, pattern.as_bytes(), value.as_bytes());
    }
    out
}

fn replace_bytes(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Step {
        let script = parse_script(text).unwrap();
        assert_eq!(script.steps.len(), 1);
        script.steps.into_iter().next().unwrap()
    }

    #[test]
    fn default_step_runs_four_variants_in_order() {
        let step = one("get foo --prefix");
        assert_eq!(
            step.args,
            vec![b"get".to_vec(), b"foo".to_vec(), b"--prefix".to_vec()]
        );
        let labels: Vec<String> = step.variants.iter().map(Variant::label).collect();
        assert_eq!(
            labels,
            [
                "etcdctl 3.5",
                "etcdctl 3.5, -w json",
                "etcdctl 3.4",
                "etcdctl 3.4, -w json"
            ]
        );
    }

    #[test]
    fn stream_modifier_and_sleep_directive() {
        let step = one("[stream once] watch foo --rev=1");
        assert!(step.stream);
        assert_eq!(step.variants.len(), 1);
        assert!(!one("watch foo").stream);
        let pause = one("@sleep 2500");
        assert_eq!(pause.sleep_ms, 2500);
        assert!(pause.args.is_empty());
        assert!(parse_script("@sleep soon").is_err());
        assert!(parse_script("@sleep 0").is_err());
        let script = parse_script("[background] watch a\nput a 1\n@join").unwrap();
        assert!(script.steps[0].background && !script.steps[1].background);
        assert!(script.steps[2].join && script.steps[2].args.is_empty());
        assert!(parse_script("@join").is_err());
        assert!(parse_script("[background] watch a").is_err());
    }

    #[test]
    fn own_output_format_drops_json_variants() {
        let step = one("get foo -w fields");
        assert_eq!(step.variants.len(), 2);
        assert!(step.variants.iter().all(|v| !v.json));
    }

    #[test]
    fn modifiers_restrict_variants() {
        let step = one("[once] put a b");
        assert_eq!(
            step.variants,
            [Variant {
                ctl: CtlVersion::V35,
                json: false
            }]
        );
        let step = one("[v34 json] del a");
        assert_eq!(
            step.variants,
            [Variant {
                ctl: CtlVersion::V34,
                json: true
            }]
        );
        assert!(parse_script("[json] get a -w json").is_err());
        assert!(parse_script("[twice] get a").is_err());
    }

    #[test]
    fn quoting_and_escapes_produce_raw_bytes() {
        let step = one(r#"put "\xff\xfe" 'a b' c\ d "" "q\"t""#);
        assert_eq!(
            step.args,
            vec![
                b"put".to_vec(),
                vec![0xff, 0xfe],
                b"a b".to_vec(),
                b"c d".to_vec(),
                Vec::new(),
                b"q\"t".to_vec(),
            ]
        );
    }

    #[test]
    fn heredoc_keeps_blank_lines_and_expands_repeat() {
        let text = "# comment\ntxn <<EOF\n\n@repeat 2 put k{i} v\n\n\nEOF\nget k1\n";
        let script = parse_script(text).unwrap();
        assert_eq!(script.steps.len(), 2);
        assert_eq!(
            script.steps[0].stdin,
            b"\nput k1 v\nput k2 v\n\n\n".to_vec()
        );
        assert_eq!(script.steps[1].line, 8);
    }

    #[test]
    fn fill_stdin_and_capture() {
        let text = "put big < fill:5:x\nlease grant 60 => L1\nput k v --lease=${L1}\n";
        let script = parse_script(text).unwrap();
        assert_eq!(script.steps[0].stdin, b"xxxxx".to_vec());
        assert_eq!(script.steps[0].args.len(), 2);
        assert_eq!(script.steps[1].capture.as_deref(), Some("L1"));
        let vars = vec![("L1".to_string(), "abc".to_string())];
        let expanded = expand_variables(&script.steps[2].args[3], &vars);
        assert_eq!(expanded, b"--lease=abc".to_vec());
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse_script("get a\nput k v --lease=${NOPE}\n").unwrap_err();
        assert_eq!(e.line, 2);
        let e = parse_script("\n\ntxn <<EOF\nput a b\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(parse_script("get \"unterminated").is_err());
        assert!(parse_script("put k < fill:x:y").is_err());
        assert!(parse_script("get a \"a\\x00\"").is_err());
    }

    #[test]
    fn skip_unless_directive() {
        let script = parse_script("@skip-unless OXETCD_DIFF_LEASE\nget a\n").unwrap();
        assert_eq!(script.skip_unless.as_deref(), Some("OXETCD_DIFF_LEASE"));
        assert_eq!(script.steps.len(), 1);
    }
}
