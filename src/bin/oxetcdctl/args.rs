//! Flag parsing in etcd's style: `--flag value`, `--flag=value`, boolean flags alone or with
//! `=true`/`=false`, and positional arguments. Unknown flags are errors, never ignored.

use std::collections::BTreeMap;

/// The parsed command line of one subcommand.
#[derive(Debug, Default)]
pub struct Parsed {
    pub positional: Vec<String>,
    values: BTreeMap<&'static str, String>,
    switches: BTreeMap<&'static str, bool>,
}

impl Parsed {
    pub fn value(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    pub fn switch(&self, name: &str) -> bool {
        self.switches.get(name).copied().unwrap_or(false)
    }
}

/// Parses `argv` against the flags that take a value (`valued`, each with its aliases first
/// name canonical) and the boolean ones (`booleans`).
pub fn parse(
    argv: &[String],
    valued: &[(&'static str, &[&str])],
    booleans: &[&'static str],
) -> Result<Parsed, String> {
    let mut parsed = Parsed::default();
    let mut rest = argv.iter();
    while let Some(arg) = rest.next() {
        let Some(flag) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            parsed.positional.push(arg.clone());
            continue;
        };
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (flag, None),
        };
        if let Some(canonical) = booleans.iter().find(|b| **b == name) {
            let on = match inline.as_deref() {
                None | Some("true") => true,
                Some("false") => false,
                Some(other) => return Err(format!("invalid value {other:?} for --{name}")),
            };
            parsed.switches.insert(canonical, on);
            continue;
        }
        let canonical = valued
            .iter()
            .find(|(canonical, aliases)| *canonical == name || aliases.contains(&name))
            .map(|(canonical, _)| *canonical)
            .ok_or_else(|| format!("unknown flag: --{name}"))?;
        let value = match inline {
            Some(v) => v,
            None => rest
                .next()
                .cloned()
                .ok_or_else(|| format!("flag needs an argument: --{name}"))?,
        };
        parsed.values.insert(canonical, value);
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_take_values_inline_or_next_and_unknown_ones_are_refused() {
        let valued: &[(&'static str, &[&str])] = &[("write-out", &["w"]), ("name", &[])];
        let p = parse(
            &strings(&["f.db", "-w", "json", "--name=x", "--skip-hash-check"]),
            valued,
            &["skip-hash-check"],
        )
        .expect("parses");
        assert_eq!(p.positional, vec!["f.db"]);
        assert_eq!(p.value("write-out"), Some("json"));
        assert_eq!(p.value("name"), Some("x"));
        assert!(p.switch("skip-hash-check"));
        assert!(parse(&strings(&["--bump-revision", "5"]), valued, &[]).is_err());
        assert!(parse(&strings(&["--name"]), valued, &[]).is_err());
    }
}
