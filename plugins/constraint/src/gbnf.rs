//! GBNF grammars (llama.cpp's notation, `grammars/README.md` there) to a regular expression
//! over the output's text, which [`crate::dfa`] turns into the byte automaton every other
//! constraint uses (live states, per-state cached masks, the token budget).
//!
//! # Notation
//! Rules `name ::= alternatives`, one per line (a newline after `|` or inside parentheses
//! continues it); names of `a-z A-Z 0-9 -`; `root` is the whole output. Alternatives `|`,
//! sequences, groups `( )`, postfix `?`, `*`, `+`, `{m}`, `{m,}`, `{m,n}`; string literals
//! `"..."`, character classes `[a-z_]` and negated ones `[^\n]`, `.` for any character; escapes
//! `\xXX`, `\uXXXX`, `\UXXXXXXXX`, `\t`, `\r`, `\n`, `\\`, `\"`, `\[`, `\]`, `\-`; comments from
//! `#` to the end of the line. Characters are Unicode code points, matched in UTF-8.
//!
//! # Recursion
//! A grammar is context-free, an automaton is regular. Rules that do not reach themselves are
//! inlined as they are. A rule that reaches itself only as the last item of its own
//! alternatives (`list ::= item list | item`) is a loop and is exact. Any other recursion
//! (`value` inside `object` inside `value` in `json.gbnf`) is expanded at most
//! [`GRAMMAR_DEPTH`] times inside itself, or fewer times where that expansion would be too
//! large (`c.gbnf`'s expressions: [`crate::constraint::Compiled::new`] tries 3, 2, 1): below
//! that, the alternatives that would recurse again are not offered. The automaton's language
//! is then a subset of the grammar's, so an output always satisfies the grammar (never the
//! reverse); a grammar with no output within that depth is refused (`UNSATISFIABLE`), and one
//! too large even one level deep is refused (`TOO_LARGE`).
//!
//! # Refused
//! Token matches (`<[1000]>`, `<think>`, `!<...>`: the automaton reads bytes, not token ids),
//! undefined or twice-defined rules, a missing `root`, repetition counts above
//! [`MAX_REPETITION`] (llama.cpp's limit), and malformed text, each with its line and column.

use crate::error::ConstraintError;

/// How many times one rule may be open inside itself (objects nest this deep in `json.gbnf`).
pub const GRAMMAR_DEPTH: usize = 3;
/// Largest count in `{m,n}` (llama.cpp's `MAX_REPETITION_THRESHOLD`).
pub const MAX_REPETITION: u32 = 2000;
/// Most rules in one grammar.
const MAX_RULES: usize = 512;
/// Deepest nesting of parentheses.
const MAX_NESTING: usize = 64;
/// Largest regex one grammar expands to, in bytes (`json.gbnf` three levels deep is 59 KB; the
/// DFA's construction time grows quickly past this).
const MAX_REGEX_BYTES: usize = 128 << 10;
/// Most bytes a grammar's DFA (and its construction) may take: ambiguous nested repetition
/// (`r ::= (r+ | ...)`) can make determinization explode, and time grows with this bound.
/// `json.gbnf` three levels deep takes about 6 MiB.
pub const MAX_DFA_BYTES: usize = 24 << 20;
/// A regex that matches nothing.
const NOTHING: &str = "[a&&b]";

/// One grammar expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// A string literal (possibly empty).
    Literal(String),
    /// A character class: inclusive code point ranges, negated or not.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    /// `.`: any character.
    Any,
    /// A rule, by index.
    Rule(usize),
    Sequence(Vec<Expr>),
    Alternatives(Vec<Expr>),
    Repeat {
        item: Box<Expr>,
        min: u32,
        /// `None`: no upper bound.
        max: Option<u32>,
    },
}

/// A parsed grammar: rule names and bodies, `root` among them.
#[derive(Debug)]
pub struct Grammar {
    pub names: Vec<String>,
    pub rules: Vec<Expr>,
    pub root: usize,
}

/// Parse GBNF text.
pub fn parse(src: &str) -> Result<Grammar, ConstraintError> {
    let mut p = Parser {
        src,
        pos: 0,
        names: Vec::new(),
        bodies: Vec::new(),
        depth: 0,
    };
    p.space(true);
    while p.pos < src.len() {
        p.rule()?;
    }
    let mut rules = Vec::with_capacity(p.names.len());
    for (name, body) in p.names.iter().zip(p.bodies) {
        rules.push(body.ok_or_else(|| {
            ConstraintError::InvalidGrammar(format!("rule `{name}` is used but never defined"))
        })?);
    }
    let root = p
        .names
        .iter()
        .position(|n| n == "root")
        .ok_or_else(|| ConstraintError::InvalidGrammar("no `root` rule".into()))?;
    Ok(Grammar {
        names: p.names,
        rules,
        root,
    })
}

/// The regular expression of a GBNF grammar's `root`, recursion expanded [`GRAMMAR_DEPTH`]
/// levels deep (see the module docs).
pub fn grammar_regex(src: &str) -> Result<String, ConstraintError> {
    regex(&parse(src)?, GRAMMAR_DEPTH)
}

/// The regular expression of `g`'s `root`, each rule open at most `depth` times inside itself
/// (where it is not a loop).
pub fn regex(g: &Grammar, depth: usize) -> Result<String, ConstraintError> {
    let n = g.rules.len();
    let mut refs: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (r, body) in g.rules.iter().enumerate() {
        visit_rules(body, &mut |t| refs[r].push(t));
    }
    // `recursive[r]`: r reaches itself.
    let recursive: Vec<bool> = (0..n)
        .map(|r| {
            let mut seen = vec![false; n];
            let mut stack = refs[r].clone();
            while let Some(t) = stack.pop() {
                if t == r {
                    return true;
                }
                if !std::mem::replace(&mut seen[t], true) {
                    stack.extend(&refs[t]);
                }
            }
            false
        })
        .collect();
    let mut e = Emitter {
        g,
        depth,
        recursive,
        memo: vec![None; n],
        open: vec![0; n],
    };
    e.rule(g.root)
}

/// Call `f` with every rule an expression names directly.
fn visit_rules(e: &Expr, f: &mut impl FnMut(usize)) {
    match e {
        Expr::Rule(r) => f(*r),
        Expr::Sequence(items) | Expr::Alternatives(items) => {
            items.iter().for_each(|i| visit_rules(i, f))
        }
        Expr::Repeat { item, .. } => visit_rules(item, f),
        Expr::Literal(_) | Expr::Class { .. } | Expr::Any => {}
    }
}

struct Emitter<'g> {
    g: &'g Grammar,
    /// How many times a rule may be open inside itself.
    depth: usize,
    recursive: Vec<bool>,
    /// Regexes of rules that do not reach themselves (the same wherever they are used).
    memo: Vec<Option<String>>,
    /// How many times each rule is being expanded on the current path.
    open: Vec<usize>,
}

impl Emitter<'_> {
    fn rule(&mut self, r: usize) -> Result<String, ConstraintError> {
        if let Some(m) = &self.memo[r] {
            return Ok(m.clone());
        }
        if self.open[r] >= self.depth {
            return Ok(NOTHING.into());
        }
        self.open[r] += 1;
        let body = &self.g.rules[r];
        let out = match self.recursive[r].then(|| tail_loop(body, r)).flatten() {
            // `r ::= p1 r | p2 r | b1 | b2` is `(p1|p2)*(b1|b2)`.
            Some((loops, exits)) => {
                let loops = self.alternatives(&loops)?;
                let exits = self.alternatives(&exits)?;
                Ok(format!("(?:{loops}*{exits})"))
            }
            None => self.expr(body),
        };
        self.open[r] -= 1;
        let out = out?;
        if out.len() > MAX_REGEX_BYTES {
            return Err(ConstraintError::TooLarge(format!(
                "rule `{}` expands to more than {MAX_REGEX_BYTES} bytes of expression (recursion \
                 expanded {} levels deep)",
                self.g.names[r], self.depth
            )));
        }
        if !self.recursive[r] {
            self.memo[r] = Some(out.clone());
        }
        Ok(out)
    }

    fn alternatives(&mut self, alts: &[Expr]) -> Result<String, ConstraintError> {
        if alts.is_empty() {
            return Ok(NOTHING.into());
        }
        let parts = alts
            .iter()
            .map(|a| self.expr(a))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(format!("(?:{})", parts.join("|")))
    }

    /// A regex atom (safe to concatenate and to repeat).
    fn expr(&mut self, e: &Expr) -> Result<String, ConstraintError> {
        Ok(match e {
            Expr::Literal(s) => format!("(?:{})", regex_syntax::escape(s)),
            Expr::Class { negated, ranges } => {
                let mut c = String::from(if *negated { "[^" } else { "[" });
                for &(a, b) in ranges {
                    c.push_str(&format!("\\x{{{:X}}}", a as u32));
                    if b != a {
                        c.push_str(&format!("-\\x{{{:X}}}", b as u32));
                    }
                }
                c.push(']');
                c
            }
            Expr::Any => "(?s:.)".into(),
            Expr::Rule(r) => self.rule(*r)?,
            Expr::Sequence(items) => {
                let parts = items
                    .iter()
                    .map(|i| self.expr(i))
                    .collect::<Result<Vec<_>, _>>()?;
                format!("(?:{})", parts.concat())
            }
            Expr::Alternatives(alts) => self.alternatives(alts)?,
            Expr::Repeat { item, min, max } => {
                let item = self.expr(item)?;
                match max {
                    Some(m) => format!("(?:{item}{{{min},{m}}})"),
                    None => format!("(?:{item}{{{min},}})"),
                }
            }
        })
    }
}

/// When every use of rule `r` inside its own body is the last item of one of its top-level
/// alternatives, the prefixes of those alternatives (the loop) and the other alternatives (the
/// exits).
fn tail_loop(body: &Expr, r: usize) -> Option<(Vec<Expr>, Vec<Expr>)> {
    let alts: &[Expr] = match body {
        Expr::Alternatives(a) => a,
        other => std::slice::from_ref(other),
    };
    let mut uses = 0;
    visit_rules(body, &mut |t| uses += usize::from(t == r));
    let (mut loops, mut exits) = (Vec::new(), Vec::new());
    for a in alts {
        match a {
            Expr::Rule(t) if *t == r => loops.push(Expr::Sequence(Vec::new())),
            Expr::Sequence(items) if items.last() == Some(&Expr::Rule(r)) => {
                loops.push(Expr::Sequence(items[..items.len() - 1].to_vec()))
            }
            other => exits.push(other.clone()),
        }
    }
    (!loops.is_empty() && uses == loops.len()).then_some((loops, exits))
}

struct Parser<'s> {
    src: &'s str,
    pos: usize,
    names: Vec<String>,
    /// Bodies by rule index; `None` until defined.
    bodies: Vec<Option<Expr>>,
    /// Open parentheses.
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.src.as_bytes().get(self.pos).copied()
    }

    fn error(&self, what: &str) -> ConstraintError {
        let before = &self.src[..self.pos];
        let line = before.matches('\n').count() + 1;
        let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        ConstraintError::InvalidGrammar(format!("line {line}, column {col}: {what}"))
    }

    /// Skip spaces, tabs and comments (and newlines when `newlines`).
    fn space(&mut self, newlines: bool) {
        while let Some(c) = self.peek() {
            match c {
                b' ' | b'\t' => self.pos += 1,
                b'\r' | b'\n' if newlines => self.pos += 1,
                b'#' => {
                    while self.peek().is_some_and(|c| c != b'\r' && c != b'\n') {
                        self.pos += 1;
                    }
                }
                _ => break,
            }
        }
    }

    fn is_word(c: u8) -> bool {
        c.is_ascii_alphanumeric() || c == b'-'
    }

    fn name(&mut self) -> Result<&str, ConstraintError> {
        let start = self.pos;
        while self.peek().is_some_and(Self::is_word) {
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.error("expecting a rule name"));
        }
        Ok(&self.src[start..self.pos])
    }

    fn rule_index(&mut self, name: &str) -> Result<usize, ConstraintError> {
        if let Some(i) = self.names.iter().position(|n| n == name) {
            return Ok(i);
        }
        if self.names.len() >= MAX_RULES {
            return Err(self.error(&format!("more than {MAX_RULES} rules")));
        }
        self.names.push(name.to_string());
        self.bodies.push(None);
        Ok(self.names.len() - 1)
    }

    /// `name ::= alternatives` and the end of its line.
    fn rule(&mut self) -> Result<(), ConstraintError> {
        let name = self.name()?.to_string();
        let index = self.rule_index(&name)?;
        self.space(false);
        if !self.src[self.pos..].starts_with("::=") {
            return Err(self.error("expecting `::=`"));
        }
        self.pos += 3;
        self.space(true);
        let body = self.alternatives(false)?;
        match self.peek() {
            None => {}
            Some(b'\n') => self.pos += 1,
            Some(b'\r') => {
                self.pos += 1;
                if self.peek() == Some(b'\n') {
                    self.pos += 1;
                }
            }
            Some(_) => return Err(self.error("expecting a newline or the end")),
        }
        if self.bodies[index].is_some() {
            return Err(self.error(&format!("rule `{name}` is defined twice")));
        }
        self.bodies[index] = Some(body);
        self.space(true);
        Ok(())
    }

    fn alternatives(&mut self, nested: bool) -> Result<Expr, ConstraintError> {
        let mut alts = vec![self.sequence(nested)?];
        while self.peek() == Some(b'|') {
            self.pos += 1;
            self.space(true);
            alts.push(self.sequence(nested)?);
        }
        Ok(if alts.len() == 1 {
            alts.pop().expect("one alternative")
        } else {
            Expr::Alternatives(alts)
        })
    }

    fn sequence(&mut self, nested: bool) -> Result<Expr, ConstraintError> {
        let mut items: Vec<Expr> = Vec::new();
        while let Some(c) = self.peek() {
            let item = match c {
                b'"' => {
                    self.pos += 1;
                    let mut s = String::new();
                    loop {
                        match self.peek() {
                            None => return Err(self.error("unterminated string literal")),
                            Some(b'"') => break,
                            Some(_) => s.push(self.char()?),
                        }
                    }
                    self.pos += 1;
                    Expr::Literal(s)
                }
                b'[' => self.class()?,
                b'<' | b'!' => {
                    return Err(self.error(
                        "token matches (`<...>`, `!<...>`) are not supported: this automaton \
                         reads the output's bytes, not token ids",
                    ));
                }
                b'(' => {
                    if self.depth >= MAX_NESTING {
                        return Err(self.error("parentheses nest too deep"));
                    }
                    self.pos += 1;
                    self.depth += 1;
                    self.space(true);
                    let inner = self.alternatives(true)?;
                    self.depth -= 1;
                    if self.peek() != Some(b')') {
                        return Err(self.error("expecting `)`"));
                    }
                    self.pos += 1;
                    inner
                }
                b'.' => {
                    self.pos += 1;
                    Expr::Any
                }
                b'*' | b'+' | b'?' | b'{' => {
                    let (min, max) = self.repetition()?;
                    let Some(last) = items.pop() else {
                        return Err(self.error("`*`, `+`, `?` or `{` with nothing before it"));
                    };
                    Expr::Repeat {
                        item: Box::new(last),
                        min,
                        max,
                    }
                }
                c if Self::is_word(c) => {
                    let name = self.name()?.to_string();
                    Expr::Rule(self.rule_index(&name)?)
                }
                _ => break,
            };
            items.push(item);
            self.space(nested);
        }
        Ok(if items.len() == 1 {
            items.pop().expect("one item")
        } else {
            Expr::Sequence(items)
        })
    }

    /// `*`, `+`, `?` or `{m}`, `{m,}`, `{m,n}` as (min, max).
    fn repetition(&mut self) -> Result<(u32, Option<u32>), ConstraintError> {
        let c = self.peek().expect("a repetition operator");
        self.pos += 1;
        match c {
            b'*' => return Ok((0, None)),
            b'+' => return Ok((1, None)),
            b'?' => return Ok((0, Some(1))),
            _ => {}
        }
        self.space(true);
        let min = self.int()?;
        self.space(true);
        let max = match self.peek() {
            Some(b'}') => Some(min),
            Some(b',') => {
                self.pos += 1;
                self.space(true);
                let max = match self.peek() {
                    Some(c) if c.is_ascii_digit() => Some(self.int()?),
                    _ => None,
                };
                self.space(true);
                if self.peek() != Some(b'}') {
                    return Err(self.error("expecting `}`"));
                }
                max
            }
            _ => return Err(self.error("expecting `,` or `}`")),
        };
        self.pos += 1;
        if max.is_some_and(|m| m < min) {
            return Err(self.error("the repetition's maximum is below its minimum"));
        }
        Ok((min, max))
    }

    fn int(&mut self) -> Result<u32, ConstraintError> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(self.error("expecting a number"));
        }
        match self.src[start..self.pos].parse::<u32>() {
            Ok(n) if n <= MAX_REPETITION => Ok(n),
            _ => Err(self.error(&format!("repetition counts are at most {MAX_REPETITION}"))),
        }
    }

    /// `[...]` or `[^...]`.
    fn class(&mut self) -> Result<Expr, ConstraintError> {
        self.pos += 1;
        let negated = self.peek() == Some(b'^');
        if negated {
            self.pos += 1;
        }
        let mut ranges = Vec::new();
        loop {
            match self.peek() {
                None => return Err(self.error("unterminated character class")),
                Some(b']') => break,
                Some(_) => {}
            }
            let a = self.char()?;
            let bytes = self.src.as_bytes();
            let b = if self.peek() == Some(b'-') && bytes.get(self.pos + 1) != Some(&b']') {
                self.pos += 1;
                if self.peek().is_none() {
                    return Err(self.error("unterminated character class"));
                }
                self.char()?
            } else {
                a
            };
            if b < a {
                return Err(self.error("a character range ends below its start"));
            }
            ranges.push((a, b));
        }
        self.pos += 1;
        if ranges.is_empty() {
            return Err(self.error("an empty character class"));
        }
        Ok(Expr::Class { negated, ranges })
    }

    /// One character of a literal or class, escapes decoded.
    fn char(&mut self) -> Result<char, ConstraintError> {
        let rest = &self.src[self.pos..];
        let Some(c) = rest.chars().next() else {
            return Err(self.error("unexpected end"));
        };
        if c != '\\' {
            self.pos += c.len_utf8();
            return Ok(c);
        }
        let (value, len) = match rest.as_bytes().get(1) {
            Some(b'x') => (self.hex(2)?, 4),
            Some(b'u') => (self.hex(4)?, 6),
            Some(b'U') => (self.hex(8)?, 10),
            Some(b't') => ('\t' as u32, 2),
            Some(b'r') => ('\r' as u32, 2),
            Some(b'n') => ('\n' as u32, 2),
            Some(&e @ (b'\\' | b'"' | b'[' | b']' | b'-')) => (u32::from(e), 2),
            _ => return Err(self.error("unknown escape")),
        };
        let c = char::from_u32(value)
            .ok_or_else(|| self.error(&format!("U+{value:X} is not a character")))?;
        self.pos += len;
        Ok(c)
    }

    /// The `digits` hex digits after `\x`, `\u` or `\U`.
    fn hex(&self, digits: usize) -> Result<u32, ConstraintError> {
        let text = self
            .src
            .get(self.pos + 2..self.pos + 2 + digits)
            .filter(|t| t.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| self.error(&format!("expecting {digits} hex digits")))?;
        u32::from_str_radix(text, 16).map_err(|_| self.error("bad hex escape"))
    }
}

#[cfg(test)]
#[path = "gbnf_tests.rs"]
mod tests;
