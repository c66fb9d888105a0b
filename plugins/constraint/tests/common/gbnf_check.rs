//! A GBNF recognizer written for the tests, independently of the plugin's compiler (no regex,
//! no automaton): the grammar is read into a tree and a string is matched by computing, for
//! each expression and start position, the set of positions where a match can end (rules
//! memoised per position; left recursion by iterating to a fixed point), so a test checks
//! outputs against the grammar itself rather than against the plugin's reading of it.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap, HashSet};

type Ends = HashMap<(String, usize), BTreeSet<usize>>;

#[derive(Debug, Clone)]
enum Node {
    Chars(Vec<char>),
    Set(bool, Vec<(char, char)>),
    Any,
    Ref(String),
    Seq(Vec<Node>),
    Alt(Vec<Node>),
    Rep(Box<Node>, usize, Option<usize>),
}

pub struct Recognizer {
    rules: HashMap<String, Node>,
    /// This pass's end sets by (rule, start).
    memo: RefCell<Ends>,
    /// The previous pass's, read for a (rule, start) that is being computed (left recursion).
    previous: RefCell<Ends>,
    busy: RefCell<HashSet<(String, usize)>>,
}

impl Recognizer {
    pub fn new(text: &str) -> Recognizer {
        let mut r = Reader {
            c: text.chars().collect(),
            i: 0,
        };
        let mut rules = HashMap::new();
        r.skip(true);
        while r.i < r.c.len() {
            let name = r.word();
            r.skip(false);
            for expect in "::=".chars() {
                assert_eq!(r.next(), expect, "`::=` after {name}");
            }
            r.skip(true);
            let body = r.alt(false);
            rules.insert(name, body);
            r.skip(true);
        }
        assert!(rules.contains_key("root"), "no root");
        Recognizer {
            rules,
            memo: RefCell::new(HashMap::new()),
            previous: RefCell::new(HashMap::new()),
            busy: RefCell::new(HashSet::new()),
        }
    }

    /// Whether the whole of `s` is a `root`.
    pub fn accepts(&self, s: &str) -> bool {
        let chars: Vec<char> = s.chars().collect();
        self.previous.borrow_mut().clear();
        // Every pass reads the last one's sets where a rule recurses on itself at the same
        // start; the sets only grow, so the passes reach a fixed point.
        loop {
            self.memo.borrow_mut().clear();
            let ends = self.ends(&Node::Ref("root".into()), &chars, 0);
            if *self.memo.borrow() == *self.previous.borrow() {
                return ends.contains(&chars.len());
            }
            let memo = self.memo.borrow().clone();
            *self.previous.borrow_mut() = memo;
        }
    }

    fn ends(&self, n: &Node, s: &[char], at: usize) -> BTreeSet<usize> {
        let one = |ok: bool| {
            if ok {
                BTreeSet::from([at + 1])
            } else {
                BTreeSet::new()
            }
        };
        match n {
            Node::Chars(cs) => {
                if s.len() >= at + cs.len() && s[at..at + cs.len()] == cs[..] {
                    BTreeSet::from([at + cs.len()])
                } else {
                    BTreeSet::new()
                }
            }
            Node::Set(neg, ranges) => {
                one(at < s.len() && ranges.iter().any(|&(a, b)| a <= s[at] && s[at] <= b) != *neg)
            }
            Node::Any => one(at < s.len()),
            Node::Ref(name) => {
                let key = (name.clone(), at);
                if let Some(e) = self.memo.borrow().get(&key) {
                    return e.clone();
                }
                if self.busy.borrow().contains(&key) {
                    return self
                        .previous
                        .borrow()
                        .get(&key)
                        .cloned()
                        .unwrap_or_default();
                }
                self.busy.borrow_mut().insert(key.clone());
                let body = self
                    .rules
                    .get(name)
                    .unwrap_or_else(|| panic!("rule {name}"));
                let e = self.ends(body, s, at);
                self.busy.borrow_mut().remove(&key);
                self.memo.borrow_mut().insert(key, e.clone());
                e
            }
            Node::Seq(items) => {
                let mut cur = BTreeSet::from([at]);
                for item in items {
                    cur = cur.iter().flat_map(|&p| self.ends(item, s, p)).collect();
                }
                cur
            }
            Node::Alt(alts) => alts.iter().flat_map(|a| self.ends(a, s, at)).collect(),
            Node::Rep(item, min, max) => {
                // States (position, repetitions so far capped at `min`).
                let mut out = BTreeSet::new();
                let mut seen = BTreeSet::new();
                let mut frontier = vec![(at, 0usize)];
                while let Some((p, k)) = frontier.pop() {
                    if !seen.insert((p, k)) {
                        continue;
                    }
                    if k >= *min {
                        out.insert(p);
                    }
                    if max.is_some_and(|m| k >= m) {
                        continue;
                    }
                    for q in self.ends(item, s, p) {
                        let k2 = if max.is_some() {
                            k + 1
                        } else {
                            (k + 1).min(*min)
                        };
                        frontier.push((q, k2));
                    }
                }
                out
            }
        }
    }
}

struct Reader {
    c: Vec<char>,
    i: usize,
}

impl Reader {
    fn peek(&self) -> Option<char> {
        self.c.get(self.i).copied()
    }

    fn next(&mut self) -> char {
        self.i += 1;
        self.c[self.i - 1]
    }

    fn skip(&mut self, newlines: bool) {
        while let Some(c) = self.peek() {
            if c == '#' {
                while self.peek().is_some_and(|c| c != '\n') {
                    self.i += 1;
                }
            } else if c == ' ' || c == '\t' || (newlines && (c == '\n' || c == '\r')) {
                self.i += 1;
            } else {
                break;
            }
        }
    }

    fn word(&mut self) -> String {
        let mut w = String::new();
        while let Some(c) = self
            .peek()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        {
            w.push(c);
            self.i += 1;
        }
        assert!(!w.is_empty(), "a name at {}", self.i);
        w
    }

    fn alt(&mut self, nested: bool) -> Node {
        let mut alts = vec![self.seq(nested)];
        while self.peek() == Some('|') {
            self.i += 1;
            self.skip(true);
            alts.push(self.seq(nested));
        }
        Node::Alt(alts)
    }

    fn seq(&mut self, nested: bool) -> Node {
        let mut items = Vec::new();
        while let Some(c) = self.peek() {
            let item = match c {
                '"' => {
                    self.i += 1;
                    let mut cs = Vec::new();
                    while self.peek() != Some('"') {
                        cs.push(self.char());
                    }
                    self.i += 1;
                    Node::Chars(cs)
                }
                '[' => {
                    self.i += 1;
                    let neg = self.peek() == Some('^');
                    if neg {
                        self.i += 1;
                    }
                    let mut ranges = Vec::new();
                    while self.peek() != Some(']') {
                        let a = self.char();
                        let b = if self.peek() == Some('-') && self.c.get(self.i + 1) != Some(&']')
                        {
                            self.i += 1;
                            self.char()
                        } else {
                            a
                        };
                        ranges.push((a, b));
                    }
                    self.i += 1;
                    Node::Set(neg, ranges)
                }
                '(' => {
                    self.i += 1;
                    self.skip(true);
                    let inner = self.alt(true);
                    assert_eq!(self.next(), ')');
                    inner
                }
                '.' => {
                    self.i += 1;
                    Node::Any
                }
                '*' | '+' | '?' | '{' => {
                    self.i += 1;
                    let (min, max) = match c {
                        '*' => (0, None),
                        '+' => (1, None),
                        '?' => (0, Some(1)),
                        _ => {
                            let mut text = String::new();
                            while self.peek() != Some('}') {
                                text.push(self.next());
                            }
                            self.i += 1;
                            let text: String =
                                text.chars().filter(|c| !c.is_whitespace()).collect();
                            match text.split_once(',') {
                                None => {
                                    let n = text.parse().unwrap();
                                    (n, Some(n))
                                }
                                Some((a, "")) => (a.parse().unwrap(), None),
                                Some((a, b)) => (a.parse().unwrap(), Some(b.parse().unwrap())),
                            }
                        }
                    };
                    let last = items.pop().expect("an item to repeat");
                    Node::Rep(Box::new(last), min, max)
                }
                c if c.is_ascii_alphanumeric() || c == '-' => Node::Ref(self.word()),
                _ => break,
            };
            items.push(item);
            self.skip(nested);
        }
        Node::Seq(items)
    }

    fn char(&mut self) -> char {
        let c = self.next();
        if c != '\\' {
            return c;
        }
        let hex = |r: &mut Reader, n: usize| {
            let s: String = (0..n).map(|_| r.next()).collect();
            char::from_u32(u32::from_str_radix(&s, 16).unwrap()).unwrap()
        };
        match self.next() {
            'x' => hex(self, 2),
            'u' => hex(self, 4),
            'U' => hex(self, 8),
            't' => '\t',
            'r' => '\r',
            'n' => '\n',
            other => other,
        }
    }
}
