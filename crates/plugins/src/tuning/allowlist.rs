//! The sysctl allowlist of the reference tuning plugin: a file of regular
//! expressions, one a line (blank lines skipped), matched with Go's
//! `regexp.MatchString` semantics: an unanchored search of the sysctl key
//! (`^`/`$` anchor only where the pattern says so), RE2 syntax. No allowlist
//! file means every `net.*` sysctl is allowed.
//!
//! `regex-lite` matches in linear time like Go's RE2, so a pattern such as
//! `(a*)*b` cannot stall ADD; its syntax is RE2's for everything an
//! allowlist uses (ASCII-only classes, as keys are ASCII). Go's limit of 1000
//! on counted repetition is kept, so a list Go refuses is refused here too.

use std::path::Path;

pub use regex_lite::Regex;

/// The largest `{n,m}` bound Go accepts (RE2's limit).
const MAX_REPEAT: u32 = 1000;

/// Compiles one allowlist line; the error names what is wrong.
pub fn compile(pattern: &str) -> Result<Regex, String> {
    let err = |what: String| format!("error parsing regexp {pattern:?}: {what}");
    if let Some(what) = go_refuses(pattern) {
        return Err(err(what));
    }
    Regex::new(pattern).map_err(|e| err(e.to_string()))
}

/// What Go refuses and `regex-lite` accepts: a repetition of a repetition
/// (`a**`, `a+{2}`; a lazy `?` is part of its operator) and counts over
/// [`MAX_REPEAT`]. A scan of the operators outside escapes and classes.
fn go_refuses(pattern: &str) -> Option<String> {
    let c: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    let mut after_repeat = false;
    while i < c.len() {
        let len = match c[i] {
            '*' | '+' | '?' => 1,
            '{' => match counted(&c[i..]) {
                Some((len, counts)) => {
                    if let Some(n) = counts.into_iter().find(|n| *n > u64::from(MAX_REPEAT)) {
                        return Some(format!("invalid repeat count {n}"));
                    }
                    len
                }
                None => 0,
            },
            _ => 0,
        };
        if len > 0 {
            if after_repeat {
                return Some("invalid nested repetition operator".into());
            }
            i += len;
            after_repeat = true;
            if c.get(i) == Some(&'?') {
                i += 1; // lazy
            }
            continue;
        }
        after_repeat = false;
        i += match c[i] {
            '\\' => escape_len(&c[i..]),
            '[' => class_len(&c[i..]),
            '(' if c.get(i + 1) == Some(&'?') => 2,
            _ => 1,
        };
    }
    None
}

/// `{n}`, `{n,}` or `{n,m}` at the start of `c`: its length and counts
/// (`u64::MAX` for more digits than fit). `None` when the brace is literal.
fn counted(c: &[char]) -> Option<(usize, Vec<u64>)> {
    let end = c.iter().position(|x| *x == '}')?;
    let inner: String = c[1..end].iter().collect();
    let parts: Vec<&str> = inner.split(',').collect();
    let digits = |p: &&str| p.bytes().all(|b| b.is_ascii_digit());
    if parts.len() > 2 || parts[0].is_empty() || !parts.iter().all(digits) {
        return None;
    }
    let counts = parts.iter().filter(|p| !p.is_empty());
    Some((
        end + 1,
        counts.map(|p| p.parse().unwrap_or(u64::MAX)).collect(),
    ))
}

/// The length of the escape at the start of `c` (`\x{..}`, `\p{..}` whole).
fn escape_len(c: &[char]) -> usize {
    match (c.get(1), c.get(2)) {
        (Some('x' | 'p' | 'P'), Some('{')) => {
            c.iter().position(|x| *x == '}').map_or(c.len(), |e| e + 1)
        }
        (Some(_), _) => 2,
        (None, _) => 1,
    }
}

/// The length of the class at the start of `c` (a `]` first is literal,
/// `[:name:]` and escapes inside are skipped whole).
fn class_len(c: &[char]) -> usize {
    let mut i = 1;
    if c.get(i) == Some(&'^') {
        i += 1;
    }
    if c.get(i) == Some(&']') {
        i += 1;
    }
    while i < c.len() {
        match c[i] {
            ']' => return i + 1,
            '\\' => i += escape_len(&c[i..]),
            '[' if c.get(i + 1) == Some(&':') => {
                let rest: String = c[i..].iter().collect();
                i += rest.find(":]").map_or(1, |e| rest[..e + 2].chars().count());
            }
            _ => i += 1,
        }
    }
    c.len()
}

/// The allowlist: `None` when the file does not exist (everything allowed).
pub fn read(path: &Path) -> Result<Option<Vec<(String, Regex)>>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("failed to read {}: {e}", path.display())),
    };
    let mut list = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let re = compile(line).map_err(|e| format!("{}: {e}", path.display()))?;
        list.push((line.to_string(), re));
    }
    Ok(Some(list))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn m(p: &str, t: &str) -> bool {
        compile(p).unwrap().is_match(t)
    }

    #[test]
    fn reference_readme_patterns() {
        let all = r"^net\.ipv4\.conf\.all\.[a-z_]*$";
        let ifname = r"^net\.ipv4\.conf\.IFNAME\.[a-z_]*$";
        assert!(m(all, "net.ipv4.conf.all.log_martians"));
        assert!(!m(all, "net.ipv4.conf.all.log_martians2"));
        assert!(!m(all, "net.ipv4.conf.allXlog"));
        assert!(m(ifname, "net.ipv4.conf.IFNAME.arp_filter"));
        assert!(!m(ifname, "net.ipv4.conf.eth0.arp_filter"));
        assert!(!m(ifname, "xnet.ipv4.conf.IFNAME.arp_filter"));
    }

    #[test]
    fn go_semantics() {
        // Unanchored search.
        assert!(m("core", "net.core.somaxconn"));
        assert!(m("", "anything"));
        assert!(!m("^core", "net.core.somaxconn"));
        assert!(!m("core$", "net.core.somaxconn"));
        // Alternation, groups, classes, counted repetition.
        assert!(m(
            r"^net\.(ipv4|ipv6)\.conf\.[^.]+\.forwarding$",
            "net.ipv6.conf.eth0.forwarding"
        ));
        assert!(!m(
            r"^net\.(ipv4|ipv6)\.conf\.[^.]+\.forwarding$",
            "net.ipv6.conf.a.b.forwarding"
        ));
        assert!(m(r"^a{2,3}$", "aaa"));
        assert!(!m(r"^a{2,3}$", "aaaa"));
        assert!(m(r"^a{2}b{1,}$", "aabbb"));
        assert!(m(r"^a{1000}$", &"a".repeat(1000)));
        assert!(m(r"^\d+\s\w$", "42 _"));
        assert!(m(r"^[[:alpha:]_]+$", "somax_conn"));
        assert!(m(r"^(?:ab)*c$", "ababc"));
        assert!(m(r"^(a*)*$", "aaaa"), "nested stars terminate");
        assert!(m(r"^(a|)+b$", "aab"));
        assert!(m(r"^a.*?z$", "abcz"));
        assert!(m(r"^[a-]+$", "a-a"));
        assert!(m(r"^[]a]+$", "]a"));
        assert!(!m(r"^\.$", "x"));
        assert!(m(r"\Anet\.core\.[a-z]+\z", "net.core.somaxconn"));
        // RE2 flags and word boundaries, as Go has them.
        assert!(m(r"(?i)^NET\.CORE\.", "net.core.somaxconn"));
        assert!(m(r"\bcore\b", "net.core.somaxconn"));
        assert!(!m(r"\bcor\b", "net.core.somaxconn"));
    }

    #[test]
    fn bad_patterns_are_errors() {
        for p in [
            "(",
            ")",
            "[a",
            "a**",
            "*a",
            r"\",
            "[z-a]",
            "a{2,1}",
            "a{1001}",
            "a{1,1001}",
            "a{99999999999999999999}",
            r"\1",
        ] {
            assert!(compile(p).is_err(), "{p:?} should not compile");
        }
    }

    /// Patterns that take exponential time in a backtracking engine, against
    /// a long run of `a`s with no match: linear here, so well under a second.
    #[test]
    fn pathological_patterns_finish_fast() {
        let text = "a".repeat(10_000);
        let start = Instant::now();
        assert!(!m(r"(a*)*b", &text));
        assert!(!m(r"^(a|aa)*c$", &text));
        assert!(!m(r"^(a+)+$", &format!("{text}!")));
        assert!(m(r"^(a|aa)*$", &text));
        let took = start.elapsed();
        assert!(took < Duration::from_secs(2), "took {took:?}");
    }
}
