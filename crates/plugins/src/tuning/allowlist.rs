//! The sysctl allowlist of the reference tuning plugin: a file of regular
//! expressions, one a line (blank lines skipped), matched with Go's
//! `regexp.MatchString` semantics (unanchored search, RE2 syntax). No
//! allowlist file means every `net.*` sysctl is allowed.
//!
//! The matcher is a small backtracking engine for the RE2 subset such lists
//! use: literals and escapes, `.`, classes (`[a-z_]`, `[^.]`, `\d\w\s`,
//! `[[:alpha:]]`), groups `(...)`/`(?:...)`, `|`, `^`/`$`/`\A`/`\z` and the
//! quantifiers `* + ? {n} {n,} {n,m}` (greedy or lazy). Anything else (flags,
//! backreferences, word boundaries) is refused as a bad pattern rather than
//! matched wrongly.

use std::path::Path;

/// One compiled pattern.
#[derive(Debug, Clone)]
pub struct Regex {
    alt: Vec<Vec<Node>>,
}

#[derive(Debug, Clone)]
enum Node {
    Char(char),
    Any,
    Class {
        items: Vec<ClassItem>,
        negated: bool,
    },
    Start,
    End,
    Group(Vec<Vec<Node>>),
    Repeat {
        node: Box<Node>,
        min: u32,
        max: Option<u32>,
    },
}

#[derive(Debug, Clone)]
enum ClassItem {
    Range(char, char),
    Perl(char), // d, D, w, W, s, S
}

/// The largest `{n,m}` bound accepted (RE2's limit).
const MAX_REPEAT: u32 = 1000;

struct Parser<'a> {
    chars: Vec<char>,
    pos: usize,
    pattern: &'a str,
}

impl Regex {
    /// Compiles `pattern`; the error names what is not supported or wrong.
    pub fn new(pattern: &str) -> Result<Regex, String> {
        let mut p = Parser {
            chars: pattern.chars().collect(),
            pos: 0,
            pattern,
        };
        let alt = p.alternation()?;
        if p.pos < p.chars.len() {
            return Err(p.err("unexpected )"));
        }
        Ok(Regex { alt })
    }

    /// True when the pattern matches anywhere in `text`.
    pub fn is_match(&self, text: &str) -> bool {
        let t: Vec<char> = text.chars().collect();
        let m = Matcher { text: &t };
        (0..=t.len()).any(|start| self.alt.iter().any(|seq| m.seq(seq, start, &mut |_| true)))
    }
}

impl Parser<'_> {
    fn err(&self, what: &str) -> String {
        format!(
            "error parsing regexp {:?} at offset {}: {what}",
            self.pattern, self.pos
        )
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn alternation(&mut self) -> Result<Vec<Vec<Node>>, String> {
        let mut alts = vec![self.sequence()?];
        while self.peek() == Some('|') {
            self.pos += 1;
            alts.push(self.sequence()?);
        }
        Ok(alts)
    }

    fn sequence(&mut self) -> Result<Vec<Node>, String> {
        let mut seq = Vec::new();
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' {
                break;
            }
            let atom = self.atom()?;
            let atom = self.quantifiers(atom)?;
            seq.push(atom);
        }
        Ok(seq)
    }

    fn quantifiers(&mut self, mut atom: Node) -> Result<Node, String> {
        loop {
            let (min, max) = match self.peek() {
                Some('*') => {
                    self.pos += 1;
                    (0, None)
                }
                Some('+') => {
                    self.pos += 1;
                    (1, None)
                }
                Some('?') => {
                    self.pos += 1;
                    (0, Some(1))
                }
                Some('{') => match self.braces()? {
                    Some(b) => b,
                    None => return Ok(atom), // a literal '{', parsed next
                },
                _ => return Ok(atom),
            };
            if matches!(atom, Node::Start | Node::End) {
                return Err(self.err("missing argument to repetition operator"));
            }
            if matches!(atom, Node::Repeat { .. }) {
                return Err(self.err("invalid nested repetition operator"));
            }
            // A lazy quantifier matches the same set of texts.
            if self.peek() == Some('?') {
                self.pos += 1;
            }
            atom = Node::Repeat {
                node: Box::new(atom),
                min,
                max,
            };
            if matches!(self.peek(), Some('*' | '+' | '?')) {
                return Err(self.err("invalid nested repetition operator"));
            }
        }
    }

    /// `{n}`, `{n,}` or `{n,m}` at the cursor; `None` (cursor unmoved) when
    /// the brace does not start a repetition (RE2 then takes it literally).
    fn braces(&mut self) -> Result<Option<(u32, Option<u32>)>, String> {
        let rest: String = self.chars[self.pos..].iter().collect();
        let Some(end) = rest.find('}') else {
            return Ok(None);
        };
        let inner = &rest[1..end];
        let num = |s: &str| -> Option<u32> {
            (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse().ok())
                .flatten()
        };
        let parsed = match inner.split_once(',') {
            None => num(inner).map(|n| (n, Some(n))),
            Some((a, "")) => num(a).map(|n| (n, None)),
            Some((a, b)) => match (num(a), num(b)) {
                (Some(a), Some(b)) => Some((a, Some(b))),
                _ => None,
            },
        };
        let Some((min, max)) = parsed else {
            return Ok(None);
        };
        if min > MAX_REPEAT || max.is_some_and(|m| m > MAX_REPEAT || m < min) {
            return Err(self.err("invalid repeat count"));
        }
        self.pos += inner.chars().count() + 2;
        Ok(Some((min, max)))
    }

    fn atom(&mut self) -> Result<Node, String> {
        let Some(c) = self.peek() else {
            return Err(self.err("unexpected end"));
        };
        self.pos += 1;
        Ok(match c {
            '.' => Node::Any,
            '^' => Node::Start,
            '$' => Node::End,
            '*' | '+' | '?' => return Err(self.err("missing argument to repetition operator")),
            '(' => {
                if self.peek() == Some('?') {
                    if self.chars.get(self.pos + 1) == Some(&':') {
                        self.pos += 2;
                    } else {
                        return Err(self.err("flags and named groups are not supported"));
                    }
                }
                let alt = self.alternation()?;
                if self.peek() != Some(')') {
                    return Err(self.err("missing closing )"));
                }
                self.pos += 1;
                Node::Group(alt)
            }
            '[' => self.class()?,
            '\\' => match self.escape()? {
                Escaped::Char(c) => Node::Char(c),
                Escaped::Perl(p) => Node::Class {
                    items: vec![ClassItem::Perl(p)],
                    negated: false,
                },
                Escaped::Start => Node::Start,
                Escaped::End => Node::End,
            },
            other => Node::Char(other),
        })
    }

    fn escape(&mut self) -> Result<Escaped, String> {
        let Some(c) = self.peek() else {
            return Err(self.err("trailing backslash at end of expression"));
        };
        self.pos += 1;
        Ok(match c {
            'd' | 'D' | 'w' | 'W' | 's' | 'S' => Escaped::Perl(c),
            'n' => Escaped::Char('\n'),
            't' => Escaped::Char('\t'),
            'r' => Escaped::Char('\r'),
            'f' => Escaped::Char('\x0c'),
            'v' => Escaped::Char('\x0b'),
            'A' => Escaped::Start,
            'z' => Escaped::End,
            c if c.is_ascii_punctuation() => Escaped::Char(c),
            _ => return Err(self.err(&format!("invalid or unsupported escape sequence \\{c}"))),
        })
    }

    fn class(&mut self) -> Result<Node, String> {
        let mut items = Vec::new();
        let negated = self.peek() == Some('^');
        if negated {
            self.pos += 1;
        }
        let mut first = true;
        loop {
            let Some(c) = self.peek() else {
                return Err(self.err("missing closing ]"));
            };
            if c == ']' && !first {
                self.pos += 1;
                break;
            }
            first = false;
            if c == '[' && self.chars.get(self.pos + 1) == Some(&':') {
                let rest: String = self.chars[self.pos..].iter().collect();
                if let Some(end) = rest.find(":]") {
                    let name = &rest[2..end];
                    items.extend(
                        posix(name).ok_or_else(|| self.err("invalid character class range"))?,
                    );
                    self.pos += rest[..end + 2].chars().count();
                    continue;
                }
            }
            self.pos += 1;
            let lo = if c == '\\' {
                match self.escape()? {
                    Escaped::Char(ch) => ch,
                    Escaped::Perl(p) => {
                        items.push(ClassItem::Perl(p));
                        continue;
                    }
                    _ => return Err(self.err("invalid escape in character class")),
                }
            } else {
                c
            };
            // A range `lo-hi`, unless the '-' is the last character.
            if self.peek() == Some('-') && self.chars.get(self.pos + 1).is_some_and(|n| *n != ']') {
                self.pos += 1;
                let Some(mut hi) = self.peek() else {
                    return Err(self.err("missing closing ]"));
                };
                self.pos += 1;
                if hi == '\\' {
                    match self.escape()? {
                        Escaped::Char(ch) => hi = ch,
                        _ => return Err(self.err("invalid character class range")),
                    }
                }
                if hi < lo {
                    return Err(self.err("invalid character class range"));
                }
                items.push(ClassItem::Range(lo, hi));
            } else {
                items.push(ClassItem::Range(lo, lo));
            }
        }
        Ok(Node::Class { items, negated })
    }
}

enum Escaped {
    Char(char),
    Perl(char),
    Start,
    End,
}

fn posix(name: &str) -> Option<Vec<ClassItem>> {
    use ClassItem::Range as R;
    Some(match name {
        "alnum" => vec![R('0', '9'), R('A', 'Z'), R('a', 'z')],
        "alpha" => vec![R('A', 'Z'), R('a', 'z')],
        "digit" => vec![R('0', '9')],
        "lower" => vec![R('a', 'z')],
        "upper" => vec![R('A', 'Z')],
        "space" => vec![R('\t', '\r'), R(' ', ' ')],
        "word" => vec![R('0', '9'), R('A', 'Z'), R('a', 'z'), R('_', '_')],
        "xdigit" => vec![R('0', '9'), R('A', 'F'), R('a', 'f')],
        "punct" => vec![R('!', '/'), R(':', '@'), R('[', '`'), R('{', '~')],
        _ => return None,
    })
}

fn perl(p: char, c: char) -> bool {
    let m = match p.to_ascii_lowercase() {
        'd' => c.is_ascii_digit(),
        'w' => c.is_ascii_alphanumeric() || c == '_',
        _ => matches!(c, ' ' | '\t' | '\n' | '\x0c' | '\r'),
    };
    m != p.is_ascii_uppercase()
}

struct Matcher<'t> {
    text: &'t [char],
}

impl Matcher<'_> {
    fn seq(&self, seq: &[Node], pos: usize, k: &mut dyn FnMut(usize) -> bool) -> bool {
        match seq.split_first() {
            None => k(pos),
            Some((node, rest)) => self.node(node, pos, &mut |p| self.seq(rest, p, k)),
        }
    }

    fn node(&self, node: &Node, pos: usize, k: &mut dyn FnMut(usize) -> bool) -> bool {
        let at = self.text.get(pos).copied();
        match node {
            Node::Char(c) => at == Some(*c) && k(pos + 1),
            Node::Any => at.is_some_and(|c| c != '\n') && k(pos + 1),
            Node::Class { items, negated } => match at {
                Some(c) => {
                    let hit = items.iter().any(|i| match i {
                        ClassItem::Range(lo, hi) => (*lo..=*hi).contains(&c),
                        ClassItem::Perl(p) => perl(*p, c),
                    });
                    hit != *negated && k(pos + 1)
                }
                None => false,
            },
            Node::Start => pos == 0 && k(pos),
            Node::End => pos == self.text.len() && k(pos),
            Node::Group(alts) => alts.iter().any(|seq| self.seq(seq, pos, k)),
            Node::Repeat { node, min, max } => self.repeat(node, *min, *max, 0, pos, k),
        }
    }

    fn repeat(
        &self,
        node: &Node,
        min: u32,
        max: Option<u32>,
        count: u32,
        pos: usize,
        k: &mut dyn FnMut(usize) -> bool,
    ) -> bool {
        if max.is_none_or(|m| count < m)
            && self.node(node, pos, &mut |p| {
                // An empty iteration only helps to reach `min`.
                (p != pos || count < min) && self.repeat(node, min, max, count + 1, p, k)
            })
        {
            return true;
        }
        count >= min && k(pos)
    }
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
        let re = Regex::new(line).map_err(|e| format!("{}: {e}", path.display()))?;
        list.push((line.to_string(), re));
    }
    Ok(Some(list))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, t: &str) -> bool {
        Regex::new(p).unwrap().is_match(t)
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
        assert!(m(r"^x{$", "x{"), "a brace that is no repetition is literal");
        assert!(m(r"^\d+\s\w$", "42 _"));
        assert!(m(r"^[[:alpha:]_]+$", "somax_conn"));
        assert!(m(r"^(?:ab)*c$", "ababc"));
        assert!(m(r"^(a*)*$", "aaaa"), "nested stars terminate");
        assert!(m(r"^(a|)+b$", "aab"));
        assert!(m(r"^a.*?z$", "abcz"));
        assert!(m(r"^[a-]+$", "a-a"));
        assert!(m(r"^[]a]+$", "]a"));
        assert!(!m(r"^\.$", "x"));
    }

    #[test]
    fn bad_patterns_are_errors() {
        for p in [
            "(", ")", "[a", "a**", "*a", r"\", r"\b", "(?i)a", "[z-a]", "a{2,1}", "a{1001}",
        ] {
            assert!(Regex::new(p).is_err(), "{p:?} should not compile");
        }
    }
}
