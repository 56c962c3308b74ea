//! `allow_dial` patterns: which numbers a bot may dial or transfer to.
//!
//! A pattern is digits and `+` (only first), `?` for exactly one digit, and an optional trailing
//! `*` for any suffix: `5??` allows 500–599, `1800*` anything starting with 1800. No pattern, no
//! dialling: the default list is empty, so a bot cannot become a toll-fraud relay by accident.

use std::fmt;

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PatternError {
    #[error("empty pattern")]
    Empty,
    #[error("`+` is only allowed as the first character")]
    MisplacedPlus,
    #[error("`*` is only allowed as the last character")]
    MisplacedStar,
    #[error("unexpected character {0:?} (allowed: digits, `?`, a leading `+`, a trailing `*`)")]
    BadCharacter(char),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Symbol {
    Exact(char),
    AnyDigit,
}

/// One parsed `allow_dial` entry.
#[derive(Clone, PartialEq, Eq)]
pub struct DialPattern {
    text: String,
    symbols: Vec<Symbol>,
    any_suffix: bool,
}

impl DialPattern {
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        if text.is_empty() {
            return Err(PatternError::Empty);
        }
        let (body, any_suffix) = match text.strip_suffix('*') {
            Some(body) => (body, true),
            None => (text, false),
        };
        let symbols = body
            .char_indices()
            .map(|(i, c)| match c {
                '0'..='9' => Ok(Symbol::Exact(c)),
                '+' if i == 0 => Ok(Symbol::Exact(c)),
                '+' => Err(PatternError::MisplacedPlus),
                '?' => Ok(Symbol::AnyDigit),
                '*' => Err(PatternError::MisplacedStar),
                other => Err(PatternError::BadCharacter(other)),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            text: text.to_owned(),
            symbols,
            any_suffix,
        })
    }

    pub fn matches(&self, number: &str) -> bool {
        let mut chars = number.chars();
        let head_matches = self
            .symbols
            .iter()
            .all(|symbol| match (symbol, chars.next()) {
                (Symbol::Exact(want), Some(got)) => *want == got,
                (Symbol::AnyDigit, Some(got)) => got.is_ascii_digit(),
                (_, None) => false,
            });
        head_matches && (self.any_suffix || chars.next().is_none())
    }
}

impl fmt::Debug for DialPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DialPattern({:?})", self.text)
    }
}

/// A bot's whole `allow_dial` list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DialPolicy(Vec<DialPattern>);

impl DialPolicy {
    pub fn new(patterns: Vec<DialPattern>) -> Self {
        Self(patterns)
    }

    /// Whether any pattern allows `number`; an empty policy allows nothing.
    pub fn allows(&self, number: &str) -> bool {
        self.0.iter().any(|pattern| pattern.matches(number))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> DialPattern {
        DialPattern::parse(text).unwrap()
    }

    #[test]
    fn question_mark_is_exactly_one_digit() {
        let p = pattern("5??");
        assert!(p.matches("500"));
        assert!(p.matches("599"));
        assert!(!p.matches("50"));
        assert!(!p.matches("5000"));
        assert!(!p.matches("5a0"));
        assert!(!p.matches("600"));
    }

    #[test]
    fn trailing_star_is_any_suffix() {
        let p = pattern("1800*");
        assert!(p.matches("1800"));
        assert!(p.matches("18005551234"));
        assert!(!p.matches("180"));
        assert!(pattern("*").matches("0049301234"));
    }

    #[test]
    fn plus_is_literal_and_only_first() {
        assert!(pattern("+49*").matches("+4930"));
        assert!(!pattern("+49*").matches("4930"));
        assert_eq!(DialPattern::parse("4+9"), Err(PatternError::MisplacedPlus));
    }

    #[test]
    fn invalid_patterns() {
        assert_eq!(DialPattern::parse(""), Err(PatternError::Empty));
        assert_eq!(DialPattern::parse("5*9"), Err(PatternError::MisplacedStar));
        assert_eq!(DialPattern::parse("**"), Err(PatternError::MisplacedStar));
        assert_eq!(
            DialPattern::parse("5x?"),
            Err(PatternError::BadCharacter('x'))
        );
        assert_eq!(
            DialPattern::parse("5 0"),
            Err(PatternError::BadCharacter(' '))
        );
    }

    #[test]
    fn empty_policy_allows_nothing() {
        assert!(!DialPolicy::default().allows("500"));
        let policy = DialPolicy::new(vec![pattern("5??"), pattern("1800*")]);
        assert!(policy.allows("501"));
        assert!(policy.allows("18001"));
        assert!(!policy.allows("911"));
    }
}
